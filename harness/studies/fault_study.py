"""The fault study: every fault in the catalogue through the normal harness, on the active backend.

For each fault it runs the cases the fault names with the fault injected and records whether the
harness flagged it (status fail or error); it runs the same cases unmodified to show there is no
false alarm; and it sweeps the size of a bias perturbation to find, per dtype, the smallest one the
tolerances detect. Imported after the backend is active.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.execute import faults
from harness.records import store as records
from harness.execute.backends import BackendInfo
from harness.case.schema import Case, select_cases
from harness.case.divergences import classify, load_divergences
from harness.execute.measure import run_case
from harness.case.tolerances import load_tolerances

SCHEMA = "keras-parity/faults"
SWEEP_FAULT = "forget_gate_bias_offset"
# One case per dtype for the sensitivity sweep, and the perturbation sizes tried (largest first).
SWEEP_CASES = {"float32": "lstm_sequences", "float64": "lstm_float64_call", "float16": "dtype_float16_none", "bfloat16": "dtype_bfloat16_none"}
SWEEP_MAGNITUDES = tuple(10.0 ** -k for k in range(0, 12))


def _status(case: Case, seed: int, tolerances: dict, backend: str, fault: str | None, magnitude: float) -> dict[str, Any]:
    with faults.injected(fault, magnitude):
        result = run_case(case, seed, tolerances, {}, timeout_s=300)
    if fault is None:
        classify(result, backend, load_divergences())
    return {"status": result["status"], "error": result["error"], "max_abs_error": records.worst_item(result, "max_abs_error")}


def run_fault_study(cases: list[Case], backend: BackendInfo, out_dir: Path, seed: int) -> dict[str, Any]:
    tolerances = load_tolerances(backend.device_class)
    record: dict[str, Any] = {
        "schema": SCHEMA, "schema_version": 1, "backend": backend.name, "device": backend.device, "device_class": backend.device_class,
        "versions": backend.versions, "settings": backend.settings, "seed": seed,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "faults": {}, "clean": {}, "sweep": {},
    }
    path = out_dir / f"{backend.name}.faults.json"
    for name, fault in faults.FAULTS.items():
        selected = select_cases(cases, ",".join(fault.cases))
        runs = {case.name: _status(case, seed, tolerances, backend.name, name, faults.DEFAULT_MAGNITUDE) for case in selected}
        for case in selected:
            if case.name not in record["clean"]:
                record["clean"][case.name] = _status(case, seed, tolerances, backend.name, None, 0.0)
        flagged = [case for case, run in runs.items() if run["status"] in ("fail", "error", "timeout")]
        record["faults"][name] = {
            "description": fault.description, "runs": runs, "detected": bool(flagged), "flagged_cases": flagged,
        }
        records.write_json(path, record)
    for dtype, case_name in SWEEP_CASES.items():
        case = next(c for c in cases if c.name == case_name)
        clean = _status(case, seed, tolerances, backend.name, None, 0.0)
        entry: dict[str, Any] = {"case": case_name, "clean_status": clean["status"], "detected": {}, "smallest_detected": None}
        if clean["status"] == "pass":
            for magnitude in SWEEP_MAGNITUDES:
                run = _status(case, seed, tolerances, backend.name, SWEEP_FAULT, magnitude)
                entry["detected"][f"{magnitude:g}"] = {"flagged": run["status"] != "pass", "max_abs_error": run["max_abs_error"]}
                if run["status"] == "pass":
                    break  # smaller perturbations are smaller still
                entry["smallest_detected"] = magnitude
        record["sweep"][dtype] = entry
        records.write_json(path, record)
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    records.write_json(path, record)
    return record
