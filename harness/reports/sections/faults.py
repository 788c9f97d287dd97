"""The fault study (<backend>.faults.json): which injected faults the tolerances detect, and the perturbation sweep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.reports.judged import read_number, sort_key


@dataclass(frozen=True)
class FaultCell:
    status: str  # detected | undetected | error | not run
    flagged: int
    runs: int
    worst_error: float | None


@dataclass(frozen=True)
class FaultRow:
    name: str
    description: str
    cells: dict[str, FaultCell]


@dataclass(frozen=True)
class SweepRow:
    dtype: str
    case: str
    cells: dict[str, str]  # backend -> smallest detected perturbation, or why there is none


@dataclass(frozen=True)
class FaultDetection:
    backend: str
    detected: int
    total: int
    errors: int
    false_alarms: tuple[str, ...]
    blind_sweeps: tuple[str, ...] = ()  # "dtype: why" for every sweep that detected no perturbation at all
    precision: str = ""  # where and at which precision the study ran: "gpu_tf32, precision default"
    missed: tuple[str, ...] = ()  # what this precision cannot see: undetected faults, then "sweep:<dtype>" that detected nothing


@dataclass(frozen=True)
class FaultCaseRow:
    """One case of one fault: per backend, how it was judged (verdict after claims, against the clean run)."""
    fault: str
    case: str
    cells: dict[str, str]  # backend -> "detected (fail vs clean pass; generic)", "missed (known vs clean known; ...)", ...


@dataclass(frozen=True)
class Faults:
    backends: tuple[str, ...]
    detection: tuple[FaultDetection, ...]
    rows: tuple[FaultRow, ...]
    sweep: tuple[SweepRow, ...]
    cases: tuple[FaultCaseRow, ...] = ()


def build_faults(studies: dict[str, dict[str, Any]]) -> Faults | None:
    if not studies:
        return None
    backends = tuple(studies)
    names = list(dict.fromkeys(name for data in studies.values() for name in (data.get("faults") or {})))
    detection = []
    rows = []
    for backend in backends:
        entries = studies[backend].get("faults") or {}
        statuses = [_fault_status(entry) for entry in entries.values()]
        clean = studies[backend].get("clean") or {}
        # The fault study marks a clean case that did not pass and that no known divergence explains.
        alarms = tuple(
            name for name, entry in clean.items()
            if (entry["false_alarm"] if "false_alarm" in entry else str(entry.get("verdict") or entry.get("status")) not in ("pass", "known"))
        )
        blind = _blind_sweeps(studies[backend].get("sweep") or {})
        settings = studies[backend].get("settings") or {}
        precision = f"{studies[backend].get('device_class') or '?'}, precision {settings.get('precision_mode') or 'not recorded'}"
        missed = tuple(name for name, entry in entries.items() if _fault_status(entry) == "undetected")
        missed += tuple(f"sweep:{line.split(':', 1)[0]}" for line in blind)
        detection.append(FaultDetection(backend, statuses.count("detected"), len(statuses), statuses.count("error"), alarms, blind, precision, missed))
    for name in names:
        cells = {}
        description = ""
        for backend in backends:
            entry = (studies[backend].get("faults") or {}).get(name)
            if entry is None:
                cells[backend] = FaultCell("not run", 0, 0, None)
                continue
            description = description or str(entry.get("description") or "")
            runs = entry.get("runs") or {}
            errors = [read_number(run.get("max_abs_error")) for run in runs.values()]
            errors = [e for e in errors if e is not None]
            cells[backend] = FaultCell(
                _fault_status(entry), len(entry.get("flagged_cases") or []), len(runs),
                max(errors, key=sort_key) if errors else None,
            )
        rows.append(FaultRow(name, description, cells))
    sweep = []
    dtypes = list(dict.fromkeys(dtype for data in studies.values() for dtype in (data.get("sweep") or {})))
    for dtype in dtypes:
        cells = {}
        case = ""
        for backend in backends:
            entry = (studies[backend].get("sweep") or {}).get(dtype) or {}
            case = case or str(entry.get("case") or "")
            clean = entry.get("clean_status")
            known = ", ".join(entry.get("known_divergence") or [])
            if entry.get("error"):
                cells[backend] = f"ERROR: {entry['error']}"
            elif clean is None:
                cells[backend] = "not run"
            elif entry.get("skipped"):  # a record from before the sweep ran on claimed cases
                cells[backend] = f"n/a (unmodified case: {clean})"
            elif entry.get("smallest_detected") is None:
                cells[backend] = "NONE DETECTED"
            else:
                cells[backend] = f"{entry['smallest_detected']:g}" + (f" (unmodified case known: {known})" if known else "")
        sweep.append(SweepRow(dtype, case, cells))
    return Faults(backends, tuple(detection), tuple(rows), tuple(sweep), _fault_cases(studies, backends, names))


def _blind_sweeps(sweep: dict[str, Any]) -> tuple[str, ...]:
    """"dtype: why" for every sweep that ran and detected no perturbation (the fault study's undetected_sweeps)."""
    return tuple(
        f"{dtype}: {entry.get('no_detection') or 'no perturbation detected on ' + str(entry.get('case'))}" for dtype, entry in sweep.items()
        if not entry.get("error") and not entry.get("skipped") and entry.get("clean_status") is not None and entry.get("smallest_detected") is None
    )


def _fault_cases(studies: dict[str, dict[str, Any]], backends: tuple[str, ...], names: list[str]) -> tuple[FaultCaseRow, ...]:
    """The per-case detection table: every (fault, case) run, per backend its verdict, the faulted run's verdict after
    claims against the clean verdict, and the kernel paths its builds ran."""
    rows = []
    for name in names:
        case_names = list(dict.fromkeys(case for data in studies.values() for case in ((data.get("faults") or {}).get(name) or {}).get("runs") or {}))
        for case in case_names:
            cells = {}
            for backend in backends:
                run = (((studies[backend].get("faults") or {}).get(name) or {}).get("runs") or {}).get(case)
                if run is None:
                    cells[backend] = "not run"
                    continue
                verdict = {"undetected": "MISSED", "error": "ERROR"}.get(str(run.get("verdict")), str(run.get("verdict")))
                judged = f"{run['after_claims']} vs clean {run.get('clean_verdict')}" if "after_claims" in run else f"status {run.get('status')}"
                paths = ", ".join(dict.fromkeys(str(path) for path in (run.get("kernel_paths") or {}).values()))
                reason = str(run.get("reason") or "")
                cells[backend] = f"{verdict} ({judged}" + (f"; {paths}" if paths else "") + ")" + (f": {reason}" if reason else "")
            rows.append(FaultCaseRow(name, case, cells))
    return tuple(rows)


def _fault_status(entry: dict[str, Any]) -> str:
    status = entry.get("status")
    if status in ("detected", "undetected", "error"):
        return status
    return "detected" if entry.get("detected") else "undetected"
