"""What a run record's per-case durations predict: the matrix on N machines, and cost against the number of cases.

Across N machines: ``harness run --shard K/N`` gives each machine the cases ``harness.case.shard.assign_shards``
assigns to shard K (balanced by an estimate of each case's work, not by its measured time). A machine's wall
time is then its process's start-up plus the summed durations of its cases, and the matrix is done when the
slowest machine is: predicted(N) = max over K of sum(duration of shard K's cases) + start-up. The durations are
the ``duration_s`` of each case in ``<backend>.json`` (a case's measure step; the record's own writes and
verdicts are in the run's ``wall_time_s`` but in no case's duration, so ``unattributed_s`` shows that part); the
start-up is ``import keras`` as bench-overhead measured it, or left out and said so when it was not measured.

Against the number of cases: the cumulative duration over the cases in the order the run measured them, its
seconds per case (least-squares line through the origin) and its log-log slope (1: each case costs the same
whatever came before; above 1: later cases cost more).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.case.schema import Case, parse_case
from harness.case.shard import assign_shards

MACHINES = (1, 2, 4, 8)


@dataclass(frozen=True)
class ShardPrediction:
    machines: int
    shard_seconds: tuple[float, ...]  # summed case durations per shard, shard 1 first
    shard_cases: tuple[int, ...]
    startup_s: float | None  # added once per machine; None when not measured (then left out)
    predicted_s: float  # max(shard_seconds) + startup_s (or without it)

    @property
    def imbalance(self) -> float | None:
        """Slowest shard over the mean shard (1: perfectly balanced)."""
        mean = sum(self.shard_seconds) / len(self.shard_seconds)
        return max(self.shard_seconds) / mean if mean > 0 else None


@dataclass(frozen=True)
class CaseGrowth:
    cases: int
    total_s: float
    median_case_s: float
    seconds_per_case: float  # the least-squares slope of cumulative time against the case count (through 0)
    log_log_slope: float | None
    cumulative_s: tuple[float, ...]


def measured_cases(record: dict[str, Any], source: str) -> tuple[list[Case], dict[str, float]]:
    """The cases of a run record (from their recorded definitions) and each one's ``duration_s``; the cases without
    a duration are left out."""
    cases: list[Case] = []
    durations: dict[str, float] = {}
    for result in record.get("cases", []):
        duration = result.get("duration_s")
        if not isinstance(duration, (int, float)) or isinstance(duration, bool) or not math.isfinite(duration):
            continue
        cases.append(parse_case(result["definition"], source))
        durations[result["case"]] = float(duration)
    return cases, durations


def shard_members(cases: list[Case], machines: int) -> list[list[str]]:
    """The case names ``harness run --shard K/machines`` measures, for K = 1 .. machines (the real assignment)."""
    members: list[list[str]] = [[] for _ in range(machines)]
    for case, shard in zip(cases, assign_shards(cases, machines)):
        members[shard - 1].append(case.name)
    return members


def predict_shards(cases: list[Case], durations: dict[str, float], machines: int, startup_s: float | None) -> ShardPrediction:
    """The wall time of ``cases`` split over ``machines`` by the real shard assignment (module docstring)."""
    members = shard_members(cases, machines)
    seconds = tuple(sum(durations[name] for name in names) for names in members)
    predicted = max(seconds) + (startup_s or 0.0)
    return ShardPrediction(machines, seconds, tuple(len(names) for names in members), startup_s, predicted)


def case_growth(durations: list[float]) -> CaseGrowth | None:
    """Cumulative cost against the number of cases, in the order measured; None without a case."""
    if not durations:
        return None
    cumulative = np.cumsum(np.asarray(durations, dtype=float))
    counts = np.arange(1, len(durations) + 1, dtype=float)
    per_case = float(np.dot(counts, cumulative) / np.dot(counts, counts))
    positive = cumulative > 0
    slope = None
    if positive.sum() >= 2:
        slope = float(np.polyfit(np.log(counts[positive]), np.log(cumulative[positive]), 1)[0])
    return CaseGrowth(len(durations), float(cumulative[-1]), float(statistics.median(durations)), per_case, slope,
                      tuple(float(value) for value in cumulative))
