"""Per backend: its device, wall time and the number of cases of each verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.reports.case_results import VERDICTS, CaseResult
from harness.reports.judged import read_number


@dataclass(frozen=True)
class BackendSummary:
    backend: str
    device: str
    device_class: str
    cases: int
    counts: dict[str, int]  # verdict -> number of cases, every verdict of VERDICTS present
    wall_time_s: float | None
    fault: str | None
    classified: bool


def build_summaries(records: dict[str, dict[str, Any]], results: dict[str, dict[str, CaseResult]], classified: dict[str, bool]) -> tuple[BackendSummary, ...]:
    summaries = []
    for backend, record in records.items():
        verdicts = [result.verdict for result in results[backend].values()]
        counts = {verdict: verdicts.count(verdict) for verdict in VERDICTS}
        for verdict in verdicts:
            counts.setdefault(verdict, verdicts.count(verdict))
        summaries.append(BackendSummary(
            backend=backend, device=str(record.get("device")), device_class=str(record.get("device_class") or "?"),
            cases=len(verdicts), counts=counts, wall_time_s=read_number(record.get("wall_time_s")),
            fault=record.get("fault") or None, classified=classified[backend],
        ))
    return tuple(summaries)
