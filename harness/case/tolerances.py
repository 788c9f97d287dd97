"""The tolerance table: one data file (tolerances.toml), keyed by dtype and quantity, each with a reason.

The top-level ``[<dtype>.<quantity>]`` rows are the CPU tolerances, each derived from the measured
worst error of the clean matrix with a stated headroom. A device class other than CPU
(``gpu_highest``: full float32 matmuls; ``gpu_tf32``: float32 matmuls on TF32 tensor cores) may
override rows. Device rows are per backend, ``[device.<class>.<backend>.<dtype>.<quantity>]``, each derived
from that backend's own measured worst error on the device (``worst``, ``worst_expected``, ``headroom`` and
``source`` beside it); ``[device.<class>.<dtype>.<quantity>]`` is the shared row, used only for a backend
never measured on that class, and then as ``measured = false``. ``load_tolerances(device_class, backend)``
merges the backend's rows (or the shared ones) over the CPU table, as jax's public_test_util merges
tolerance overrides; a device class other than CPU needs the backend. A row carries ``measured = false``
until it has been measured on its device: the run says so whenever it selects one, never silently.

``[[override]]`` entries give cases that are ill-conditioned by construction their own bound: they
apply when their ``when`` conditions (the same case facts as the known-divergence claims) hold and
the case's compute dtype is listed, and say why. ``[api_agreement]`` is the documented bound on the
difference between the Sequential, Functional and subclassed builds of one case (0: bitwise).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.case.divergences import Condition, DivergenceFileError, case_facts, parse_conditions
from harness.case.schema import Case

TOLERANCE_FILE = Path(__file__).with_name("tolerances.toml")
QUANTITIES = ("outputs", "states", "gradients", "training")
DEVICE_CLASSES = ("cpu", "gpu_highest", "gpu_tf32")
_ROW_FIELDS = {"rtol", "atol", "rel_floor", "reason", "measured"}
# A backend's own device row also says what it was derived from: its worst element's absolute error and
# |expected|, the headroom the row leaves it (1 / its tolerance ratio) and the record and case it came from.
_MEASUREMENT_FIELDS = {"worst", "worst_expected", "headroom", "source"}
DEVICE_BACKENDS = ("tensorflow", "jax", "torch")


@dataclass(frozen=True)
class Tolerance:
    """An element passes when |actual - expected| <= atol + rtol * |expected|; rel_floor only shapes the
    reported relative error; reason says where the numbers come from; row names the table row."""

    rtol: float
    atol: float
    rel_floor: float
    reason: str
    measured: bool = True
    row: str = ""


@dataclass(frozen=True)
class Override:
    id: str
    dtypes: tuple[str, ...]
    conditions: tuple[Condition, ...]
    rtol: float
    atol: float
    reason: str

    def applies_to(self, case: Case) -> bool:
        facts = case_facts(case)
        return case.compute_dtype in self.dtypes and all(condition.holds(facts) for condition in self.conditions)


class Tolerances(dict):
    """{dtype: {quantity: Tolerance}} for one device class, with the per-case overrides and the API
    agreement bound."""

    def __init__(self, rows: dict[str, dict[str, Tolerance]], overrides: tuple[Override, ...] = (),
                 api_max_abs_diff: float = 0.0, api_reason: str = "", device_class: str = "cpu") -> None:
        super().__init__(rows)
        self.overrides = overrides
        self.api_max_abs_diff = api_max_abs_diff
        self.api_reason = api_reason
        self.device_class = device_class

    def for_case(self, case: Case, quantity: str) -> Tolerance:
        """The row of the case's compute dtype, or the first override that applies to the case."""
        base = tolerance_for(self, case.compute_dtype, quantity)
        for override in self.overrides:
            if override.applies_to(case):
                return replace(base, rtol=override.rtol, atol=override.atol, reason=override.reason, row=f"override:{override.id}")
        return base

    def unmeasured_rows(self) -> list[str]:
        return sorted(t.row for rows in self.values() for t in rows.values() if not t.measured)


def load_tolerances(device_class: str = "cpu", backend: str | None = None, path: Path = TOLERANCE_FILE) -> Tolerances:
    """Read the table for ``device_class`` on ``backend``: the CPU rows with that class's rows for that backend
    merged over them. Where the backend has no row of its own for a (dtype, quantity) the class's shared row
    gives, the shared row applies as ``measured = false`` (never measured on this backend). Every row must
    give rtol, atol, rel_floor, reason and whether it was measured; a backend's own device row also what it
    was derived from."""
    if device_class not in DEVICE_CLASSES:
        raise ValueError(f"unknown device class {device_class!r}; accepted: {', '.join(DEVICE_CLASSES)}")
    if device_class != "cpu" and backend not in DEVICE_BACKENDS:
        raise ValueError(f"the tolerances of device class {device_class} are per backend: name one of "
                         f"{', '.join(DEVICE_BACKENDS)} (got {backend!r})")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    device_rows = raw.pop("device", {})
    raw_overrides = raw.pop("override", [])
    agreement = raw.pop("api_agreement", None)
    if agreement is None or {"max_abs_diff", "reason"} - set(agreement):
        raise ValueError(f"{path}: [api_agreement] must give max_abs_diff and reason")
    unknown = set(device_rows) - set(DEVICE_CLASSES[1:])
    if unknown:
        raise ValueError(f"{path}: [device.{sorted(unknown)[0]}] is not a device class; accepted: {', '.join(DEVICE_CLASSES[1:])}")
    table = _parse_rows(raw, path, "")
    by_backend = {name: device_rows.get(device_class, {}).pop(name) for name in DEVICE_BACKENDS
                  if name in device_rows.get(device_class, {})}
    for name, rows in by_backend.items():  # every backend's rows are read, so a malformed one fails on any backend
        _parse_rows(rows, path, f"device.{device_class}.{name}.", measurement=True)
    shared = _parse_rows(device_rows.get(device_class, {}), path, f"device.{device_class}.")
    own = _parse_rows(by_backend.get(backend or "", {}), path, f"device.{device_class}.{backend}.", measurement=True)
    for dtype, rows in shared.items():
        for quantity, tolerance in rows.items():
            if quantity not in own.get(dtype, {}):
                own.setdefault(dtype, {})[quantity] = replace(
                    tolerance, measured=False,
                    reason=f"never measured on {backend} at {device_class}: the shared row. {tolerance.reason}")
    for dtype, rows in own.items():
        table.setdefault(dtype, {}).update(rows)
    overrides = tuple(_parse_override(entry, index, path) for index, entry in enumerate(raw_overrides))
    return Tolerances(table, overrides, float(agreement["max_abs_diff"]), str(agreement["reason"]).strip(), device_class)


def _parse_rows(raw: dict[str, Any], path: Path, prefix: str, measurement: bool = False) -> dict[str, dict[str, Tolerance]]:
    table: dict[str, dict[str, Tolerance]] = {}
    for dtype, by_quantity in raw.items():
        table[dtype] = {}
        for quantity, entry in by_quantity.items():
            name = f"{prefix}{dtype}.{quantity}"
            if quantity not in QUANTITIES:
                raise ValueError(f"{path}: [{name}] is not a quantity; accepted: {', '.join(QUANTITIES)}")
            missing = (_ROW_FIELDS | (_MEASUREMENT_FIELDS if measurement and entry.get("measured") else set())) - set(entry)
            if missing:
                raise ValueError(f"{path}: [{name}] lacks {', '.join(sorted(missing))}")
            table[dtype][quantity] = Tolerance(
                rtol=float(entry["rtol"]), atol=float(entry["atol"]), rel_floor=float(entry["rel_floor"]),
                reason=str(entry["reason"]).strip(), measured=bool(entry["measured"]), row=name,
            )
    return table


def _parse_override(entry: dict[str, Any], index: int, path: Path) -> Override:
    where = f"{path.name}: override {index} ({entry.get('id', '?')})"
    missing = {"id", "dtypes", "when", "rtol", "atol", "reason"} - set(entry)
    if missing:
        raise ValueError(f"{where} lacks {', '.join(sorted(missing))}")
    try:
        conditions = parse_conditions(entry["when"], where)
    except DivergenceFileError as error:
        raise ValueError(str(error)) from None
    return Override(id=entry["id"], dtypes=tuple(entry["dtypes"]), conditions=conditions, rtol=float(entry["rtol"]),
                    atol=float(entry["atol"]), reason=str(entry["reason"]).strip())


def tolerance_for(table: dict[str, dict[str, Tolerance]], dtype: str, quantity: str) -> Tolerance:
    try:
        return table[dtype][quantity]
    except KeyError:
        raise KeyError(f"no tolerance for dtype {dtype!r}, quantity {quantity!r} in {TOLERANCE_FILE.name}") from None


def quantity_of(output_name: str) -> str:
    """Which row of the table an output is judged by: gradients (grad/..., and the loss they are taken of),
    the h and c states (h, c@0, h_forward...), or the rest."""
    if output_name.startswith("grad/") or output_name == "loss":
        return "gradients"
    return "states" if output_name[0] in ("h", "c") else "outputs"


def tolerance_table_json(table: dict[str, dict[str, Tolerance]]) -> dict[str, Any]:
    """The rows, as recorded in a record's header under "tolerances"."""
    return {
        dtype: {q: {"rtol": t.rtol, "atol": t.atol, "rel_floor": t.rel_floor, "reason": t.reason, "measured": t.measured}
                for q, t in by_quantity.items()}
        for dtype, by_quantity in table.items()
    }


def tolerance_extras_json(table: Tolerances) -> dict[str, Any]:
    """The per-case overrides and the API agreement bound, as recorded beside the rows."""
    return {
        "tolerance_overrides": [
            {"id": o.id, "dtypes": list(o.dtypes), "when": "; ".join(c.describe() for c in o.conditions), "rtol": o.rtol,
             "atol": o.atol, "reason": o.reason}
            for o in table.overrides
        ],
        "api_agreement_bound": {"max_abs_diff": table.api_max_abs_diff, "reason": table.api_reason},
        "unmeasured_tolerance_rows": table.unmeasured_rows(),
    }
