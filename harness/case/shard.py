"""Shards: a deterministic, balanced share of the selected cases, for ``harness run --shard K/N``.

Every case goes to exactly one of N shards, the same one on every machine, so N runs with
``--shard 1/N`` ... ``--shard N/N`` over the same selection measure each case once and
``python -m harness merge`` can put them back together.

Balance comes from a cost estimate (``case_cost``): the cases are taken from the most to the least
expensive (ties by name) and each goes to the shard with the least estimated work so far (ties to the
lower shard number). The assignment therefore depends only on the set of selected cases, never on
their order; a shard keeps its cases in the order they were given. Greedy assignment in decreasing
cost leaves the most and the least loaded shards at most one case's cost apart.
"""

from __future__ import annotations

import re

from harness.case.schema import Case, CaseError

_SHARD_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)``; CaseError with one line when it is not of that form or not 1 <= K <= N."""
    match = _SHARD_PATTERN.match(text)
    if match is None:
        raise CaseError(f"--shard {text!r} is not K/N (for example 2/4: the second of four shards)")
    k, n = int(match.group(1)), int(match.group(2))
    check_shard(k, n)
    return k, n


def check_shard(k: int, n: int) -> None:
    """CaseError with one line unless K and N are integers with 1 <= K <= N."""
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in (k, n)):
        raise CaseError(f"shard {k!r}/{n!r}: K and N must be integers")
    if n < 1:
        raise CaseError(f"shard {k}/{n}: N (the number of shards) must be at least 1")
    if not 1 <= k <= n:
        raise CaseError(f"shard {k}/{n}: K must be between 1 and N ({n})")


def case_cost(case: Case) -> int:
    """A rough estimate of a case's work: per layer, batch * steps * (input width [+ units for the
    recurrent matmul]) * units, doubled for the two directions of a Bidirectional or the two branches;
    summed over layers, times the number of model-building APIs and the number of stateful batches."""
    total = 0
    width, steps = case.features, case.time
    for layer in case.layers:
        if layer.kind.recurrent:
            directions = max(1, len(layer.kind.copies))
            total += directions * case.batch * steps * (width + layer.units) * layer.units
        else:
            total += case.batch * steps * width * layer.units
        if not layer.returns_sequences:
            steps = 1
        width = layer.output_width
    return max(1, total) * max(1, len(case.apis)) * max(1, case.stateful_batches)


def assign_shards(cases: list[Case], n: int) -> list[int]:
    """The shard (1..N) of every case, in the order given."""
    check_shard(1, n)
    order = sorted(range(len(cases)), key=lambda index: (-case_cost(cases[index]), cases[index].name, index))
    loads = [0] * n
    assignment = [0] * len(cases)
    for index in order:
        shard = min(range(n), key=lambda candidate: (loads[candidate], candidate))
        loads[shard] += case_cost(cases[index])
        assignment[index] = shard + 1
    return assignment


def select_shard(cases: list[Case], k: int, n: int) -> list[Case]:
    """The cases of shard K of N, in their original order (empty when there are fewer cases than shards
    and this shard got none)."""
    check_shard(k, n)
    return [case for case, shard in zip(cases, assign_shards(cases, n)) if shard == k]
