"""How the error grows with sequence length and units (<backend>.growth.json)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.reports.judged import NOT_MEASURED, Judged, read_number, worst_judged


@dataclass(frozen=True)
class GrowthPoint:
    backend: str
    time: int
    units: int
    status: str  # measured | error
    output_error: float | None
    tightest_bound: float | None
    judged: Judged  # worst over output, h and c


@dataclass(frozen=True)
class Growth:
    backends: tuple[str, ...]
    points: tuple[GrowthPoint, ...]
    keys: tuple[tuple[int, int], ...]  # (time, units), by units then time
    float32_atol: float | None
    worst: Judged

    def point(self, backend: str, time: int, units: int) -> GrowthPoint | None:
        return next((p for p in self.points if p.backend == backend and p.time == time and p.units == units), None)


def build_growth(studies: dict[str, dict[str, Any]]) -> Growth | None:
    points = []
    atol = None
    for backend, record in studies.items():
        entry = ((record.get("tolerances") or {}).get("float32") or {}).get("outputs")
        if atol is None and isinstance(entry, dict):
            atol = read_number(entry.get("atol"))
        for raw in record.get("points") or []:
            quantities = raw.get("quantities")
            if not isinstance(quantities, dict) or not quantities:
                points.append(GrowthPoint(backend, int(raw.get("time", 0)), int(raw.get("units", 0)), "error", None, None, NOT_MEASURED))
                continue
            judged = []
            for quantity in quantities.values():
                error = read_number(quantity.get("max_abs_error"))
                ratio = read_number(quantity.get("tolerance_ratio"))
                if ratio is None:
                    headroom = read_number(quantity.get("headroom"))
                    if headroom is not None:
                        ratio = 0.0 if math.isinf(headroom) else (math.inf if headroom == 0 else 1.0 / headroom)
                judged.append(Judged(ratio, error, error is not None and not math.isfinite(error)))
            output = quantities.get("output") or {}
            points.append(GrowthPoint(
                backend, int(raw.get("time", 0)), int(raw.get("units", 0)), "measured",
                read_number(output.get("max_abs_error")), read_number(output.get("tightest_bound")), worst_judged(judged),
            ))
    if not points:
        return None
    keys = tuple(sorted({(p.time, p.units) for p in points}, key=lambda k: (k[1], k[0])))
    return Growth(tuple(studies), tuple(points), keys, atol, worst_judged(p.judged for p in points if p.status == "measured"))
