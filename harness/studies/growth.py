"""Error growth with sequence length: one float32 LSTM against the float64 reference, T = 10 ... 2000.

The default cases run at most 11 steps, and the float32 tolerances (harness/tolerances.toml) were set
from those. This module measures how the error of a float32 ``keras.layers.LSTM`` grows when the
sequence is much longer, so the table's bound can be judged against its headroom at long sequences.

Each (time, units) pair is a case like any other (``point_case``: one float32
``LSTM(units, return_sequences=True, return_state=True)``, Functional, called eagerly), measured by
the one measure step every study uses (``harness.execute.measure.run_case``): seeded weights from
harness/case/weights.py, the float64 reference, the case's row of the tolerance table.

Per point and quantity the record holds the max abs error, max rel error, max ULP (float32), whether
it passed, the tolerance ratio (largest error over its bound ``atol + rtol * |expected|``) and the
headroom, its inverse: headroom 1 means the worst element sits exactly on the bound; below 1 the
point fails.

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

from harness.case.schema import Case, parse_case
from harness.case.tolerances import Tolerances, load_tolerances, tolerance_table_json
from harness.case.weights import DEFAULT_SEED
from harness.execute.backends import BackendInfo
from harness.execute.measure import run_case
from harness.records import store as records
from harness.records.header import make_header, now

DEFAULT_LENGTHS: tuple[int, ...] = (10, 30, 100, 300, 1000, 2000)
DEFAULT_UNITS: tuple[int, ...] = (4, 16, 64)
BATCH = 5
FEATURES = 3
DTYPE = "float32"
KIND = "lstm"  # the layer kind (harness.case.kinds) whose error growth is measured
EXIT_OK, EXIT_FOUND, EXIT_COULD_NOT_RUN = 0, 1, 2


def growth_path(out_dir: Path, backend: str) -> Path:
    return out_dir / f"{backend}.growth.json"


def point_case(time: int, units: int, kind: str = KIND) -> Case:
    """The growth point as a case: one recurrent layer of cell kind ``kind``; distinct batch, features, units and time."""
    entry = {
        "name": f"growth_t{time}_u{units}", "description": "error growth with sequence length",
        "dtype": DTYPE, "batch": BATCH, "time": time, "features": FEATURES, "entry_point": "call", "apis": ["functional"],
        "layers": [{"type": kind, "units": units, "return_sequences": True, "return_state": True}],
    }
    return parse_case(entry, "growth")


def measure_point(time: int, units: int, seed: int, tolerances: Tolerances) -> dict[str, Any]:
    """Run one (time, units) point on the active backend through the measure step; never raises."""
    result = run_case(point_case(time, units), seed, tolerances, {})
    point: dict[str, Any] = {"time": time, "units": units, "batch": BATCH, "features": FEATURES, "dtype": DTYPE,
                             "status": result["status"], "error": result["error"]["summary"] if result["error"] else None,
                             "duration_s": result["duration_s"]}
    if result["status"] != "error" and "functional" in result["apis"]:
        quantities = {}
        for name, item in result["apis"]["functional"]["items"].items():
            ratio = item["tolerance_ratio"]
            worst = item["worst_expected"]
            quantities[name] = {
                key: item[key] for key in ("max_abs_error", "max_rel_error", "max_ulp", "passed", "mismatched", "total",
                                           "tolerance_ratio", "rtol", "atol")
            } | {
                "headroom": float("inf") if ratio == 0 else (0.0 if not ratio <= float("inf") else 1.0 / ratio),
                "tightest_bound": item["atol"] + item["rtol"] * abs(worst) if worst is not None else None,
            }
        point["quantities"] = quantities
        point["passed"] = result["status"] == "pass"
    else:
        point["passed"] = False
    return point


def run_growth(
    backend: BackendInfo,
    out_dir: Path,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    units: Sequence[int] = DEFAULT_UNITS,
    seed: int = DEFAULT_SEED,
    *,
    command: str = "",
    tolerances: Tolerances | None = None,
) -> dict[str, Any]:
    """Measure every (time, units) point on the active backend; write and return the growth record.

    ``tolerances`` defaults to the table for the backend's device class. The record (header from
    ``harness.records.header``, kind "growth") is written to ``out_dir/<backend>.growth.json`` after
    each point and once more, with ``finished``, at the end.
    """
    if tolerances is None:
        tolerances = load_tolerances(backend.device_class, backend.name)
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
