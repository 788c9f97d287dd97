"""Judging a measured figure against a performance target of issue 16: met, not met, or not measured.

A target is an upper bound (a wall time, a ratio of times). ``judge`` says:

- ``not measured`` when there is no number (None, NaN, infinite; or zero or less: no time or ratio of times is),
  or when the number does not measure what the
  target asks (``excluded``: a --quick record, a sample not drawn from the default matrix), whatever its value.
  A missing measurement is never ``met``;
- ``not met`` when the measured value is above the bound, with how far: the value over the bound as a ratio
  and as a difference in the target's unit. ``reason`` names why a value at or under the bound would not count
  though one over it does (a lower bound of the real figure: a run not from a clean clone, a subset of the cases,
  a backend missing from "the fastest backend"): over the bound it is still ``not met``, under it ``not measured``;
- ``met`` only for a finite value at or below the bound, with the headroom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"


@dataclass(frozen=True)
class TargetResult:
    name: str
    measured: float | None  # in ``unit``; None when nothing was measured
    bound: float  # the target: measured must be at most this
    unit: str  # "min", "x" (a ratio)
    status: str  # MET, NOT_MET, NOT_MEASURED
    over_by: float | None  # measured / bound; None when not measured
    note: str  # where the figure came from, or why it does not count
    why: tuple[str, ...] = ()  # for a target not met: what the records show its time is spent on (bench_why)

    @property
    def how_far(self) -> str:
        """'1.60x the target (+3.0 min)', 'within (0.50x the target)', or the reason nothing was judged."""
        if self.status == NOT_MEASURED:
            return self.note or "not measured in this run"
        difference = self.measured - self.bound
        unit = "" if self.unit == "x" else f" {self.unit}"
        if self.status == NOT_MET:
            return f"{self.over_by:.2f}x the target (+{difference:.2f}{unit})"
        return f"within: {self.over_by:.2f}x the target ({difference:.2f}{unit})"


def _finite(value: float | None) -> bool:
    return value is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def judge(name: str, measured: float | None, bound: float, unit: str, *, note: str = "", reason: str | None = None,
          excluded: str | None = None) -> TargetResult:
    """Judge ``measured`` against the upper ``bound`` (see the module docstring). ``reason``: why a value at or
    under the bound would not count (it still counts against the target when over it); ``excluded``: why the value
    judges nothing."""
    if not (_finite(bound) and bound > 0):
        raise ValueError(f"target {name!r}: the bound must be a positive finite number, not {bound!r}")
    if not _finite(measured):
        detail = "not measured in this run" if measured is None else f"not measured (the record holds {measured!r})"
        return TargetResult(name, None, bound, unit, NOT_MEASURED, None, f"{detail}{'; ' + note if note else ''}")
    measured = float(measured)
    if measured <= 0:  # a wall time or a ratio of times is positive: zero or less is a broken record, not a fast one
        return TargetResult(name, None, bound, unit, NOT_MEASURED, None,
                            f"not measured (the record holds {measured!r}, not a positive figure){'; ' + note if note else ''}")
    over_by = measured / bound
    if excluded is not None:
        return TargetResult(name, measured, bound, unit, NOT_MEASURED, over_by,
                            f"not measured: {excluded}" + (f" ({note})" if note else ""))
    if measured > bound:
        return TargetResult(name, measured, bound, unit, NOT_MET, over_by, note if reason is None else f"{note}; {reason}".strip("; "))
    if reason is not None:
        return TargetResult(name, measured, bound, unit, NOT_MEASURED, over_by,
                            f"not measured: {reason}" + (f" ({note})" if note else ""))
    return TargetResult(name, measured, bound, unit, MET, over_by, note)
