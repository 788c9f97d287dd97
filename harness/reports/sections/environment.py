"""What each record was made with, as its header says (and the verdict file that classified a run record)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.reports.judged import read_number


@dataclass(frozen=True)
class VerdictSource:
    file: str
    sha256: str
    classified: str
    run_started: str
    matches_run: bool  # classified the run record beside it (same start time)


@dataclass(frozen=True)
class Environment:
    """What one record was made with, as its header says."""

    kind: str  # run | probes | growth | faults | serialization
    backend: str
    device: str
    device_class: str
    versions: dict[str, str]
    settings: dict[str, Any]
    seed: Any
    command: str
    fault: str | None
    started: str
    finished: str
    wall_time_s: float | None
    verdicts: VerdictSource | None = None
    precision_mode: str = "not recorded"  # settings["precision_mode"]: default | highest
    device_details: tuple[tuple[str, str], ...] = ()  # the record's device_details, flattened to (name, value)


def build_environment(kind: str, record: dict[str, Any], verdicts: dict[str, Any] | None = None) -> Environment:
    source = None
    if verdicts is not None:
        source = VerdictSource(
            file=str(verdicts.get("divergences_file") or "?"), sha256=str(verdicts.get("divergences_sha256") or "?"),
            classified=str(verdicts.get("classified") or "?"), run_started=str(verdicts.get("run_started") or "?"),
            matches_run=verdicts.get("run_started") == record.get("started"),
        )
    return Environment(
        kind=kind, backend=str(record.get("backend")), device=str(record.get("device") or "?"),
        device_class=str(record.get("device_class") or "?"), versions=dict(record.get("versions") or {}),
        settings=dict(record.get("settings") or {}), seed=record.get("seed"), command=str(record.get("command") or "?"),
        fault=record.get("fault") or None, started=str(record.get("started") or "?"),
        finished=str(record.get("finished") or "?"),
        wall_time_s=read_number(record.get("wall_time_s", record.get("duration_s"))), verdicts=source,
        precision_mode=str((record.get("settings") or {}).get("precision_mode") or "not recorded"),
        device_details=tuple(_details(record.get("device_details"))),
    )


def _details(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A record's device_details as (name, value) pairs; nested tables (the host beside a GPU) as host.name."""
    if not isinstance(value, dict):
        return []
    pairs = []
    for key, inner in value.items():
        name = f"{prefix}{key}"
        if isinstance(inner, dict):
            pairs += _details(inner, f"{name}.")
        else:
            pairs.append((name, "unknown" if inner is None else str(inner)))
    return pairs
