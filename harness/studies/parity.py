"""The parity run: measure every selected case on the active backend and record it incrementally.

The record is rewritten after every case, so an interrupted run keeps what it measured, and
``resume`` skips the cases a previous record already holds.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.case.divergences import DIVERGENCES_FILE, Divergence, load_divergences
from harness.case.schema import Case, parse_case
from harness.case.tolerances import Tolerances, load_tolerances
from harness.case.weights import DEFAULT_SEED
from harness.execute.backends import BackendInfo
from harness.execute.measure import DEFAULT_CASE_TIMEOUT_S, run_case
from harness.records import store as records
from harness.records.header import harness_commit, make_header, now
from harness.records.integrity import TOLERANCE_KEYS, tolerance_fields, tolerance_sha256
from harness.verdicts.classify import add_verdict, classify_result, new_verdict_record, verdicts_path


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    seed: int = DEFAULT_SEED
    fault: str | None = None
    command: str = ""
    case_timeout_s: int = DEFAULT_CASE_TIMEOUT_S
    resume: bool = False
    shard: str | None = None  # "K/N" when this run measures one shard of the selection (harness run --shard)


class ResumeRefused(ValueError):
    """The earlier record cannot be continued by this run; the message says what differs."""


def _previous_run(json_path: Path, npz_path: Path, header: dict[str, Any], cases: list[Case]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The earlier record and its raw outputs, after checking that this run measures the same thing:
    the same backend, seed, fault, versions, settings (precision mode included) and shard, the same
    tolerance table (rows, overrides and API bound), and the same definition for every case both hold."""
    previous = records.read_record(json_path)
    for key in ("backend", "seed", "fault", "versions", "settings", "device_class", "shard"):
        if previous.get(key) != header.get(key):
            raise ResumeRefused(f"{json_path} was measured with {key} {previous.get(key)!r}, this run has {header.get(key)!r}; "
                                "run without --resume or into another --out folder")
    earlier_table, this_table = tolerance_sha256(previous), tolerance_sha256(header)
    if earlier_table != this_table:
        changed = [key for key in TOLERANCE_KEYS if previous.get(key) != header.get(key)]
        raise ResumeRefused(f"{json_path} was judged with another tolerance table (sha256 {earlier_table[:12]}, this run "
                            f"{this_table[:12]}; {', '.join(changed)} differ); run without --resume or into another --out folder")
    definitions = {case.name: case.definition for case in cases}
    for result in previous["cases"]:
        name = result["case"]
        if name in definitions and result.get("definition") != definitions[name]:
            raise ResumeRefused(f"{json_path}: case {name!r} is defined differently now than in the earlier record; "
                                "run without --resume or into another --out folder")
    return previous, records.read_arrays(npz_path)


def run_cases(
    cases: list[Case],
    backend: BackendInfo,
    options: RunOptions,
    on_case_done: Callable[[int, int, dict[str, Any], dict[str, Any] | None], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run every case, writing ``<out>/<backend>.json`` and ``.npz`` (and, without a fault,
    ``<backend>.verdicts.json``) after each; returns the run record and the verdict record. Another process
    writing the same backend into the same folder makes it raise ``records.RecordLocked`` before anything is written."""
    tolerances = load_tolerances(backend.device_class, backend.name)
    divergences = load_divergences()
    with records.folder_lock(options.out_dir, backend.name, options.command):  # one writer per folder and backend
        return _run_locked(cases, backend, options, tolerances, divergences, on_case_done)


def _run_locked(cases: list[Case], backend: BackendInfo, options: RunOptions, tolerances: Tolerances, divergences: list[Divergence],
                on_case_done: Callable[[int, int, dict[str, Any], dict[str, Any] | None], None] | None,
                ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    from harness.execute import faults

    json_path = options.out_dir / f"{backend.name}.json"
    npz_path = options.out_dir / f"{backend.name}.npz"
    header = make_header("run", backend, seed=options.seed, command=options.command, fault=options.fault) | {"shard": options.shard}
    header |= tolerance_fields(tolerances)
    raw_outputs: dict[str, np.ndarray] = {}
    if options.resume and json_path.exists():
        record, raw_outputs = _previous_run(json_path, npz_path, header, cases)
        record.setdefault("resumed", []).append({"at": header["started"], "command": options.command, "commit": harness_commit()})
        record["finished"] = None
    else:
        record = header | {"cases": []}
    verdicts = None if options.fault else new_verdict_record(record, divergences, DIVERGENCES_FILE)
    by_name = {case.name: case for case in cases}
    if verdicts is not None:
        for result in record["cases"]:
            case = by_name.get(result["case"]) or parse_case(result["definition"], json_path.name)
            add_verdict(verdicts, case.name, _verdict(case, backend, record, result, raw_outputs, tolerances, divergences))
    done_names = {result["case"] for result in record["cases"]}
    todo = [case for case in cases if case.name not in done_names]
    run_started = time.perf_counter()
    with faults.injected(options.fault):
        for index, case in enumerate(todo):
            arrays: dict[tuple[str, str], np.ndarray] = {}
            result = run_case(case, options.seed, tolerances, arrays, options.case_timeout_s)
            raw_outputs.update({records.array_key(case.name, api, name): value for (api, name), value in arrays.items()})
            record["cases"].append(result)
            records.write_arrays(npz_path, raw_outputs)
            records.write_json(json_path, record)
            verdict = None
            if verdicts is not None:
                verdict = _verdict(case, backend, record, result, raw_outputs, tolerances, divergences)
                add_verdict(verdicts, case.name, verdict)
                records.write_json(verdicts_path(options.out_dir, backend.name), verdicts)
            if on_case_done is not None:
                on_case_done(len(done_names) + index + 1, len(done_names) + len(todo), result, verdict)
    record["finished"] = now()
    record["wall_time_s"] = round(time.perf_counter() - run_started, 1) + record.get("wall_time_s", 0.0)
    records.write_json(json_path, record)
    if verdicts is not None:
        records.write_json(verdicts_path(options.out_dir, backend.name), verdicts)
    return record, verdicts


def _verdict(case: Case, backend: BackendInfo, record: dict[str, Any], result: dict[str, Any], raw_outputs: dict[str, np.ndarray],
             tolerances: Tolerances, divergences: list[Divergence]) -> dict[str, Any]:
    arrays = records.result_arrays(result, raw_outputs)
    return classify_result(case, backend.name, record["versions"], result, arrays, tolerances, divergences, record["seed"])


def print_progress(done: int, total: int, result: dict[str, Any], verdict: dict[str, Any] | None) -> None:
    """One line per case on stderr: position, name, measured status (and the verdict when a known
    divergence explains it), time, and the first reason it is not a pass."""
    status = result["status"]
    if verdict is not None and verdict["verdict"] != status:
        status = f"{status} -> {verdict['verdict']} ({', '.join(verdict['explained_by'])})"
    detail = ""
    if result["error"]:
        detail = f" ({result['error']['summary'][:200]})"
    elif result["problems"] and (verdict is None or verdict["verdict"] != "known"):
        detail = f" ({result['problems'][0][:200]})"
    print(f"[{done}/{total}] {result['case']}: {status} in {result['duration_s']:.1f}s{detail}", file=sys.stderr)
