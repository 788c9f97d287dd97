"""Probes: measure, on the active backend, each real reason two "identical" LSTM models differ.

Each probe builds two models or runs one model two ways that users believe are the same, and records
the largest absolute difference between their outputs. results/WHY.md is generated from these
numbers (see harness/reports/why.py); nothing here is hand-written. Imported after the backend is active.

``run_probe_study`` writes ``<out>/<backend>.probes.json``; ``exit_code(record)`` is 2 when any probe
raised (that cause could not be measured), 0 otherwise: the probes measure, they do not judge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from harness.execute.backends import BackendInfo
from harness.records import store as records
from harness.records.header import make_header, now
from harness.truth.compare import max_difference

EXIT_OK, EXIT_COULD_NOT_RUN = 0, 2

BATCH, TIME, FEATURES, UNITS = 4, 10, 3, 16


def _inputs(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(BATCH, TIME, FEATURES)).astype("float32")


def _seeded_weights(model: keras.Model, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 0.4, size=w.shape).astype(w.dtype) for w in model.get_weights()]


def _sequential(**lstm_options: Any) -> keras.Model:
    return keras.Sequential([
        keras.Input((TIME, FEATURES)), keras.layers.LSTM(UNITS, **lstm_options), keras.layers.Dense(1),
    ])


def _functional(**lstm_options: Any) -> keras.Model:
    x = keras.Input((TIME, FEATURES))
    return keras.Model(x, keras.layers.Dense(1)(keras.layers.LSTM(UNITS, **lstm_options)(x)))


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)


def _difference(a: Any, b: Any) -> dict[str, Any]:
    value, bitwise = max_difference(_numpy(a), _numpy(b))
    return {"max_abs_diff": value, "bitwise_equal": bitwise}


def separately_initialized_weights() -> dict[str, Any]:
    """Sequential and Functional each created with Keras's random initializers, no weight copy."""
    x = _inputs()
    return _difference(_sequential().predict(x, verbose=0), _functional().predict(x, verbose=0))


def identical_weights() -> dict[str, Any]:
    """Sequential and Functional with the same weights (set_weights): the API alone."""
    x = _inputs()
    sequential, functional = _sequential(), _functional()
    functional.set_weights(_seeded_weights(sequential))
    sequential.set_weights(_seeded_weights(sequential))
    return _difference(sequential.predict(x, verbose=0), functional.predict(x, verbose=0))


def same_seed_same_backend() -> dict[str, Any]:
    """keras.utils.set_random_seed(42) before building each model: equal within one backend."""
    x = _inputs()
    keras.utils.set_random_seed(42)
    first = _sequential()
    keras.utils.set_random_seed(42)
    second = _functional()
    return _difference(first.predict(x, verbose=0), second.predict(x, verbose=0))


def seeded_initial_weights() -> dict[str, Any]:
    """The weights keras.utils.set_random_seed(42) produces: compared across backends by why.py."""
    keras.utils.set_random_seed(42)
    model = _sequential()
    return {"weights": [np.asarray(w, dtype=np.float64).ravel()[:64].tolist() for w in model.get_weights()]}


def stateful_carry_over() -> dict[str, Any]:
    """A stateful model called twice on the same batch: the second call starts from the first's state."""
    x = _inputs()
    lstm = keras.layers.LSTM(UNITS, stateful=True)
    model = keras.Sequential([keras.Input((TIME, FEATURES), batch_size=BATCH), lstm, keras.layers.Dense(1)])
    model.set_weights(_seeded_weights(model))
    return _difference(model(x), model(x))


def dropout_in_training_mode() -> dict[str, Any]:
    """LSTM(dropout=0.3, recurrent_dropout=0.3) called with training=True against inference."""
    x = _inputs()
    model = _sequential(dropout=0.3, recurrent_dropout=0.3)
    model.set_weights(_seeded_weights(model))
    return _difference(model(x, training=True), model(x, training=False))


def shared_versus_separate_instances() -> dict[str, Any]:
    """One LSTM instance on two branches against two instances (each with its own random weights)."""
    x = _inputs()
    inputs = keras.Input((TIME, FEATURES))
    shared = keras.layers.LSTM(UNITS)
    shared_model = keras.Model(inputs, keras.layers.Concatenate()([shared(inputs), shared(inputs)]))
    first, second = keras.layers.LSTM(UNITS), keras.layers.LSTM(UNITS)
    separate_model = keras.Model(inputs, keras.layers.Concatenate()([first(inputs), second(inputs)]))
    shared.set_weights(_seeded_weights(keras.Model(inputs, shared(inputs)), seed=1))
    first.set_weights(shared.get_weights())
    second.set_weights(_seeded_weights(keras.Model(inputs, second(inputs)), seed=2))
    return _difference(shared_model.predict(x, verbose=0), separate_model.predict(x, verbose=0))


def predict_batch_size() -> dict[str, Any]:
    """predict(x, batch_size=1) against predict(x) on the whole batch, same model."""
    x = _inputs()
    model = _sequential()
    model.set_weights(_seeded_weights(model))
    return _difference(model.predict(x, batch_size=1, verbose=0), model.predict(x, batch_size=BATCH, verbose=0))


def mixed_precision_policy() -> dict[str, Any]:
    """The same weights under the mixed_float16 policy against float32."""
    x = _inputs()
    full = _sequential()
    full.set_weights(_seeded_weights(full))
    half = keras.Sequential([
        keras.Input((TIME, FEATURES)),
        keras.layers.LSTM(UNITS, dtype="mixed_float16"),
        keras.layers.Dense(1, dtype="mixed_float16"),
    ])
    half.set_weights(full.get_weights())
    return _difference(half.predict(x, verbose=0), full.predict(x, verbose=0))


def kernel_path_all_true_mask() -> dict[str, Any]:
    """No mask against an all-true mask: the same math, but some backends switch LSTM implementation."""
    x = _inputs()
    lstm = keras.layers.LSTM(UNITS, return_sequences=True)
    lstm.build((BATCH, TIME, FEATURES))
    lstm.set_weights(_seeded_weights(keras.Sequential([keras.Input((TIME, FEATURES)), lstm])))
    return _difference(lstm(x), lstm(x, mask=np.ones((BATCH, TIME), dtype=bool)))


def eager_call_versus_predict() -> dict[str, Any]:
    """model(x) against model.predict(x) (compiled) for a float32 model."""
    x = _inputs()
    model = _sequential()
    model.set_weights(_seeded_weights(model))
    return _difference(model(x), model.predict(x, verbose=0))


PROBES: dict[str, Callable[[], dict[str, Any]]] = {
    "identical_weights": identical_weights,
    "separately_initialized_weights": separately_initialized_weights,
    "same_seed_same_backend": same_seed_same_backend,
    "seeded_initial_weights": seeded_initial_weights,
    "stateful_carry_over": stateful_carry_over,
    "dropout_in_training_mode": dropout_in_training_mode,
    "shared_versus_separate_instances": shared_versus_separate_instances,
    "predict_batch_size": predict_batch_size,
    "mixed_precision_policy": mixed_precision_policy,
    "kernel_path_all_true_mask": kernel_path_all_true_mask,
    "eager_call_versus_predict": eager_call_versus_predict,
}


def run_probes(probes: dict[str, Callable[[], dict[str, Any]]] | None = None) -> dict[str, dict[str, Any]]:
    """Every probe's measurement (default: all of ``PROBES``), or its error (one line); never raises."""
    results = {}
    for name, probe in (PROBES if probes is None else probes).items():
        try:
            results[name] = probe() | {"error": None}
        except Exception as error:  # a probe that fails is recorded, not fatal
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            results[name] = {"error": f"{type(error).__name__}: {first}"}
    return results


def run_probe_study(
    backend: BackendInfo, out_dir: Path, *, command: str = "", probes: dict[str, Callable[[], dict[str, Any]]] | None = None
) -> dict[str, Any]:
    """Run the probes on the active backend; write and return ``out_dir/<backend>.probes.json``."""
    record = make_header("probes", backend, seed=None, command=command)
    record["probes"] = run_probes(probes)
    record["finished"] = now()
    records.write_json(probes_path(out_dir, backend.name), record)
    return record


def probes_path(out_dir: Path, backend: str) -> Path:
    return Path(out_dir) / f"{backend}.probes.json"


def errored_probes(record: dict[str, Any]) -> dict[str, str]:
    """Probe -> its error, for every probe that raised."""
    return {name: result["error"] for name, result in record["probes"].items() if result.get("error")}


def exit_code(record: dict[str, Any]) -> int:
    """2 when a probe raised (a cause WHY.md cannot show), or there were none; 0 otherwise."""
    return EXIT_COULD_NOT_RUN if errored_probes(record) or not record["probes"] else EXIT_OK


def summary(record: dict[str, Any]) -> str:
    errors = errored_probes(record)
    line = f"{record['backend']}: {len(record['probes']) - len(errors)} of {len(record['probes'])} probes measured"
    if errors:
        line += f"; could not measure {', '.join(errors)}"
    return line
