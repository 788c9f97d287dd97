"""Backends against each other: the same case, the same build, every output, within the sum of the
two backends' tolerances.

Both backends are judged against the float64 reference already; this check keeps them honest against
each other too, from the records alone. An element of backends a and b disagrees when
``|a - b| > (atol_a + atol_b) + (rtol_a + rtol_b) * max(|a|, |b|)``, with each side's rtol and atol
as recorded for that output. Only cases measured as a pass on both sides are compared (a failing or
known-divergent case is already reported as such); the others are listed as skipped, with the reason.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from harness.execute.backends import BACKENDS
from harness.records import store
from harness.records.header import SCHEMAS, now

PREFERRED_APIS = ("functional", "sequential", "subclassed")


def _load(folder: Path) -> dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]]:
    loaded = {}
    for backend in BACKENDS:
        path = folder / f"{backend}.json"
        if path.exists():
            record = store.read_record(path)
            if not record.get("fault"):
                loaded[backend] = (record, store.read_arrays(folder / f"{backend}.npz"))
    return loaded


def _common_api(first: dict[str, Any], second: dict[str, Any]) -> str | None:
    for api in PREFERRED_APIS:
        if api in first["apis"] and api in second["apis"]:
            return api
    return None


def compare_pair(case: str, backends: tuple[str, str], first: dict[str, Any], second: dict[str, Any],
                 first_arrays: dict[str, np.ndarray], second_arrays: dict[str, np.ndarray]) -> tuple[list[dict[str, Any]], str]:
    """The rows for one case on two backends, or a reason it was skipped."""
    if first["status"] != "pass" or second["status"] != "pass":
        return [], f"measured {first['status']} on {backends[0]} and {second['status']} on {backends[1]}"
    api = _common_api(first, second)
    if api is None:
        return [], "no model-building API in common"
    rows = []
    for output, item in first["apis"][api]["items"].items():
        key = store.array_key(case, api, output)
        if key not in first_arrays or key not in second_arrays or output not in second["apis"][api]["items"]:
            return [], f"raw output {key} missing on one side"
        other = second["apis"][api]["items"][output]
        a = first_arrays[key].astype(np.float64)
        b = second_arrays[key].astype(np.float64)
        if a.shape != b.shape:
            rows.append({"case": case, "backends": list(backends), "api": api, "output": output, "max_abs_diff": float("inf"),
                         "bound": 0.0, "ratio": float("inf"), "within": False})
            continue
        bound = (item["atol"] + other["atol"]) + (item["rtol"] + other["rtol"]) * np.maximum(np.abs(a), np.abs(b))
        with np.errstate(invalid="ignore"):
            difference = np.abs(a - b)
            ratio = difference / bound
        worst = float(np.nanmax(ratio)) if not np.isnan(ratio).any() else float("nan")
        index = int(np.nanargmax(ratio)) if ratio.size and not np.isnan(ratio).all() else 0
        rows.append({
            "case": case, "backends": list(backends), "api": api, "output": output,
            "max_abs_diff": float(difference.max()) if difference.size else 0.0,
            "bound": float(bound.ravel()[index]) if bound.size else 0.0, "ratio": worst,
            "within": bool(worst <= 1.0),  # NaN is never within
        })
    return rows, ""


def compare_backends(folder: Path) -> dict[str, Any]:
    """Every pair of backends with records in ``folder``; writes ``folder/cross_backend.json``."""
    loaded = _load(folder)
    schema, version = SCHEMAS["cross_backend"]
    record: dict[str, Any] = {"schema": schema, "schema_version": version, "compared": now(),
                              "backends": sorted(loaded), "pairs": [], "skipped": []}
    for first, second in itertools.combinations(sorted(loaded), 2):
        first_cases = {result["case"]: result for result in loaded[first][0]["cases"]}
        second_cases = {result["case"]: result for result in loaded[second][0]["cases"]}
        for case in first_cases:
            if case not in second_cases:
                continue
            rows, skipped = compare_pair(case, (first, second), first_cases[case], second_cases[case],
                                         loaded[first][1], loaded[second][1])
            record["pairs"] += rows
            if skipped:
                record["skipped"].append({"case": case, "backends": [first, second], "reason": skipped})
    store.write_json(folder / "cross_backend.json", record)
    return record
