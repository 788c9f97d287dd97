"""The tolerance table: one data file (tolerances.toml), keyed by dtype and quantity, each with a reason."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from harness.compare import Tolerance

TOLERANCE_FILE = Path(__file__).with_name("tolerances.toml")
QUANTITIES = ("outputs", "states")


def load_tolerances(path: Path = TOLERANCE_FILE) -> dict[str, dict[str, Tolerance]]:
    """Read the table as {dtype: {quantity: Tolerance}}; every entry must give rtol, atol, rel_floor and reason."""
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    table: dict[str, dict[str, Tolerance]] = {}
    for dtype, by_quantity in raw.items():
        table[dtype] = {}
        for quantity, entry in by_quantity.items():
            if quantity not in QUANTITIES:
                raise ValueError(f"{path}: [{dtype}.{quantity}] is not a quantity; accepted: {', '.join(QUANTITIES)}")
            missing = {"rtol", "atol", "rel_floor", "reason"} - set(entry)
            if missing:
                raise ValueError(f"{path}: [{dtype}.{quantity}] lacks {', '.join(sorted(missing))}")
            table[dtype][quantity] = Tolerance(
                rtol=float(entry["rtol"]), atol=float(entry["atol"]),
                rel_floor=float(entry["rel_floor"]), reason=str(entry["reason"]).strip(),
            )
    return table


def tolerance_for(table: dict[str, dict[str, Tolerance]], dtype: str, quantity: str) -> Tolerance:
    try:
        return table[dtype][quantity]
    except KeyError:
        raise KeyError(f"no tolerance for dtype {dtype!r}, quantity {quantity!r} in {TOLERANCE_FILE.name}") from None


def quantity_of(output_name: str) -> str:
    """Which row of the table an output is judged by: the h and c states (h, c@0, h_forward...), or the rest."""
    return "states" if output_name[0] in ("h", "c") else "outputs"


def tolerance_table_json(table: dict[str, dict[str, Tolerance]]) -> dict[str, Any]:
    return {
        dtype: {q: {"rtol": t.rtol, "atol": t.atol, "rel_floor": t.rel_floor, "reason": t.reason} for q, t in rows.items()}
        for dtype, rows in table.items()
    }
