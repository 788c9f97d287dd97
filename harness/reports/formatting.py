"""The one place numbers become text, so every report writes a value the same way."""

from __future__ import annotations

import math

from harness.reports.case_results import CaseResult
from harness.reports.judged import Judged


def format_names(cases: tuple[str, ...], shown: int = 8) -> str:
    """Case names, or their count and the first few when there are many."""
    if not cases:
        return "none"
    if len(cases) <= shown:
        return ", ".join(cases)
    return f"{len(cases)} cases: " + ", ".join(cases[:shown]) + ", ..."


def format_number(value: float | None, digits: int = 2) -> str:
    """Scientific notation; 'NaN' / 'inf' for non-finite values; 'n/a' only when there is no number."""
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}e}"


def format_tolerance(value: float | None) -> str:
    """A tolerance exactly as written in the table (1.5e-03 stays 1.5e-03; never rounded)."""
    return "n/a" if value is None else f"{value:g}"


def format_short(value: float | None) -> str:
    """Two significant digits, '0 (bitwise equal)' for an exact zero."""
    if value is None:
        return "n/a"
    if not math.isfinite(value):
        return format_number(value)
    return "0 (bitwise equal)" if value == 0 else f"{value:.2g}"


def format_ratio(judged: Judged) -> str:
    """The ratio to the tolerance: '0.034', '2.1e+03', 'non-finite (NaN)', or 'n/a' when nothing was measured."""
    ratio = judged.ratio
    if ratio is None:
        return "n/a"
    if not math.isfinite(ratio):
        if judged.nonfinite:
            return f"non-finite ({format_number(ratio)})"
        return "inf (bound 0)" if ratio > 0 else format_number(ratio)
    if ratio == 0:
        return "0"
    if ratio < 1e-3 or ratio >= 1e5:
        return f"{ratio:.1e}"
    return f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.2g}"


def format_judged(judged: Judged) -> str:
    """'ratio 0.034 (abs 3.1e-08)': the ratio first, the absolute error beside it."""
    if judged.ratio is None and judged.abs_error is None:
        return "n/a"
    return f"{format_ratio(judged)} (abs {format_number(judged.abs_error, 1)})"


def format_seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} s"


def format_case(result: CaseResult | None) -> str:
    """A case on one backend in a table cell: its verdict, then the ratio and absolute error or what it raised."""
    if result is None:
        return "not run"
    if result.error is not None and not result.items:
        return f"{result.verdict}: {result.error.type}"
    if not result.items:
        return result.verdict
    return f"{result.verdict} {format_judged(result.judged)}"


def format_agreement(judged: Judged, bitwise: bool) -> str:
    """An API (or backend) comparison: 'bitwise equal', or the ratio to its bound and the difference."""
    if bitwise:
        return "bitwise equal"
    return format_judged(judged)
