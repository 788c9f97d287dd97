"""The backends measured against each other (cross_backend.json): per case and pair, the largest difference."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.reports.case_results import CaseResult
from harness.reports.judged import Judged, read_number, sort_key
from harness.reports.loading import CROSS_FILE, CROSS_SCHEMA, load_optional


@dataclass(frozen=True)
class CrossPair:
    """One output of one case measured on two backends (cross_backend.json): a measurement, not a verdict.
    judged.ratio is the difference in units of the sum of the two sides' tolerances, judged.abs_error the largest
    absolute difference; both None when the shapes differ."""

    case: str
    backends: tuple[str, str]
    output: str
    max_abs_diff: float | None
    max_rel_diff: float | None
    verdicts: tuple[str, str]  # each side's verdict on this case (pass, known, fail, ...)
    judged: Judged
    shapes_differ: bool = False

    @property
    def key(self) -> float:
        """Largest difference first: differing shapes or a non-finite disagreement above every number."""
        return math.inf if self.shapes_differ else sort_key(self.max_abs_diff)


@dataclass(frozen=True)
class CrossRow:
    """The output of one case with the largest difference between one pair of backends, and the known divergences
    of this case on either backend."""

    case: str
    backends: tuple[str, str]
    worst: CrossPair
    outputs: int
    explained_by: tuple[str, ...]  # known divergences of this case on either backend

    @property
    def verdicts(self) -> tuple[str, str]:
        return self.worst.verdicts

    @property
    def both_pass(self) -> bool:
        return self.worst.verdicts == ("pass", "pass")


@dataclass(frozen=True)
class PairSummary:
    backends: tuple[str, str]
    compared: int  # cases measured on both
    both_pass: int  # of those, cases that pass on both (their distance is within the summed tolerances by construction)
    largest: CrossRow | None  # the largest difference of any compared case
    largest_both_pass: CrossRow | None  # the largest difference of a case that passes on both


@dataclass(frozen=True)
class AcceptanceRow:
    """A case refused on some backends and run on others (cross_backend.json ``acceptance``), judged against the
    acceptance claims: explained (``explained_by``) or a finding (``unexplained``)."""

    case: str
    refused_on: tuple[str, ...]
    ran_on: tuple[str, ...]
    explained_by: tuple[str, ...]
    unexplained: tuple[str, ...]


@dataclass(frozen=True)
class CrossBackend:
    ran: bool
    rows: tuple[CrossRow, ...]  # every (case, pair) measured, largest absolute difference first
    pairs: tuple[PairSummary, ...]
    skipped: tuple[tuple[str, tuple[str, ...], str], ...]  # (case, backends, reason): no numbers on a side
    missing: tuple[tuple[str, tuple[str, ...], str], ...] = ()  # (case, backends, raw output): named by a record, absent
    never_compared: tuple[str, ...] = ()  # cases measured on no pair of backends
    acceptance: tuple[AcceptanceRow, ...] = ()  # cases refused on some backends and run on others
    # (claim, case, backend): an acceptance claim on a case no backend refuses any more
    acceptance_resolved: tuple[tuple[str, str, str], ...] = ()

    @property
    def unexplained_acceptance(self) -> tuple[AcceptanceRow, ...]:
        return tuple(row for row in self.acceptance if row.unexplained)


def build_cross_backend(folder: Path, results: dict[str, dict[str, CaseResult]], notes: list[str]) -> CrossBackend:
    data = load_optional(folder / CROSS_FILE, CROSS_SCHEMA, notes) if (folder / CROSS_FILE).exists() else None
    if data is None:
        return CrossBackend(False, (), (), ())

    def verdict_of(backend: str, case: str, recorded: Any) -> str:
        if recorded:
            return str(recorded)
        result = results.get(backend, {}).get(case)
        return result.verdict if result is not None else "?"

    grouped: dict[tuple[str, tuple[str, str]], list[CrossPair]] = {}
    for raw in data.get("pairs") or []:
        backends = tuple(str(b) for b in raw.get("backends") or ("?", "?"))
        backends = (backends[0], backends[-1])
        case = str(raw.get("case"))
        difference, relative = read_number(raw.get("max_abs_diff")), read_number(raw.get("max_rel_diff"))
        ratio = read_number(raw.get("summed_tolerance_ratio", raw.get("ratio")))  # "ratio": records before the measurements
        shapes_differ = raw.get("shapes") is not None
        nonfinite = bool(raw.get("nonfinite_disagreements")) or any(v is not None and not math.isfinite(v) for v in (ratio, difference))
        recorded = list(raw.get("verdicts") or (None, None))
        pair = CrossPair(case, backends, str(raw.get("output", "?")), difference, relative,
                         (verdict_of(backends[0], case, recorded[0]), verdict_of(backends[1], case, recorded[-1])),
                         Judged(ratio, difference, nonfinite), shapes_differ)
        grouped.setdefault((pair.case, pair.backends), []).append(pair)
    rows = []
    for (case, backends), pairs in grouped.items():
        worst = max(pairs, key=lambda p: (p.key, p.judged.key))
        explained = tuple(sorted({
            claim for backend in backends
            for claim in (results.get(backend, {}).get(case).explained_by if results.get(backend, {}).get(case) else ())
        }))
        rows.append(CrossRow(case, backends, worst, len(pairs), explained))
    rows.sort(key=lambda r: (-r.worst.key, -r.worst.judged.key, r.case, r.backends))
    summaries = []
    for backends in sorted({row.backends for row in rows}):
        mine = [row for row in rows if row.backends == backends]
        passing = [row for row in mine if row.both_pass]
        summaries.append(PairSummary(backends, len(mine), len(passing), mine[0] if mine else None, passing[0] if passing else None))
    skipped = tuple(
        (str(s.get("case")), tuple(str(b) for b in s.get("backends") or ()), str(s.get("reason") or ""))
        for s in (data.get("not_compared") if "not_compared" in data else data.get("skipped")) or []
    )
    missing = tuple((str(m.get("case")), tuple(str(b) for b in m.get("backends") or ()), str(m.get("raw_output") or ""))
                    for m in data.get("missing") or [])
    acceptance = tuple(AcceptanceRow(str(a.get("case")), tuple(str(b) for b in a.get("refused_on") or ()),
                                     tuple(str(b) for b in a.get("ran_on") or ()), tuple(str(c) for c in a.get("explained_by") or ()),
                                     tuple(str(u) for u in a.get("unexplained") or ()))
                       for a in data.get("acceptance") or [])
    acceptance_resolved = tuple((str(r.get("divergence")), str(r.get("case")), str(r.get("backend")))
                                for r in data.get("acceptance_possibly_resolved") or [])
    return CrossBackend(True, tuple(rows), tuple(summaries), skipped, missing, tuple(str(c) for c in data.get("never_compared") or ()),
                        acceptance, acceptance_resolved)
