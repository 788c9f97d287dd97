"""Numbers as the records hold them, and an error judged by the tolerance that judged it.

Errors are judged by their ratio to the tolerance that judged them (``Judged.ratio``, the record's
``tolerance_ratio``): at most 1 passes. A non-finite ratio or error (NaN, inf: a non-finite output) is
kept as such and shown as non-finite; ``None`` means the record holds no number (nothing was
compared), and only that is shown as "n/a".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable


CLOSE_RATIO = 0.1  # below: comfortably inside the tolerance ("ok"); from here to 1: "close"; above 1: "over"


def read_number(value: Any) -> float | None:
    """A JSON number as a float (NaN and infinities kept); None for a missing or non-numeric value."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def sort_key(ratio: float | None) -> float:
    """Largest first means: a non-finite ratio (NaN) above every number, a missing one (None) below."""
    if ratio is None:
        return -math.inf
    if math.isnan(ratio):
        return math.inf
    return ratio


@dataclass(frozen=True)
class Judged:
    """An error next to the tolerance that judged it: ``ratio`` = error / tolerance (<= 1 passes).

    ``ratio`` and ``abs_error`` are NaN or infinite for non-finite outputs and None when the record
    holds no number."""

    ratio: float | None
    abs_error: float | None
    nonfinite: bool = False  # the output held NaN or inf where the reference is finite

    @property
    def band(self) -> str:
        """'missing' (no number), 'ok' (ratio < 0.1), 'close' (0.1 to 1) or 'over' (> 1 or non-finite)."""
        if self.ratio is None:
            return "missing"
        if not math.isfinite(self.ratio) or self.ratio > 1:
            return "over"
        return "close" if self.ratio >= CLOSE_RATIO else "ok"

    @property
    def key(self) -> float:
        return sort_key(self.ratio)


NOT_MEASURED = Judged(None, None)


def worst_judged(judged: Iterable[Judged]) -> Judged:
    return max(judged, key=lambda j: (j.key, sort_key(j.abs_error)), default=NOT_MEASURED)
