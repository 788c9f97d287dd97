"""Backends against each other: how far apart the same case's numbers are on two backends. Measurements,
not a verdict.

Every pair of backends, every case both sides produced numbers for (verdict pass, known or fail alike),
every output of one model-building API both ran (functional first): the largest absolute and relative
difference, where, the two values there, and the difference in units of the sum of the two sides'
tolerances (``|a - b| / ((atol_a + atol_b) + (rtol_a + rtol_b) * max(|a|, |b|))``, each side's rtol and
atol as recorded for that output).

Why no verdict: each side is already judged against the float64 reference. Two sides that both pass are
within the sum of their tolerances of each other by the triangle inequality, so a check of that bound
could never fail on its own (an adversarial search over 10^6 such pairs peaked at 0.99999); and a side
that is known or fails is already reported as such. What the per-backend verdicts do not say is the
distance itself, "how far apart will my numbers be on JAX and on TensorFlow": that is what this writes.

Two things are judged here. The records themselves: a case whose run record says it produced an
output that its ``.npz`` does not hold is listed under ``missing`` and is a finding (a broken record,
which nothing else would notice). And what the backends accept: a case refused on some backends and run
on others is listed under ``acceptance``, explained by acceptance claims or a finding
(``harness.verdicts.acceptance``). A case that produced no numbers on a side (error, refused) is listed
under ``not_compared`` with the reason.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.case.divergences import DIVERGENCES_FILE, load_divergences
from harness.execute.backends import BACKENDS
from harness.records import store
from harness.records.header import SCHEMAS, now
from harness.verdicts.acceptance import acceptance_possibly_resolved, judge_acceptance
from harness.verdicts.classify import verdicts_path

PREFERRED_APIS = ("functional", "sequential", "subclassed")


def _load(folder: Path) -> dict[str, tuple[dict[str, Any], dict[str, np.ndarray], dict[str, str]]]:
    """Per backend: its run record, raw outputs and case -> verdict (empty when not classified)."""
    loaded = {}
    for backend in BACKENDS:
        path = folder / f"{backend}.json"
        if path.exists():
            record = store.read_record(path)
            if not record.get("fault"):
                verdicts: dict[str, str] = {}
                if verdicts_path(folder, backend).exists():
                    cases = json.loads(verdicts_path(folder, backend).read_text()).get("cases") or {}
                    verdicts = {name: str(entry.get("verdict")) for name, entry in cases.items()}
                loaded[backend] = (record, store.read_arrays(folder / f"{backend}.npz"), verdicts)
    return loaded


def _common_api(first: dict[str, Any], second: dict[str, Any]) -> str | None:
    for api in PREFERRED_APIS:
        if api in (first.get("apis") or {}) and api in (second.get("apis") or {}):
            return api
    return None


def _produced_numbers(result: dict[str, Any]) -> bool:
    """Whether the run record says this case has raw outputs: some API with judged items."""
    return any((entry or {}).get("items") for entry in (result.get("apis") or {}).values())


def distance(first: np.ndarray, second: np.ndarray, first_tolerance: tuple[float, float],
             second_tolerance: tuple[float, float]) -> dict[str, Any]:
    """How far apart two arrays of the same shape are. Tolerances are (rtol, atol) per side.

    An element where one side is not finite and the two are not the same value (NaN equals NaN here)
    makes the absolute and relative difference infinite, and is where the worst index points."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot measure the distance between shapes {list(a.shape)} and {list(b.shape)}")
    if a.size == 0:
        return {"max_abs_diff": 0.0, "max_rel_diff": 0.0, "worst_index": [], "values": [None, None],
                "summed_tolerance_ratio": 0.0, "nonfinite_disagreements": 0}
    finite = np.isfinite(a) & np.isfinite(b)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    nonfinite_disagreeing = ~finite & ~same
    with np.errstate(invalid="ignore", over="ignore"):
        difference = np.where(finite, np.abs(a - b), 0.0)
        magnitude = np.maximum(np.abs(a), np.abs(b))
        relative = np.where(difference == 0.0, 0.0, difference / np.where(magnitude == 0.0, 1.0, magnitude))
        summed = (first_tolerance[1] + second_tolerance[1]) + (first_tolerance[0] + second_tolerance[0]) * magnitude
        ratio = np.where(difference == 0.0, 0.0, difference / np.where(summed == 0.0, np.inf, summed))
    ratio = np.where(finite, ratio, 0.0)
    disagreements = int(nonfinite_disagreeing.sum())
    if disagreements:
        flat = int(np.argmax(nonfinite_disagreeing.ravel()))
        largest_abs = largest_rel = largest_ratio = float("inf")
    else:
        flat = int(np.argmax(difference.ravel()))
        largest_abs, largest_rel, largest_ratio = float(difference.max()), float(relative.max()), float(ratio.max())
    index = [int(i) for i in np.unravel_index(flat, a.shape)]
    return {"max_abs_diff": largest_abs, "max_rel_diff": largest_rel, "worst_index": index,
            "values": [float(a.ravel()[flat]), float(b.ravel()[flat])],
            "summed_tolerance_ratio": largest_ratio, "nonfinite_disagreements": disagreements}


def measure_pair(case: str, backends: tuple[str, str], first: dict[str, Any], second: dict[str, Any],
                 first_arrays: dict[str, np.ndarray], second_arrays: dict[str, np.ndarray],
                 verdicts: tuple[str | None, str | None] = (None, None)) -> tuple[list[dict[str, Any]], str, list[str]]:
    """One case on two backends: (a measurement per output, why it was not compared or "", the raw
    outputs the records name but the arrays lack)."""
    statuses = [str(first.get("status")), str(second.get("status"))]
    for backend, result in zip(backends, (first, second)):
        if not _produced_numbers(result):
            return [], f"no numbers on {backend} (measured {result.get('status')})", []
    api = _common_api(first, second)
    if api is None:
        return [], f"no model-building API in common ({', '.join(first['apis'])} on {backends[0]}, " \
                   f"{', '.join(second['apis'])} on {backends[1]})", []
    first_items, second_items = first["apis"][api]["items"], second["apis"][api]["items"]
    missing = [f"{backend}: {store.array_key(case, api, output)}"
               for backend, items, arrays in ((backends[0], first_items, first_arrays), (backends[1], second_items, second_arrays))
               for output in items if store.array_key(case, api, output) not in arrays]
    if missing:
        return [], "raw outputs missing", missing
    rows = []
    for output in [name for name in first_items if name in second_items]:
        key = store.array_key(case, api, output)
        row: dict[str, Any] = {"case": case, "backends": list(backends), "api": api, "output": output, "statuses": statuses,
                               "verdicts": list(verdicts)}
        a, b = first_arrays[key], second_arrays[key]
        if a.shape != b.shape:
            row.update({"shapes": [list(a.shape), list(b.shape)], "max_abs_diff": None, "max_rel_diff": None, "worst_index": None,
                        "values": None, "summed_tolerance_ratio": None, "nonfinite_disagreements": None})
        else:
            row["shape"] = list(a.shape)
            row.update(distance(a, b, (first_items[output]["rtol"], first_items[output]["atol"]),
                                (second_items[output]["rtol"], second_items[output]["atol"])))
        rows.append(row)
    return rows, "", []


def measure_records(loaded: dict[str, tuple[dict[str, Any], dict[str, np.ndarray], dict[str, str]]]) -> dict[str, Any]:
    """Every pair of the loaded backends (run or gradient records, raw outputs, case -> verdict), every
    case both ran: {"pairs": measurements, "not_compared": [...], "missing": [...], "never_compared": [...]}.

    A case's verdict is the verdict file's, else the record's own ``verdict`` (gradient records), else None."""
    measured: dict[str, Any] = {"pairs": [], "not_compared": [], "missing": []}
    compared_cases: set[str] = set()
    all_cases: set[str] = set()
    for first, second in itertools.combinations(sorted(loaded), 2):
        first_cases = {result["case"]: result for result in loaded[first][0]["cases"]}
        second_cases = {result["case"]: result for result in loaded[second][0]["cases"]}
        all_cases |= first_cases.keys() | second_cases.keys()
        for case in sorted(first_cases.keys() & second_cases.keys()):
            verdicts = (loaded[first][2].get(case, first_cases[case].get("verdict")),
                        loaded[second][2].get(case, second_cases[case].get("verdict")))
            rows, reason, missing = measure_pair(case, (first, second), first_cases[case], second_cases[case],
                                                 loaded[first][1], loaded[second][1], verdicts)
            measured["pairs"] += rows
            if rows:
                compared_cases.add(case)
            if reason:
                measured["not_compared"].append({"case": case, "backends": [first, second], "reason": reason})
            measured["missing"] += [{"case": case, "backends": [first, second], "raw_output": name} for name in missing]
    measured["never_compared"] = sorted(all_cases - compared_cases)
    return measured


def compare_backends(folder: Path, divergences_path: Path = DIVERGENCES_FILE) -> dict[str, Any]:
    """Every pair of backends with records in ``folder``, and the cases they do not all accept (judged against
    the acceptance claims of ``divergences_path``); writes ``folder/cross_backend.json``."""
    loaded = _load(folder)
    schema, version = SCHEMAS["cross_backend"]
    record: dict[str, Any] = {"schema": schema, "schema_version": version, "compared": now(),
                              "backends": sorted(loaded), "measurements_only": True}
    record.update(measure_records(loaded))
    runs = {backend: run for backend, (run, _, _) in loaded.items()}
    divergences = load_divergences(divergences_path)
    record["acceptance"] = judge_acceptance(runs, divergences)
    record["acceptance_possibly_resolved"] = acceptance_possibly_resolved(runs, divergences, record["acceptance"])
    store.write_json(folder / "cross_backend.json", record)
    return record


def largest_by_pair(pairs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per pair of backends ("a vs b"): the measurement with the largest absolute difference (a shape
    difference counts as the largest)."""
    largest: dict[str, dict[str, Any]] = {}
    for row in pairs:
        name = " vs ".join(row["backends"])
        value = float("inf") if row["max_abs_diff"] is None else row["max_abs_diff"]
        held = largest.get(name)
        if held is None or value > (float("inf") if held["max_abs_diff"] is None else held["max_abs_diff"]):
            largest[name] = row
    return largest


def summary_line(record: dict[str, Any]) -> str:
    """One line for the console: what was measured, the largest distance per pair, what is missing."""
    pairs = record["pairs"]
    cases = {(row["case"], tuple(row["backends"])) for row in pairs}
    line = (f"across backends (measurements): {len(pairs)} outputs of {len(cases)} case pairs compared, "
            f"{len(record['not_compared'])} case pairs without numbers on a side, "
            f"{len(record['never_compared'])} cases compared on no pair")
    largest = largest_by_pair(pairs)
    if largest:
        line += "; largest difference " + ", ".join(
            f"{name} {'shape differs' if row['max_abs_diff'] is None else format(row['max_abs_diff'], '.3g')} ({row['case']} {row['output']})"
            for name, row in sorted(largest.items()))
    if record["missing"]:
        line += f"; {len(record['missing'])} raw outputs named by a record are MISSING from its arrays"
    acceptance = record.get("acceptance", [])
    if acceptance:
        unexplained = [entry for entry in acceptance if entry["unexplained"]]
        line += (f"; {len(acceptance)} cases refused on some backends and run on others, "
                 f"{len(acceptance) - len(unexplained)} explained by acceptance claims"
                 + (f", {len(unexplained)} UNEXPLAINED" if unexplained else ""))
    return line


def unexplained_acceptance(record: dict[str, Any]) -> list[str]:
    """One line per case the backends do not all accept that no acceptance claim explains (a finding)."""
    return [f"{entry['case']}: refused on {', '.join(entry['refused_on'])}, runs on {', '.join(entry['ran_on'])}: "
            + "; ".join(entry["unexplained"]) for entry in record.get("acceptance", []) if entry["unexplained"]]
