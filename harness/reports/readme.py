"""The measured numbers README.md states, generated from the records (issue 15: text and measurement cannot drift).

``measured_block(results)`` builds a Markdown block from the report model (``build_report``) of ``results/`` and,
when present, ``results/keras-nightly``, ``results/tf-keras`` and ``results/gpu/<precision>``: per run the exact
versions, device, case counts by verdict and wall time; the cases through Keras's fused path on CPU and the other
layer forms; the backend-against-backend measurements (outputs measured, largest difference per pair); gradients,
training, drift and training mode; the fault study; the claim study; and the between-versions counts.
``write_readme(readme, results)`` rewrites the text between ``<!-- measured:begin -->`` and
``<!-- measured:end -->`` in README.md atomically (``python -m harness readme README.md --results results``).

Reads records only (through the report model); computes no verdict of its own.
"""

from __future__ import annotations

from pathlib import Path

from harness.records.header import SCHEMAS
from harness.records.store import RecordError, read_json_file, write_text
from harness.reports.between_versions import BetweenVersions
from harness.reports.model import (
    VERDICTS, Judged, Report, build_report, format_number, format_ratio, format_seconds, sort_key,
)

BEGIN = "<!-- measured:begin -->"
END = "<!-- measured:end -->"
# The folders measured besides results/ itself, in the order the block shows them (each only when it holds run records).
SUBFOLDERS = ("keras-nightly", "tf-keras", "gpu/default", "gpu/highest")
# The versions of each run record's header the block names, in this order (a backend's own package comes second).
VERSION_KEYS = ("keras", "keras_api", "tensorflow", "jax", "torch", "numpy", "python")
LAYER_FORMS = ("rnn_cell", "stacked_cells")


class ReadmeError(RecordError):
    """README.md cannot take the generated block (markers missing, repeated or out of order): one line, exit 2."""


def measured_folders(results: Path) -> list[tuple[str, Report]]:
    """(label, report) of ``results`` and each of its measured subfolders that holds run records.

    The label is the folder relative to the parent of ``results`` (``results``, ``results/keras-nightly``), so the
    block does not depend on where the results folder lies."""
    results = Path(results)
    if not results.is_dir():
        raise RecordError(f"{results} is not a folder of results")
    folders = [(results.name, build_report(results))]
    for sub in SUBFOLDERS:
        folder = results / sub
        if _holds_run_records(folder):
            folders.append((f"{results.name}/{sub}", build_report(folder)))
    return folders


def _holds_run_records(folder: Path) -> bool:
    """Whether ``folder`` holds a run record (``<backend>.json`` of the run schema); a corrupt one still fails in
    build_report, with its one-line error."""
    run_schema = SCHEMAS["run"][0]
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if "." in path.stem:
            continue
        try:
            if read_json_file(path).get("schema") == run_schema:
                return True
        except RecordError:
            return True  # unreadable: let build_report say why
    return False


def _counts(counts: dict[str, int], order: tuple[str, ...] = VERDICTS) -> str:
    """'393 pass, 88 known, 2 refused': nonzero counts in the verdict order, then any other kind by name."""
    names = [name for name in order if counts.get(name)] + sorted(name for name in counts if name not in order and counts[name])
    return ", ".join(f"{counts[name]} {name}" for name in names) or "none"


def _tally(values: list[str]) -> dict[str, int]:
    tally: dict[str, int] = {}
    for value in values:
        tally[value] = tally.get(value, 0) + 1
    return tally


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{key} {versions[key]}" for key in VERSION_KEYS if versions.get(key))


def _largest_float32(report: Report, backend: str) -> float | None:
    """The largest absolute error against the reference of a passing float32 case (None: no such case)."""
    errors = [result.max_abs_error for result in report.results[backend].values()
              if result.dtype == "float32" and result.verdict == "pass" and result.max_abs_error is not None]
    return max(errors, key=sort_key) if errors else None


def _runs(folders: list[tuple[str, Report]]) -> list[str]:
    lines = ["| Folder | Backend | Device | Versions | Cases | Verdicts | Largest float32 error of a passing case | Wall time |",
             "|---|---|---|---|---|---|---|---|"]
    for label, report in folders:
        environments = {env.backend: env for env in report.environments if env.kind == "run"}
        for summary in report.summaries:
            env = environments[summary.backend]
            device = f"{summary.device_class} ({env.precision_mode})"
            fault = f"; fault {summary.fault} injected" if summary.fault else ""
            lines.append(f"| {label} | {summary.backend} | {device} | {_versions(env.versions)} | {summary.cases} | "
                         f"{_counts(summary.counts)}{fault} | {format_number(_largest_float32(report, summary.backend))} | "
                         f"{format_seconds(summary.wall_time_s)} |")
    flagged = [f"- {label}: {flag}" for label, report in folders for flag in report.record_flags]
    return lines + [""] + (flagged or ["- no record flagged by the integrity checks (unfinished, mixed commits, contradicted statuses)"])


def _forms(folders: list[tuple[str, Report]]) -> list[str]:
    lines = ["| Folder | Backend | Fused path on CPU (`fused_on_cpu` cases) | Their verdicts | Reached the stand-in kernel | "
             "Ran it to completion | `rnn_cell` cases | `stacked_cells` cases |", "|---|---|---|---|---|---|---|---|"]
    for label, report in folders:
        fused = {entry.backend: entry for entry in report.fused_on_cpu}
        for backend in report.backends:
            forms = _tally([str(result.config.get("layer_form", "layer")) for result in report.results[backend].values()])
            entry = fused.get(backend)
            cells = ("0", "none", "0", "0") if entry is None else (
                str(entry.cases), _counts(dict(entry.verdicts)), str(entry.reached_kernel), str(entry.ran_fused))
            lines.append(f"| {label} | {backend} | " + " | ".join(cells) + " | "
                         + " | ".join(str(forms.get(form, 0)) for form in LAYER_FORMS) + " |")
    return lines


def _cross(folders: list[tuple[str, Report]]) -> list[str]:
    lines = ["| Folder | Backends | Cases measured | Outputs measured | Both pass | Largest difference | "
             "In units of the summed tolerances | Where (verdicts) |", "|---|---|---|---|---|---|---|---|"]
    notes = []
    for label, report in folders:
        cross = report.cross
        if not cross.ran:
            notes.append(f"{label}: no cross_backend.json")
            continue
        for pair in cross.pairs:
            outputs = sum(row.outputs for row in cross.rows if row.backends == pair.backends)
            largest = pair.largest
            where = "n/a" if largest is None else \
                f"{largest.case}/{largest.worst.output} ({largest.verdicts[0]}, {largest.verdicts[1]})"
            difference = "n/a" if largest is None else format_number(largest.worst.max_abs_diff)
            ratio = "n/a" if largest is None else format_ratio(largest.worst.judged)
            lines.append(f"| {label} | {' vs '.join(pair.backends)} | {pair.compared} | {outputs} | {pair.both_pass} | "
                         f"{difference} | {ratio} | {where} |")
        notes.append(f"{label}: {len(cross.skipped)} case pairs not compared (no numbers on a side), "
                     f"{len(cross.never_compared)} cases compared on no pair, {len(cross.missing)} raw outputs missing")
    return lines + [""] + [f"- {note}" for note in notes]


def _gradients(folders: list[tuple[str, Report]]) -> list[str]:
    lines = ["| Folder | Backend | Gradient cases | Training runs | Long runs (drift) | Worst float32 drift / bound | "
             "Training mode |", "|---|---|---|---|---|---|---|"]
    notes = []
    for label, report in folders:
        gradients, mode = report.gradients, report.training_mode
        if gradients is None and mode is None:
            continue
        backends = sorted(set(gradients.backends if gradients else ()) | set(mode.backends if mode else ()))
        for backend in backends:
            cells = ["not run"] * 5
            if gradients is not None:
                cells[0] = _counts(_tally([row.verdict for row in gradients.rows if row.backend == backend]))
                cells[1] = _counts(_tally([run.status for run in gradients.training if run.backend == backend]))
                drift = [line for line in gradients.drift if line.backend == backend]
                judged = ["known" if line.known else "not judged" if line.passed is None else "pass" if line.passed else "fail"
                          for line in drift]
                cells[2] = _counts(_tally(judged), ("pass", "known", "fail", "not judged"))
                ratios = [line.worst_ratio for line in drift if line.policy == "float32" and line.worst_ratio is not None]
                cells[3] = format_ratio(Judged(max(ratios), None)) if ratios else "n/a"
            if mode is not None:
                cells[4] = _counts(_tally([row.verdict for row in mode.rows if row.backend == backend]))
            lines.append(f"| {label} | {backend} | " + " | ".join(cells) + " |")
        if gradients is not None and gradients.cross_compared is not None:
            largest = "; ".join(f"{pair} {format_number(row.get('max_abs_diff'))}" for pair, row in gradients.cross_largest)
            notes.append(f"{label}: {gradients.cross_compared} gradient outputs measured between backends; "
                         f"largest difference {largest or 'n/a'}; {len(gradients.cross_missing)} missing")
        for row in (gradients.rows if gradients is not None else ()):
            if row.verdict not in ("pass", "known"):
                notes.append(f"{label}: gradient {row.verdict} on {row.backend}: {row.case}, off by "
                             f"{format_number(row.judged.abs_error)} ({row.where}, ratio {format_ratio(row.judged)})")
        if gradients is not None and gradients.faults:
            notes.append(f"{label}: records made with a fault injected, left out: "
                         + ", ".join(f"{backend} ({fault})" for backend, fault in gradients.faults))
    return lines + [""] + [f"- {note}" for note in notes]


def _faults(folders: list[tuple[str, Report]]) -> list[str]:
    lines = ["| Folder | Backend | Where | Faults detected | Errors | False alarms | Missed |", "|---|---|---|---|---|---|---|"]
    for label, report in folders:
        if report.faults is None:
            continue
        for entry in report.faults.detection:
            lines.append(f"| {label} | {entry.backend} | {entry.precision} | {entry.detected} of {entry.total} | {entry.errors} | "
                         f"{len(entry.false_alarms)} | {', '.join(entry.missed) or 'none'} |")
    return lines


def _claims(folders: list[tuple[str, Report]]) -> list[str]:
    lines = []
    for label, report in folders:
        study = report.claim_study
        if study is None:
            lines.append(f"- {label}: not run (no claims.json)")
            continue
        loose = [row.claim for row in study.rows if not row.passed]
        lines.append(f"- {label}: {len(study.rows)} claims studied, {len(loose)} too loose (absorb a fault more than "
                     f"{study.factor:g}x the error they explain)" + (f": {', '.join(loose)}" if loose else ""))
    return lines


def _between(folders: list[tuple[str, Report]]) -> list[str]:
    views: list[BetweenVersions] = []
    for _, report in folders:
        for view in (report.between_versions, *report.other_between_versions):
            if view is not None and all(view.keras_line() != seen.keras_line() for seen in views):
                views.append(view)
    lines = ["| Compared | Fixed | Regressions | Changed | Drift | Still present | Unchanged | Removed |",
             "|---|---|---|---|---|---|---|---|"]
    for view in views:
        counts = view.counts
        removed = counts.get("removed", len(view.only_old))
        lines.append(f"| {view.keras_line()} | {counts.get('fixed', 0)} | {counts.get('regression', 0)} | "
                     f"{counts.get('changed', 0)} | {counts.get('drift', 0)} | {counts.get('still_present', 0)} | "
                     f"{counts.get('unchanged', 0)} | {removed} |")
    return lines


def _time(results: Path) -> list[str]:
    """The main job's wall time and each session's (results/bench/main_job.json and sessions/, written by nox)."""
    from harness.reports.bench_sessions import read_main_job, read_sessions

    folder = Path(results) / "bench"
    main_job = read_main_job(folder)
    if main_job is None:
        return ["- not measured (no bench/main_job.json)"]
    origin = "from a clean clone, installs included" if main_job.clean_clone else "with virtualenvs already there"
    lines = [f"The main job (`{main_job.command}`) took {main_job.wall_s / 60:.1f} min on {main_job.cpu_count} CPUs, "
             f"{main_job.jobs} sessions at once, {origin} (commit {main_job.commit[:7]}).", "",
             "| Session | Wall time | CPU time | Peak memory | Status |", "|---|---|---|---|---|"]
    for session in read_sessions(folder):
        if session.slug in main_job.sessions:
            lines.append(f"| {session.session} | {session.wall_s / 60:.1f} min | {session.cpu_s / 60:.1f} min | "
                         f"{session.peak_rss_mib / 1024:.1f} GiB | {session.status} |")
    return lines


def measured_block(results: Path) -> str:
    """The Markdown that goes between the markers (without them), built from the records of ``results``."""
    folders = measured_folders(results)
    sections = [
        ["<!-- generated from the records by `python -m harness readme README.md --results results` "
         "(nox -s report); do not edit by hand: tests/test_readme_numbers.py compares it with the records -->"],
        ["**Runs** (each run record's header: device class and precision mode, exact versions, wall time):", ""] + _runs(folders),
        ["**Kernel paths and layer forms** (per backend: the `kernel = \"fused_on_cpu\"` cases, Keras's fused path "
         "through the backend's CPU stand-in kernel; the cases written as `RNN(LSTMCell)` or `StackedRNNCells`):", ""]
        + _forms(folders),
        ["**Backend against backend** (`cross_backend.json`: measurements, every case both backends produced numbers "
         "for; the largest absolute difference per pair):", ""] + _cross(folders),
        ["**Gradients, training and training mode** (`.gradients.json`, `.training.json`, `.training_mode.json`; "
         "drift: the 50-step long runs per optimizer and dtype policy, the float32 ones as a fraction of their bound):", ""]
        + _gradients(folders),
        ["**Fault study** (`.faults.json`: faults injected into Keras, detected when the verdict after the claims fails):",
         ""] + _faults(folders),
        ["**Claim study** (`claims.json`: each known-divergence claim replayed with faults injected):", ""] + _claims(folders),
        ["**Between Keras versions** (`between_versions.json`):", ""] + _between(folders),
        ["**Time** (`bench/main_job.json` and `bench/sessions/`, written by the main job's sessions; more in "
         "`results/BENCH.md`):", ""] + _time(results),
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def replace_block(text: str, block: str) -> str:
    """``text`` with everything between the markers replaced by ``block``; ReadmeError when the markers are not
    there exactly once each, begin before end."""
    begins, ends = text.count(BEGIN), text.count(END)
    if begins != 1 or ends != 1:
        raise ReadmeError(f"README needs exactly one {BEGIN} and one {END} marker (found {begins} and {ends})")
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    if stop < start:
        raise ReadmeError(f"README's {END} marker comes before its {BEGIN} marker")
    return text[:start] + "\n" + block + text[stop:]


def current_block(text: str) -> str:
    """What README text holds between its markers now (ReadmeError when they are missing)."""
    replace_block(text, "")  # checks the markers
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].removeprefix("\n")


def write_readme(readme: Path, results: Path) -> bool:
    """Rewrite the measured block of ``readme`` from ``results`` (atomically); True when the text changed."""
    readme = Path(readme)
    if not readme.is_file():
        raise ReadmeError(f"{readme} is not a file")
    text = readme.read_text(encoding="utf-8")
    updated = replace_block(text, measured_block(results))
    if updated == text:
        return False
    write_text(readme, updated)
    return True
