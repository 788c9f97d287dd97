"""Models saved on one backend and loaded on another (<backend>.serialization.json)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.reports.case_results import read_item
from harness.reports.judged import Judged, read_number, sort_key, worst_judged


@dataclass(frozen=True)
class SerializationRow:
    saved_on: str
    loaded_on: str
    models: int
    passed: int
    judged: Judged  # worst against the reference
    largest_difference: float | None  # from the saving backend's own outputs
    failures: tuple[str, ...]


def build_serialization(studies: dict[str, dict[str, Any]]) -> tuple[SerializationRow, ...] | None:
    loads = [(backend, entry) for backend, data in studies.items() for entry in data.get("loads") or [] if isinstance(entry, dict)]
    if not loads:
        return None
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for loaded_on, entry in loads:
        grouped.setdefault((str(entry.get("saved_on")), loaded_on), []).append(entry)
    rows = []
    for (saved_on, loaded_on), entries in sorted(grouped.items()):
        judged = []
        differences = []
        failures = []
        passed = 0
        for entry in entries:
            status = str(entry.get("verdict") or entry.get("status"))
            passed += status == "pass"
            for name, item in (entry.get("items") or {}).items():
                judged.append(read_item("loaded", name, item).judged)
            differences += [read_number(v.get("max_abs_diff")) for v in (entry.get("vs_saving_backend") or {}).values()]
            if status != "pass":
                claims = entry.get("explained_by") or entry.get("known_divergences") or []
                failures.append(f"{entry.get('case')} ({status}" + (f": {', '.join(claims)}" if claims else "") + ")")
        differences = [d for d in differences if d is not None]
        largest = max(differences, key=sort_key) if differences else None
        rows.append(SerializationRow(saved_on, loaded_on, len(entries), passed, worst_judged(judged), largest, tuple(failures)))
    return tuple(rows)
