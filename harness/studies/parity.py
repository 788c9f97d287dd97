"""The parity run: measure every selected case on the active backend and record it incrementally.

The record is rewritten after every case, so an interrupted run keeps what it measured, and
``resume`` skips the cases a previous record already holds.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.case.divergences import classify, load_divergences
from harness.case.schema import Case
from harness.case.tolerances import load_tolerances, tolerance_table_json
from harness.case.weights import DEFAULT_SEED
from harness.execute.backends import BackendInfo
from harness.execute.measure import DEFAULT_CASE_TIMEOUT_S, run_case
from harness.records import store as records


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    seed: int = DEFAULT_SEED
    fault: str | None = None
    command: str = ""
    case_timeout_s: int = DEFAULT_CASE_TIMEOUT_S
    resume: bool = False



def _previous_run(json_path: Path, npz_path: Path, resume: bool) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    if not resume or not json_path.exists():
        return [], {}
    previous = records.read_record(json_path)
    return previous["cases"], records.read_arrays(npz_path)


def run_cases(
    cases: list[Case],
    backend: BackendInfo,
    options: RunOptions,
    on_case_done: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every case, writing ``<out>/<backend>.json`` and ``.npz`` after each; returns the record."""
    from harness.execute import faults

    tolerances = load_tolerances(backend.device_class)
    divergences = load_divergences()
    json_path = options.out_dir / f"{backend.name}.json"
    npz_path = options.out_dir / f"{backend.name}.npz"
    done_cases, raw_outputs = _previous_run(json_path, npz_path, options.resume)
    done_names = {case["case"] for case in done_cases}
    record: dict[str, Any] = {
        "schema": records.SCHEMA,
        "schema_version": records.SCHEMA_VERSION,
        "backend": backend.name,
        "device": backend.device,
        "device_class": backend.device_class,
        "versions": backend.versions,
        "settings": backend.settings,
        "command": options.command,
        "seed": options.seed,
        "fault": options.fault,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "finished": None,
        "tolerances": tolerance_table_json(tolerances),
        "cases": done_cases,
    }
    todo = [case for case in cases if case.name not in done_names]
    run_started = time.perf_counter()
    with faults.injected(options.fault):
        for index, case in enumerate(todo):
            arrays: dict[tuple[str, str], np.ndarray] = {}
            result = run_case(case, options.seed, tolerances, arrays, options.case_timeout_s)
            raw_outputs.update({records.array_key(case.name, api, name): value for (api, name), value in arrays.items()})
            if options.fault is None:
                classify(result, backend.name, divergences)
            record["cases"].append(result)
            records.write_arrays(npz_path, raw_outputs)
            records.write_json(json_path, record)
            if on_case_done is not None:
                on_case_done(len(done_names) + index + 1, len(done_names) + len(todo), result)
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["wall_time_s"] = round(time.perf_counter() - run_started, 1)
    records.write_json(json_path, record)
    return record


def print_progress(done: int, total: int, result: dict[str, Any]) -> None:
    """One line per case on stderr: position, name, status and time."""
    detail = f" ({result['error']})" if result["error"] else ""
    print(f"[{done}/{total}] {result['case']}: {result['status']} in {result['duration_s']:.1f}s{detail}", file=sys.stderr)
