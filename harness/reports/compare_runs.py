"""Compare two results folders (two Keras versions, or last month's run and today's): what got worse, what got better.

Cases are matched by (backend, case name). A regression is a case that passed (or failed in a known,
explained way) and now fails, errors or times out, or a case that still passes but whose largest
absolute error against the float64 reference grew by more than ``DRIFT_FACTOR`` ("drift"). An
improvement is a case that failed, errored, timed out or was a known divergence and now passes.
Reads records only; never runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.records import store as records
from harness.reports.markdown import load_records

DRIFT_FACTOR = 10.0
REGRESSION_FROM = ("pass", "known")
REGRESSION_TO = ("fail", "error", "timeout")
IMPROVEMENT_FROM = ("fail", "error", "timeout", "known")
VERSION_KEYS = ("keras", "numpy")

Key = tuple[str, str]  # (backend, case name)


@dataclass(frozen=True)
class Change:
    """One case whose status or error changed between the two runs."""

    backend: str
    case: str
    old_status: str
    new_status: str
    old_error: float | None
    new_error: float | None
    detail: str

    def line(self) -> str:
        """A Markdown list item for this change."""
        errors = f"max abs error {_fmt(self.old_error)} -> {_fmt(self.new_error)}"
        text = f"- **{self.case}** on {self.backend}: {self.old_status} -> {self.new_status}, {errors}"
        return text + (f" ({self.detail})" if self.detail else "")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.2e}"


def worst_abs_error(case: dict[str, Any]) -> float | None:
    """Largest max_abs_error over every API and output of a case result; None when nothing was measured."""
    values = [
        item["max_abs_error"]
        for api in case.get("apis", {}).values()
        for item in api.get("items", {}).values()
        if item.get("max_abs_error") is not None
    ]
    return max(values) if values else None


def _check_cases(folder: Path, record: dict[str, Any]) -> None:
    """RecordError when a case entry lacks what the comparison reads."""
    for index, case in enumerate(record["cases"]):
        if not isinstance(case, dict) or "case" not in case or "status" not in case:
            raise records.RecordError(
                f"{folder / (record['backend'] + '.json')}: case entry {index} lacks 'case' or 'status'"
            )


def load_run(folder: Path) -> dict[str, dict[str, Any]]:
    """The run records of a results folder keyed by backend; RecordError (one line) when they cannot be used."""
    loaded = load_records(folder)
    for record in loaded.values():
        _check_cases(folder, record)
    return loaded


def index_cases(loaded: dict[str, dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Every case result keyed by (backend, case name)."""
    return {(backend, case["case"]): case for backend, record in loaded.items() for case in record["cases"]}


def _drift(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Both pass and the worst error grew by more than DRIFT_FACTOR (from an exact 0, any nonzero error)."""
    if old["status"] != "pass" or new["status"] != "pass":
        return False
    old_error, new_error = worst_abs_error(old), worst_abs_error(new)
    if old_error is None or new_error is None:
        return False
    return new_error > 0 and new_error > DRIFT_FACTOR * old_error


def classify(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """'regression', 'drift', 'improvement', 'other' (any other status change) or None (nothing to report)."""
    before, after = old["status"], new["status"]
    if before in REGRESSION_FROM and after in REGRESSION_TO:
        return "regression"
    if _drift(old, new):
        return "drift"
    if before in IMPROVEMENT_FROM and after == "pass":
        return "improvement"
    if before != after:
        return "other"
    return None


def _detail(kind: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """Why a change is listed: the new error message, the growth factor, or the divergence that went away."""
    if kind == "regression" and new.get("error"):
        return str(new["error"])
    if kind == "drift":
        old_error, new_error = worst_abs_error(old), worst_abs_error(new)
        return f"grew {new_error / old_error:.0f}x" if old_error else "was exactly 0"
    if kind == "improvement" and old["status"] == "known":
        divergences = ", ".join(old.get("known_divergences", [])) or "unnamed"
        return f"known divergence {divergences} no longer reproduces"
    return ""


def find_changes(old_cases: dict[Key, dict[str, Any]], new_cases: dict[Key, dict[str, Any]]) -> dict[str, list[Change]]:
    """Changes of the cases present in both runs, grouped by kind (see ``classify``)."""
    changes: dict[str, list[Change]] = {"regression": [], "drift": [], "improvement": [], "other": []}
    for key in sorted(old_cases.keys() & new_cases.keys()):
        old, new = old_cases[key], new_cases[key]
        kind = classify(old, new)
        if kind is None:
            continue
        changes[kind].append(
            Change(key[0], key[1], old["status"], new["status"], worst_abs_error(old), worst_abs_error(new), _detail(kind, old, new))
        )
    return changes


def version_changes(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown items for keras, backend and numpy versions that differ, and backends only one run has."""
    lines = []
    for backend in sorted(old.keys() | new.keys()):
        if backend not in new:
            lines.append(f"- {backend}: only in the old run")
            continue
        if backend not in old:
            lines.append(f"- {backend}: only in the new run")
            continue
        for key in (*VERSION_KEYS, backend):
            before, after = old[backend]["versions"].get(key), new[backend]["versions"].get(key)
            if before != after:
                lines.append(f"- {backend}: {key} {before} -> {after}")
    return lines


def _case_list(keys: list[Key]) -> list[str]:
    return [f"- {case} on {backend}" for backend, case in keys]


def _faults(label: str, loaded: dict[str, dict[str, Any]]) -> list[str]:
    """Warnings for records made with an injected fault: their numbers are not the library's."""
    return [
        f"- Warning: the {label} {backend} record was made with fault {record['fault']!r} injected."
        for backend, record in sorted(loaded.items()) if record.get("fault")
    ]


def _section(title: str, items: list[str]) -> list[str]:
    return [f"## {title}", "", *(items or ["None."]), ""]


def compare_runs(old: Path, new: Path) -> tuple[str, int]:
    """Markdown comparing the run records of two results folders, and an exit code: 1 on any regression, else 0.

    Raises harness.records.store.RecordError (one-line message) for a missing folder, a folder without
    records, or a corrupt record."""
    old_loaded, new_loaded = load_run(old), load_run(new)
    old_cases, new_cases = index_cases(old_loaded), index_cases(new_loaded)
    changes = find_changes(old_cases, new_cases)
    regressions = changes["regression"] + changes["drift"]
    added = sorted(new_cases.keys() - old_cases.keys())
    removed = sorted(old_cases.keys() - new_cases.keys())

    lines = ["# keras-parity: run against run", ""]
    lines += [f"Old: `{old}` ({', '.join(sorted(old_loaded))}). New: `{new}` ({', '.join(sorted(new_loaded))}).", ""]
    lines += [
        f"{len(regressions)} regressions ({len(changes['drift'])} of them drift), {len(changes['improvement'])} improvements, "
        f"{len(added)} new cases, {len(removed)} removed cases, {len(old_cases.keys() & new_cases.keys())} cases in both runs.",
        "",
    ]
    warnings = _faults("old", old_loaded) + _faults("new", new_loaded)
    lines += warnings + ([""] if warnings else [])
    lines += _section("Regressions", [change.line() for change in changes["regression"]])
    lines += _section(
        f"Drift (still passing, max abs error grew more than {DRIFT_FACTOR:g}x)", [change.line() for change in changes["drift"]]
    )
    lines += _section("Improvements", [change.line() for change in changes["improvement"]])
    lines += _section("Other status changes", [change.line() for change in changes["other"]])
    lines += _section("New cases", _case_list(added))
    lines += _section("Removed cases", _case_list(removed))
    lines += _section("Version changes", version_changes(old_loaded, new_loaded))
    return "\n".join(lines), (1 if regressions else 0)
