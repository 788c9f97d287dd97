"""Compare two results folders (two Keras versions, or last month's run and today's): what got worse, what got better.

Both folders are read into the report model (harness.reports.model), so a case's status is its
verdict (pass, known, refused, fail, error, timeout, invalid) and its error is judged by its ratio to
the tolerance. Cases are matched by (backend, case name). A regression is what ``harness between-versions``
calls one (``harness.verdicts.between_versions.regression_reasons``, the one rule for both): a verdict
further down pass < known < refused < fail = error = timeout = invalid, known under another claim, an
error larger by more than the case's tolerance, a lost output or a narrower output dtype, unless the new
verdict is known by ``change = "definition"`` claims only. A case that still passes but whose largest
absolute error against the float64 reference grew by more than ``DRIFT_FACTOR`` is a regression too
("drift"). An improvement is a case that failed, errored, timed out, was invalid or a known divergence
and now passes. A case (or a whole backend) of the old run that the new one lacks is listed and fails the
comparison like a regression. Reads records only; never runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.records import store
from harness.reports.model import CaseResult, Environment, Judged, Report, build_report, format_number, format_ratio
from harness.verdicts.between_versions import MeasuredOutput, by_definition, regression_reasons
from harness.verdicts.classify import verdicts_path

DRIFT_FACTOR = 10.0
IMPROVEMENT_FROM = ("fail", "error", "timeout", "invalid", "known")
VERSION_KEYS = ("keras", "numpy")

Key = tuple[str, str]  # (backend, case name)


@dataclass(frozen=True)
class Change:
    """One case whose verdict or error changed between the two runs."""

    backend: str
    case: str
    old_status: str
    new_status: str
    old: Judged
    new: Judged
    old_error: float | None  # largest absolute error over the case's outputs
    new_error: float | None
    detail: str

    def line(self) -> str:
        """A Markdown list item for this change."""
        numbers = (f"ratio {format_ratio(self.old)} -> {format_ratio(self.new)}, "
                   f"max abs error {format_number(self.old_error)} -> {format_number(self.new_error)}")
        text = f"- **{self.case}** on {self.backend}: {self.old_status} -> {self.new_status}, {numbers}"
        return text + (f" ({self.detail})" if self.detail else "")


def load_run(folder: Path) -> Report:
    """The report model of a results folder; RecordError (one line) when its records cannot be used."""
    return build_report(folder)


def index_cases(report: Report) -> dict[Key, CaseResult]:
    """Every case result keyed by (backend, case name)."""
    return {(backend, name): result for backend, per_case in report.results.items() for name, result in per_case.items()}


def _drift(old: CaseResult, new: CaseResult) -> bool:
    """Both pass and the worst error grew by more than DRIFT_FACTOR (from an exact 0, any nonzero error)."""
    if old.verdict != "pass" or new.verdict != "pass":
        return False
    old_error, new_error = old.max_abs_error, new.max_abs_error
    if old_error is None or new_error is None:
        return False
    return new_error > 0 and new_error > DRIFT_FACTOR * old_error


def measured_outputs(result: CaseResult) -> dict[tuple[str, str], MeasuredOutput]:
    """Every (build, output) of a case result, as the shared regression rule reads them."""
    return {(item.api, item.output): MeasuredOutput(item.dtype, item.judged.abs_error, item.atol, item.rtol, item.worst_expected)
            for item in result.items}


def worse(old: CaseResult, new: CaseResult, definition_claims: set[str] = frozenset()) -> list[str]:
    """Why the case got worse (the rule of harness.verdicts.between_versions); empty when it did not or when
    the new verdict is known by ``change = "definition"`` claims only."""
    reasons = regression_reasons(old.verdict, new.verdict, old.explained_by, new.explained_by, measured_outputs(old),
                                 measured_outputs(new))
    return [] if by_definition(new.verdict, new.explained_by, definition_claims) else reasons


def classify(old: CaseResult, new: CaseResult, definition_claims: set[str] = frozenset()) -> str | None:
    """'regression', 'drift', 'improvement', 'other' (any other verdict change) or None (nothing to report)."""
    before, after = old.verdict, new.verdict
    if worse(old, new, definition_claims):
        return "regression"
    if _drift(old, new):
        return "drift"
    if before in IMPROVEMENT_FROM and after == "pass":
        return "improvement"
    if before != after:
        return "other"
    return None


def _detail(kind: str, old: CaseResult, new: CaseResult, definition_claims: set[str] = frozenset()) -> str:
    """Why a change is listed: what got worse and the new error or first problem, the growth factor, or the
    divergence that went away."""
    if kind == "regression":
        parts = worse(old, new, definition_claims)
        if new.error is not None:
            parts.append(new.error.summary)
        elif new.problems:
            parts.append(new.problems[0])
        return "; ".join(parts)
    if kind == "drift":
        old_error, new_error = old.max_abs_error, new.max_abs_error
        return f"grew {new_error / old_error:.0f}x" if old_error else "was exactly 0"
    if kind == "improvement" and old.verdict == "known":
        divergences = ", ".join(old.explained_by) or "unnamed"
        return f"known divergence {divergences} no longer reproduces"
    return ""


def find_changes(old_cases: dict[Key, CaseResult], new_cases: dict[Key, CaseResult],
                 definition_claims: set[str] = frozenset()) -> dict[str, list[Change]]:
    """Changes of the cases present in both runs, grouped by kind (see ``classify``)."""
    changes: dict[str, list[Change]] = {"regression": [], "drift": [], "improvement": [], "other": []}
    for key in sorted(old_cases.keys() & new_cases.keys()):
        old, new = old_cases[key], new_cases[key]
        kind = classify(old, new, definition_claims)
        if kind is None:
            continue
        changes[kind].append(Change(
            key[0], key[1], old.verdict, new.verdict, old.judged, new.judged, old.max_abs_error, new.max_abs_error,
            _detail(kind, old, new, definition_claims),
        ))
    return changes


def definition_claims(folder: Path, report: Report) -> set[str]:
    """The ids of the ``change = "definition"`` claims the folder's verdict files recorded."""
    found: set[str] = set()
    for backend in report.backends:
        path = verdicts_path(Path(folder), backend)
        if path.is_file():
            found |= {claim["id"] for claim in store.read_json_file(path).get("divergences") or []
                      if isinstance(claim, dict) and claim.get("change") == "definition"}
    return found


def _runs(report: Report) -> dict[str, Environment]:
    return {e.backend: e for e in report.environments if e.kind == "run"}


def version_changes(old: Report, new: Report) -> list[str]:
    """Markdown items for keras, backend and numpy versions that differ, and backends only one run has."""
    lines = []
    old_runs, new_runs = _runs(old), _runs(new)
    for backend in sorted(old_runs.keys() | new_runs.keys()):
        if backend not in new_runs:
            lines.append(f"- {backend}: only in the old run")
            continue
        if backend not in old_runs:
            lines.append(f"- {backend}: only in the new run")
            continue
        for key in (*VERSION_KEYS, backend):
            before, after = old_runs[backend].versions.get(key), new_runs[backend].versions.get(key)
            if before != after:
                lines.append(f"- {backend}: {key} {before} -> {after}")
        before, after = old_runs[backend].device, new_runs[backend].device
        if before != after:
            lines.append(f"- {backend}: device {before} -> {after}")
    return lines


def _warnings(label: str, report: Report) -> list[str]:
    """Records made with an injected fault (their numbers are not the library's) or left unclassified."""
    lines = []
    for backend, env in sorted(_runs(report).items()):
        if env.fault:
            lines.append(f"- Warning: the {label} {backend} record was made with fault {env.fault!r} injected.")
        if env.verdicts is None:
            lines.append(f"- Warning: the {label} {backend} record has no verdicts: its cases are compared by measured status.")
    return lines


def _divergence_files(old: Report, new: Report) -> list[str]:
    """A warning when the two runs were classified against different divergence files."""
    hashes = {
        label: {e.verdicts.sha256 for e in _runs(report).values() if e.verdicts is not None}
        for label, report in (("old", old), ("new", new))
    }
    if hashes["old"] and hashes["new"] and hashes["old"] != hashes["new"]:
        return ["- Warning: the two runs were classified against different divergence files: a verdict change may come "
                "from the file, not from the library."]
    return []


def _case_list(keys: list[Key]) -> list[str]:
    return [f"- {case} on {backend}" for backend, case in keys]


def _section(title: str, items: list[str]) -> list[str]:
    return [f"## {title}", "", *(items or ["None."]), ""]


def compare_runs(old: Path, new: Path) -> tuple[str, int]:
    """Markdown comparing the records of two results folders, and an exit code: 1 on any regression or on a case or
    backend of the old run the new one lacks, else 0.

    Raises harness.records.store.RecordError (one-line message) for a missing folder, a folder without
    records, or a corrupt record."""
    old_report, new_report = load_run(old), load_run(new)
    old_cases, new_cases = index_cases(old_report), index_cases(new_report)
    changes = find_changes(old_cases, new_cases, definition_claims(old, old_report) | definition_claims(new, new_report))
    regressions = changes["regression"] + changes["drift"]
    added = sorted(new_cases.keys() - old_cases.keys())
    removed = sorted(old_cases.keys() - new_cases.keys())
    removed_backends = sorted(set(old_report.backends) - set(new_report.backends))

    lines = ["# keras-parity: run against run", ""]
    lines += [f"Old: `{old}` ({', '.join(old_report.backends)}). New: `{new}` ({', '.join(new_report.backends)}).", ""]
    lines += [
        f"{len(regressions)} regressions ({len(changes['drift'])} of them drift), {len(changes['improvement'])} improvements, "
        f"{len(added)} new cases, {len(removed)} removed cases (a removed case fails the comparison"
        f"{'; backends gone: ' + ', '.join(removed_backends) if removed_backends else ''}), "
        f"{len(old_cases.keys() & new_cases.keys())} cases in both runs.",
        "",
    ]
    warnings = _warnings("old", old_report) + _warnings("new", new_report) + _divergence_files(old_report, new_report)
    lines += warnings + ([""] if warnings else [])
    lines += _section("Regressions", [change.line() for change in changes["regression"]])
    lines += _section(
        f"Drift (still passing, max abs error grew more than {DRIFT_FACTOR:g}x)", [change.line() for change in changes["drift"]]
    )
    lines += _section("Improvements", [change.line() for change in changes["improvement"]])
    lines += _section("Other verdict changes", [change.line() for change in changes["other"]])
    lines += _section("New cases", _case_list(added))
    lines += _section("Removed cases", _case_list(removed))
    lines += _section("Version changes", version_changes(old_report, new_report))
    return "\n".join(lines), (1 if regressions or removed or removed_backends else 0)
