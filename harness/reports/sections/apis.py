"""The APIs of one case (functional, sequential, subclassed, ...) against each other, per case and per backend."""

from __future__ import annotations

from dataclasses import dataclass

from harness.reports.case_results import CaseResult
from harness.reports.judged import Judged, sort_key, worst_judged


@dataclass(frozen=True)
class ApiRow:
    case: str
    apis: tuple[str, ...]
    cells: dict[str, CaseResult | None]
    judged: Judged  # the worst API disagreement over backends, relative to its bound
    bitwise: bool  # every comparison on every backend bitwise equal


@dataclass(frozen=True)
class ApiSummary:
    backend: str
    cases: int  # cases built in more than one API with at least one comparison
    bitwise: int
    within: int  # within the bound (bitwise included)
    outside: tuple[str, ...]
    not_bitwise: tuple[str, ...]


def build_api_rows(backends: tuple[str, ...], results: dict[str, dict[str, CaseResult]]) -> tuple[ApiRow, ...]:
    names = list(dict.fromkeys(name for per_case in results.values() for name in per_case))
    rows = []
    for name in names:
        cells = {backend: results[backend].get(name) for backend in backends}
        present = [c for c in cells.values() if c is not None and c.api_agreement]
        if not present:
            continue
        apis = tuple(dict.fromkeys(api for c in present for api in c.apis))
        bitwise = all(row.bitwise_equal for c in present for row in c.api_agreement)
        rows.append(ApiRow(name, apis, cells, worst_judged(c.api_judged for c in present), bitwise))
    rows.sort(key=lambda r: (-r.judged.key, -sort_key(r.judged.abs_error)))
    return tuple(rows)


def build_api_summaries(results: dict[str, dict[str, CaseResult]]) -> tuple[ApiSummary, ...]:
    summaries = []
    for backend, per_case in results.items():
        compared = [r for r in per_case.values() if r.api_agreement]
        bitwise = [r for r in compared if all(row.bitwise_equal for row in r.api_agreement)]
        within = [r for r in compared if all(row.within for row in r.api_agreement)]
        summaries.append(ApiSummary(
            backend, len(compared), len(bitwise), len(within),
            tuple(r.case for r in compared if r not in within), tuple(r.case for r in compared if r not in bitwise),
        ))
    return tuple(summaries)
