"""The report model: everything REPORT.md, report.html, WHY.md and the figures show, built once from
the records of a results folder.

``build_report(folder)`` reads the records (run records ``<backend>.json``, verdict files
``<backend>.verdicts.json``, ``cross_backend.json`` and the side records ``<backend>.{probes,growth,
faults,serialization}.json``) and returns a ``Report``: plain frozen dataclasses holding every number,
row, ordering and conclusion the reports print. The renderers (``markdown``, ``html``, ``why``,
``plots``) only turn that model into text or pixels; they compute nothing and import nothing from each
other. Nothing here imports Keras or a backend, and nothing reads anything but JSON records.

Where the parts live: ``judged`` (numbers and an error judged by its tolerance), ``case_results`` (one case on
one backend), ``loading`` (reading the records), ``formatting`` (the one place numbers become text), and one
module per section under ``sections/``, each holding that section's dataclasses next to the function that
builds them. This module assembles the sections into a ``Report``; the names the renderers and the tests
import from it are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.reports.between_versions import BetweenVersions, load_between_versions, load_other_comparisons
from harness.reports.case_results import (
    ATTENTION_VERDICTS, UNMEASURED, VERDICTS, ApiAgreement, CaseResult, ErrorInfo, Item, case_kinds, read_case_result,
)
from harness.reports.formatting import (
    format_agreement, format_case, format_judged, format_names, format_number, format_ratio, format_seconds, format_short,
    format_tolerance,
)
from harness.reports.judged import CLOSE_RATIO, NOT_MEASURED, Judged, sort_key
from harness.reports.loading import (
    CROSS_FILE, CROSS_SCHEMA, CROSS_SCHEMA_VERSION, PROBES_SCHEMA, RUN_SCHEMA, RUN_SCHEMA_VERSION, SIDE_SCHEMAS,
    VERDICTS_SCHEMA, VERDICTS_SCHEMA_VERSION, load_run_records, load_side_records, load_verdicts,
)
from harness.reports.sections.apis import ApiRow, ApiSummary, build_api_rows, build_api_summaries
from harness.reports.sections.cases import CLOSEST_CALLS, CaseRow, build_case_rows, build_closest_calls
from harness.reports.sections.claim_study import ClaimStudy, ClaimStudyRow, claim_study_summary
from harness.reports.sections.claims import (
    Claim, ClaimImpact, ResolvedCandidate, build_claims, build_resolved_candidates, with_claim_study,
)
from harness.reports.sections.coverage import Coverage, build_coverage
from harness.reports.sections.cross_backend import (
    AcceptanceRow, CrossBackend, CrossPair, CrossRow, PairSummary, build_cross_backend,
)
from harness.reports.sections.environment import Environment, VerdictSource, build_environment
from harness.reports.sections.failures import Failure, build_failures
from harness.reports.sections.faults import FaultCaseRow, FaultCell, FaultDetection, FaultRow, Faults, SweepRow, build_faults
from harness.reports.sections.gradients import DriftLine, GradientRow, GradientsAndTraining, TrainingRun, gradients_and_training
from harness.reports.sections.growth import Growth, GrowthPoint, build_growth
from harness.reports.sections.kernels import (
    FUSED_STEPS, FusedOnCpu, KernelRow, KernelSummary, build_fused_on_cpu, build_kernel_rows, build_kernel_summaries, ran_fused,
)
from harness.reports.sections.kinds import KindRow, build_kind_rows, kind_cell
from harness.reports.sections.record_warnings import build_record_flags, build_warnings
from harness.reports.sections.serialization import SerializationRow, build_serialization
from harness.reports.sections.summaries import BackendSummary, build_summaries
from harness.reports.sections.tolerances import ToleranceRow, build_tolerances
from harness.reports.sections.training_mode import TrainingMode, TrainingModeRow, training_mode_summary
from harness.reports.sections.why_facts import ProbeCell, ProbeRow, Why, build_why

__all__ = [
    # the model and its builder
    "Report", "build_report",
    # numbers, case results, reading and formatting
    "CLOSE_RATIO", "NOT_MEASURED", "Judged", "sort_key",
    "ATTENTION_VERDICTS", "UNMEASURED", "VERDICTS", "ApiAgreement", "CaseResult", "ErrorInfo", "Item", "case_kinds",
    "CROSS_FILE", "CROSS_SCHEMA", "CROSS_SCHEMA_VERSION", "PROBES_SCHEMA", "RUN_SCHEMA", "RUN_SCHEMA_VERSION", "SIDE_SCHEMAS",
    "VERDICTS_SCHEMA", "VERDICTS_SCHEMA_VERSION", "load_run_records",
    "format_agreement", "format_case", "format_judged", "format_names", "format_number", "format_ratio", "format_seconds",
    "format_short", "format_tolerance",
    # the sections
    "ApiRow", "ApiSummary", "CLOSEST_CALLS", "CaseRow", "ClaimStudy", "ClaimStudyRow", "claim_study_summary",
    "Claim", "ClaimImpact", "ResolvedCandidate", "Coverage", "AcceptanceRow", "CrossBackend", "CrossPair", "CrossRow", "PairSummary",
    "Environment", "VerdictSource", "Failure", "FaultCaseRow", "FaultCell", "FaultDetection", "FaultRow", "Faults", "SweepRow",
    "DriftLine", "GradientRow", "GradientsAndTraining", "TrainingRun", "gradients_and_training", "Growth", "GrowthPoint",
    "FUSED_STEPS", "FusedOnCpu", "KernelRow", "KernelSummary", "ran_fused", "KindRow", "kind_cell", "SerializationRow",
    "BackendSummary", "ToleranceRow", "TrainingMode", "TrainingModeRow", "training_mode_summary", "ProbeCell", "ProbeRow", "Why",
    "BetweenVersions",
]


@dataclass(frozen=True)
class Report:
    folder: str
    backends: tuple[str, ...]
    summaries: tuple[BackendSummary, ...]
    coverage: Coverage
    kind_rows: tuple[KindRow, ...]  # the verdicts per layer kind, side by side per backend
    results: dict[str, dict[str, CaseResult]]  # backend -> case -> result
    failures: tuple[Failure, ...]  # verdict fail/error/timeout/invalid, by backend then ratio
    claims: tuple[Claim, ...]  # seen first, then by id
    possibly_resolved: tuple[ResolvedCandidate, ...]
    closest_calls: tuple[CaseResult, ...]
    case_rows: tuple[CaseRow, ...]  # largest ratio first
    api_rows: tuple[ApiRow, ...]  # cases in several APIs, largest disagreement first
    api_summaries: tuple[ApiSummary, ...]
    cross: CrossBackend
    serialization: tuple[SerializationRow, ...] | None
    growth: Growth | None
    faults: Faults | None
    tolerances: tuple[ToleranceRow, ...]
    tolerance_differences: tuple[str, ...]
    environments: tuple[Environment, ...]  # run records first, then side records
    warnings: tuple[str, ...]  # things a reader must know before trusting the numbers
    notes: tuple[str, ...]  # records that could not be read
    why: Why
    kernels: tuple[KernelSummary, ...] = ()  # backends whose record holds observed kernel paths
    kernel_rows: tuple[KernelRow, ...] = ()
    fused_on_cpu: tuple[FusedOnCpu, ...] = ()  # backends that ran kernel = fused_on_cpu cases
    between_versions: BetweenVersions | None = None  # between_versions.json: this Keras version against another
    # comparisons stored in subfolders that name this folder as a side (Keras 2 in tf-keras/ against this Keras 3)
    other_between_versions: tuple[BetweenVersions, ...] = ()
    gradients: "GradientsAndTraining | None" = None  # <backend>.gradients.json / .training.json, when run
    training_mode: "TrainingMode | None" = None  # <backend>.training_mode.json, when run
    claim_study: "ClaimStudy | None" = None  # claims.json: each known-divergence claim under injected faults, when run
    # records that do not say what they are (unfinished, mixed commits, statuses their raw outputs contradict):
    # shown as a banner at the top; record_failures counts the contradicted statuses
    record_flags: tuple[str, ...] = ()
    record_failures: int = 0

    @property
    def attention_count(self) -> int:
        return len(self.failures) + len(self.cross.missing) + len(self.cross.unexplained_acceptance) + self.record_failures


def build_report(folder: Path) -> Report:
    """Read every record in ``folder`` once and build the model every report renders.

    RecordError (one line) when the run records or verdict files cannot be used; unreadable side
    records are left out and named in ``Report.notes``."""
    folder = Path(folder)
    records = load_run_records(folder)
    backends = tuple(records)
    notes: list[str] = []
    verdict_files = {backend: load_verdicts(folder, backend) for backend in backends}
    results: dict[str, dict[str, CaseResult]] = {}
    for backend, record in records.items():
        verdicts = (verdict_files[backend] or {}).get("cases") or {}
        results[backend] = {}
        for raw in record["cases"]:
            results[backend][str(raw["case"])] = read_case_result(backend, raw, verdicts.get(raw["case"]))
    cross = build_cross_backend(folder, results, notes)
    side = {kind: load_side_records(folder, kind, notes) for kind in SIDE_SCHEMAS}
    faults = build_faults(side["faults"])
    environments = [build_environment("run", record, verdict_files[backend]) for backend, record in records.items()]
    environments += [build_environment(kind, data) for kind, studies in side.items() for data in studies.values()]
    tolerances, tolerance_differences = build_tolerances(records)
    float32_atol = next((row.atol for row in tolerances if row.dtype == "float32" and row.quantity == "outputs"), None)
    api_summaries = build_api_summaries(results)
    claims = build_claims({b: v for b, v in verdict_files.items() if v is not None}, results, cross)
    claim_study = claim_study_summary(folder, notes)
    claims = with_claim_study(claims, claim_study)
    between_versions = load_between_versions(folder, notes)
    other_between_versions = load_other_comparisons(folder, notes)
    record_flags, record_failures = build_record_flags(records, verdict_files)
    return Report(
        folder=str(folder.name or folder),
        backends=backends,
        summaries=build_summaries(records, results, {b: verdict_files[b] is not None for b in backends}),
        coverage=build_coverage(results),
        kind_rows=build_kind_rows(backends, results),
        results=results,
        failures=build_failures(results, cross),
        claims=claims,
        possibly_resolved=build_resolved_candidates(claims),
        closest_calls=build_closest_calls(results),
        case_rows=build_case_rows(backends, results),
        api_rows=build_api_rows(backends, results),
        api_summaries=api_summaries,
        cross=cross,
        serialization=build_serialization(side["serialization"]),
        growth=build_growth(side["growth"]),
        faults=faults,
        tolerances=tolerances,
        tolerance_differences=tolerance_differences,
        environments=tuple(environments),
        warnings=build_warnings(records, verdict_files, environments, faults),
        record_flags=record_flags,
        record_failures=record_failures,
        notes=tuple(notes),
        why=build_why(backends, records, side["probes"], api_summaries, results, float32_atol),
        kernels=build_kernel_summaries(records, results),
        kernel_rows=build_kernel_rows(backends, results),
        fused_on_cpu=build_fused_on_cpu(results),
        between_versions=between_versions,
        other_between_versions=other_between_versions,
        gradients=gradients_and_training(folder, notes),
        training_mode=training_mode_summary(folder, notes),
        claim_study=claim_study,
    )
