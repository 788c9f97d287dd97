"""The between-versions part of the report model: ``between_versions.json`` (written by
``python -m harness between-versions RELEASE NIGHTLY``, see harness.verdicts.between_versions) read
into plain values the renderers show in their "Between Keras versions" section. Reads that record only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.records import store
from harness.verdicts.between_versions import FILE_NAME, KINDS, SCHEMA, comparisons_for

TITLES = {
    "fixed": "Fixed",
    "regression": "Regressions",
    "changed": "Changed behaviour",
    "drift": "Drift",
}


@dataclass(frozen=True)
class VersionChange:
    kind: str  # one of KINDS
    backend: str
    case: str
    old_verdict: str
    new_verdict: str
    magnitude: str
    detail: str
    reproducer: str
    upstream_change: str | None


@dataclass(frozen=True)
class StillPresent:
    backend: str
    case: str
    divergences: tuple[str, ...]
    new_max_abs_error: float | None


@dataclass(frozen=True)
class BetweenVersions:
    old_folder: str
    new_folder: str
    old_keras: tuple[tuple[str, str], ...]  # (backend, keras version)
    new_keras: tuple[tuple[str, str], ...]
    compared: str
    changes: tuple[VersionChange, ...]
    still_present: tuple[StillPresent, ...]
    counts: dict[str, int]
    only_old: tuple[tuple[str, str], ...]  # (backend, case)
    only_new: tuple[tuple[str, str], ...]
    not_compared: tuple[str, ...]

    def of_kind(self, kind: str) -> tuple[VersionChange, ...]:
        return tuple(change for change in self.changes if change.kind == kind)

    def keras_line(self) -> str:
        """'keras 3.15.1 (results) against 3.16.0.dev... (results/keras-nightly)', per backend where they differ."""
        def versions(pairs: tuple[tuple[str, str], ...]) -> str:
            distinct = sorted({version for _, version in pairs})
            return distinct[0] if len(distinct) == 1 else ", ".join(f"{version} ({backend})" for backend, version in pairs)

        return f"keras {versions(self.old_keras)} ({self.old_folder}) against {versions(self.new_keras)} ({self.new_folder})"


def _keras(side: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((backend, str(versions.get("keras", "?")) + (f" [{versions['keras_api']}]" if versions.get("keras_api") else ""))
                 for backend, versions in sorted(side.get("versions", {}).items()))


def load_between_versions(folder: Path, notes: list[str]) -> BetweenVersions | None:
    """``folder/between_versions.json`` as report values; None when absent. An unreadable file is named in ``notes``."""
    return load_between_versions_file(Path(folder) / FILE_NAME, notes)


def load_other_comparisons(folder: Path, notes: list[str]) -> tuple[BetweenVersions, ...]:
    """The comparisons stored in ``folder``'s subfolders that name ``folder`` as a side (Keras 2 in results/tf-keras
    against Keras 3 in results), as report values."""
    own = Path(folder) / FILE_NAME
    views = [load_between_versions_file(path, notes) for path in comparisons_for(Path(folder)) if path != own]
    return tuple(view for view in views if view is not None)


def load_between_versions_file(path: Path, notes: list[str]) -> BetweenVersions | None:
    """One between-versions file as report values; None when absent. An unreadable file is named in ``notes``."""
    if not path.is_file():
        return None
    try:
        data = store.read_json_file(path)
    except store.RecordError as error:
        notes.append(str(error))
        return None
    if data.get("schema") != SCHEMA[0] or data.get("schema_version") != SCHEMA[1]:
        notes.append(f"{path} is not a {SCHEMA[0]} record of version {SCHEMA[1]}; rerun 'python -m harness between-versions'")
        return None
    changes = tuple(
        VersionChange(kind=entry["kind"], backend=entry["backend"], case=entry["case"], old_verdict=entry["old_verdict"],
                      new_verdict=entry["new_verdict"], magnitude=entry.get("magnitude", ""), detail=entry.get("detail", ""),
                      reproducer=entry.get("reproducer", ""), upstream_change=entry.get("upstream_change"))
        for entry in data.get("changes", []) if entry.get("kind") in KINDS
    )
    still = tuple(StillPresent(entry["backend"], entry["case"], tuple(entry.get("divergences", ())), entry.get("new_max_abs_error"))
                  for entry in data.get("still_present", []))
    return BetweenVersions(
        old_folder=data["old"]["folder"], new_folder=data["new"]["folder"], old_keras=_keras(data["old"]),
        new_keras=_keras(data["new"]), compared=str(data.get("compared", "")), changes=changes, still_present=still,
        counts=dict(data.get("counts", {})),
        only_old=tuple((entry["backend"], entry["case"]) for entry in data.get("only_old", [])),
        only_new=tuple((entry["backend"], entry["case"]) for entry in data.get("only_new", [])),
        not_compared=tuple(f"{entry['case']} on {entry['backend']}: {entry['reason']}" for entry in data.get("not_compared", [])),
    )


def still_present_by_claim(view: BetweenVersions) -> list[tuple[str, str, list[str]]]:
    """(claims, backend, cases) for the known divergences still present on the second version."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for entry in view.still_present:
        grouped.setdefault((", ".join(entry.divergences), entry.backend), []).append(entry.case)
    return [(claims, backend, sorted(cases)) for (claims, backend), cases in sorted(grouped.items())]
