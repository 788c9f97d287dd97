"""What WHY.md reads: the probes, the seeded-weight comparison and conclusions computed from records."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from harness.reports.case_results import CaseResult
from harness.reports.judged import read_number
from harness.reports.sections.apis import ApiSummary


@dataclass(frozen=True)
class ProbeCell:
    ran: bool
    max_abs_diff: float | None
    bitwise: bool
    error: str | None


@dataclass(frozen=True)
class ProbeRow:
    probe: str
    cells: dict[str, ProbeCell]
    outcome: str  # bitwise (on every backend probed) | rounding (within the float32 output atol) | differs | error | not run


@dataclass(frozen=True)
class Why:
    """What WHY.md reads: the probes, the seeded-weight comparison and conclusions computed from records."""

    backends: tuple[str, ...]
    devices: dict[str, str]  # backend -> recorded device (run record, else probe record)
    keras_versions: tuple[str, ...]
    api: tuple[ApiSummary, ...]
    api_outcome: str  # bitwise | within | outside | none
    probes: tuple[ProbeRow, ...]
    probe_backends: tuple[str, ...]
    float32_atol: float | None
    seed_weights: tuple[tuple[str, str, float], ...]
    stateful: dict[str, tuple[int, int]]  # backend -> (stateful cases in several APIs, bitwise among them)


def build_why(report_backends: tuple[str, ...], records: dict[str, dict[str, Any]], probes: dict[str, dict[str, Any]],
         api: tuple[ApiSummary, ...], results: dict[str, dict[str, CaseResult]], float32_atol: float | None) -> Why:
    probe_backends = tuple(sorted(probes))
    backends = tuple(sorted(set(report_backends) | set(probe_backends)))
    devices = {b: str((records.get(b) or probes.get(b) or {}).get("device") or "?") for b in backends}
    keras = tuple(sorted({str((r.get("versions") or {}).get("keras")) for r in (*records.values(), *probes.values()) if (r.get("versions") or {}).get("keras")}))
    names = list(dict.fromkeys(n for data in probes.values() for n in (data.get("probes") or {}) if n != "seeded_initial_weights"))
    rows = []
    for name in names:
        cells = {}
        for backend in probe_backends:
            entry = (probes[backend].get("probes") or {}).get(name)
            if entry is None:
                cells[backend] = ProbeCell(False, None, False, None)
            else:
                cells[backend] = ProbeCell(True, read_number(entry.get("max_abs_diff")), bool(entry.get("bitwise_equal")),
                                           str(entry["error"]) if entry.get("error") else None)
        ran = [c for c in cells.values() if c.ran and c.error is None]
        if not ran:
            outcome = "error" if any(c.error for c in cells.values()) else "not run"
        elif all(c.bitwise for c in ran):
            outcome = "bitwise"
        elif float32_atol is not None and all(c.max_abs_diff is not None and c.max_abs_diff <= float32_atol for c in ran):
            outcome = "rounding"
        else:
            outcome = "differs"
        rows.append(ProbeRow(name, cells, outcome))
    weights = {
        backend: ((data.get("probes") or {}).get("seeded_initial_weights") or {}).get("weights")
        for backend, data in probes.items()
    }
    weights = {b: w for b, w in weights.items() if w}
    seed_pairs = []
    for first, second in itertools.combinations(sorted(weights), 2):
        differences = [
            max((abs(x - y) for x, y in zip(a, b)), default=0.0)
            for a, b in zip(weights[first], weights[second])
        ]
        seed_pairs.append((first, second, max(differences, default=0.0)))
    if not any(s.cases for s in api):
        outcome = "none"
    elif all(s.bitwise == s.cases for s in api):
        outcome = "bitwise"
    elif all(s.within == s.cases for s in api):
        outcome = "within"
    else:
        outcome = "outside"
    stateful = {}
    for backend, per_case in results.items():
        cases = [r for r in per_case.values() if r.stateful and r.api_agreement]
        stateful[backend] = (len(cases), sum(all(row.bitwise_equal for row in r.api_agreement) for r in cases))
    return Why(backends, devices, keras, api, outcome, tuple(rows), probe_backends, float32_atol, tuple(seed_pairs), stateful)
