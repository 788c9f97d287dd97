"""The verdicts per layer kind (lstm, gru, simple_rnn, mixed stacks), side by side per backend."""

from __future__ import annotations

from dataclasses import dataclass

from harness.reports.case_results import CaseResult


@dataclass(frozen=True)
class KindRow:
    """The verdicts of the cases whose recurrent layers are of these cell kinds ("gru", or "gru+lstm" for a mixed
    stack; a Bidirectional or branches counts as the kind it wraps), per backend: verdict -> number of cases."""

    kinds: str
    counts: dict[str, dict[str, int]]  # backend -> verdict -> cases

    def cases(self, backend: str) -> int:
        return sum(self.counts.get(backend, {}).values())


def kind_cell(row: KindRow, backend: str) -> str:
    """One backend's verdicts of a kind's cases: "12: 10 pass, 2 known" (every verdict present, by count)."""
    counts = row.counts.get(backend, {})
    if not counts:
        return "-"
    parts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    return f"{row.cases(backend)}: {parts}"


def build_kind_rows(backends: tuple[str, ...], results: dict[str, dict[str, CaseResult]]) -> tuple[KindRow, ...]:
    """Per kind (single kinds first, then mixed stacks), each backend's verdict counts."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for backend in backends:
        for result in results[backend].values():
            per_backend = counts.setdefault(result.kinds, {}).setdefault(backend, {})
            per_backend[result.verdict] = per_backend.get(result.verdict, 0) + 1
    order = sorted(counts, key=lambda kinds: ("+" in kinds, kinds))
    return tuple(KindRow(kinds, counts[kinds]) for kinds in order)
