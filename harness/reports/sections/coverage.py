"""What the cases cover: distinct configurations, model runs and the values of each configuration axis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.reports.case_results import CaseResult


@dataclass(frozen=True)
class Coverage:
    configurations: int
    model_runs: int
    axes: tuple[tuple[str, int], ...]  # (axis, number of distinct values), by axis name

    @property
    def values(self) -> int:
        return sum(count for _, count in self.axes)


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [pair for key, inner in value.items() for pair in _flatten(f"{prefix}.{key}" if prefix else str(key), inner)]
    return [(prefix, repr(value))]


def _axis_values(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(axis, value) pairs of a case's configuration; layer options are named after their layer type."""
    pairs: list[tuple[str, str]] = []
    for key, value in config.items():
        if key in ("batch", "time", "features"):
            continue
        if key == "layers" and isinstance(value, list):
            for spec in value:
                if not isinstance(spec, dict):
                    continue
                kind = str(spec.get("type", "layer"))
                for option, option_value in spec.items():
                    if option == "layer" and isinstance(option_value, dict):
                        inner = str(option_value.get("type", "layer"))
                        pairs += [(f"{kind}.{inner}.{k}", repr(v)) for k, v in option_value.items() if k != "type"]
                    elif option not in ("type", "units"):
                        pairs += _flatten(f"{kind}.{option}", option_value)
                pairs.append(("layer", kind))
        else:
            pairs += _flatten(key, value)
    return pairs


def build_coverage(results: dict[str, dict[str, CaseResult]]) -> Coverage:
    configurations: set[tuple[tuple[str, str], ...]] = set()
    axes: dict[str, set[str]] = {}
    model_runs = 0
    for per_case in results.values():
        for result in per_case.values():
            model_runs += len(result.apis)
            if not result.config:
                continue
            pairs = _axis_values(result.config)
            configurations.add(tuple(sorted(pairs)))
            for axis, value in pairs:
                axes.setdefault(axis, set()).add(value)
    return Coverage(len(configurations), model_runs, tuple((axis, len(values)) for axis, values in sorted(axes.items())))
