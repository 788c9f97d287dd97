"""What a reader must know before trusting the numbers: the warnings, and the integrity flags of the records."""

from __future__ import annotations

from typing import Any

from harness.reports.sections.environment import Environment
from harness.reports.sections.faults import FaultCell, Faults


def build_record_flags(records: dict[str, dict[str, Any]], verdict_files: dict[str, dict[str, Any] | None]) -> tuple[tuple[str, ...], int]:
    """The integrity flags ``classify`` put in each verdict file (an unfinished record is flagged from the record
    itself when its verdicts predate them), each once; and how many are failures of a record."""
    from harness.records.integrity import FAILING_FLAGS

    flags: list[str] = []
    failures = 0
    for backend, record in records.items():
        integrity = (verdict_files.get(backend) or {}).get("integrity")
        if integrity is None:
            if not record.get("finished"):
                flags.append(f"unfinished: {backend}.json is unfinished: the run never finished (no 'finished' time), "
                             f"it holds {len(record.get('cases', []))} cases")
            continue
        for flag in integrity.get("flags", []):
            line = f"{flag['kind'].replace('_', ' ')}: {flag['message']}"
            if line not in flags:
                flags.append(line)
                failures += flag["kind"] in FAILING_FLAGS
    return tuple(flags), failures


def build_warnings(records: dict[str, dict[str, Any]], verdict_files: dict[str, dict[str, Any] | None],
              environments: list[Environment], faults: Faults | None) -> tuple[str, ...]:
    warnings = []
    for backend, record in records.items():
        if record.get("fault"):
            warnings.append(f"{backend}: the run record was made with fault {record['fault']!r} injected; its numbers are not the library's.")
        if verdict_files.get(backend) is None:
            warnings.append(f"{backend}: no {backend}.verdicts.json: the cases are shown with their measured status, unclassified (no known divergence applied).")
    for env in environments:
        if env.kind == "run" and env.verdicts is not None and not env.verdicts.matches_run:
            warnings.append(
                f"{env.backend}: the verdicts classify the run started {env.verdicts.run_started}, but the run record "
                f"beside them started {env.started}: re-run the classification."
            )
    hashes = {env.verdicts.sha256 for env in environments if env.verdicts is not None}
    if len(hashes) > 1:
        warnings.append("the backends were classified against different divergence files (see the hashes under Environment).")
    if faults is not None:
        for entry in faults.detection:
            missed = [row.name for row in faults.rows if row.cells.get(entry.backend, FaultCell("not run", 0, 0, None)).status == "undetected"]
            if missed:
                warnings.append(f"{entry.backend}: fault{'s' if len(missed) > 1 else ''} not detected by the tolerances at {entry.precision}: {', '.join(missed)}.")
            if entry.false_alarms:
                warnings.append(f"{entry.backend}: unmodified runs of the fault study did not pass: {', '.join(entry.false_alarms)}.")
            if entry.blind_sweeps:
                warnings.append(f"{entry.backend}: the fault study's sweep detected no perturbation: {'; '.join(entry.blind_sweeps)}.")
    return tuple(warnings)
