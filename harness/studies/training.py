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
and the NumPy trajectory, and judges it: is it what float32 rounding explains (FLOAT32_RULE, its constant and
reason in ``[training.drift]``)? The same long run (and ``steps`` of fit) under each mixed dtype policy of
``[[training.precision]]`` (the global policy set for the run and restored after it, even on error) is judged
against (eps_compute / eps32) times the float32 drift measured (PRECISION_RULE), with Keras's loss scaling
recorded (a LossScaleOptimizer, its scale per step, the steps it applied) and checked against what the policy
expects. A failed drift check that a ``[[training.known_drift]]`` claim describes exactly is known
(``apply_known_drift``): a claim explains only the quantity it names, the train_on_batch weight drift, with its
worst step at the named step, no step before it beyond the bound and no step beyond max_drift. Loss-scaling
problems, applied-step problems and fit problems stay failures beside it.

``DIR/<backend>.training.json`` (schema 2; schema 1 records, without drift checks, are still read by the
report) is rewritten atomically after every run. Exit codes (``exit_code``): 1 when a loss or final weight is
beyond the tolerance, a drift beyond its bound and not known, or a run raised (the backend cannot train what
it runs forward, or not under a policy); with a fault injected, 0 when it is caught, 1 when not, 2 when it
never ran (DRIFT_FAULTS run the long runs too).
"""

from __future__ import annotations

import contextlib
import time as clock
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.case.schema import DTYPES, Case, parse_case
from harness.case.tolerances import Tolerances, load_tolerances, tolerance_table_json
from harness.case.weights import DEFAULT_SEED, CaseData, make_case_data, numpy_dtype
from harness.execute.backends import BackendInfo
from harness.execute.gradients import weight_keys
from harness.execute.keras_api import convert_to_numpy  # never np.asarray on a backend value: a CUDA tensor refuses
from harness.records import store
from harness.records.header import SCHEMAS, make_header, now
from harness.truth.compare import compared_item
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
    setup = {"case": parse_case(dict(raw["case"]), str(path)), "steps": int(raw["steps"]), "long_steps": int(raw["long_steps"]),
             "optimizers": [dict(entry) for entry in raw["optimizer"]], "drift": dict(raw.get("drift", {})),
             "precisions": [dict(entry) for entry in raw.get("precision", [])],
             "known_drift": [dict(entry) for entry in raw.get("known_drift", [])]}
    for claim in setup["known_drift"]:
        missing = [key for key in ("backend", "optimizer", "policy", "worst_step", "max_drift", "reason", "reproducer") if key not in claim]
        if missing:
            raise ValueError(f"{path}: [[training.known_drift]] lacks {', '.join(missing)}")
    for entry in setup["precisions"]:
        if entry.get("policy") not in DTYPES or DTYPES[entry["policy"]][0] != setup["case"].variable_dtype \
                or DTYPES[entry["policy"]][1] == DTYPES[entry["policy"]][0]:
            raise ValueError(f"{path}: [[training.precision]] policy {entry.get('policy')!r} is not a mixed policy over the case's "
                             f"{setup['case'].variable_dtype} variables (accepted: "
                             f"{', '.join(name for name, (variable, compute) in DTYPES.items() if variable == setup['case'].variable_dtype != compute)})")
        if not isinstance(entry.get("loss_scaling"), bool):
            raise ValueError(f"{path}: [[training.precision]] {entry['policy']}: loss_scaling must be true or false (what Keras is "
                             "expected to do on compile)")
    if setup["precisions"] and not isinstance(setup["drift"].get("float32_eps_per_step"), (int, float)):
        raise ValueError(f"{path}: [training.drift] needs float32_eps_per_step (the float32 drift bound)")
    return setup


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


def _build(case: Case, data: CaseData, optimizer: dict[str, Any], policy: str | None = None) -> tuple[Any, list[str]]:
    """The functional model, compiled; under ``policy`` every layer and the model itself take that dtype policy (the
    model's is the global one at construction: Keras wraps the optimizer in a LossScaleOptimizer on compile when it
    is mixed_float16, keras/src/trainers/trainer.py), with the case's float32 weights."""
    from harness.execute import models

    built_case = case if policy is None else replace(case, dtype=policy)
    model, blocks = models.build_model("functional", built_case, data)
    model.compile(optimizer=_keras_optimizer(optimizer), loss="mse")
    return model, weight_keys(model, blocks, built_case)


@contextlib.contextmanager
def global_policy(policy: str | None) -> Iterator[None]:
    """``keras.config.set_dtype_policy(policy)`` for the block, the previous policy restored after it even on error
    (None: nothing changed)."""
    if policy is None:
        yield
        return
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def loss_scale_state(model: Any) -> dict[str, Any]:
    """Whether Keras wrapped the optimizer in its LossScaleOptimizer, its current scale and the steps the inner
    optimizer applied (a step with non-finite scaled gradients is skipped and halves the scale)."""
    from keras.optimizers import LossScaleOptimizer

    optimizer = model.optimizer
    if not isinstance(optimizer, LossScaleOptimizer):
        return {"active": False, "scale": None, "applied_steps": int(convert_to_numpy(optimizer.iterations.value))}
    return {"active": True, "scale": float(convert_to_numpy(optimizer.dynamic_scale.value)),
            "applied_steps": int(convert_to_numpy(optimizer.inner_optimizer.iterations.value))}


def _weights(model: Any, keys: list[str]) -> dict[str, np.ndarray]:
    return {key: np.asarray(convert_to_numpy(variable.value)) for key, variable in zip(keys, model.trainable_weights)}


def keras_run(case: Case, data: CaseData, batches: list, optimizer: dict[str, Any], steps: int, entry_point: str,
              on_step: Any = None, policy: str | None = None) -> dict[str, Any]:
    """Train a fresh model through ``entry_point`` (under the global dtype ``policy``, restored after); the losses it
    reported, its final weights and its loss scaling. The targets stay in the case's compute dtype: a mixed policy's
    loss is computed in floatx (float32), keras/src/losses/loss.py."""
    import keras

    with global_policy(policy):
        model, keys = _build(case, data, optimizer, policy)
        reported: list[float] = []
        scales: list[float | None] = []
        if entry_point == "train_on_batch":
            for step in range(steps):
                x, _, target = batches[step % len(batches)]
                result = model.train_on_batch(x, target.astype(case.compute_dtype))
                reported.append(float(convert_to_numpy(result[0] if isinstance(result, (list, tuple)) else result)))
                scales.append(loss_scale_state(model)["scale"])
                if on_step is not None:
                    on_step(step, _weights(model, keys))
        else:
            xs = np.concatenate([batches[k % len(batches)][0] for k in range(steps)])
            targets = np.concatenate([batches[k % len(batches)][2] for k in range(steps)]).astype(case.compute_dtype)
            recorder = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: reported.append(float(logs["loss"])))
            model.fit(xs, targets, batch_size=case.batch, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
        return {"reported": reported, "weights": _weights(model, keys), "loss_scale": loss_scale_state(model) | {"per_step": scales}}


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
        items = {"losses": compared_item(run["reported"], expected_losses, tolerance, case.compute_dtype, f"{entry_point}/losses")}
        for key, value in run["weights"].items():
            items[f"final/{key}"] = compared_item(value, final[key], tolerance, case.compute_dtype, f"{entry_point}/final/{key}")
        entry["items"] = items
        entry["status"] = "pass" if all(item["passed"] for item in items.values()) else "fail"
        entry["problems"] = [item["message"] for item in items.values() if not item["passed"]]
        entry["error"] = None
    except Exception as error:  # a backend that cannot train what it runs forward is a finding, recorded
        entry["status"], entry["error"], entry["problems"] = "error", error_record(error), []
    entry["duration_s"] = round(clock.perf_counter() - started, 3)
    return entry


# --- drift: how far the weights move from the float64 trajectory, against what rounding explains -------------

# Machine epsilon (the gap above 1) of each compute dtype.
EPS = {"float32": float(np.finfo(np.float32).eps), "float16": float(np.finfo(np.float16).eps), "bfloat16": 2.0 ** -7}
# The epsilon of a float32 run's matmuls per device class: a gpu_tf32 device (JAX's default on a GPU) rounds the
# matmul inputs to TF32's 10 mantissa bits, so its float32 training drifts by TF32 epsilons, not float32 ones
# (measured on an H200: 107x the float32 bound after 2 Adam steps, within this one).
FLOAT32_RUN_EPS = {"cpu": EPS["float32"], "gpu_highest": EPS["float32"], "gpu_tf32": 2.0 ** -10}
FLOAT32_RULE = ("bound(k) = float32_eps_per_step * k * eps32 * W_k: at most float32_eps_per_step float32 epsilons of the largest "
                "weight W_k of the NumPy trajectory per step, accumulated linearly (a rounding error that does not cancel); "
                "on a gpu_tf32 device eps32 is TF32's 2^-10 (FLOAT32_RUN_EPS)")
PRECISION_RULE = ("bound(k) = (eps_compute / eps32) * max(D32(k), eps32 * W_k / 2): the same training computed in a dtype whose "
                  "epsilon is eps_compute / eps32 times float32's rounds, to first order, that many times more; D32(k) is the "
                  "largest float32 drift measured on this backend and optimizer up to step k (floored at half a float32 ulp "
                  "of the largest weight)")


def weight_scales(trajectory: list[dict[str, np.ndarray]]) -> list[float]:
    """W_k: the largest |weight| of the NumPy trajectory after each step."""
    return [max(float(np.max(np.abs(value))) for value in params.values()) for params in trajectory]


def float32_drift_bound(scales: list[float], eps_per_step: float, eps: float = EPS["float32"]) -> list[float]:
    """The float32 drift bound after each step (FLOAT32_RULE), ``eps`` the run's matmul epsilon (FLOAT32_RUN_EPS)."""
    return [eps_per_step * (k + 1) * eps * scale for k, scale in enumerate(scales)]


def precision_drift_bound(float32_drift: list[float], scales: list[float], compute_dtype: str) -> list[float]:
    """The drift bound of a mixed policy after each step from the measured float32 drift (PRECISION_RULE)."""
    factor = EPS[compute_dtype] / EPS["float32"]
    bound, largest = [], 0.0
    for distance, scale in zip(float32_drift, scales):
        largest = max(largest, distance if np.isfinite(distance) else np.inf)
        bound.append(factor * max(largest, EPS["float32"] * scale / 2))
    return bound


def drift_check(distances: list[float], bound: list[float], rule: str) -> dict[str, Any]:
    """Per step the drift against its bound: passed when every step's drift is finite and within it (NaN never passes)."""
    if len(distances) != len(bound):
        raise ValueError(f"{len(distances)} steps measured against a bound of {len(bound)} steps")
    ratios = [distance / limit if np.isfinite(distance) else float("inf") for distance, limit in zip(distances, bound)]
    worst = int(np.argmax(ratios)) if ratios else 0
    return {"rule": rule, "bound": bound, "ratio": ratios, "worst_ratio": ratios[worst] if ratios else None,
            "worst_step": worst + 1 if ratios else None, "passed": bool(ratios) and all(ratio <= 1.0 for ratio in ratios)}


def long_run(case: Case, data: CaseData, batches: list, optimizer: dict[str, Any], steps: int, policy: str | None = None,
             reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """``steps`` of train_on_batch (under the dtype ``policy``; None: the case's own): per step the largest weight
    difference to the float64 NumPy trajectory, and the loss difference."""
    from harness.execute.measure import error_record

    started = clock.perf_counter()
    reference = reference or numpy_loop(case, data, batches, optimizer, steps)
    distances: list[float] = []
    relative: list[float] = []

    def on_step(step: int, weights: dict[str, np.ndarray]) -> None:
        expected = reference["trajectory"][step]
        distances.append(max(float(np.max(np.abs(weights[key].astype(np.float64) - expected[key]))) for key in weights))
        relative.append(max(float(np.max(np.abs(weights[key].astype(np.float64) - expected[key]))
                                  / max(float(np.max(np.abs(expected[key]))), 1e-30)) for key in weights))

    entry: dict[str, Any] = {"optimizer": optimizer, "entry_point": "train_on_batch", "steps": steps, "policy": policy or case.dtype}
    try:
        run = keras_run(case, data, batches, optimizer, steps, "train_on_batch", on_step, policy)
        entry["loss_scale"] = run["loss_scale"]
        entry["max_abs_weight_difference"] = distances
        entry["max_relative_weight_difference"] = relative
        entry["loss_difference"] = [abs(a - b) for a, b in zip(run["reported"], reference["losses"])]
        entry["keras_losses"], entry["numpy_losses"] = run["reported"], [float(v) for v in reference["losses"]]
        entry["error"] = None
    except Exception as error:
        entry["error"] = error_record(error)
    entry["duration_s"] = round(clock.perf_counter() - started, 3)
    return entry


def known_drift(claims: list[dict[str, Any]], backend: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The claim of ``[[training.known_drift]]`` that describes this failed drift check exactly: the same backend, optimizer
    and policy, the worst step it names, no step before that one beyond the bound (the drift the claim explains starts
    there), and no step's drift beyond its max_drift."""
    check = entry.get("drift_check")
    if check is None or check["passed"]:
        return None
    for claim in claims:
        named_step = claim["worst_step"]
        if (claim["backend"], claim["optimizer"], claim["policy"]) == (backend, entry["optimizer"]["name"], entry["policy"]) \
                and check["worst_step"] == named_step \
                and all(ratio <= 1.0 for ratio in check["ratio"][:named_step - 1]) \
                and all(np.isfinite(value) and value <= claim["max_drift"] for value in entry["max_abs_weight_difference"]):
            return claim
    return None


def apply_known_drift(entry: dict[str, Any], claims: list[dict[str, Any]], backend: str) -> None:
    """A failed mixed-precision run whose only problem is its drift (``drift_problem``), described exactly by a claim
    (``known_drift``), becomes ``known`` (the problem moves to ``known_problems``). A loss-scaling problem, an
    applied-step problem or a fit problem is no part of what the claim says: the run stays a failure with every
    problem, and ``drift_claim_explains_only`` records that the claim covered the drift alone."""
    if entry.get("status") != "fail" or not entry.get("drift_problem"):
        return
    claim = known_drift(claims, backend, entry)
    if claim is None:
        return
    others = [problem for problem in entry["problems"] if problem != entry["drift_problem"]]
    if others:
        entry["drift_claim_explains_only"] = {"claim": claim, "drift_problem": entry["drift_problem"], "unexplained": others}
        return
    entry["status"], entry["known"], entry["known_problems"], entry["problems"] = "known", claim, [entry["drift_problem"]], []


def precision_run(case: Case, data: CaseData, batches: list, optimizer: dict[str, Any], steps: int, fit_steps: int,
                  precision: dict[str, Any], reference: dict[str, Any], float32_entry: dict[str, Any]) -> dict[str, Any]:
    """``steps`` of train_on_batch (and ``fit_steps`` of fit) under a mixed policy against the float64 trajectory of the
    float32 runs (the same float32 weights, inputs and targets): the drift per step judged by PRECISION_RULE from
    ``float32_entry``'s measured drift, and whether Keras's loss scaling was what ``precision`` expects."""
    from harness.execute.measure import error_record

    policy = precision["policy"]
    compute = DTYPES[policy][1]
    entry = long_run(case, data, batches, optimizer, steps, policy, reference)
    entry |= {"compute_dtype": compute, "eps": EPS[compute], "expected_loss_scaling": precision["loss_scaling"], "problems": []}
    if entry["error"] is not None:  # a backend that cannot train under the policy: a finding, recorded with its error
        entry["status"], entry["drift_check"] = "error", None
        return entry
    scaling = entry["loss_scale"]
    if scaling["active"] != precision["loss_scaling"]:
        entry["problems"].append(f"loss scaling {'active' if scaling['active'] else 'not active'} under {policy}; "
                                 f"expected {'active' if precision['loss_scaling'] else 'not active'}")
    if scaling["applied_steps"] != steps:
        entry["problems"].append(f"the optimizer applied {scaling['applied_steps']} of {steps} steps (non-finite scaled gradients "
                                 f"skip a step and halve the scale)")
    float32_drift = float32_entry.get("max_abs_weight_difference")
    if not float32_drift or len(float32_drift) < steps:
        entry["status"], entry["drift_check"] = "not judged", None
        entry["problems"].append("no float32 drift measured on this backend to derive the bound from")
        return entry
    scales = weight_scales(reference["trajectory"][:steps])
    bound = precision_drift_bound(float32_drift[:steps], scales, compute)
    entry["drift_check"] = drift_check(entry["max_abs_weight_difference"], bound, PRECISION_RULE)
    if not entry["drift_check"]["passed"]:
        check = entry["drift_check"]
        entry["drift_problem"] = (f"drift {entry['max_abs_weight_difference'][check['worst_step'] - 1]:.3g} after step {check['worst_step']} "
                                  f"is {check['worst_ratio']:.3g}x the {compute} bound {bound[check['worst_step'] - 1]:.3g}")
        entry["problems"].append(entry["drift_problem"])
    if fit_steps:
        fit: dict[str, Any] = {"steps": fit_steps}
        try:
            run = keras_run(case, data, batches, optimizer, fit_steps, "fit", policy=policy)
            expected = reference["trajectory"][fit_steps - 1]
            fit["final_max_abs_weight_difference"] = max(float(np.max(np.abs(run["weights"][key].astype(np.float64) - expected[key])))
                                                         for key in run["weights"])
            fit["bound"] = bound[fit_steps - 1]
            fit["passed"] = bool(np.isfinite(fit["final_max_abs_weight_difference"]) and fit["final_max_abs_weight_difference"] <= fit["bound"])
            fit["loss_scale"] = run["loss_scale"]
            fit["keras_losses"], fit["error"] = run["reported"], None
            if not fit["passed"]:
                entry["problems"].append(f"fit: final weights {fit['final_max_abs_weight_difference']:.3g} from NumPy after {fit_steps} "
                                         f"steps, beyond the bound {fit['bound']:.3g}")
        except Exception as error:
            fit["error"], fit["passed"] = error_record(error), False
            entry["problems"].append(f"fit cannot train under {policy}: {fit['error']['summary']}")
        entry["fit"] = fit
    entry["status"] = "pass" if not entry["problems"] else "fail"
    return entry


def judge_float32_drift(entry: dict[str, Any], reference: dict[str, Any], eps_per_step: float, device_class: str = "cpu") -> None:
    """Add to a float32 long run its check against FLOAT32_RULE: is the drift what float32 rounding explains (TF32
    rounding on a gpu_tf32 device)?"""
    distances = entry.get("max_abs_weight_difference")
    if not distances:
        entry["drift_check"] = None
        return
    scales = weight_scales(reference["trajectory"][:len(distances)])
    eps = FLOAT32_RUN_EPS[device_class]
    entry["drift_check"] = drift_check(distances, float32_drift_bound(scales, eps_per_step, eps), FLOAT32_RULE)
    entry["drift_check"]["eps"] = eps


# --- faults the drift checks exist to catch -----------------------------------------------------------------

DRIFT_FAULTS = {
    "optimizer_step_in_float16": "the optimizer's update computed from gradients rounded to float16 (Keras's BaseOptimizer.apply "
                                 "handed float16-rounded gradients: an update kept in the compute dtype where it should be float32)",
    "loss_scale_not_undone": "LossScaleOptimizer applies the scaled gradients (its division by the loss scale dropped) under "
                             "mixed_float16",
}


@contextlib.contextmanager
def drift_fault(name: str) -> Iterator[Any]:
    """Patch one of DRIFT_FAULTS into Keras for the block; the originals come back after."""
    import importlib

    from harness.execute.backends import patch_attributes, with_gate_opened
    from harness.execute.gradients import InjectedFault, counting_calls

    fault = InjectedFault(name)
    if name == "optimizer_step_in_float16":
        base = importlib.import_module("keras.src.optimizers.base_optimizer").BaseOptimizer
        original_apply = base.apply

        def apply(self, grads, trainable_variables=None):
            import keras

            fault.calls += 1
            rounded = [grad if grad is None else keras.ops.cast(keras.ops.cast(grad, "float16"), grad.dtype) for grad in grads]
            return original_apply(self, rounded, trainable_variables)

        with patch_attributes([(base, "apply", apply)]):
            yield fault
        return
    if name == "loss_scale_not_undone":
        owner = importlib.import_module("keras.src.optimizers.loss_scale_optimizer").LossScaleOptimizer
        replacements = [(owner, attribute, counting_calls(fault, with_gate_opened(getattr(owner, attribute), "else ops.divide(g, scale)", "else g")))
                        for attribute in ("_stateless_handle_finite_grads", "_stateful_handle_finite_grads")]
        with patch_attributes(replacements):
            yield fault
        return
    raise ValueError(f"unknown drift fault {name!r}; accepted: {', '.join(DRIFT_FAULTS)}")


def run_training_study(backend: BackendInfo, out_dir: Path, seed: int = DEFAULT_SEED, *, command: str = "",
                       steps: int | None = None, long_steps: int | None = None, fault: str | None = None,
                       tolerances: Tolerances | None = None, setup: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every optimizer through train_on_batch and fit, then the long runs; write and return the record."""
    if fault is None:
        return _run(backend, out_dir, seed, command, steps, long_steps, None, tolerances, setup)
    from harness.execute.gradients import injected

    with (drift_fault(fault) if fault in DRIFT_FAULTS else injected(fault)) as in_force:
        return _run(backend, out_dir, seed, command, steps, long_steps, in_force, tolerances, setup)


def _run(backend, out_dir, seed, command, steps, long_steps, fault, tolerances, setup) -> dict[str, Any]:
    setup = setup or training_setup()
    case = setup["case"]
    steps = steps or setup["steps"]
    long_steps = setup["long_steps"] if long_steps is None else long_steps
    tolerances = tolerances or load_tolerances(backend.device_class, backend.name)
    path = training_path(out_dir, backend.name)
    header = make_header("training", backend, seed=seed, command=command, fault=None if fault is None else fault.name)
    record: dict[str, Any] = header | {
        "case": case.definition, "steps": steps, "long_steps": long_steps, "loss": "mse",
        "tolerances": {dtype: {"training": rows["training"]} for dtype, rows in tolerance_table_json(tolerances).items()
                       if "training" in rows},
        "runs": [], "long_runs": [], "precision_runs": [], "duration_s": None,
        "drift_rules": {"float32": FLOAT32_RULE, "mixed": PRECISION_RULE, "float32_eps_per_step": setup["drift"].get("float32_eps_per_step"),
                        "eps": EPS, "reason": setup["drift"].get("reason")},
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
    if long_steps and (fault is None or fault.name in DRIFT_FAULTS):
        eps_per_step = setup["drift"].get("float32_eps_per_step")
        for optimizer in setup["optimizers"]:
            reference = numpy_loop(case, data, batches, optimizer, long_steps)
            calls = fault.calls if fault is not None else 0
            entry = long_run(case, data, batches, optimizer, long_steps, reference=reference)
            if eps_per_step is not None:
                judge_float32_drift(entry, reference, float(eps_per_step), backend.device_class)
            if fault is not None:
                entry["fault_calls"] = fault.calls - calls
            record["long_runs"].append(entry)
            store.write_json(path, record)
            for precision in setup["precisions"]:
                calls = fault.calls if fault is not None else 0
                mixed = precision_run(case, data, batches, optimizer, long_steps, min(steps, long_steps), precision, reference, entry)
                if fault is None:
                    apply_known_drift(mixed, setup["known_drift"], backend.name)
                if fault is not None:
                    mixed["fault_calls"] = fault.calls - calls
                record["precision_runs"].append(mixed)
                store.write_json(path, record)
    record["finished"] = now()
    record["duration_s"] = round(clock.perf_counter() - started, 3)
    store.write_json(path, record)
    return record


def _label(entry: dict[str, Any]) -> str:
    return f"{entry['optimizer']['name']} {entry['entry_point']}"


def drift_failed(entry: dict[str, Any]) -> bool:
    """A long run (float32 or mixed) whose drift is beyond its bound, or that could not train."""
    check = entry.get("drift_check")
    if entry.get("status") == "known":  # a failed check a [[training.known_drift]] claim describes exactly
        return False
    return entry.get("error") is not None or entry.get("status") in ("fail", "error") or (check is not None and not check["passed"])


def problems(record: dict[str, Any]) -> list[str]:
    lines = []
    for entry in record["runs"]:
        if entry["status"] == "error":
            lines.append(f"{_label(entry)}: cannot train: {entry['error']['summary']}")
        lines += [f"{_label(entry)}: {problem}" for problem in entry["problems"]]
    for entry in record.get("long_runs", []):
        check = entry.get("drift_check")
        if entry.get("error") is not None:
            lines.append(f"{entry['optimizer']['name']} long run: cannot train: {entry['error']['summary']}")
        elif check is not None and not check["passed"]:
            step = check["worst_step"]
            lines.append(f"{entry['optimizer']['name']} long run: float32 drift {entry['max_abs_weight_difference'][step - 1]:.3g} after "
                         f"step {step} is {check['worst_ratio']:.3g}x what float32 rounding explains ({check['bound'][step - 1]:.3g})")
    for entry in record.get("precision_runs", []):
        label = f"{entry['optimizer']['name']} {entry['policy']}"
        if entry.get("error") is not None:
            lines.append(f"{label}: cannot train: {entry['error']['summary']}")
        lines += [f"{label}: {problem}" for problem in entry.get("problems", [])]
        if entry.get("status") == "known":
            lines.append(f"{label}: known: {entry['known_problems'][0] if entry['known_problems'] else ''} ({entry['known']['reproducer']})")
    return lines


def exit_code(record: dict[str, Any]) -> int:
    runs = record["runs"]
    if not runs:
        return EXIT_COULD_NOT_RUN
    drifts = record.get("long_runs", []) + record.get("precision_runs", [])
    if record.get("fault"):
        ran = [entry for entry in runs + drifts if entry.get("fault_calls")]
        if not ran:
            return EXIT_COULD_NOT_RUN
        caught = any(entry["status"] == "fail" for entry in runs if entry.get("fault_calls")) \
            or any(drift_failed(entry) for entry in drifts if entry.get("fault_calls"))
        return EXIT_OK if caught else EXIT_FOUND
    if not all(entry["status"] == "pass" for entry in runs):
        return EXIT_FOUND
    return EXIT_FOUND if any(drift_failed(entry) for entry in drifts) else EXIT_OK


def worst_ratio(entry: dict[str, Any]) -> float:
    return max((item["tolerance_ratio"] for item in entry.get("items", {}).values()), default=float("nan"))


def summary(record: dict[str, Any]) -> str:
    runs = record["runs"]
    passed = sum(entry["status"] == "pass" for entry in runs)
    line = f"{record['backend']}: training: {passed} of {len(runs)} runs ({record['steps']} steps) match the NumPy loop"
    if record.get("fault"):
        caught = [_label(entry) for entry in runs if entry.get("fault_calls") and entry["status"] == "fail"]
        caught += [f"{entry['optimizer']['name']} {entry.get('policy', 'float32')} long run"
                   for entry in record.get("long_runs", []) + record.get("precision_runs", [])
                   if entry.get("fault_calls") and drift_failed(entry)]
        return line + f"; fault {record['fault']!r} caught in {len(caught)} ({', '.join(caught)})"
    ratios = [(worst_ratio(entry), _label(entry)) for entry in runs if entry.get("items")]
    if ratios:
        ratio, label = max(ratios)
        line += f", worst tolerance ratio {ratio:.3g} ({label})"
    for entry in record["long_runs"] + record.get("precision_runs", []):
        if entry.get("max_abs_weight_difference"):
            check = entry.get("drift_check")
            line += (f"; {entry['optimizer']['name']} {entry.get('policy', 'float32')} after {entry['steps']} steps: weights "
                     f"{entry['max_abs_weight_difference'][-1]:.2g} from NumPy"
                     + (f" (worst {check['worst_ratio']:.2g}x its bound{', known' if entry.get('status') == 'known' else ''})"
                        if check else ""))
    return line
