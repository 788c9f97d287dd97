"""Each known-divergence claim under injected faults (claims.json, harness/studies/claim_study.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.records.header import SCHEMAS
from harness.reports.formatting import format_number
from harness.reports.judged import read_number
from harness.reports.loading import load_optional


@dataclass(frozen=True)
class ClaimStudyRow:
    """One known-divergence claim under injected faults (harness/studies/claim_study.py)."""

    claim: str
    kind: str
    backends: tuple[str, ...]
    cases: int  # (case, backend) results the claim explains
    faults_tried: int
    faults_absorbed: int  # faulted results the claim still explained
    largest_explained_error: float | None  # the largest error of a recorded result it explains (None: crashes only)
    largest_absorbed_error: float | None  # it absorbs no fault larger than this (output error the fault added)
    ratio: float | None  # largest_absorbed_error / largest_explained_error
    passed: bool
    reasons: tuple[str, ...]
    gradient_cases: int = 0  # gradient results it explains (DIR/<backend>.gradients.json)
    largest_absorbed_gradient_scale: float | None = None  # it absorbs no kernel gradient scaled by more than 1 + this
    largest_absorbed_gradient_error: float | None = None  # the gradient error that scaling adds
    largest_explained_gradient_error: float | None = None
    not_explained_now: tuple[str, ...] = ()  # "case@backend: reason" for records it explained that it no longer explains

    def bound_line(self) -> str:
        """What the claim absorbs, in words: the largest fault (and kernel-gradient scaling) it absorbs, or why none."""
        parts = []
        if self.cases:
            if self.largest_absorbed_error is not None:
                parts.append(f"absorbs no fault larger than {format_number(self.largest_absorbed_error)} in its outputs "
                             f"({format_number(self.ratio)}x the largest error it explains, {format_number(self.largest_explained_error)})")
            else:
                parts.append(f"absorbs no injected fault on its {self.cases} case{'s' if self.cases != 1 else ''}")
        if self.gradient_cases:
            if self.largest_absorbed_gradient_scale is not None:
                parts.append(f"absorbs no kernel gradient scaled by more than 1 + {format_number(self.largest_absorbed_gradient_scale)} "
                             f"(adding {format_number(self.largest_absorbed_gradient_error)}; the largest gradient error it explains is "
                             f"{format_number(self.largest_explained_gradient_error)}) and no zeroed kernel gradient")
            else:
                parts.append("absorbs no injected gradient fault")
        if not parts:
            parts.append("explains none of its recorded cases now, so nothing was injected")
        return "; ".join(parts) + ("" if self.passed else ": TOO LOOSE (" + "; ".join(self.reasons) + ")")


@dataclass(frozen=True)
class ClaimStudy:
    factor: float  # a claim fails when it absorbs a fault more than this many times the error it explains
    passed: bool
    rows: tuple[ClaimStudyRow, ...]


def claim_study_summary(folder: Path, notes: list[str]) -> ClaimStudy | None:
    """``folder/claims.json`` (None when the claim study did not run)."""
    path = folder / "claims.json"
    if not path.exists():
        return None
    data = load_optional(path, SCHEMAS["claims"][0], notes)
    if data is None:
        return None
    rows = tuple(
        ClaimStudyRow(claim=str(entry["claim"]), kind=str(entry["kind"]), backends=tuple(entry["backends"]), cases=int(entry["cases"]),
                      faults_tried=int(entry["faults_tried"]), faults_absorbed=int(entry["faults_absorbed"]),
                      largest_explained_error=read_number(entry.get("largest_explained_error")),
                      largest_absorbed_error=read_number(entry.get("largest_absorbed_error")), ratio=read_number(entry.get("ratio")),
                      passed=bool(entry["passed"]), reasons=tuple(entry.get("reasons", ())),
                      gradient_cases=int(entry.get("gradient_cases") or 0),
                      largest_absorbed_gradient_scale=read_number(entry.get("largest_absorbed_gradient_scale")),
                      largest_absorbed_gradient_error=read_number(entry.get("largest_absorbed_gradient_error")),
                      largest_explained_gradient_error=read_number(entry.get("largest_explained_gradient_error")),
                      not_explained_now=tuple(f"{line.get('case')}@{line.get('backend')} ({line.get('study')}, now "
                                              f"{line.get('verdict')}): {line.get('reason')}"
                                              for line in entry.get("not_explained_now") or ()))
        for entry in data.get("claims", [])
    )
    return ClaimStudy(factor=float(data["factor"]), passed=bool(data["passed"]), rows=rows)
