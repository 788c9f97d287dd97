"""The parity run: measure every selected case on the active backend and record it incrementally.

The run writes its whole record (``<backend>.json``, ``.npz`` and ``.verdicts.json``) when it starts and when
it ends, also when an exception or Ctrl-C stops it; in between, each case goes into the record's journal
(``harness.records.store.append_journal``: one small file pair per case), so writing costs time linear in the
cases. A run killed outright leaves record + journal: ``resume`` merges the journal's cases into the record
(after the same checks the record gets) and skips every case they hold; a run without ``resume`` discards the
journal, saying so in one line, as it starts the record anew.
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
from harness.records.header import file_sha256, harness_commit, make_header, now
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
    """The earlier record and its raw outputs, after checking that this run measures the same thing
    (``_check_same_measurement``)."""
    previous = records.read_record(json_path)
    _check_same_measurement(json_path, previous, previous["cases"], header, cases)
    return previous, records.read_arrays(npz_path)


def _check_same_measurement(source: Path, earlier: dict[str, Any], results: list[dict[str, Any]], header: dict[str, Any],
                            cases: list[Case]) -> None:
    """ResumeRefused unless ``earlier`` (a record's or a journal's header) and this run's ``header`` have the same
    backend, seed, fault, versions, settings (precision mode included) and shard, the same tolerance table (rows,
    overrides and API bound), and every case of ``results`` that this run selects has the same definition."""
    for key in ("backend", "seed", "fault", "versions", "settings", "device_class", "shard"):
        if earlier.get(key) != header.get(key):
            raise ResumeRefused(f"{source} was measured with {key} {earlier.get(key)!r}, this run has {header.get(key)!r}; "
                                "run without --resume or into another --out folder")
    earlier_table, this_table = tolerance_sha256(earlier), tolerance_sha256(header)
    if earlier_table != this_table:
        changed = [key for key in TOLERANCE_KEYS if earlier.get(key) != header.get(key)]
        raise ResumeRefused(f"{source} was judged with another tolerance table (sha256 {earlier_table[:12]}, this run "
                            f"{this_table[:12]}; {', '.join(changed)} differ); run without --resume or into another --out folder")
    definitions = {case.name: case.definition for case in cases}
    for result in results:
        name = result["case"]
        if name in definitions and result.get("definition") != definitions[name]:
            raise ResumeRefused(f"{source}: case {name!r} is defined differently now than in the earlier record; "
                                "run without --resume or into another --out folder")


def _resumed_run(json_path: Path, npz_path: Path, header: dict[str, Any], cases: list[Case]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """What ``--resume`` continues: the earlier record and its raw outputs, with the cases of the journal an
    unfinished run left beside it (each checked as the record is; a torn entry dropped with a line on stderr).
    ResumeRefused when the journal was written under another header or on top of another record file."""
    folder, backend = json_path.parent, str(header["backend"])
    journal = records.read_journal(folder, backend)
    if journal is None:
        return _previous_run(json_path, npz_path, header, cases)
    for line in journal.dropped:
        print(f"keras-parity: {line}", file=sys.stderr)
    if journal.header is None:
        raise ResumeRefused(f"{journal.folder} has no readable header, so what its cases measured cannot be checked; "
                            "run without --resume (which discards it) or into another --out folder")
    results = [entry["result"] for entry in journal.entries]
    _check_same_measurement(journal.folder, journal.header, results, header, cases)
    if not json_path.exists():
        raise ResumeRefused(f"{journal.folder} continues {json_path}, which is gone; "
                            "run without --resume (which discards the journal) or into another --out folder")
    record, raw_outputs = _previous_run(json_path, npz_path, header, cases)
    held = {result["case"] for result in record["cases"]}
    if file_sha256(json_path) != journal.base_sha256:
        if all(result["case"] in held for result in results):  # the unfinished run had written its whole record
            print(f"keras-parity: the {len(results)} case(s) of {journal.folder} are already in {json_path}", file=sys.stderr)
            return record, raw_outputs
        raise ResumeRefused(f"{journal.folder} continues another {json_path.name} than the one there now "
                            f"(sha256 {str(journal.base_sha256)[:12]}, now {file_sha256(json_path)[:12]}); "
                            "run without --resume (which discards the journal) or into another --out folder")
    record["cases"].extend(result for result in results if result["case"] not in held)
    raw_outputs.update(journal.arrays)
    print(f"keras-parity: resuming with the {len(results)} case(s) of the unfinished run's journal {journal.folder}", file=sys.stderr)
    return record, raw_outputs


def _discard_journal(folder: Path, backend: str) -> None:
    """Remove the journal an unfinished run left, saying so in one line (a run without --resume starts anew)."""
    journal = records.read_journal(folder, backend)
    if journal is not None:
        print(f"keras-parity: discarding {journal.folder}, the journal of an unfinished run ({len(journal.entries)} case(s)): "
              "this run starts the record anew; --resume would have kept them", file=sys.stderr)
        records.clear_journal(folder, backend)


def write_run_record(folder: Path, backend: str, record: dict[str, Any], raw_outputs: dict[str, np.ndarray],
                     verdicts: dict[str, Any] | None) -> None:
    """Write the whole record: ``<backend>.npz``, ``<backend>.verdicts.json`` (when there are verdicts), then
    ``<backend>.json`` last, so the record file changes only once everything it names is written."""
    records.write_arrays(folder / f"{backend}.npz", raw_outputs)
    if verdicts is not None:
        records.write_json(verdicts_path(folder, backend), verdicts)
    records.write_json(folder / f"{backend}.json", record)


def run_cases(
    cases: list[Case],
    backend: BackendInfo,
    options: RunOptions,
    on_case_done: Callable[[int, int, dict[str, Any], dict[str, Any] | None], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run every case, writing ``<out>/<backend>.json`` and ``.npz`` (and, without a fault,
    ``<backend>.verdicts.json``) at the start and at the end (also when interrupted), each case into the journal
    in between; returns the run record and the verdict record. Another process writing the same backend into the
    same folder makes it raise ``records.RecordLocked`` before anything is written."""
    tolerances = load_tolerances(backend.device_class, backend.name)
    divergences = load_divergences()
    with records.folder_lock(options.out_dir, backend.name, options.command):  # one writer per folder and backend
        return _run_locked(cases, backend, options, tolerances, divergences, on_case_done)


def _run_locked(cases: list[Case], backend: BackendInfo, options: RunOptions, tolerances: Tolerances, divergences: list[Divergence],
                on_case_done: Callable[[int, int, dict[str, Any], dict[str, Any] | None], None] | None,
                ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    from harness.execute import faults

    folder = options.out_dir
    json_path = folder / f"{backend.name}.json"
    npz_path = folder / f"{backend.name}.npz"
    header = make_header("run", backend, seed=options.seed, command=options.command, fault=options.fault) | {"shard": options.shard}
    header |= tolerance_fields(tolerances)
    if options.resume and (json_path.exists() or records.journal_folder(folder, backend.name).exists()):
        record, raw_outputs = _resumed_run(json_path, npz_path, header, cases)
        record.setdefault("resumed", []).append({"at": header["started"], "command": options.command, "commit": harness_commit()})
        record["finished"] = None
    else:
        _discard_journal(folder, backend.name)
        record, raw_outputs = header | {"cases": []}, {}
    verdicts = None if options.fault else new_verdict_record(record, divergences, DIVERGENCES_FILE)
    by_name = {case.name: case for case in cases}
    if verdicts is not None:
        for result in record["cases"]:
            case = by_name.get(result["case"]) or parse_case(result["definition"], json_path.name)
            add_verdict(verdicts, case.name, _verdict(case, backend, record, result, raw_outputs, tolerances, divergences))
    done_names = {result["case"] for result in record["cases"]}
    todo = [case for case in cases if case.name not in done_names]
    # The starting point the journal continues: written whole once (with a journal's cases merged in), then the journal.
    write_run_record(folder, backend.name, record, raw_outputs, verdicts)
    records.clear_journal(folder, backend.name)
    records.start_journal(folder, backend.name, header, file_sha256(json_path))
    run_started = time.perf_counter()
    try:
        with faults.injected(options.fault):
            for index, case in enumerate(todo):
                arrays: dict[tuple[str, str], np.ndarray] = {}
                result = run_case(case, options.seed, tolerances, arrays, options.case_timeout_s)
                case_outputs = {records.array_key(case.name, api, name): value for (api, name), value in arrays.items()}
                raw_outputs.update(case_outputs)
                record["cases"].append(result)
                verdict = None
                if verdicts is not None:
                    verdict = _verdict(case, backend, record, result, raw_outputs, tolerances, divergences)
                    add_verdict(verdicts, case.name, verdict)
                records.append_journal(folder, backend.name, index, result, verdict, case_outputs)
                if on_case_done is not None:
                    on_case_done(len(done_names) + index + 1, len(done_names) + len(todo), result, verdict)
        record["finished"] = now()
        record["wall_time_s"] = round(time.perf_counter() - run_started, 1) + record.get("wall_time_s", 0.0)
    finally:  # also when an exception or Ctrl-C stops the run: the whole record, then the journal is not needed
        write_run_record(folder, backend.name, record, raw_outputs, verdicts)
        records.clear_journal(folder, backend.name)
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
