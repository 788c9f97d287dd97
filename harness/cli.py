"""Command line: ``python -m harness {run,report,list}`` (also the ``keras-parity`` console script).

Exit codes: 0 every case passed (or the command succeeded); 1 a case failed or errored;
2 bad usage, bad input files, or a backend that is not installed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from harness.execute.backends import BACKENDS, BackendUnavailable
from harness.case.schema import CaseError, builtin_cases, load_case_file, select_cases
from harness.records.store import RecordError

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
    cases = _load_cases(args.case_file, args.cases)
    backend = activate(args.backend)

    from harness.studies.parity import RunOptions, print_progress, run_cases

    options = RunOptions(
        out_dir=args.out, seed=args.seed, fault=args.inject_fault,
        command="python -m harness " + " ".join(shlex.quote(part) for part in argv),
        case_timeout_s=args.case_timeout, resume=args.resume,
    )
    show_progress = len(cases) > PROGRESS_THRESHOLD and not args.quiet
    try:
        record = run_cases(cases, backend, options, on_case_done=print_progress if show_progress else None)
    except RecordError as error:
        return _fail(f"cannot resume: {error}")
    statuses = [case["status"] for case in record["cases"]]
    for case in record["cases"]:
        if case["status"] in ("fail", "error", "timeout"):
            print(f"{args.backend}: {case['case']}: {case['status']}", file=sys.stderr)
            for api in case["apis"].values():
                for item in api["items"].values():
                    if not item["passed"]:
                        print(f"  {item['message']}", file=sys.stderr)
            if case["error"]:
                print(f"  {case['error']}", file=sys.stderr)
    passed, known, refused = statuses.count("pass"), statuses.count("known"), statuses.count("refused")
    print(
        f"{args.backend} on {backend.device}: {passed} of {len(statuses)} cases passed, {known} known divergences, "
        f"{refused} refused by design; wrote {args.out / (args.backend + '.json')} in {record.get('wall_time_s', 0):.0f} s"
    )
    return EXIT_OK if passed + known + refused == len(statuses) else EXIT_FAILED


def _command_report(args: argparse.Namespace) -> int:
    from harness.reports.markdown import write_report

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


def _command_load(args: argparse.Namespace) -> int:
    from harness.execute.backends import activate

    cases = _load_cases(args.case_file, None)
    backend = activate(args.backend)
    from harness.studies.serialization import load_models

    record = load_models(cases, backend, args.models, args.out, args.seed)
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
    backend = activate(args.backend)
    from harness.studies.fault_study import run_fault_study

    record = run_fault_study(cases, backend, args.out, args.seed)
    detected = [name for name, entry in record["faults"].items() if entry["detected"]]
    false_alarms = [name for name, entry in record["clean"].items() if entry["status"] not in ("pass", "known")]
    print(
        f"{backend.name}: {len(detected)} of {len(record['faults'])} faults detected, "
        f"{len(false_alarms)} false alarms on the unmodified backend; wrote {args.out / (backend.name + '.faults.json')}"
    )
    for name, entry in record["faults"].items():
        if not entry["detected"]:
            print(f"  not detected: {name}: {entry['description']}", file=sys.stderr)
    return EXIT_OK if len(detected) == len(record["faults"]) and not false_alarms else EXIT_FAILED


def _command_fuzz(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("hypothesis") is None:
        return _fail("fuzz needs hypothesis; install it with: pip install 'keras-parity[test]'")
    from harness.execute.backends import activate

    activate(args.backend)
    from harness.studies.fuzz import fuzz

    return fuzz(args.backend, args.examples, args.seed)


def _command_compare(args: argparse.Namespace) -> int:
    from harness.reports.compare_runs import compare_runs

    text, code = compare_runs(args.old, args.new)
    print(text)
    return code


def _command_growth(args: argparse.Namespace) -> int:
    from harness.execute.backends import activate

    backend = activate(args.backend)
    from harness.studies.growth import run_growth

    record = run_growth(backend, args.out)
    print(f"{backend.name}: {len(record['points'])} sequence-length points; wrote {args.out / (backend.name + '.growth.json')}")
    return EXIT_OK


def _command_probe(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from harness.records import store as records
    from harness.execute.backends import activate

    backend = activate(args.backend)
    from harness.studies.probes import run_probes
    from harness.reports.why import PROBES_SCHEMA

    record = {
        "schema": PROBES_SCHEMA, "schema_version": 1, "backend": backend.name, "device": backend.device,
        "versions": backend.versions, "settings": backend.settings,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "probes": run_probes(),
    }
    path = args.out / f"{backend.name}.probes.json"
    records.write_json(path, record)
    errors = [name for name, result in record["probes"].items() if result.get("error")]
    print(f"{backend.name}: {len(record['probes'])} probes, {len(errors)} errors; wrote {path}")
    return EXIT_OK


def _command_list(args: argparse.Namespace) -> int:
    cases = _load_cases(args.case_file, args.cases)
    width = max(len(case.name) for case in cases)
    for case in cases:
        print(f"{case.name:<{width}}  {case.dtype:<7}  {','.join(case.apis):<32}  {case.description}")
    return EXIT_OK


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

    report = commands.add_parser("report", help="merge the records in DIR into DIR/REPORT.md and DIR/WHY.md")
    report.add_argument("dir", type=Path, metavar="DIR")

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
    fault_study.add_argument("--out", type=Path, default=Path("results"), metavar="DIR")
    fault_study.add_argument("--seed", type=int, default=DEFAULT_SEED)

    fuzzing = commands.add_parser("fuzz", help="random configurations (hypothesis) against the reference; a failure is shrunk and printed as a case")
    fuzzing.add_argument("--backend", required=True, choices=BACKENDS)
    fuzzing.add_argument("--examples", type=int, default=50, metavar="N")
    fuzzing.add_argument("--seed", type=int, default=None, metavar="S")

    comparison = commands.add_parser("compare", help="list what regressed and improved between two results folders")
    comparison.add_argument("old", type=Path, metavar="OLD")
    comparison.add_argument("new", type=Path, metavar="NEW")

    growth = commands.add_parser("growth", help="error against the reference for 10 to 2000 steps and 4 to 64 units")
    growth.add_argument("--backend", required=True, choices=BACKENDS)
    growth.add_argument("--out", type=Path, default=Path("results"), metavar="DIR")

    listing = commands.add_parser("list", help="list the cases")
    listing.add_argument("--cases", metavar="GLOB")
    listing.add_argument("--case-file", type=Path, metavar="FILE.toml")
    return parser


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
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
        "list": _command_list,
    }
    return commands[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args, argv)
    except (CaseError, BackendUnavailable, RecordError) as error:
        # Bad case files, a missing backend, unreadable records: one line, exit 2, nothing half-written.
        return _fail(str(error))
