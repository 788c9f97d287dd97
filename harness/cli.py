"""Command line: ``python -m harness {run,report,list,...}`` (also the ``keras-parity`` console script).

Exit codes: 0 every case passed (or the command succeeded); 1 a case failed or errored, or a study
found what it exists to find (growth: an error over the tolerance; faults: a fault not detected or a
false alarm); 2 bad usage, bad input files, a backend that is not installed, or a command that could
not measure what it was asked to (load: no model saved by another backend; probe: a probe raised;
growth: a point raised; faults: a fault that raised or did not apply).

Every command that runs a backend keeps the console for the harness: the backend's own log (C++
warnings, absl, XLA, Python warnings) goes to ``<backend>.log`` beside the records (see
``harness.execute.console``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn, Sequence

from harness.execute import console
from harness.execute.backends import BACKENDS, BackendUnavailable
from harness.execute.faults import FaultNotApplicable
from harness.case.divergences import DIVERGENCES_FILE, DivergenceFileError
from harness.case.schema import CaseError, builtin_cases, load_case_file, select_cases
from harness.records.header import command_line
from harness.records.store import RecordError, RecordLocked, folder_lock

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROGRESS_THRESHOLD = 3
# The cases saved as .keras for the cross-backend load check: every layer type and head, one policy.
SERIALIZATION_CASES = "lstm_*,stacked_lstm,bidi_concat_seqon_*,heads_*,branches_*,dtype_mixedfloat16_none"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming what was wrong."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"keras-parity: error: {message} (see '{self.prog} --help')\n")


def _fail(message: str) -> int:
    print(f"keras-parity: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _load_cases(case_file: Path | None, pattern: str | None):
    cases = load_case_file(case_file) if case_file is not None else builtin_cases()
    return select_cases(cases, pattern)


def _command_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.execute import faults
    from harness.execute.backends import activate

    if args.inject_fault is not None and args.inject_fault not in faults.FAULTS:
        return _fail(f"unknown fault {args.inject_fault!r}; accepted: {', '.join(faults.FAULTS)}")
    from harness.studies import run_jobs

    refused = run_jobs.refusal(args)
    if refused is not None:
        return _fail(refused)
    cases = _load_cases(args.case_file, args.cases)
    if args.jobs > 1:
        return _run_as_jobs(args, argv, len(cases))
    shard = None
    if args.shard is not None:
        from harness.case.shard import parse_shard, select_shard

        k, n = parse_shard(args.shard)
        shard, selected = f"{k}/{n}", len(cases)
        cases = select_shard(cases, k, n)
        if not cases:
            return _fail(f"shard {shard} holds no case: the selection has {selected} case(s), so use at most {selected} shards")
    backend = activate(args.backend, precision=args.precision, keras_api=args.keras_api)
    print(precision_line(backend, args.precision))  # stdout, with the progress: stderr holds only errors

    from harness.case.tolerances import load_tolerances
    from harness.studies.parity import ResumeRefused, RunOptions, print_progress, run_cases

    unmeasured = load_tolerances(backend.device_class, backend.name).unmeasured_rows()
    if unmeasured:
        print(f"{args.backend}: warning: device class {backend.device_class} uses tolerance rows never measured on such a device: "
              f"{', '.join(unmeasured)}", file=sys.stderr)
    options = RunOptions(
        out_dir=args.out, seed=args.seed, fault=args.inject_fault,
        command=command_line(list(argv)),
        case_timeout_s=args.case_timeout, resume=args.resume,
        shard=shard,
    )
    show_progress = len(cases) > PROGRESS_THRESHOLD and not args.quiet
    try:
        record, verdicts = run_cases(cases, backend, options, on_case_done=print_progress if show_progress else None)
    except RecordLocked as error:  # another run is writing this backend into --out
        return _fail(str(error))
    except (RecordError, ResumeRefused) as error:
        return _fail(f"cannot resume: {error}")
    return _run_summary(args, backend.device, record, verdicts, record.get("wall_time_s", 0))


def _run_as_jobs(args: argparse.Namespace, argv: Sequence[str], selected: int) -> int:
    """``run --jobs N`` (harness.studies.run_jobs): N shard processes, merged into --out, judged, summarised."""
    from harness.studies import run_jobs
    from harness.verdicts.classify import classify_record

    if args.jobs > selected:
        return _fail(f"--jobs {args.jobs} is more than the {selected} selected case(s); use at most {selected}")
    command = command_line(list(argv))
    try:
        with folder_lock(args.out, args.backend, command):
            record, seconds = run_jobs.run_jobs(args, command)
            verdicts = None if record.get("fault") else classify_record(args.out, args.backend)
    except (RecordLocked, run_jobs.JobsFailed) as error:
        return _fail(str(error))
    except RecordError as error:
        return _fail(f"the jobs' records could not be merged: {error}")
    return _run_summary(args, f"{record.get('device', '?')} ({args.jobs} jobs)", record, verdicts, seconds)


def _run_summary(args: argparse.Namespace, device: str, record: dict, verdicts: dict | None, seconds: float) -> int:
    """The lines a run prints at its end (failures with their problems, possibly resolved claims, the counts) and
    its exit code: 0 when every case passed, is known or refused, 1 otherwise, 2 when nothing was measured."""
    if not record["cases"]:
        return _fail("no case was measured")
    judged = {result["case"]: (verdicts["cases"][result["case"]]["verdict"] if verdicts else result["status"]) for result in record["cases"]}
    for result in record["cases"]:
        if judged[result["case"]] in ("fail", "error", "timeout", "invalid"):
            print(f"{args.backend}: {result['case']}: {judged[result['case']]}", file=sys.stderr)
            for problem in result["problems"]:
                print(f"  {problem}", file=sys.stderr)
            if result["error"]:
                print(f"  {result['error']['summary']}", file=sys.stderr)
            if verdicts:
                for reason in verdicts["cases"][result["case"]]["unexplained"]:
                    print(f"  not explained by {reason}", file=sys.stderr)
    counts = {name: list(judged.values()).count(name) for name in ("pass", "known", "refused")}
    resolved = verdicts["possibly_resolved"] if verdicts else []
    for entry in resolved:
        print(f"{args.backend}: possibly resolved: {entry['divergence']} no longer shows on {entry['case']}", file=sys.stderr)
    print(
        f"{args.backend} on {device}: {counts['pass']} of {len(judged)} cases passed, {counts['known']} known divergences, "
        f"{counts['refused']} refused by design, {len(judged) - sum(counts.values())} failed; {len(resolved)} possibly resolved; "
        f"wrote {args.out / (args.backend + '.json')} in {seconds:.0f} s"
    )
    return EXIT_OK if sum(counts.values()) == len(judged) else EXIT_FAILED


def _command_classify(args: argparse.Namespace) -> int:
    from harness.verdicts.classify import classify_record
    from harness.verdicts.cross_backend import compare_backends, summary_line, unexplained_acceptance

    backends = sorted(path.name[: -len(".json")] for path in args.dir.glob("*.json") if path.name.count(".") == 1
                      and path.name[: -len(".json")] in BACKENDS)
    if not backends:
        return _fail(f"{args.dir} holds no run record (<backend>.json); run 'python -m harness run' first")
    failing = 0
    for backend in backends:
        verdicts = classify_record(args.dir, backend)
        bad = sum(verdicts["counts"][name] for name in ("fail", "error", "timeout", "invalid"))
        failing += bad
        print(f"{backend}: " + ", ".join(f"{n} {name}" for name, n in verdicts["counts"].items() if n)
              + f"; {len(verdicts['possibly_resolved'])} possibly resolved (divergences {verdicts['divergences_sha256'][:12]})")
        for entry in verdicts["possibly_resolved"]:
            print(f"  possibly resolved: {entry['divergence']} no longer shows on {entry['case']}", file=sys.stderr)
        for flag in verdicts["integrity"]["flags"]:  # the record itself: unfinished, mixed commits, contradicted statuses
            print(f"  record {flag['kind'].replace('_', ' ')}: {flag['message']}", file=sys.stderr)
        failing += verdicts["integrity"]["failing"]
    cross = compare_backends(args.dir)
    print(summary_line(cross))
    for entry in cross["missing"]:
        print(f"  {entry['case']} ({' vs '.join(entry['backends'])}): raw output {entry['raw_output']} named by the record "
              "is missing from its arrays", file=sys.stderr)
    not_accepted = unexplained_acceptance(cross)
    for line in not_accepted:
        print(f"  accepted on some backends only, unexplained: {line}", file=sys.stderr)
    for entry in cross["acceptance_possibly_resolved"]:
        print(f"  possibly resolved: {entry['divergence']}: {entry['case']} runs on {entry['backend']} and on every other "
              "backend measured", file=sys.stderr)
    return EXIT_FAILED if failing or cross["missing"] or not_accepted else EXIT_OK


def _command_merge(args: argparse.Namespace) -> int:
    from harness.records.merge import merge_folders
    from harness.verdicts.classify import classify_record
    from harness.verdicts.cross_backend import compare_backends, summary_line

    merged = merge_folders(args.out, args.dirs, command=args.invocation)
    for backend, result in merged.items():
        parts, written = [], list(result.side_records)
        if result.record is not None:
            written[:0] = [f"{backend}.json", f"{backend}.npz"]
            shards = [run["shard"] for run in result.record["merged_from"] if run.get("shard")]
            line = f"{len(result.record['cases'])} cases from {len(result.folders)} folders"
            line += f" (shards {', '.join(shards)})" if shards else ""
            if result.record.get("fault"):
                line += f", fault {result.record['fault']!r} injected (not classified)"
            else:
                counts = classify_record(args.out, backend)["counts"]
                if any(counts.values()):
                    line += ": " + ", ".join(f"{n} {name}" for name, n in counts.items() if n)
                written.insert(2, f"{backend}.verdicts.json")
            parts.append(line)
            if result.missing_shards:
                parts.append(f"missing shards {', '.join(result.missing_shards)}")
            if result.unfinished:
                parts.append(f"unfinished runs in {', '.join(str(folder) for folder in result.unfinished)}")
        parts.append(f"wrote {', '.join(written)}")
        print(f"{backend}: " + "; ".join(parts))
    if any(result.record is not None for result in merged.values()):
        cross = compare_backends(args.out)
        print(f"{summary_line(cross)}; wrote {args.out / 'cross_backend.json'}")
    return EXIT_OK


def _command_report(args: argparse.Namespace) -> int:
    from harness.reports.publish import write_report

    paths = write_report(args.dir)
    print("wrote " + ", ".join(str(path) for path in paths))
    return EXIT_OK


def _command_save(args: argparse.Namespace) -> int:
    from harness.execute.backends import activate

    cases = _load_cases(args.case_file, args.cases)
    backend = activate(args.backend)
    from harness.studies.serialization import save_models

    written = save_models(cases, backend, args.models, args.seed)
    print(f"{backend.name}: saved {len(written)} models to {args.models / backend.name}")
    return EXIT_OK


def _saved_elsewhere(models: Path, backend: str) -> list[Path]:
    return [path for other in BACKENDS if other != backend and (models / other).is_dir() for path in (models / other).glob("*.keras")]


def _nothing_to_load(models: Path, backend: str, detail: str) -> int:
    others = [other for other in BACKENDS if other != backend]
    return _fail(
        f"{detail}: 'load' expects models saved by other backends under {models}/<backend>/<case>.keras "
        f"(<backend>: {' or '.join(others)}); run 'python -m harness save --backend {others[0]} --models {models}' first"
    )


def _command_load(args: argparse.Namespace) -> int:
    from harness.execute.backends import activate

    cases = _load_cases(args.case_file, None)
    if not _saved_elsewhere(args.models, args.backend):
        return _nothing_to_load(args.models, args.backend, f"no models saved by other backends in {args.models}")
    backend = activate(args.backend)
    from harness.studies.serialization import load_models

    record = load_models(cases, backend, args.models, args.out, args.seed, command=args.invocation)
    if not record["loads"]:
        return _nothing_to_load(args.models, args.backend, f"none of the models in {args.models} is a known case")
    statuses = [entry["status"] for entry in record["loads"]]
    passed, known = statuses.count("pass"), statuses.count("known")
    print(
        f"{backend.name}: loaded {len(statuses)} models saved on other backends, {passed} agree with the reference, "
        f"{known} known divergences"
    )
    for entry in record["loads"]:
        if entry["status"] not in ("pass", "known"):
            print(f"  {entry['case']} saved on {entry['saved_on']}: {entry['status']} {entry['error'] or ''}", file=sys.stderr)
            for item in entry["items"].values():
                if not item["passed"]:
                    print(f"    {item['message']}", file=sys.stderr)
    return EXIT_OK if passed + known == len(statuses) else EXIT_FAILED


def _command_faults(args: argparse.Namespace) -> int:
    from harness.execute.backends import activate

    cases = _load_cases(None, None)
    backend = activate(args.backend, precision=args.precision)
    from harness.studies import fault_study

    subset = fault_study.study_subset(args.only, args.sweep)
    record = fault_study.run_fault_study(cases, backend, args.out, args.seed, command=args.invocation, **subset)
    print(f"{fault_study.summary(record)}; wrote {args.out / (backend.name + '.faults.json')}")
    for name, reason in fault_study.errored_faults(record).items():
        print(f"  error: {name}: {reason}", file=sys.stderr)
    for name in fault_study.undetected_faults(record):
        print(f"  not detected at {fault_study.precision_label(record)}: {name}: {record['faults'][name]['description']}", file=sys.stderr)
    for name in fault_study.false_alarms(record):
        entry = record["clean"][name]
        print(f"  false alarm: {name}: {entry['status']} {entry['error'] or ''}".rstrip(), file=sys.stderr)
    for dtype, reason in fault_study.undetected_sweeps(record).items():
        print(f"  sweep detected nothing: {dtype}: {reason}", file=sys.stderr)
    return fault_study.exit_code(record)


def _command_fuzz(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("hypothesis") is None:
        return _fail("fuzz needs hypothesis; install it with: pip install 'keras-parity[test]'")
    from harness.execute.backends import activate

    if args.examples < 1:
        return _fail(f"--examples must be at least 1, not {args.examples}")
    if args.inject_fault is not None and not args.gradients:
        return _fail("--inject-fault is for fuzz --gradients (a gradient fault of harness.execute.gradients)")
    from harness.execute.gradients import GRADIENT_FAULTS

    if args.inject_fault is not None and args.inject_fault not in GRADIENT_FAULTS:
        return _fail(f"unknown gradient fault {args.inject_fault!r}; accepted: {', '.join(GRADIENT_FAULTS)}")
    activate(args.backend)
    from harness.studies.fuzz import fuzz, fuzz_gradients

    if args.gradients:
        return fuzz_gradients(args.backend, args.examples, args.seed, args.inject_fault)
    return fuzz(args.backend, args.examples, args.seed)


def _command_compare(args: argparse.Namespace) -> int:
    from harness.reports.compare_runs import compare_runs

    text, code = compare_runs(args.old, args.new)
    print(text)
    return code


def _command_between(args: argparse.Namespace) -> int:
    from harness.verdicts.between_versions import FILE_NAME, write_between_versions

    record = write_between_versions(args.release, args.nightly)
    counts = record["counts"]
    print(f"{args.release} -> {args.nightly}: {counts['fixed']} fixed, {counts['regression']} regressions, "
          f"{counts['changed']} changed behaviour, {counts['drift']} drift, {counts['still_present']} known divergences "
          f"still present, {counts['unchanged']} unchanged, {counts['removed']} removed (cases or backends of the first "
          f"folder the second lacks); wrote {args.release / FILE_NAME}")
    for entry in record["changes"]:
        print(f"  {entry['kind']}: {entry['case']} on {entry['backend']}: {entry['old_verdict']} -> {entry['new_verdict']}, "
              f"{entry['magnitude']} ({entry['detail']})", file=sys.stderr)
    for entry in record["only_old"]:
        print(f"  removed: {entry['case']} on {entry['backend']}: only in {args.release}", file=sys.stderr)
    for backend in record["removed_backends"]:
        print(f"  removed: every case on {backend}: only {args.release} has a {backend} record", file=sys.stderr)
    return EXIT_FAILED if counts["regression"] or counts["removed"] else EXIT_OK


def _command_growth(args: argparse.Namespace) -> int:
    from harness.execute.backends import activate

    backend = activate(args.backend, precision=args.precision)
    from harness.studies import growth

    record = growth.run_growth(backend, args.out, command=args.invocation)
    print(f"{growth.summary(record)}; wrote {growth.growth_path(args.out, backend.name)}")
    return growth.exit_code(record)


def _command_bench_kernels(args: argparse.Namespace) -> int:
    if args.repeats is not None and args.repeats < 1:
        return _fail(f"--repeats must be at least 1, not {args.repeats}")
    from harness.execute.backends import activate

    backend = activate(args.backend)
    from harness.studies import bench_kernels

    repeats = args.repeats if args.repeats is not None else (1 if args.quick else bench_kernels.DEFAULT_REPEATS)
    record = bench_kernels.run_bench_kernels(backend, args.out, repeats=repeats, quick=args.quick, command=args.invocation)
    print(f"{bench_kernels.summary(record)}; wrote {bench_kernels.bench_path(args.out, backend.name)} in {record['duration_s']:.0f} s")
    for problem in bench_kernels.errors(record):
        print(f"  could not measure {problem}", file=sys.stderr)
    return bench_kernels.exit_code(record)


def _command_bench_overhead(args: argparse.Namespace) -> int:
    if args.sample < 1:
        return _fail(f"--sample must be at least 1, not {args.sample}")
    if args.repeats is not None and args.repeats < 1:
        return _fail(f"--repeats must be at least 1, not {args.repeats}")
    from harness.studies import bench_overhead

    sample = bench_overhead.QUICK_SAMPLE if args.quick and args.sample == bench_overhead.DEFAULT_SAMPLE else args.sample
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else bench_overhead.DEFAULT_REPEATS)
    cases = _load_cases(None, args.cases)
    from harness.execute.backends import activate

    backend = activate(args.backend)
    record = bench_overhead.run_bench_overhead(cases, backend, args.out, args.seed, sample=sample, repeats=repeats, quick=args.quick,
                                               command=args.invocation, on_case_done=bench_overhead.print_case)
    for line in bench_overhead.summary_lines(record):
        print(line)
    for entry in record["summary"]["not_ran"]:
        print(f"  not compared: {entry['case']}: {entry['status']} {entry['bare_error'] or entry['parts_error'] or ''}".rstrip(), file=sys.stderr)
    print(f"wrote {args.out / (backend.name + '.bench_overhead.json')}")
    if not record["summary"]["cases_ran"]:
        return _fail("no sampled case ran in every API, so no ratio was measured")
    return EXIT_OK


def _command_bench_report(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        return _fail(f"{args.dir} is not a folder of benchmark records; run 'python -m harness bench-kernels' first")
    from harness.reports.bench_report import summary_lines, write_bench_report

    markdown = args.markdown if args.markdown is not None else args.results / "BENCH.md"
    report = write_bench_report(args.dir, args.results, markdown, command=args.invocation)
    for line in summary_lines(report):
        print(line)
    print(f"wrote {markdown} and {args.dir / 'bench.json'}")
    return EXIT_OK


def _command_gradients(args: argparse.Namespace) -> int:
    from harness.execute.gradients import GRADIENT_FAULTS
    from harness.studies.gradients import gradient_selection

    if args.inject_fault is not None and args.inject_fault not in GRADIENT_FAULTS:
        return _fail(f"unknown gradient fault {args.inject_fault!r}; accepted: {', '.join(GRADIENT_FAULTS)}")
    cases, pairs = gradient_selection(args.cases)
    if args.cases is not None:
        names = {case.name for case in cases}
        pairs = [pair for pair in pairs if pair["shared"] in names or pair["separate"] in names]
    from harness.execute.backends import activate

    backend = activate(args.backend, precision=args.precision)
    from harness.studies import gradients

    record = gradients.run_gradient_study(cases, pairs, backend, args.out, args.seed, command=args.invocation,
                                          fault=args.inject_fault)
    print(f"{gradients.summary(record)}; wrote {gradients.gradients_path(args.out, backend.name)} in {record['duration_s']:.0f} s")
    for result in record["cases"] if not record.get("fault") else []:
        if result["verdict"] in gradients.BAD:
            print(f"  {result['case']}: {result['verdict']}", file=sys.stderr)
            for problem in result["problems"]:
                print(f"    {problem}", file=sys.stderr)
            if result["error"]:
                print(f"    {result['error']['summary']}", file=sys.stderr)
    for pair in record["shared_pairs"]:
        if not pair["passed"]:
            print(f"  shared {pair['shared']} vs separate {pair['separate']}: the shared gradient is not the sum of the two "
                  f"instances' {pair['error']['summary'] if pair['error'] else ''}", file=sys.stderr)
    return gradients.exit_code(record)


def _command_training(args: argparse.Namespace) -> int:
    from harness.execute.backends import activate
    from harness.execute.gradients import GRADIENT_FAULTS, OPTIMIZER_FAULTS
    from harness.studies.training import DRIFT_FAULTS

    accepted = [name for name in (*GRADIENT_FAULTS, *OPTIMIZER_FAULTS, *DRIFT_FAULTS) if name != "recurrent_kernel_gradient_scaled"]
    if args.inject_fault is not None and args.inject_fault not in accepted:
        return _fail(f"unknown training fault {args.inject_fault!r}; accepted: {', '.join(accepted)}")
    backend = activate(args.backend, precision=args.precision)
    from harness.studies import training

    record = training.run_training_study(backend, args.out, args.seed, command=args.invocation, steps=args.steps,
                                         long_steps=args.long_steps, fault=args.inject_fault)
    print(f"{training.summary(record)}; wrote {training.training_path(args.out, backend.name)} in {record['duration_s']:.0f} s")
    for problem in training.problems(record):
        print(f"  {problem}", file=sys.stderr)
    return training.exit_code(record)


def _command_training_mode(args: argparse.Namespace) -> int:
    from harness.studies.training_mode import FAULTS, load_setup, select

    if args.inject_fault is not None and args.inject_fault not in FAULTS:
        return _fail(f"unknown training-mode fault {args.inject_fault!r}; accepted: {', '.join(FAULTS)}")
    setup = load_setup(args.case_file) if args.case_file is not None else load_setup()
    select(setup["cases"], args.cases)  # a pattern that selects nothing is bad input, before any backend starts
    from harness.execute.backends import activate

    backend = activate(args.backend, precision=args.precision)
    from harness.studies import training_mode

    record = training_mode.run_training_mode_study(backend, args.out, args.seed, command=args.invocation, pattern=args.cases,
                                                   fault=args.inject_fault, setup=setup)
    print(f"{training_mode.summary(record)}; wrote {training_mode.training_mode_path(args.out, backend.name)} in {record['duration_s']:.0f} s")
    for problem in training_mode.problems(record):
        print(f"  {problem}", file=sys.stderr)
    return training_mode.exit_code(record)


def _command_probe(args: argparse.Namespace) -> int:
    from harness.execute.backends import activate

    backend = activate(args.backend)
    from harness.studies import probes

    record = probes.run_probe_study(backend, args.out, command=args.invocation)
    print(f"{probes.summary(record)}; wrote {probes.probes_path(args.out, backend.name)}")
    for name, error in probes.errored_probes(record).items():
        print(f"  could not measure {name}: {error}", file=sys.stderr)
    return probes.exit_code(record)


def _command_claims(args: argparse.Namespace) -> int:
    from harness.studies.claim_study import ABSORBED_ERROR_FACTOR, CLAIMS_FILE, study_folder

    record = study_folder(args.dir, args.divergences, cases=args.cases)
    for claim in record["claims"]:
        absorbed = claim["largest_absorbed_error"]
        print(f"{claim['claim']}: {claim['cases']} cases, {claim['faults_tried']} faults, {claim['faults_absorbed']} absorbed"
              + (f", absorbs no fault larger than {absorbed:.3g} ({claim['ratio']:.3g}x the largest error it explains)"
                 if absorbed is not None and claim["ratio"] is not None else "")
              + ("" if claim["passed"] else " -- TOO LOOSE"))
        for reason in claim["reasons"]:
            print(f"  {claim['claim']}: {reason}", file=sys.stderr)
    loose = [claim["claim"] for claim in record["claims"] if not claim["passed"]]
    print(f"{len(record['claims'])} claims studied, {len(loose)} absorb a fault more than {ABSORBED_ERROR_FACTOR:g}x the error "
          f"they explain; wrote {args.dir / CLAIMS_FILE}")
    return EXIT_FAILED if loose else EXIT_OK


def _command_readme(args: argparse.Namespace) -> int:
    from harness.reports.readme import measured_block, replace_block, write_readme

    if args.check:
        if not args.readme.is_file():
            return _fail(f"{args.readme} is not a file")
        text = args.readme.read_text(encoding="utf-8")
        if replace_block(text, measured_block(args.results)) != text:
            print(f"{args.readme}: the measured block differs from the records in {args.results}; "
                  f"run 'python -m harness readme {args.readme} --results {args.results}'", file=sys.stderr)
            return EXIT_FAILED
        print(f"{args.readme}: the measured block matches the records in {args.results}")
        return EXIT_OK
    changed = write_readme(args.readme, args.results)
    print(f"{'wrote' if changed else 'unchanged:'} the measured block of {args.readme} from {args.results}")
    return EXIT_OK


# The harness commands 'batch' may run, in one process: the measuring commands of one backend.
BATCHABLE = ("run", "probe", "growth", "gradients", "training", "training-mode", "save", "load", "faults")


def _keras_api_of(parsed: argparse.Namespace) -> str:
    """The Keras a parsed command builds its models with (its --keras-api, else the process's choice)."""
    from harness.execute.keras_api import selected

    return getattr(parsed, "keras_api", None) or selected()


def _command_batch(args: argparse.Namespace) -> int:
    """Run several harness commands of one backend in this one process (Keras and the backend imported once,
    compiled functions and caches kept), in order, each as it would run alone: the same parser, the same exit
    code, the same records. Between commands Keras's global state is reset (``keras.backend.clear_session``,
    floatx, dtype policy), so a command never sees what the one before it built or set. Every command runs even
    after one fails; the exit code is the worst of them (2 over 1 over 0). ``--timings FILE`` writes each
    command's argv, exit code and wall time as JSON (written after each command, atomically)."""
    import time

    from harness.execute.backends import reset_keras_state
    from harness.records import store

    commands = [shlex.split(text) for text in args.commands]
    parser = build_parser()
    for argv in commands:  # all of them parse before anything runs: a typo in the last fails before the first measures
        if not argv or argv[0] not in BATCHABLE:
            return _fail(f"batch runs only {', '.join(BATCHABLE)}; got {' '.join(argv) or 'an empty command'!r}")
        parsed = parser.parse_args(argv)
        if getattr(parsed, "backend", None) != args.backend:
            return _fail(f"every batched command must name --backend {args.backend}; {' '.join(argv)!r} does not")
        # harness.execute.models binds the Keras it builds with when first imported: one Keras API per process
        if _keras_api_of(parsed) != _keras_api_of(parser.parse_args(commands[0])):
            return _fail(f"every batched command must build with the same Keras (--keras-api); {' '.join(argv)!r} does not")
    timings: list[dict[str, Any]] = []
    worst = EXIT_OK
    for argv in commands:
        started = time.perf_counter()
        reset_keras_state()
        code = main(argv)
        timings.append({"argv": ["python", "-m", "harness", *argv], "exit_code": code, "wall_s": round(time.perf_counter() - started, 2)})
        print(f"batch: {' '.join(argv)}: exit {code} in {timings[-1]['wall_s']:.0f} s", file=sys.stderr)
        worst = max(worst, code)  # 2 (could not run) outranks 1 (measured a failure)
        if args.timings is not None:
            store.write_json(args.timings, {"backend": args.backend, "commands": timings})
    return worst


def _command_check(args: argparse.Namespace) -> int:
    """``check MODEL.keras``: the model on each backend, every layer against the float64 reference and across the
    backends (harness.studies.check); exit 0 when all agree, 1 when a layer diverges, 2 on bad input."""
    from harness.studies.check import CheckProblem, check, write_json

    backends = [name.strip() for name in args.backends.split(",") if name.strip()] if args.backends is not None else None
    if backends == []:
        return _fail(f"--backends {args.backends!r} names no backend; accepted: {', '.join(BACKENDS)}, comma-separated")
    python: dict[str, str] = {}
    for entry in args.python:
        backend, equals, interpreter = entry.partition("=")
        if not equals or not backend.strip() or not interpreter.strip():
            return _fail(f"--python {entry!r}: expected BACKEND=INTERPRETER, e.g. jax=.venv-jax/bin/python")
        python[backend.strip()] = interpreter.strip()
    if args.json is not None and not args.json.parent.is_dir():
        return _fail(f"--json {args.json}: folder {args.json.parent} does not exist")
    try:
        result = check(args.model, args.input, backends, input_spec=args.input_spec, python=python, unsafe=args.unsafe,
                       imports=args.modules)
    except CheckProblem as error:
        return _fail(str(error))
    print(result.table())
    if args.json is not None:
        write_json(result, args.json)
    return result.exit_code


def _command_list(args: argparse.Namespace) -> int:
    cases = _load_cases(args.case_file, args.cases)
    width = max(len(case.name) for case in cases)
    for case in cases:
        print(f"{case.name:<{width}}  {case.dtype:<7}  {','.join(case.apis):<32}  {case.description}")
    return EXIT_OK


def _add_precision(command: argparse.ArgumentParser) -> None:
    """--precision for a command that measures at a chosen precision mode (harness.execute.backends.PRECISIONS)."""
    command.add_argument("--precision", choices=("auto", "default", "highest"), default="auto",
                         help="auto (the default): highest where the backend sees a GPU, default elsewhere; default: each "
                              "backend as users get it; highest: TF32 off everywhere (matters on a GPU only)")


def precision_line(backend: Any, asked: str) -> str:
    """The one line a measuring command prints on the precision it used, and why."""
    used = backend.settings.get("precision_mode")
    why = "asked for" if asked != "auto" else ("the default on a GPU: TF32 off" if used == "highest" else "the default without a GPU")
    return f"{backend.name}: precision {used} ({why}; device class {backend.device_class})"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness", description="Cross-backend numerical parity for Keras 3 recurrent layers.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run cases on one backend in this interpreter and record the results")
    run.add_argument("--backend", required=True, choices=BACKENDS)
    run.add_argument("--cases", metavar="GLOB", help="only the cases whose name matches this glob")
    run.add_argument("--case-file", type=Path, metavar="FILE.toml", help="read cases from this file instead of the built-ins")
    run.add_argument("--out", type=Path, default=Path("results"), metavar="DIR", help="where to write <backend>.json and .npz")
    run.add_argument("--seed", type=int, default=None, help="seed for inputs and weights (default: the published one)")
    run.add_argument("--inject-fault", metavar="NAME", help="patch a known bug into Keras to check the harness catches it")
    run.add_argument("--case-timeout", type=int, default=300, metavar="S", help="seconds before a case is recorded as timeout")
    run.add_argument("--resume", action="store_true", help="keep the cases already in DIR/<backend>.json and run the rest")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_precision(run)
    run.add_argument("--keras-api", choices=("keras", "tf_keras"), default=None,
                     help="build the models with Keras 3 (keras, the default) or Keras 2 (tf_keras, TensorFlow only; cases "
                     "Keras 2 cannot express are refused)")
    run.add_argument("--jobs", type=int, default=1, metavar="N", help="measure the cases in N processes at once (N shards, "
                     "merged into DIR as 'merge' does; default 1)")
    run.add_argument("--shard", metavar="K/N", help="run only the K-th of N deterministic, balanced shares of the selected cases "
                     "(merge the N folders with 'python -m harness merge')")

    report = commands.add_parser("report", help="merge the records in DIR into DIR/REPORT.md and DIR/WHY.md")
    report.add_argument("dir", type=Path, metavar="DIR")

    classify = commands.add_parser("classify", help="re-judge DIR's run records against the known divergences, and the backends against each other")
    classify.add_argument("dir", type=Path, metavar="DIR")

    probe = commands.add_parser("probe", help="measure the causes of Sequential/Functional differences (for WHY.md)")
    probe.add_argument("--backend", required=True, choices=BACKENDS)
    probe.add_argument("--out", type=Path, default=Path("results"), metavar="DIR")

    from harness.case.weights import DEFAULT_SEED

    save = commands.add_parser("save", help="save each case's Functional model as .keras (for 'load' on other backends)")
    save.add_argument("--backend", required=True, choices=BACKENDS)
    save.add_argument("--cases", metavar="GLOB", default=None)
    save.add_argument("--case-file", type=Path, metavar="FILE.toml")
    save.add_argument("--models", type=Path, default=Path("results/models"), metavar="DIR")
    save.add_argument("--seed", type=int, default=DEFAULT_SEED)

    load = commands.add_parser("load", help="load the models other backends saved, compare, write DIR/<backend>.serialization.json")
    load.add_argument("--backend", required=True, choices=BACKENDS)
    load.add_argument("--case-file", type=Path, metavar="FILE.toml")
    load.add_argument("--models", type=Path, default=Path("results/models"), metavar="DIR")
    load.add_argument("--out", type=Path, default=Path("results"), metavar="DIR")
    load.add_argument("--seed", type=int, default=DEFAULT_SEED)

    fault_study = commands.add_parser("faults", help="run the fault catalogue and the perturbation sweep; write DIR/<backend>.faults.json")
    fault_study.add_argument("--backend", required=True, choices=BACKENDS)
    _add_precision(fault_study)
    fault_study.add_argument("--out", type=Path, default=Path("results"), metavar="DIR")
    fault_study.add_argument("--seed", type=int, default=DEFAULT_SEED)
    fault_study.add_argument("--only", default=None, metavar="FAULTS",
                             help="comma-separated fault names (forward, gradient or optimizer) to run; default: every fault")
    fault_study.add_argument("--sweep", default=None, metavar="DTYPES",
                             help="comma-separated dtypes of the perturbation sweep to run, or 'none'; default: every dtype")

    fuzzing = commands.add_parser("fuzz", help="random configurations (hypothesis) against the reference; a failure is shrunk and printed as a case")
    fuzzing.add_argument("--backend", required=True, choices=BACKENDS)
    fuzzing.add_argument("--examples", type=int, default=50, metavar="N")
    fuzzing.add_argument("--seed", type=int, default=None, metavar="S")
    fuzzing.add_argument("--gradients", action="store_true", help="fuzz gradients against the NumPy backward pass; a disagreement "
                         "a float64 recomputation shows to be ill-conditioning is printed apart, only bugs exit 1")
    fuzzing.add_argument("--inject-fault", metavar="NAME", help="with --gradients: patch a wrong gradient into Keras to check it is caught")

    comparison = commands.add_parser("compare", help="list what regressed and improved between two results folders")
    comparison.add_argument("old", type=Path, metavar="OLD")
    comparison.add_argument("new", type=Path, metavar="NEW")

    between = commands.add_parser("between-versions", help="what changed from one Keras version's classified results folder "
                                  "to another's (fixed, regression, changed, drift); write RELEASE/between_versions.json")
    between.add_argument("release", type=Path, metavar="RELEASE", help="the pinned release's results folder (results)")
    between.add_argument("nightly", type=Path, metavar="NIGHTLY", help="the other version's results folder (results/keras-nightly)")

    growth = commands.add_parser("growth", help="error against the reference for 10 to 2000 steps and 4 to 64 units")
    growth.add_argument("--backend", required=True, choices=BACKENDS)
    _add_precision(growth)
    growth.add_argument("--out", type=Path, default=Path("results"), metavar="DIR")

    merging = commands.add_parser("merge", help="combine results folders (shards, other machines) into the new folder OUT; "
                                  "re-judge the merged records and the backends against each other")
    merging.add_argument("out", type=Path, metavar="OUT")
    merging.add_argument("dirs", type=Path, nargs="+", metavar="DIR")

    gradient_study = commands.add_parser("gradients", help="each gradient case's gradients from the backend's own autodiff "
                                         "against the NumPy backward pass; write DIR/<backend>.gradients.json")
    gradient_study.add_argument("--backend", required=True, choices=BACKENDS)
    _add_precision(gradient_study)
    gradient_study.add_argument("--out", type=Path, default=Path("results"), metavar="DIR")
    gradient_study.add_argument("--cases", metavar="GLOB", help="only the gradient cases whose name matches this glob")
    gradient_study.add_argument("--seed", type=int, default=DEFAULT_SEED)
    gradient_study.add_argument("--inject-fault", metavar="NAME", help="patch a wrong gradient into Keras to check it is caught "
                                "(recurrent_term_dropped, recurrent_kernel_gradient_scaled)")

    training_study = commands.add_parser("training", help="train_on_batch and fit with SGD and Adam against the NumPy "
                                         "training loop; write DIR/<backend>.training.json")
    training_study.add_argument("--backend", required=True, choices=BACKENDS)
    _add_precision(training_study)
    training_study.add_argument("--out", type=Path, default=Path("results"), metavar="DIR")
    training_study.add_argument("--seed", type=int, default=DEFAULT_SEED)
    training_study.add_argument("--steps", type=int, default=5, metavar="N", help="optimizer steps compared step by step")
    training_study.add_argument("--long-steps", type=int, default=50, metavar="N", help="steps of the longer train_on_batch run")
    training_study.add_argument("--inject-fault", metavar="NAME", help="patch a wrong gradient or optimizer step into Keras "
                                "(recurrent_term_dropped, adam_without_bias_correction, optimizer_step_in_float16, "
                                "loss_scale_not_undone)")

    mode_study = commands.add_parser("training-mode", help="dropout and recurrent_dropout in training mode: the masks Keras draws, "
                                     "and its outputs and losses with them and with fixed masks against the NumPy reference; "
                                     "write DIR/<backend>.training_mode.json")
    mode_study.add_argument("--backend", required=True, choices=BACKENDS)
    _add_precision(mode_study)
    mode_study.add_argument("--out", type=Path, default=Path("results"), metavar="DIR")
    mode_study.add_argument("--seed", type=int, default=DEFAULT_SEED)
    mode_study.add_argument("--cases", metavar="GLOB", help="comma-separated name patterns of training_mode_cases.toml")
    mode_study.add_argument("--case-file", type=Path, metavar="FILE.toml", help="another training-mode case file")
    mode_study.add_argument("--inject-fault", metavar="NAME", help="patch a wrong dropout mask into Keras (dropout_unscaled); "
                            "exit 0 when the study catches it")

    claim_study = commands.add_parser("claims", help="replay each case a known divergence explains with faults injected (in NumPy, "
                                      "no Keras) and check the claim absorbs none; write DIR/claims.json")
    claim_study.add_argument("dir", type=Path, metavar="DIR")
    claim_study.add_argument("--cases", metavar="GLOB", help="only the cases whose name matches this glob")
    claim_study.add_argument("--divergences", type=Path, default=DIVERGENCES_FILE, metavar="FILE.toml",
                             help="the known-divergence claims to study (default: harness/case/divergences.toml)")

    readme = commands.add_parser("readme", help="rewrite the measured numbers between <!-- measured:begin --> and "
                                 "<!-- measured:end --> in README from the records of the results folder")
    readme.add_argument("readme", type=Path, metavar="README.md")
    readme.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                        help="the results folder (and its keras-nightly, tf-keras, gpu/<precision> subfolders)")
    readme.add_argument("--check", action="store_true", help="write nothing; exit 1 when the block differs from the records")

    bench = commands.add_parser("bench-kernels", help="time the float64 reference's LSTM forward and backward against the "
                                "backend's float32 predict, call and gradient, and how cost grows with batch, time and units; "
                                "write DIR/<backend>.bench_kernels.json")
    bench.add_argument("--backend", required=True, choices=BACKENDS)
    bench.add_argument("--out", type=Path, default=Path("results/bench"), metavar="DIR")
    bench.add_argument("--repeats", type=int, default=None, metavar="N", help="timed calls per measurement after a warm-up "
                       "(default 5; 1 with --quick)")
    bench.add_argument("--quick", action="store_true", help="tiny shapes (checks the code paths; the timings mean nothing)")

    overhead = commands.add_parser("bench-overhead", help="time each sampled case as the run measures, judges and records it "
                                   "against the bare Keras calls it makes, split into parts; Keras start-up; the record's rewrite "
                                   "cost by size; write DIR/<backend>.bench_overhead.json")
    overhead.add_argument("--backend", required=True, choices=BACKENDS)
    overhead.add_argument("--out", type=Path, default=Path("results/bench"), metavar="DIR")
    overhead.add_argument("--cases", metavar="GLOB", help="sample from the cases whose name matches this glob (default: every case)")
    overhead.add_argument("--sample", type=int, default=24, metavar="N", help="cases sampled (default 24; 2 with --quick)")
    overhead.add_argument("--repeats", type=int, default=None, metavar="N", help="repetitions per case (default 3; 1 with --quick)")
    overhead.add_argument("--seed", type=int, default=DEFAULT_SEED)
    overhead.add_argument("--quick", action="store_true", help="2 cases, 1 repetition, small records (checks the code paths; "
                          "the timings mean little)")

    bench_report = commands.add_parser("bench-report", help="the benchmark report: the targets judged, kernels, overhead, nox "
                                       "sessions, growth and the matrix across N machines; write BENCH.md and DIR/bench.json")
    bench_report.add_argument("dir", type=Path, nargs="?", default=Path("results/bench"), metavar="DIR",
                              help="the benchmark records (default results/bench)")
    bench_report.add_argument("--results", type=Path, default=Path("results"), metavar="RESULTS",
                              help="the run records whose per-case durations give growth and the N-machine prediction")
    bench_report.add_argument("--markdown", type=Path, default=None, metavar="BENCH.md", help="default RESULTS/BENCH.md")

    batching = commands.add_parser("batch", help="run several harness commands of one backend in this one process, in "
                                   "order; exit with the worst exit code")
    batching.add_argument("--backend", required=True, choices=BACKENDS, help="the backend every command names")
    batching.add_argument("--timings", type=Path, metavar="FILE.json", help="write each command's wall time and exit code here")
    batching.add_argument("commands", nargs="+", metavar="COMMAND",
                          help=f"one quoted harness command each, e.g. 'run --backend jax --out results'; one of {', '.join(BATCHABLE)}")

    checking = commands.add_parser("check", help="run one saved .keras model on each backend, each in its own interpreter; "
                                   "every layer against the float64 reference and across the backends")
    checking.add_argument("model", type=Path, metavar="MODEL.keras")
    source = checking.add_mutually_exclusive_group()
    source.add_argument("--input", type=Path, metavar="X.npy|X.npz",
                        help="the model's input: a .npy for one input, a .npz keyed by the input names for several")
    source.add_argument("--input-spec", metavar="seed=N,batch=B[,time=T]",
                        help="seeded random inputs of the model's shapes and dtypes (default seed=0,batch=2; free axes "
                             "after the batch get time, default 5; ids within an Embedding's vocabulary)")
    checking.add_argument("--backends", metavar="tensorflow,jax,torch",
                          help="comma-separated; default: every backend with an interpreter")
    checking.add_argument("--python", action="append", default=[], metavar="BACKEND=INTERPRETER",
                          help="the interpreter that runs BACKEND (repeatable); default: .nox/tests-backend-BACKEND, "
                               "else this one when it has BACKEND")
    checking.add_argument("--unsafe", action="store_true", help="load with Keras's safe mode off (Lambda layers' code)")
    checking.add_argument("--import", dest="modules", action="append", default=[], metavar="MODULE",
                          help="a module that defines the model's custom classes (registered with "
                               "@keras.saving.register_keras_serializable), imported before loading (repeatable)")
    checking.add_argument("--json", type=Path, metavar="OUT.json", help="write the result here (atomically)")

    listing = commands.add_parser("list", help="list the cases")
    listing.add_argument("--cases", metavar="GLOB")
    listing.add_argument("--case-file", type=Path, metavar="FILE.toml")
    return parser


def backend_log_folder(args: argparse.Namespace) -> Path | None:
    """Where a command's backend log goes (beside what it writes); None for commands that run no backend."""
    if getattr(args, "backend", None) is None or args.command == "batch":  # batch: each command logs where it writes
        return None
    if args.command == "save":
        return args.models
    return getattr(args, "out", None) or Path("results")


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    args.invocation = command_line(argv)
    folder = backend_log_folder(args)
    if folder is None:
        return _dispatch_command(args, argv)
    with console.backend_log(console.log_path(folder, args.backend), args.invocation):
        return _dispatch_command(args, argv)


def _dispatch_command(args: argparse.Namespace, argv: list[str]) -> int:
    if args.command == "run":
        if args.seed is None:
            from harness.case.weights import DEFAULT_SEED

            args.seed = DEFAULT_SEED
        return _command_run(args, argv)
    if args.command == "save" and args.cases is None:
        args.cases = SERIALIZATION_CASES
    commands = {
        "report": _command_report, "probe": _command_probe, "save": _command_save, "load": _command_load,
        "faults": _command_faults, "fuzz": _command_fuzz, "compare": _command_compare, "growth": _command_growth,
        "list": _command_list, "classify": _command_classify, "merge": _command_merge,
        "between-versions": _command_between, "gradients": _command_gradients, "training": _command_training,
        "training-mode": _command_training_mode, "claims": _command_claims, "readme": _command_readme,
        "bench-kernels": _command_bench_kernels, "bench-overhead": _command_bench_overhead,
        "bench-report": _command_bench_report, "batch": _command_batch, "check": _command_check,
    }
    return commands[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args, argv)
    except (CaseError, DivergenceFileError, BackendUnavailable, RecordError, FaultNotApplicable) as error:
        # Bad case or divergence files, a missing backend, unreadable records, a fault this Keras cannot take:
        # one line, exit 2, nothing half-written.
        return _fail(str(error))
    except Exception:  # a crash of the harness itself (an import that fails, a bug): exit 2, never 1, which
        # means "measured, and found failures", so that no caller mistakes a crash for a finding
        traceback.print_exc()
        return _fail("the harness crashed (traceback above); nothing more was measured")
