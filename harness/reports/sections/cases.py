"""Every case across backends against the float64 reference, largest ratio first; and the closest calls."""

from __future__ import annotations

from dataclasses import dataclass

from harness.reports.case_results import CaseResult
from harness.reports.judged import Judged, sort_key, worst_judged


CLOSEST_CALLS = 10


@dataclass(frozen=True)
class CaseRow:
    """One case across backends, for the table against the reference."""

    case: str
    dtype: str
    entry_point: str
    cells: dict[str, CaseResult | None]
    judged: Judged  # the worst over backends


def build_case_rows(backends: tuple[str, ...], results: dict[str, dict[str, CaseResult]]) -> tuple[CaseRow, ...]:
    names = list(dict.fromkeys(name for per_case in results.values() for name in per_case))
    rows = []
    for name in names:
        cells = {backend: results[backend].get(name) for backend in backends}
        some = next(cell for cell in cells.values() if cell is not None)
        rows.append(CaseRow(name, some.dtype, some.entry_point, cells, worst_judged(c.judged for c in cells.values() if c is not None)))
    rows.sort(key=lambda r: (-r.judged.key, -sort_key(r.judged.abs_error)))
    return tuple(rows)


def build_closest_calls(results: dict[str, dict[str, CaseResult]]) -> tuple[CaseResult, ...]:
    """The passing cases nearest to their tolerance (largest ratio first), at most CLOSEST_CALLS."""
    passing = [r for per_case in results.values() for r in per_case.values() if r.verdict == "pass" and r.judged.ratio is not None]
    passing.sort(key=lambda r: (-r.judged.key, r.case, r.backend))
    return tuple(passing[:CLOSEST_CALLS])
