"""The kernel path each build ran (harness.execute.kernels), and the kernel = fused_on_cpu cases against their twins."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harness.reports.case_results import CaseResult
from harness.reports.judged import sort_key


FUSED_STEPS = ("fused", "bidirectional_fused")


@dataclass(frozen=True)
class KernelSummary:
    """One backend's builds by the kernel path they ran (harness.execute.kernels), from its run record."""

    backend: str
    precision_mode: str
    builds: int  # builds with a recorded path
    unrecorded: int  # builds that measured outputs without a recorded path (a record made before paths were observed)
    raised: int  # builds that raised, with the path they had tried
    paths: tuple[tuple[str, int], ...]  # (kernel path, builds), most builds first
    fused_cases: tuple[str, ...]  # cases with a build that ran a fused (cuDNN) kernel
    failed_cases: tuple[str, ...]  # cases with a build whose fused kernel was called and failed


@dataclass(frozen=True)
class FusedOnCpu:
    """One backend's kernel = fused_on_cpu cases (Keras's fused-path code through the backend's CPU stand-in
    kernel), against the same configurations as shipped (their twins: the same definition, kernel aside)."""

    backend: str
    cases: int
    verdicts: tuple[tuple[str, int], ...]  # (verdict, cases)
    ran_fused: int  # cases where every build ran the stand-in kernel to completion (observed path fused)
    reached_kernel: int  # cases where the stand-in kernel was called at least once (TensorFlow: the recorder)
    never_reached: int  # cases whose fused entry point declined before any kernel (e.g. masks on JAX, PyTorch)
    not_passing: tuple[tuple[str, str, str], ...]  # (case, verdict, the claims that explain it or "unexplained")
    worst_fused: float | None  # the largest max abs error against the reference among passing fused cases
    worst_twin: float | None  # the same among their as-shipped twins


@dataclass(frozen=True)
class KernelRow:
    """One case's kernel paths across backends: the path when every build ran the same, else per API."""

    case: str
    cells: dict[str, str]


def ran_fused(path: str) -> bool:
    """Whether a build's kernel path (paths joined by ", ", steps by "->") ended in a fused kernel somewhere."""
    return any(segment.split("->")[-1].removesuffix(" (raised)") in FUSED_STEPS for segment in path.split(", "))


def build_kernel_summaries(records: dict[str, dict[str, Any]], results: dict[str, dict[str, CaseResult]]) -> tuple[KernelSummary, ...]:
    summaries = []
    for backend, per_case in results.items():
        counts: dict[str, int] = {}
        raised = unrecorded = 0
        fused, failed = [], []
        for result in per_case.values():
            recorded = dict(result.kernel_paths)
            unrecorded += sum(1 for api in result.apis if api not in recorded)
            for api, path in result.kernel_paths:
                if path.endswith(" (raised)"):
                    raised += 1
                counts[path] = counts.get(path, 0) + 1
            if any(ran_fused(path) for _, path in result.kernel_paths):
                fused.append(result.case)
            if any("fused_failed" in path for _, path in result.kernel_paths):
                failed.append(result.case)
        if not counts:
            continue
        settings = records[backend].get("settings") or {}
        summaries.append(KernelSummary(
            backend=backend, precision_mode=str(settings.get("precision_mode") or "not recorded"),
            builds=sum(counts.values()), unrecorded=unrecorded, raised=raised,
            paths=tuple(sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))),
            fused_cases=tuple(fused), failed_cases=tuple(failed),
        ))
    return tuple(summaries)


def _without_kernel(definition: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in definition.items() if key not in ("name", "kernel")}


def build_fused_on_cpu(results: dict[str, dict[str, CaseResult]]) -> tuple[FusedOnCpu, ...]:
    summaries = []
    for backend, per_case in results.items():
        fused = [r for r in per_case.values() if r.config.get("kernel") == "fused_on_cpu"]
        if not fused:
            continue
        shipped = {json.dumps(_without_kernel(r.definition), sort_keys=True): r for r in per_case.values()
                   if r.config.get("kernel", "as_shipped") == "as_shipped"}
        verdicts: dict[str, int] = {}
        not_passing, fused_errors, twin_errors = [], [], []
        for result in fused:
            verdicts[result.verdict] = verdicts.get(result.verdict, 0) + 1
            if result.verdict != "pass":
                not_passing.append((result.case, result.verdict, ", ".join(result.explained_by) or "unexplained"))
                continue
            twin = shipped.get(json.dumps(_without_kernel(result.definition), sort_keys=True))
            if twin is not None and twin.verdict == "pass" and result.max_abs_error is not None and twin.max_abs_error is not None:
                fused_errors.append(result.max_abs_error)
                twin_errors.append(twin.max_abs_error)
        summaries.append(FusedOnCpu(
            backend=backend, cases=len(fused), verdicts=tuple(sorted(verdicts.items())),
            ran_fused=sum(1 for r in fused if r.stand_in_calls > 0 and all(ran_fused(path) for _, path in r.kernel_paths)),
            reached_kernel=sum(1 for r in fused if r.stand_in_calls > 0),
            never_reached=sum(1 for r in fused if r.stand_in_calls == 0),
            not_passing=tuple(not_passing),
            worst_fused=max(fused_errors, key=sort_key) if fused_errors else None,
            worst_twin=max(twin_errors, key=sort_key) if twin_errors else None,
        ))
    return tuple(summaries)


def _kernel_cell(result: CaseResult | None) -> str:
    if result is None:
        return "not run"
    if not result.kernel_paths:
        return "not recorded"
    distinct = list(dict.fromkeys(path for _, path in result.kernel_paths))
    if len(distinct) == 1:
        return distinct[0]
    return "; ".join(f"{api}: {path}" for api, path in result.kernel_paths)


def build_kernel_rows(backends: tuple[str, ...], results: dict[str, dict[str, CaseResult]]) -> tuple[KernelRow, ...]:
    names = list(dict.fromkeys(name for per_case in results.values() for name in per_case))
    rows = []
    for name in names:
        cells = {backend: results[backend].get(name) for backend in backends}
        if any(cell is not None and cell.kernel_paths for cell in cells.values()):
            rows.append(KernelRow(name, {backend: _kernel_cell(cell) for backend, cell in cells.items()}))
    return tuple(rows)
