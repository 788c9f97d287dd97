"""The tolerance table: one data file (tolerances.toml), keyed by dtype and quantity, each with a reason.

The top-level ``[<dtype>.<quantity>]`` entries are the CPU tolerances. A device class other than CPU
(``gpu_highest``: full float32 matmuls; ``gpu_tf32``: float32 matmuls on TF32 tensor cores) may
override entries under ``[device.<class>.<dtype>.<quantity>]``; ``load_tolerances(device_class)``
merges them over the CPU table, as jax's public_test_util merges tolerance overrides.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Tolerance:
    """An element passes when |actual - expected| <= atol + rtol * |expected|; rel_floor only shapes the
    reported relative error; reason says where the numbers come from."""

    rtol: float
    atol: float
    rel_floor: float
    reason: str


TOLERANCE_FILE = Path(__file__).with_name("tolerances.toml")
QUANTITIES = ("outputs", "states")
DEVICE_CLASSES = ("cpu", "gpu_highest", "gpu_tf32")


def load_tolerances(device_class: str = "cpu", path: Path = TOLERANCE_FILE) -> dict[str, dict[str, Tolerance]]:
    """Read the table as {dtype: {quantity: Tolerance}} for ``device_class``: the CPU entries with that
    class's overrides merged over them. Every entry must give rtol, atol, rel_floor and reason."""
    if device_class not in DEVICE_CLASSES:
        raise ValueError(f"unknown device class {device_class!r}; accepted: {', '.join(DEVICE_CLASSES)}")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    overrides = raw.pop("device", {})
    unknown = set(overrides) - set(DEVICE_CLASSES[1:])
    if unknown:
        raise ValueError(f"{path}: [device.{sorted(unknown)[0]}] is not a device class; accepted: {', '.join(DEVICE_CLASSES[1:])}")
    table = _parse_rows(raw, path, "")
    for dtype, rows in _parse_rows(overrides.get(device_class, {}), path, f"device.{device_class}.").items():
        table.setdefault(dtype, {}).update(rows)
    return table


def _parse_rows(raw: dict[str, Any], path: Path, prefix: str) -> dict[str, dict[str, Tolerance]]:
    table: dict[str, dict[str, Tolerance]] = {}
    for dtype, by_quantity in raw.items():
        table[dtype] = {}
        for quantity, entry in by_quantity.items():
            if quantity not in QUANTITIES:
                raise ValueError(f"{path}: [{prefix}{dtype}.{quantity}] is not a quantity; accepted: {', '.join(QUANTITIES)}")
            missing = {"rtol", "atol", "rel_floor", "reason"} - set(entry)
            if missing:
                raise ValueError(f"{path}: [{prefix}{dtype}.{quantity}] lacks {', '.join(sorted(missing))}")
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
