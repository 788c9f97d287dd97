"""The tolerances the run records were judged with, and the backends judged with other ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.reports.judged import read_number


@dataclass(frozen=True)
class ToleranceRow:
    dtype: str
    quantity: str
    rtol: float | None
    atol: float | None
    rel_floor: float | None
    measured: bool | None
    reason: str


def build_tolerances(records: dict[str, dict[str, Any]]) -> tuple[tuple[ToleranceRow, ...], tuple[str, ...]]:
    tables = {backend: record.get("tolerances") or {} for backend, record in records.items()}
    first_backend = next(iter(tables))
    rows = []
    for dtype, quantities in tables[first_backend].items():
        for quantity, tol in (quantities or {}).items():
            rows.append(ToleranceRow(
                dtype, quantity, read_number(tol.get("rtol")), read_number(tol.get("atol")), read_number(tol.get("rel_floor")),
                tol.get("measured") if isinstance(tol.get("measured"), bool) else None,
                " ".join(str(tol.get("reason") or "").split()),
            ))
    differences = tuple(
        f"{backend} judged with other tolerances than {first_backend}"
        for backend, table in tables.items() if backend != first_backend and table != tables[first_backend]
    )
    return tuple(rows), differences
