"""The training-mode (dropout) study (<backend>.training_mode.json, harness/studies/training_mode.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.reports.loading import load_optional


@dataclass(frozen=True)
class TrainingModeRow:
    """One training-mode case on one backend (harness/studies/training_mode.py)."""

    backend: str
    case: str
    verdict: str  # pass, known, fail, error
    worst_ratio: float  # the largest tolerance ratio over its compared quantities (nan when none ran)
    detail: str  # the known claim and its reproducer, or the first problem / error


@dataclass(frozen=True)
class TrainingMode:
    backends: tuple[str, ...]
    rows: tuple[TrainingModeRow, ...]
    faults: tuple[tuple[str, str], ...]  # (backend, fault) of records made with a fault injected, listed apart


def training_mode_summary(folder: Path, notes: list[str]) -> TrainingMode | None:
    """The training-mode records of ``folder`` (None when the study did not run)."""
    records = {path.name.split(".")[0]: load_optional(path, "keras-parity/training-mode", notes)
               for path in sorted(folder.glob("*.training_mode.json"))}
    records = {backend: data for backend, data in records.items() if data is not None}
    if not records:
        return None
    faults = tuple((backend, str(data["fault"])) for backend, data in records.items() if data.get("fault"))
    rows = []
    for backend, data in records.items():
        if data.get("fault"):
            continue
        for entry in data.get("cases", []):
            ratios = [float(item["tolerance_ratio"]) for item in entry.get("items", {}).values()]
            errors = [f"{name}: {stage['error']['summary']}" for name, stage in entry.get("stages", {}).items() if stage.get("error")]
            if entry.get("known"):
                detail = f"{entry['known']['id']} ({entry['known']['reproducer']})"
            else:
                detail = (errors + list(entry.get("problems", [])) + [""])[0][:200]
            rows.append(TrainingModeRow(backend, entry["case"], entry["verdict"], max(ratios, default=float("nan")), detail))
    return TrainingMode(backends=tuple(sorted(records)), rows=tuple(rows), faults=faults)
