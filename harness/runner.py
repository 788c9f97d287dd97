"""Run cases on the active backend, in-process: build per API, predict, compare, record.

The record is rewritten after every case, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import itertools
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness import records
from harness.backends import BackendInfo
from harness.cases import Case
from harness.compare import compare, max_difference
from harness.expected import expected_outputs
from harness.known import classify, load_divergences
from harness.tolerances import load_tolerances, quantity_of, tolerance_for, tolerance_table_json
from harness.weights import DEFAULT_SEED, make_case_data


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    seed: int = DEFAULT_SEED
    fault: str | None = None
    command: str = ""


def _last_line(error: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()
    return text[-1] if text else type(error).__name__


def run_case(case: Case, seed: int, tolerances: dict, raw_outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Measure one case on the active backend; never raises (an exception becomes status 'error')."""
    from harness import models

    started = time.perf_counter()
    result: dict[str, Any] = {
        "case": case.name, "dtype": case.dtype, "entry_point": case.entry_point, "description": case.description,
        "apis": {},
    }
    try:
        data = make_case_data(case, seed)
        expected = expected_outputs(case, data)
        actual_by_api: dict[str, dict[str, np.ndarray]] = {}
        for api in case.apis:
            model = models.build_model(api, case, data)
            actual = {name: np.asarray(value) for name, value in models.run_model(model, case, data).items()}
            actual_by_api[api] = actual
            items = {}
            for name, value in actual.items():
                tolerance = tolerance_for(tolerances, case.dtype, quantity_of(name))
                comparison = compare(value, expected[name], tolerance, case.dtype)
                items[name] = comparison.to_json() | {"message": comparison.message(f"{api}/{name}")}
                raw_outputs[records.array_key(case.name, api, name)] = value
            result["apis"][api] = {"passed": all(item["passed"] for item in items.values()), "items": items}
        result["api_agreement"] = _api_agreement(actual_by_api)
        all_passed = all(entry["passed"] for entry in result["apis"].values())
        result["status"] = "pass" if all_passed else "fail"
        result["error"] = None
    except Exception as error:  # one broken case must not stop the run
        result["status"] = "error"
        result["error"] = _last_line(error)
    result["duration_s"] = round(time.perf_counter() - started, 3)
    return result


def _api_agreement(actual_by_api: dict[str, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Every pair of APIs, every output: the largest difference and whether it is bitwise zero."""
    rows = []
    for first, second in itertools.combinations(actual_by_api, 2):
        for name in actual_by_api[first]:
            difference, bitwise = max_difference(actual_by_api[first][name], actual_by_api[second][name])
            rows.append({"apis": [first, second], "output": name, "max_abs_diff": difference, "bitwise_equal": bitwise})
    return rows


def run_cases(
    cases: list[Case],
    backend: BackendInfo,
    options: RunOptions,
    on_case_done: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every case, writing ``<out>/<backend>.json`` and ``.npz`` after each; returns the record."""
    from harness import faults

    tolerances = load_tolerances()
    divergences = load_divergences()
    record: dict[str, Any] = {
        "schema": records.SCHEMA,
        "schema_version": records.SCHEMA_VERSION,
        "backend": backend.name,
        "device": backend.device,
        "versions": backend.versions,
        "settings": backend.settings,
        "command": options.command,
        "seed": options.seed,
        "fault": options.fault,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "finished": None,
        "tolerances": tolerance_table_json(tolerances),
        "cases": [],
    }
    json_path = options.out_dir / f"{backend.name}.json"
    npz_path = options.out_dir / f"{backend.name}.npz"
    raw_outputs: dict[str, np.ndarray] = {}
    with faults.injected(options.fault):
        for index, case in enumerate(cases):
            result = run_case(case, options.seed, tolerances, raw_outputs)
            if options.fault is None:
                classify(result, backend.name, divergences)
            record["cases"].append(result)
            records.write_arrays(npz_path, raw_outputs)
            records.write_json(json_path, record)
            if on_case_done is not None:
                on_case_done(index + 1, len(cases), result)
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    records.write_json(json_path, record)
    return record


def print_progress(done: int, total: int, result: dict[str, Any]) -> None:
    """One line per case on stderr: position, name, status and time."""
    detail = f" ({result['error']})" if result["error"] else ""
    print(f"[{done}/{total}] {result['case']}: {result['status']} in {result['duration_s']:.1f}s{detail}", file=sys.stderr)
