"""Known divergences: failures that are understood, explained and reproduced, kept in a data file.

A failing case on a backend that an entry of ``known_divergences.toml`` matches gets status "known"
instead of "fail" (its measurements are kept unchanged). An entry that matches no failing case any
more is reported as possibly resolved, so the file cannot go stale silently.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KNOWN_DIVERGENCES_FILE = Path(__file__).with_name("known_divergences.toml")
_FIELDS = {"id", "cases", "backends", "observed", "reference", "upstream", "reproducer"}


@dataclass(frozen=True)
class Divergence:
    id: str
    cases: tuple[str, ...]
    backends: tuple[str, ...]
    observed: str
    reference: str
    upstream: str
    reproducer: str

    def matches(self, case: str, backend: str) -> bool:
        return backend in self.backends and any(fnmatch.fnmatchcase(case, pattern) for pattern in self.cases)


def load_divergences(path: Path = KNOWN_DIVERGENCES_FILE) -> list[Divergence]:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    entries = []
    for index, entry in enumerate(raw.get("divergence", [])):
        missing = _FIELDS - set(entry)
        unknown = set(entry) - _FIELDS
        if missing or unknown:
            problem = f"lacks {', '.join(sorted(missing))}" if missing else f"has unknown {', '.join(sorted(unknown))}"
            raise ValueError(f"{path}: divergence {index} ({entry.get('id', '?')}) {problem}; fields: {', '.join(sorted(_FIELDS))}")
        entries.append(
            Divergence(
                id=entry["id"], cases=tuple(entry["cases"]), backends=tuple(entry["backends"]),
                observed=entry["observed"].strip(), reference=entry["reference"].strip(),
                upstream=entry["upstream"].strip(), reproducer=entry["reproducer"].strip(),
            )
        )
    return entries


def classify(result: dict[str, Any], backend: str, divergences: list[Divergence]) -> None:
    """Turn a failing or erroring case into 'known' when a divergence matches it (records which ones).

    The measured status is kept as ``measured_status``, so the report can show what was observed."""
    matching = [d.id for d in divergences if d.matches(result["case"], backend)]
    result["known_divergences"] = matching
    result["measured_status"] = result["status"]
    if result["status"] in ("fail", "error") and matching:
        result["status"] = "known"


def stale_divergences(record_cases: dict[str, list[dict[str, Any]]], divergences: list[Divergence]) -> list[tuple[Divergence, list[str]]]:
    """Entries that matched some measured (case, backend) but none of them failed: possibly resolved.

    ``record_cases`` maps backend name to its case results. Returns (entry, the passing case@backend list).
    """
    stale = []
    for divergence in divergences:
        matched = [
            (backend, result) for backend, results in record_cases.items() for result in results
            if divergence.matches(result["case"], backend)
        ]
        if matched and all(result["status"] in ("pass", "refused") for _, result in matched):
            stale.append((divergence, [f"{result['case']}@{backend}" for backend, result in matched]))
    return stale
