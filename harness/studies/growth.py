"""Error growth with sequence length: one float32 LSTM against the float64 reference, T = 10 ... 2000.

The default cases run at most 11 steps, and the float32 tolerances (harness/tolerances.toml) were set
from those. This module measures how the error of a float32 ``keras.layers.LSTM`` grows when the
sequence is much longer, so the table's bound can be judged against its headroom at long sequences.

For each (time, units) pair it builds one ``keras.layers.LSTM(units, return_sequences=True,
return_state=True)`` in float32, gives it seeded random non-symmetric weights (scaled as in
harness/weights.py: kernel normal / sqrt(fan_in), recurrent kernel normal / sqrt(units), bias
normal * 0.5, drawn in float64 and rounded to float32 so that both sides see the same numbers),
calls it eagerly (``layer(x)``) on normal inputs, and compares the output sequence, h and c with
``reference.lstm`` in float64 under the float32 entries of the tolerance table.

Per point and quantity the record holds the max abs error, max rel error, max ULP (float32), whether
it passed, and the headroom: the smallest ratio, over the elements, of the element's bound
(``atol + rtol * |expected|``) to its error. Headroom 1 means the worst element sits exactly on the
bound; below 1 the point fails.

Dimensions: features 3 and batch 5, so that batch, features, units (4, 16, 64) and time differ and a
transposed axis cannot go unnoticed (batch 4 would coincide with units 4).

The study exists to find where the float32 error outgrows the tolerance: ``exit_code(record)`` is 1
when any point's error exceeds the tolerance (headroom below 1), 2 when a point could not be
measured (it raised; with every point raised, nothing was measured), 0 otherwise.

``measure_point`` imports Keras: call ``run_growth`` only after the backend is active
(``harness.execute.backends.activate``); the record helpers (``exit_code``, ``summary``) are pure.
The record ``<out_dir>/<backend>.growth.json`` is rewritten atomically after every point, so an
interrupted run keeps what it measured.
"""

from __future__ import annotations

import time as clock
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.case.tolerances import load_tolerances, tolerance_for, tolerance_table_json
from harness.case.weights import DEFAULT_SEED
from harness.execute.backends import BackendInfo
from harness.records import store as records
from harness.records.header import make_header, now
from harness.truth.compare import Tolerance, compare
from reference import lstm as reference_lstm

DEFAULT_LENGTHS: tuple[int, ...] = (10, 30, 100, 300, 1000, 2000)
DEFAULT_UNITS: tuple[int, ...] = (4, 16, 64)
BATCH = 5
FEATURES = 3
DTYPE = "float32"
QUANTITY_OF = {"output": "outputs", "h": "states", "c": "states"}
EXIT_OK, EXIT_FOUND, EXIT_COULD_NOT_RUN = 0, 1, 2


def growth_path(out_dir: Path, backend: str) -> Path:
    return out_dir / f"{backend}.growth.json"


def point_data(time: int, units: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Inputs (BATCH, time, FEATURES) and [kernel, recurrent_kernel, bias] in float32, seeded by (seed, time, units)."""
    rng = np.random.default_rng([seed, time, units])
    x = rng.normal(0.0, 1.0, size=(BATCH, time, FEATURES))
    kernel = rng.normal(0.0, 1.0 / np.sqrt(FEATURES), size=(FEATURES, 4 * units))
    recurrent_kernel = rng.normal(0.0, 1.0 / np.sqrt(units), size=(units, 4 * units))
    bias = rng.normal(0.0, 0.5, size=(4 * units,))
    return x.astype(np.float32), [a.astype(np.float32) for a in (kernel, recurrent_kernel, bias)]


def headroom(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> tuple[float, float]:
    """(headroom, bound): min over elements of bound / error, and the bound of that tightest element.

    The bound of an element is ``atol + rtol * |expected|``, exactly the test compare() applies.
    Elements with zero error impose nothing; with no error anywhere the headroom is infinite and the
    bound reported is atol.
    """
    expected = np.asarray(expected, dtype=np.float64)
    error = np.abs(np.asarray(actual, dtype=np.float64) - expected)
    bound = tolerance.atol + tolerance.rtol * np.abs(expected)
    if not np.isfinite(error).all():
        return 0.0, float(bound.ravel()[int(np.argmax(~np.isfinite(error.ravel())))])
    with np.errstate(divide="ignore"):
        ratio = np.where(error > 0, bound / np.where(error > 0, error, 1.0), np.inf)
    tightest = int(np.argmin(ratio))
    if not np.isfinite(ratio.ravel()[tightest]):
        return float("inf"), tolerance.atol
    return float(ratio.ravel()[tightest]), float(bound.ravel()[tightest])


def measure_point(time: int, units: int, seed: int, tolerances: dict[str, dict[str, Tolerance]]) -> dict[str, Any]:
    """Run one (time, units) point on the active backend and compare it with the reference; never raises."""
    import keras

    started = clock.perf_counter()
    point: dict[str, Any] = {"time": time, "units": units, "batch": BATCH, "features": FEATURES, "dtype": DTYPE}
    try:
        x, weights = point_data(time, units, seed)
        layer = keras.layers.LSTM(units, return_sequences=True, return_state=True, dtype=DTYPE)
        layer.build((BATCH, time, FEATURES))
        layer.set_weights(weights)
        keras_started = clock.perf_counter()
        output, h, c = layer(x)
        actual = {
            "output": keras.ops.convert_to_numpy(output),
            "h": keras.ops.convert_to_numpy(h),
            "c": keras.ops.convert_to_numpy(c),
        }
        point["keras_s"] = round(clock.perf_counter() - keras_started, 3)
        expected_output, expected_h, expected_c = reference_lstm(
            x, *weights, return_sequences=True, return_state=True, dtype=np.float64
        )
        expected = {"output": expected_output, "h": expected_h, "c": expected_c}
        quantities = {}
        for name, value in actual.items():
            tolerance = tolerance_for(tolerances, DTYPE, QUANTITY_OF[name])
            comparison = compare(value, expected[name], tolerance, DTYPE)
            ratio, bound = headroom(value, expected[name], tolerance)
            quantities[name] = {
                "max_abs_error": comparison.max_abs_error,
                "max_rel_error": comparison.max_rel_error,
                "max_ulp": comparison.max_ulp,
                "passed": comparison.passed,
                "mismatched": comparison.mismatched,
                "total": comparison.total,
                "headroom": ratio,
                "tightest_bound": bound,
                "max_abs_expected": float(np.abs(expected[name]).max()),
                "rtol": tolerance.rtol,
                "atol": tolerance.atol,
            }
        point["quantities"] = quantities
        point["passed"] = all(entry["passed"] for entry in quantities.values())
        point["status"] = "pass" if point["passed"] else "fail"
        point["error"] = None
    except Exception as error:  # one broken point is recorded, not fatal
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        point["status"], point["passed"], point["error"] = "error", False, f"{type(error).__name__}: {first}"
    point["duration_s"] = round(clock.perf_counter() - started, 3)
    return point


def run_growth(
    backend: BackendInfo,
    out_dir: Path,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    units: Sequence[int] = DEFAULT_UNITS,
    seed: int = DEFAULT_SEED,
    *,
    command: str = "",
    tolerances: dict[str, dict[str, Tolerance]] | None = None,
) -> dict[str, Any]:
    """Measure every (time, units) point on the active backend; write and return the growth record.

    ``tolerances`` defaults to the table for the backend's device class. The record (header from
    ``harness.records.header``, kind "growth") is written to ``out_dir/<backend>.growth.json`` after
    each point and once more, with ``finished``, at the end.
    """
    if tolerances is None:
        tolerances = load_tolerances(backend.device_class)
    path = growth_path(Path(out_dir), backend.name)
    record: dict[str, Any] = make_header("growth", backend, seed=seed, command=command) | {
        "dtype": DTYPE,
        "entry_point": "call",
        "lengths": list(lengths),
        "units": list(units),
        "tolerances": {DTYPE: tolerance_table_json(tolerances)[DTYPE]},
        "duration_s": None,
        "points": [],
    }
    started = clock.perf_counter()
    records.write_json(path, record)
    for width in units:
        for length in lengths:
            record["points"].append(measure_point(int(length), int(width), seed, tolerances))
            records.write_json(path, record)
    record["finished"] = now()
    record["duration_s"] = round(clock.perf_counter() - started, 3)
    records.write_json(path, record)
    return record


def _label(point: dict[str, Any]) -> str:
    return f"T={point['time']} units={point['units']}"


def _worst_headroom(point: dict[str, Any]) -> float | None:
    quantities = point.get("quantities") or {}
    return min((q["headroom"] for q in quantities.values()), default=None)


def exceeded_points(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The measured points whose error exceeds the tolerance (a quantity failed or has headroom below 1)."""
    return [
        point for point in record["points"]
        if point.get("status") != "error"
        and (point.get("status") == "fail" or (_worst_headroom(point) is not None and _worst_headroom(point) < 1))
    ]


def errored_points(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [point for point in record["points"] if point.get("status") == "error"]


def exit_code(record: dict[str, Any]) -> int:
    """1 when a point's error exceeds the tolerance (the finding this study looks for); else 2 when a
    point could not be measured, or there were no points; else 0."""
    if exceeded_points(record):
        return EXIT_FOUND
    if errored_points(record) or not record["points"]:
        return EXIT_COULD_NOT_RUN
    return EXIT_OK


def summary(record: dict[str, Any]) -> str:
    """One line: points measured, the smallest headroom and where, the points over the tolerance or in error."""
    points = record["points"]
    measured = [point for point in points if _worst_headroom(point) is not None]
    line = f"{record['backend']}: {len(measured)} of {len(points)} sequence-length points measured"
    if measured:
        tightest = min(measured, key=_worst_headroom)
        line += f", smallest headroom {_worst_headroom(tightest):.2g}x at {_label(tightest)}"
    exceeded, errored = exceeded_points(record), errored_points(record)
    if exceeded:
        line += f"; error over the {record['dtype']} tolerance at " + ", ".join(_label(point) for point in exceeded)
    if errored:
        line += f"; {len(errored)} could not be measured (first: {_label(errored[0])}: {errored[0]['error']})"
    return line
