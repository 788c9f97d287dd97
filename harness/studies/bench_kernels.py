"""Kernels benchmark (issue 16): the float64 NumPy reference against one backend's float32 LSTM, measured
side by side in one process, so that what the record states are ratios, not absolute times.

What it measures, for one ``keras.layers.LSTM(units, return_sequences=True)`` with seeded, non-symmetric
weights, per shape (batch, time, features, units), each after one warm-up call (its time, which holds any
tracing and compiling, is recorded apart as ``warmup_s``) and then ``repeats`` timed calls (median, min, max,
spread = (max - min) / median):

- the reference forward, ``reference.lstm.lstm(..., return_sequences=True)``, and backward,
  ``reference.lstm_backward.lstm_backward`` with ``grad_outputs = 2 y`` (the gradient of the sum-of-squares
  loss sum(y^2); lstm_backward runs its own forward pass, so its time is a whole forward-and-backward);
- the floor under the reference forward: only its matrix products (``reference_matmuls``), in float64 and, for
  comparison, in float32, both in NumPy; the forward over its float64 matmuls says how much of it is the time loop
  and the element-wise work, and float64 over float32 matmuls what the precision alone costs on this machine;
- the backend's float32 forward through each entry point of ``FORWARD_ENTRY_POINTS``: ``predict``
  (``model.predict(x, batch_size=batch, verbose=0)``, Keras's compiled predict function), ``call``
  (``model(x)``, eager), and ``call_compiled`` (the model's call under the backend's own compilation:
  ``tf.function`` on TensorFlow, ``jax.jit`` over ``stateless_call`` on JAX; PyTorch has none here, its eager
  call is its normal mode and ``torch.compile`` costs a minute to warm up);
- the backend's float32 gradient of sum(y^2) with respect to the weights through each entry point of
  ``GRADIENT_ENTRY_POINTS``: TensorFlow's GradientTape eagerly (``harness.execute`` ``loss_and_gradients``)
  and under ``tf.function``; JAX's ``jax.jit(jax.grad)`` over ``stateless_call``, compiled once; PyTorch's
  autograd (``loss_and_gradients``). Every timed backend call ends with the result as NumPy arrays (so JAX's
  asynchronous dispatch is waited for, as ``predict`` does);
- the ratios reference / backend per shape: forward, the reference forward over the fastest forward entry
  point; backward, the reference backward over the fastest gradient entry point (each named in the record);
- growth: the reference forward and the backend's ``predict`` over a grid varying one of batch, time and units
  at a time, with the least-squares slope of log(time) against log(size) per axis: cost ~ size^slope.

Each shape also records how far the backend's output and kernel gradient are from the reference's (a
benchmark of a different computation would be worthless). The machine's load average is recorded at the
start and the end: the ratios are only as steady as the machine was.

The record ``<out>/<backend>.bench_kernels.json`` (schema ``SCHEMAS["bench_kernels"]``) is rewritten after
each shape. ``exit_code``: 0 when everything was measured, 2 when any measurement raised (its error is in the
record) or nothing was measured. Call ``run_bench_kernels`` only after the backend is active
(``harness.execute.backends.activate``).
"""

from __future__ import annotations

import math
import os
import statistics
import time as clock
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.execute.backends import BackendInfo, backend_module
from harness.execute.kinds import KERAS_CELLS
from harness.records import store as records
from harness.records.header import make_header, now
from reference.lstm import lstm
from reference.lstm_backward import lstm_backward

KIND = "lstm"  # the cell kind benchmarked (its Keras layer from harness.execute.kinds; its reference: reference/lstm.py)
DEFAULT_REPEATS = 5
DEFAULT_SEED = 16
EXIT_OK, EXIT_COULD_NOT_RUN = 0, 2
FEATURES = 32  # of the growth grid

# name -> (batch, time, features, units)
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "small": (32, 100, 32, 64),
    "large": (128, 200, 64, 256),
    "long": (8, 2000, 16, 32),
}
QUICK_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "small": (3, 5, 4, 6),
    "large": (4, 7, 5, 8),
    "long": (2, 30, 3, 4),
}
# axis -> (values, the other dimensions fixed)
GROWTH_AXES: dict[str, tuple[tuple[int, ...], dict[str, int]]] = {
    "batch": ((8, 32, 128), {"time": 100, "units": 64}),
    "time": ((50, 200, 800), {"batch": 32, "units": 64}),
    "units": ((16, 64, 256), {"batch": 32, "time": 100}),
}
QUICK_GROWTH_AXES: dict[str, tuple[tuple[int, ...], dict[str, int]]] = {
    "batch": ((2, 3, 5), {"time": 5, "units": 6}),
    "time": ((4, 8, 16), {"batch": 3, "units": 6}),
    "units": ((4, 6, 8), {"batch": 3, "time": 5}),
}
QUICK_FEATURES = 4
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS", "TF_NUM_INTRAOP_THREADS")

FORWARD_ENTRY_POINTS = {
    "tensorflow": ("predict", "call", "call_compiled"),
    "jax": ("predict", "call", "call_compiled"),
    "torch": ("predict", "call"),
}
GRADIENT_ENTRY_POINTS = {
    "tensorflow": ("tape_eager", "tape_compiled"),
    "jax": ("jit_grad",),
    "torch": ("autograd",),
}


def bench_path(out_dir: Path, backend: str) -> Path:
    return Path(out_dir) / f"{backend}.bench_kernels.json"


# --- timing ------------------------------------------------------------------------------------------


def time_call(function: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """One warm-up call, then ``repeats`` timed calls: {"warmup_s", "repeats", "times_s", "median_s", "min_s",
    "max_s", "spread"}; spread is (max - min) / median."""
    started = clock.perf_counter()
    function()
    warmup = clock.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = clock.perf_counter()
        function()
        times.append(clock.perf_counter() - started)
    median = statistics.median(times)
    return {
        "warmup_s": round(warmup, 6), "repeats": repeats, "times_s": [round(t, 6) for t in times],
        "median_s": median, "min_s": min(times), "max_s": max(times),
        "spread": (max(times) - min(times)) / median if median > 0 else None,
    }


def _measured_entries(entries: Any, make_call: Any, repeats: int, difference_key: str, difference: Any) -> dict[str, dict[str, Any]]:
    """Each entry point timed (``_measured``) with its result's difference to the reference under ``difference_key``;
    an entry point that cannot be set up records its error instead."""
    measured: dict[str, dict[str, Any]] = {}
    for entry in entries:
        try:
            call = make_call(entry)
        except Exception as error:
            measured[entry] = {"error": f"{type(error).__name__}: {error}"}
            continue
        measured[entry] = _measured(call, repeats)
        if "median_s" in measured[entry]:
            measured[entry][difference_key] = difference(call())
    return measured


def _measured(function: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """``time_call``, or {"error": one line} when the function raised."""
    try:
        return time_call(function, repeats)
    except Exception as error:  # a benchmark entry that cannot run is recorded, and the command exits 2
        last = traceback.extract_tb(error.__traceback__)[-1]
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''} "
                         f"({Path(last.filename).name}:{last.lineno})"}


def log_log_slope(sizes: list[int], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) against log(size): cost grows as size^slope. None with fewer than two
    positive points."""
    pairs = [(s, t) for s, t in zip(sizes, seconds) if s > 0 and t is not None and t > 0]
    if len(pairs) < 2:
        return None
    x = np.log([float(s) for s, _ in pairs])
    y = np.log([float(t) for _, t in pairs])
    return float(np.polyfit(x, y, 1)[0])


# --- the computation ------------------------------------------------------------------------------


def make_arrays(batch: int, time: int, features: int, units: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded input and weights, float64, non-symmetric (independent normal entries, scaled so that the gates
    neither saturate nor vanish): x (batch, time, features), kernel (features, 4 units), recurrent_kernel
    (units, 4 units), bias (4 units)."""
    rng = np.random.default_rng([seed, batch, time, features, units])
    return {
        "x": rng.standard_normal((batch, time, features)),
        "kernel": rng.standard_normal((features, 4 * units)) / math.sqrt(features),
        "recurrent_kernel": rng.standard_normal((units, 4 * units)) / math.sqrt(units),
        "bias": rng.standard_normal(4 * units) * 0.1,
    }


def reference_forward(arrays: dict[str, np.ndarray]) -> np.ndarray:
    return lstm(arrays["x"], arrays["kernel"], arrays["recurrent_kernel"], arrays["bias"], return_sequences=True)


def reference_matmuls(arrays: dict[str, np.ndarray], dtype: type) -> np.ndarray:
    """Only the matrix products of the reference forward, in ``dtype``: the input projection of every step in one
    matmul, then one (batch, units) @ (units, 4 units) product per step, into buffers allocated once. Its float64
    time is the reference forward's floor on this machine (the rest of a step is element-wise); its float32 time
    is what the same products cost NumPy in the backends' precision. The recurrent operand is a fixed random
    state, not the LSTM's h: the arithmetic is the same and the result is not used."""
    x = arrays["x"].astype(dtype)
    kernel = arrays["kernel"].astype(dtype)
    recurrent_kernel = arrays["recurrent_kernel"].astype(dtype)
    batch, time, _ = x.shape
    units = recurrent_kernel.shape[0]
    projection = np.matmul(x.transpose(1, 0, 2), kernel)  # (time, batch, 4 units)
    state = np.tanh(projection[0, :, :units]).astype(dtype)
    recurrent = np.empty((batch, 4 * units), dtype)
    for step in range(time):
        np.matmul(state, recurrent_kernel, out=recurrent)
        projection[step] += recurrent
    return projection


def reference_backward(arrays: dict[str, np.ndarray], outputs: np.ndarray) -> dict[str, Any]:
    """Gradients of sum(y^2) (dL/dy = 2 y) through the reference."""
    return lstm_backward(arrays["x"], arrays["kernel"], arrays["recurrent_kernel"], arrays["bias"],
                         return_sequences=True, grad_outputs=2.0 * outputs)


def build_model(arrays: dict[str, np.ndarray]) -> Any:
    """A float32 Functional model: Input(time, features) -> LSTM(units, return_sequences=True), the weights
    of ``arrays`` rounded to float32."""
    import keras

    _, time, features = arrays["x"].shape
    units = arrays["recurrent_kernel"].shape[0]
    inputs = keras.Input(shape=(time, features), dtype="float32")
    layer_class = getattr(keras.layers, KERAS_CELLS[KIND].layer)
    outputs = layer_class(units, return_sequences=True, dtype="float32", name=KIND)(inputs)
    model = keras.Model(inputs, outputs)
    model.get_layer(KIND).set_weights([arrays[key].astype(np.float32) for key in ("kernel", "recurrent_kernel", "bias")])
    return model


def _to_numpy(value: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value))


def forward_entry(backend: str, name: str, model: Any, x: np.ndarray) -> Callable[[], np.ndarray]:
    """The backend's forward entry point ``name`` (FORWARD_ENTRY_POINTS) as a call that returns NumPy."""
    batch = x.shape[0]
    if name == "predict":
        return lambda: model.predict(x, batch_size=batch, verbose=0)
    if name == "call":
        import keras

        tensor = keras.ops.convert_to_tensor(x)
        return lambda: _to_numpy(model(tensor, training=False))
    if name == "call_compiled" and backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(x)
        compiled = tf.function(lambda value: model(value, training=False))
        return lambda: compiled(tensor).numpy()
    if name == "call_compiled" and backend == "jax":
        import jax
        import jax.numpy as jnp

        trainable = [variable.value for variable in model.trainable_variables]
        non_trainable = [variable.value for variable in model.non_trainable_variables]
        tensor = jnp.asarray(x)
        compiled = jax.jit(lambda weights, value: model.stateless_call(weights, non_trainable, value)[0])
        return lambda: np.asarray(compiled(trainable, tensor))
    raise ValueError(f"no forward entry point {name!r} on {backend}")


def _sum_of_squares(outputs: Any) -> Any:
    import keras

    return keras.ops.sum(keras.ops.square(outputs))


def gradient_entry(backend: str, name: str, model: Any, x: np.ndarray) -> Callable[[], list[np.ndarray]]:
    """The backend's gradient entry point ``name`` (GRADIENT_ENTRY_POINTS): the gradients of sum(y^2) with
    respect to ``model.trainable_weights`` (kernel, recurrent_kernel, bias), as NumPy."""
    if name in ("tape_eager", "autograd"):
        compute = backend_module(backend).loss_and_gradients

        def eager() -> list[np.ndarray]:
            _, grads, _ = compute(model, [x], _sum_of_squares, [False])
            return [_to_numpy(grad) for grad in grads]

        return eager
    if name == "tape_compiled":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(x)

        @tf.function
        def compiled(value):
            with tf.GradientTape() as tape:
                loss = _sum_of_squares(model(value, training=False))
            return tape.gradient(loss, model.trainable_weights)

        return lambda: [grad.numpy() for grad in compiled(tensor)]
    if name == "jit_grad":
        import jax
        import jax.numpy as jnp

        trainable = [variable.value for variable in model.trainable_variables]
        non_trainable = [variable.value for variable in model.non_trainable_variables]
        tensor = jnp.asarray(x)

        def loss_of(weights, value):
            outputs, _ = model.stateless_call(weights, non_trainable, value)
            return jnp.sum(jnp.square(outputs))

        compiled = jax.jit(jax.grad(loss_of))
        return lambda: [np.asarray(grad) for grad in compiled(trainable, tensor)]
    raise ValueError(f"no gradient entry point {name!r} on {backend}")


# --- the study -----------------------------------------------------------------------------------


def _fastest(entries: dict[str, dict[str, Any]]) -> str | None:
    timed = {name: entry["median_s"] for name, entry in entries.items() if "median_s" in entry}
    return min(timed, key=timed.get) if timed else None


def _ratio(numerator: dict[str, Any], entries: dict[str, dict[str, Any]]) -> tuple[float | None, str | None]:
    fastest = _fastest(entries)
    if fastest is None or "median_s" not in numerator or entries[fastest]["median_s"] <= 0:
        return None, fastest
    return numerator["median_s"] / entries[fastest]["median_s"], fastest


def _relative_difference(expected: np.ndarray, actual: np.ndarray) -> float:
    scale = float(np.max(np.abs(expected))) or 1.0
    return float(np.max(np.abs(np.asarray(actual, np.float64) - expected))) / scale


def measure_shape(backend: str, name: str, shape: tuple[int, int, int, int], repeats: int, seed: int) -> dict[str, Any]:
    """Every measurement of one shape (see the module docstring)."""
    import keras

    batch, time, features, units = shape
    arrays = make_arrays(batch, time, features, units, seed)
    x32 = arrays["x"].astype(np.float32)
    result: dict[str, Any] = {"shape": name, "batch": batch, "time": time, "features": features, "units": units}
    outputs = reference_forward(arrays)
    reference = {"forward": _measured(lambda: reference_forward(arrays), repeats),
                 "backward": _measured(lambda: reference_backward(arrays, outputs), repeats),
                 "matmuls_float64": _measured(lambda: reference_matmuls(arrays, np.float64), repeats),
                 "matmuls_float32": _measured(lambda: reference_matmuls(arrays, np.float32), repeats)}
    model = build_model(arrays)
    forward = _measured_entries(FORWARD_ENTRY_POINTS[backend], lambda entry: forward_entry(backend, entry, model, x32),
                                repeats, "max_rel_difference", lambda value: _relative_difference(outputs, value))
    expected: dict[str, np.ndarray] = {}

    def kernel_difference(value: Any) -> float:
        if "kernel" not in expected:  # the reference's gradient, once, when a backend gradient ran
            expected["kernel"] = reference_backward(arrays, outputs)["kernel"]
        return _relative_difference(expected["kernel"], value[0])

    gradient = _measured_entries(GRADIENT_ENTRY_POINTS[backend], lambda entry: gradient_entry(backend, entry, model, x32),
                                 repeats, "kernel_max_rel_difference", kernel_difference)
    forward_ratio, forward_against = _ratio(reference["forward"], forward)
    backward_ratio, backward_against = _ratio(reference["backward"], gradient)
    result.update({
        "reference": reference,
        "backend": {"forward": forward, "gradient": gradient},
        "ratios": {"forward": forward_ratio, "forward_against": forward_against,
                   "backward": backward_ratio, "backward_against": backward_against},
    })
    keras.backend.clear_session()
    return result


def measure_growth(backend: str, axes: dict[str, tuple[tuple[int, ...], dict[str, int]]], features: int, repeats: int,
                   seed: int) -> dict[str, Any]:
    """Per axis: the reference forward and the backend's predict at each value, and the log-log slopes."""
    import keras

    growth: dict[str, Any] = {}
    for axis, (values, fixed) in axes.items():
        points = []
        for value in values:
            dims = dict(fixed, **{axis: value})
            arrays = make_arrays(dims["batch"], dims["time"], features, dims["units"], seed)
            point: dict[str, Any] = {"batch": dims["batch"], "time": dims["time"], "features": features, "units": dims["units"],
                                     "reference_forward": _measured(lambda: reference_forward(arrays), repeats)}
            try:
                model = build_model(arrays)
                point["backend_predict"] = _measured(forward_entry(backend, "predict", model, arrays["x"].astype(np.float32)), repeats)
            except Exception as error:
                point["backend_predict"] = {"error": f"{type(error).__name__}: {error}"}
            keras.backend.clear_session()
            points.append(point)
        sizes = [point[axis] for point in points]
        growth[axis] = {
            "values": list(values), "fixed": dict(fixed, features=features), "points": points,
            "slope": {
                "reference_forward": log_log_slope(sizes, [point["reference_forward"].get("median_s") for point in points]),
                "backend_predict": log_log_slope(sizes, [point["backend_predict"].get("median_s") for point in points]),
            },
        }
    return growth


def run_bench_kernels(backend: BackendInfo, out_dir: Path, *, repeats: int = DEFAULT_REPEATS, quick: bool = False,
                      seed: int = DEFAULT_SEED, command: str = "") -> dict[str, Any]:
    """Measure every shape and the growth grid on the active backend; write and return the record."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    shapes = QUICK_SHAPES if quick else SHAPES
    axes = QUICK_GROWTH_AXES if quick else GROWTH_AXES
    features = QUICK_FEATURES if quick else FEATURES
    path = bench_path(out_dir, backend.name)
    record: dict[str, Any] = make_header("bench_kernels", backend, seed=seed, command=command) | {
        "quick": quick,
        "repeats": repeats,
        "dtypes": {"reference": "float64", "backend": "float32"},
        "layer": "LSTM(units, return_sequences=True), tanh/sigmoid, with bias",
        "loss": "sum(y^2); the reference backward is lstm_backward with grad_outputs = 2 y",
        "forward_entry_points": list(FORWARD_ENTRY_POINTS[backend.name]),
        "gradient_entry_points": list(GRADIENT_ENTRY_POINTS[backend.name]),
        "ratio_meaning": "reference median time / the fastest backend entry point's median time (above 1: the reference is slower)",
        "cpu_count": os.cpu_count(),
        "thread_settings": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "load_average": {"start": list(os.getloadavg()), "end": None},
        "duration_s": None,
        "shapes": [],
        "growth": None,
    }
    started = clock.perf_counter()
    records.write_json(path, record)
    for name, shape in shapes.items():
        record["shapes"].append(measure_shape(backend.name, name, shape, repeats, seed))
        records.write_json(path, record)
    record["growth"] = measure_growth(backend.name, axes, features, repeats, seed)
    record["load_average"]["end"] = list(os.getloadavg())
    record["finished"] = now()
    record["duration_s"] = round(clock.perf_counter() - started, 3)
    records.write_json(path, record)
    return record


# --- reading the record ---------------------------------------------------------------------------


def errors(record: dict[str, Any]) -> list[str]:
    """Every measurement that raised, as 'where: error'."""
    found = []
    for shape in record.get("shapes", []):
        for part in ("forward", "backward"):
            if "error" in shape["reference"][part]:
                found.append(f"{shape['shape']}: reference {part}: {shape['reference'][part]['error']}")
        for part in ("forward", "gradient"):
            for entry, measured in shape["backend"][part].items():
                if "error" in measured:
                    found.append(f"{shape['shape']}: {part} {entry}: {measured['error']}")
    for axis, growth in (record.get("growth") or {}).items():
        for point in growth["points"]:
            for part in ("reference_forward", "backend_predict"):
                if "error" in point[part]:
                    found.append(f"growth {axis}={point[axis]}: {part}: {point[part]['error']}")
    return found


def exit_code(record: dict[str, Any]) -> int:
    """0: everything measured; 2: a measurement raised, or nothing was measured."""
    if not record.get("shapes") or not record.get("growth") or errors(record):
        return EXIT_COULD_NOT_RUN
    return EXIT_OK


def _format_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _format_slope(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def summary(record: dict[str, Any]) -> str:
    """One line: the ratios per shape and the growth slopes."""
    shapes = "; ".join(
        f"{shape['shape']} {shape['batch']}x{shape['time']}x{shape['features']}x{shape['units']}: forward "
        f"{_format_ratio(shape['ratios']['forward'])} ({shape['ratios']['forward_against']}), backward "
        f"{_format_ratio(shape['ratios']['backward'])} ({shape['ratios']['backward_against']})"
        for shape in record.get("shapes", []))
    slopes = ", ".join(
        f"{axis} {_format_slope(growth['slope']['reference_forward'])}/{_format_slope(growth['slope']['backend_predict'])}"
        for axis, growth in (record.get("growth") or {}).items())
    return (f"{record['backend']}: reference/backend time, median of {record['repeats']}: {shapes}; "
            f"log-log slopes reference/predict: {slopes}")
