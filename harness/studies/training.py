"""Training parity: from identical weights and data, N optimizer steps with train_on_batch and with
fit(shuffle=False), SGD (momentum) and Adam, on the active backend, against the NumPy training loop (the
reference gradients of harness.truth.expected_gradients and the update rules of reference/optimizers.py).

The setup is data (``[training]`` in harness/case/gradient_cases.toml): one case (its layers, sizes, mask;
the weights of its seeded data), ``steps`` fixed batches (batch k has the seeded inputs and mask of the case
renamed ``<case>_batch<k>``, and seeded targets), the optimizers with their hyperparameters.

Per optimizer and entry point the record holds the loss Keras reported at every step and the NumPy one,
and the final weights' comparison. What Keras reports is itself compared: train_on_batch resets the loss
metric on every call (the loss of that batch, before the update), fit reports the running mean over the
epoch; both are checked against the NumPy loop as such. Everything is judged with the ``training`` row of
the tolerance table by the one comparison (harness.truth.compare). A longer run (``long_steps`` of
train_on_batch, cycling the batches) records at every step the largest difference between Keras's weights
and the NumPy trajectory: how far float32 training drifts from float64, reported, not judged.

``DIR/<backend>.training.json`` is rewritten atomically after every run. Exit codes (``exit_code``): 1 when a
loss or final weight is beyond the tolerance or a run raised (the backend cannot train what it runs
forward); with a fault injected, 0 when it is caught, 1 when not, 2 when it never ran.
"""

from __future__ import annotations

import time as clock
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.case.schema import Case, parse_case
from harness.case.tolerances import Tolerances, load_tolerances, tolerance_table_json
from harness.case.weights import DEFAULT_SEED, CaseData, make_case_data, numpy_dtype
from harness.execute.backends import BackendInfo
from harness.execute.gradients import weight_keys
from harness.records import store
from harness.records.header import SCHEMAS, make_header, now
from harness.truth.compare import compare
from harness.truth.expected import expected_outputs
from harness.truth.expected_gradients import expected_gradients, gradient_keys, gradient_targets
from reference import optimizers as numpy_optimizers

TRAINING_FILE = Path(__file__).resolve().parents[1] / "case" / "gradient_cases.toml"
SCHEMA, SCHEMA_VERSION = SCHEMAS["training"]
EXIT_OK, EXIT_FOUND, EXIT_COULD_NOT_RUN = 0, 1, 2
ENTRY_POINTS = ("train_on_batch", "fit")


def training_path(out_dir: Path, backend: str) -> Path:
    return Path(out_dir) / f"{backend}.training.json"


def training_setup(path: Path = TRAINING_FILE) -> dict[str, Any]:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))["training"]
    return {"case": parse_case(dict(raw["case"]), str(path)), "steps": int(raw["steps"]), "long_steps": int(raw["long_steps"]),
            "optimizers": [dict(entry) for entry in raw["optimizer"]]}


def make_batches(case: Case, steps: int, seed: int) -> tuple[CaseData, list[tuple[np.ndarray, np.ndarray | None, np.ndarray]]]:
    """(the case's data, whose weights start every run; [(x, mask, target)] per batch), targets rounded to the
    compute dtype."""
    data = make_case_data(case, seed)
    dtype = numpy_dtype(case.compute_dtype)
    batches = []
    for k in range(steps):
        batch_case = replace(case, name=f"{case.name}_batch{k}")
        batch = make_case_data(batch_case, seed)
        if len(case.output_names) != 1:
            raise ValueError(f"{case.name}: a training case has one output (it is trained with loss='mse')")
        shapes = {name: value.shape for name, value in expected_outputs(batch_case, batch).items()}
        target = gradient_targets(batch_case, shapes, seed)["output"].astype(dtype).astype(np.float64)
        batches.append((batch.x, batch.mask, target))
    return data, batches


def _nested(case: Case, params: dict[str, np.ndarray]) -> tuple:
    return tuple(tuple(tuple(params[key] for key in group) for group in layer) for layer in gradient_keys(case))


def _rate(value: float) -> float:
    """Keras keeps hyperparameters such as the learning rate in float32 variables (floatx)."""
    return float(np.float32(value))


def numpy_loop(case: Case, data: CaseData, batches: list, optimizer: dict[str, Any], steps: int) -> dict[str, Any]:
    """The float64 training loop: per step the loss before the update and the parameters after it."""
    params = {key: np.asarray(array, np.float64) for layer_keys, layer in zip(gradient_keys(case), data.layer_weights)
              for group_keys, group in zip(layer_keys, layer) for key, array in zip(group_keys, group)}
    name = optimizer["name"]
    if name == "sgd":
        state = numpy_optimizers.sgd_init(params, optimizer.get("momentum", 0.0))
    else:
        state = numpy_optimizers.adam_init(params)
    losses, trajectory = [], []
    for step in range(steps):
        x, mask, target = batches[step % len(batches)]
        batch_data = replace(data, x=x, mask=mask, layer_weights=_nested(case, params))
        loss, grads, _, _ = expected_gradients(case, batch_data, targets={"output": target})
        grads = {key: grads[key] for key in params}
        if name == "sgd":
            params, state = numpy_optimizers.sgd_step(params, grads, state, step + 1, learning_rate=_rate(optimizer["learning_rate"]),
                                                      momentum=_rate(optimizer.get("momentum", 0.0)))
        else:
            params, state = numpy_optimizers.adam_step(params, grads, state, step + 1, learning_rate=_rate(optimizer["learning_rate"]))
        losses.append(loss)
        trajectory.append(params)
    return {"losses": losses, "trajectory": trajectory}


def _keras_optimizer(optimizer: dict[str, Any]) -> Any:
    import keras

    if optimizer["name"] == "sgd":
        return keras.optimizers.SGD(learning_rate=optimizer["learning_rate"], momentum=optimizer.get("momentum", 0.0))
    return keras.optimizers.Adam(learning_rate=optimizer["learning_rate"])


def _build(case: Case, data: CaseData, optimizer: dict[str, Any]) -> tuple[Any, list[str]]:
    from harness.execute import models

    model, blocks = models.build_model("functional", case, data)
    model.compile(optimizer=_keras_optimizer(optimizer), loss="mse")
    return model, weight_keys(model, blocks, case)


def _weights(model: Any, keys: list[str]) -> dict[str, np.ndarray]:
    import keras

    return {key: np.asarray(keras.ops.convert_to_numpy(variable.value)) for key, variable in zip(keys, model.trainable_weights)}


def keras_run(case: Case, data: CaseData, batches: list, optimizer: dict[str, Any], steps: int, entry_point: str,
              on_step: Any = None) -> dict[str, Any]:
    """Train a fresh model through ``entry_point``; the losses it reported and its final weights."""
    import keras

    model, keys = _build(case, data, optimizer)
    reported: list[float] = []
    if entry_point == "train_on_batch":
        for step in range(steps):
            x, _, target = batches[step % len(batches)]
            result = model.train_on_batch(x, target.astype(case.compute_dtype))
            reported.append(float(np.asarray(result[0] if isinstance(result, (list, tuple)) else result)))
            if on_step is not None:
                on_step(step, _weights(model, keys))
    else:
        xs = np.concatenate([batches[k % len(batches)][0] for k in range(steps)])
        targets = np.concatenate([batches[k % len(batches)][2] for k in range(steps)]).astype(case.compute_dtype)
        recorder = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: reported.append(float(logs["loss"])))
        model.fit(xs, targets, batch_size=case.batch, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
    return {"reported": reported, "weights": _weights(model, keys)}


def _item(actual: Any, expected: Any, tolerance: Any, dtype: str, label: str) -> dict[str, Any]:
    comparison = compare(np.asarray(actual), np.asarray(expected, np.float64), tolerance, dtype)
    return comparison.to_json() | {"message": comparison.message(label)}


def run_one(case: Case, data: CaseData, batches: list, optimizer: dict[str, Any], steps: int, entry_point: str,
            tolerances: Tolerances, reference: dict[str, Any]) -> dict[str, Any]:
    """One optimizer through one entry point against the NumPy loop; never raises."""
    from harness.execute.measure import error_record

    started = clock.perf_counter()
    entry: dict[str, Any] = {"optimizer": optimizer, "entry_point": entry_point, "steps": steps}
    tolerance = tolerances.for_case(case, "training")
    expected_losses = np.asarray(reference["losses"][:steps])
    # train_on_batch resets the loss metric on every call; fit reports the running mean over the epoch.
    if entry_point == "fit":
        expected_losses = np.cumsum(expected_losses) / np.arange(1, steps + 1)
    entry["numpy_losses"] = [float(value) for value in expected_losses]
    try:
        run = keras_run(case, data, batches, optimizer, steps, entry_point)
        entry["keras_losses"] = run["reported"]
        final = reference["trajectory"][steps - 1]
        items = {"losses": _item(run["reported"], expected_losses, tolerance, case.compute_dtype, f"{entry_point}/losses")}
        for key, value in run["weights"].items():
            items[f"final/{key}"] = _item(value, final[key], tolerance, case.compute_dtype, f"{entry_point}/final/{key}")
        entry["items"] = items
        entry["status"] = "pass" if all(item["passed"] for item in items.values()) else "fail"
        entry["problems"] = [item["message"] for item in items.values() if not item["passed"]]
        entry["error"] = None
    except Exception as error:  # a backend that cannot train what it runs forward is a finding, recorded
        entry["status"], entry["error"], entry["problems"] = "error", error_record(error), []
    entry["duration_s"] = round(clock.perf_counter() - started, 3)
    return entry


def long_run(case: Case, data: CaseData, batches: list, optimizer: dict[str, Any], steps: int) -> dict[str, Any]:
    """``steps`` of train_on_batch: per step the largest weight difference to the NumPy trajectory."""
    from harness.execute.measure import error_record

    started = clock.perf_counter()
    reference = numpy_loop(case, data, batches, optimizer, steps)
    distances: list[float] = []
    relative: list[float] = []

    def on_step(step: int, weights: dict[str, np.ndarray]) -> None:
        expected = reference["trajectory"][step]
        distances.append(max(float(np.max(np.abs(weights[key].astype(np.float64) - expected[key]))) for key in weights))
        relative.append(max(float(np.max(np.abs(weights[key].astype(np.float64) - expected[key]))
                                  / max(float(np.max(np.abs(expected[key]))), 1e-30)) for key in weights))

    entry: dict[str, Any] = {"optimizer": optimizer, "entry_point": "train_on_batch", "steps": steps}
    try:
        run = keras_run(case, data, batches, optimizer, steps, "train_on_batch", on_step)
        entry["max_abs_weight_difference"] = distances
        entry["max_relative_weight_difference"] = relative
        entry["loss_difference"] = [abs(a - b) for a, b in zip(run["reported"], reference["losses"])]
        entry["keras_losses"], entry["numpy_losses"] = run["reported"], [float(v) for v in reference["losses"]]
        entry["error"] = None
    except Exception as error:
        entry["error"] = error_record(error)
    entry["duration_s"] = round(clock.perf_counter() - started, 3)
    return entry


def run_training_study(backend: BackendInfo, out_dir: Path, seed: int = DEFAULT_SEED, *, command: str = "",
                       steps: int | None = None, long_steps: int | None = None, fault: str | None = None,
                       tolerances: Tolerances | None = None, setup: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every optimizer through train_on_batch and fit, then the long runs; write and return the record."""
    if fault is None:
        return _run(backend, out_dir, seed, command, steps, long_steps, None, tolerances, setup)
    from harness.execute.gradients import injected

    with injected(fault) as in_force:
        return _run(backend, out_dir, seed, command, steps, long_steps, in_force, tolerances, setup)


def _run(backend, out_dir, seed, command, steps, long_steps, fault, tolerances, setup) -> dict[str, Any]:
    setup = setup or training_setup()
    case = setup["case"]
    steps = steps or setup["steps"]
    long_steps = setup["long_steps"] if long_steps is None else long_steps
    tolerances = tolerances or load_tolerances(backend.device_class)
    path = training_path(out_dir, backend.name)
    header = make_header("training", backend, seed=seed, command=command, fault=None if fault is None else fault.name)
    record: dict[str, Any] = header | {
        "case": case.definition, "steps": steps, "long_steps": long_steps, "loss": "mse",
        "tolerances": {dtype: {"training": rows["training"]} for dtype, rows in tolerance_table_json(tolerances).items()
                       if "training" in rows},
        "runs": [], "long_runs": [], "duration_s": None,
    }
    started = clock.perf_counter()
    store.write_json(path, record)
    data, batches = make_batches(case, steps, seed)
    for optimizer in setup["optimizers"]:
        reference = numpy_loop(case, data, batches, optimizer, steps)
        for entry_point in ENTRY_POINTS:
            calls = fault.calls if fault is not None else 0
            entry = run_one(case, data, batches, optimizer, steps, entry_point, tolerances, reference)
            if fault is not None:
                entry["fault_calls"] = fault.calls - calls
            record["runs"].append(entry)
            store.write_json(path, record)
    if long_steps and fault is None:
        for optimizer in setup["optimizers"]:
            record["long_runs"].append(long_run(case, data, batches, optimizer, long_steps))
            store.write_json(path, record)
    record["finished"] = now()
    record["duration_s"] = round(clock.perf_counter() - started, 3)
    store.write_json(path, record)
    return record


def _label(entry: dict[str, Any]) -> str:
    return f"{entry['optimizer']['name']} {entry['entry_point']}"


def problems(record: dict[str, Any]) -> list[str]:
    lines = []
    for entry in record["runs"]:
        if entry["status"] == "error":
            lines.append(f"{_label(entry)}: cannot train: {entry['error']['summary']}")
        lines += [f"{_label(entry)}: {problem}" for problem in entry["problems"]]
    return lines


def exit_code(record: dict[str, Any]) -> int:
    runs = record["runs"]
    if not runs:
        return EXIT_COULD_NOT_RUN
    if record.get("fault"):
        ran = [entry for entry in runs if entry.get("fault_calls")]
        if not ran:
            return EXIT_COULD_NOT_RUN
        return EXIT_OK if any(entry["status"] == "fail" for entry in ran) else EXIT_FOUND
    return EXIT_OK if all(entry["status"] == "pass" for entry in runs) else EXIT_FOUND


def worst_ratio(entry: dict[str, Any]) -> float:
    return max((item["tolerance_ratio"] for item in entry.get("items", {}).values()), default=float("nan"))


def summary(record: dict[str, Any]) -> str:
    runs = record["runs"]
    passed = sum(entry["status"] == "pass" for entry in runs)
    line = f"{record['backend']}: training: {passed} of {len(runs)} runs ({record['steps']} steps) match the NumPy loop"
    if record.get("fault"):
        caught = [_label(entry) for entry in runs if entry.get("fault_calls") and entry["status"] == "fail"]
        return line + f"; fault {record['fault']!r} caught in {len(caught)} ({', '.join(caught)})"
    ratios = [(worst_ratio(entry), _label(entry)) for entry in runs if entry.get("items")]
    if ratios:
        ratio, label = max(ratios)
        line += f", worst tolerance ratio {ratio:.3g} ({label})"
    for entry in record["long_runs"]:
        if entry.get("max_abs_weight_difference"):
            line += (f"; {entry['optimizer']['name']} after {entry['steps']} steps: weights {entry['max_abs_weight_difference'][-1]:.2g} "
                     f"from NumPy")
    return line
