"""The known divergences (from the verdict files), where each explained a case, and the cases they may no
longer describe."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from harness.reports.case_results import UNMEASURED, CaseResult
from harness.reports.judged import Judged, read_number, worst_judged
from harness.reports.sections.claim_study import ClaimStudy, ClaimStudyRow
from harness.reports.sections.cross_backend import CrossBackend


@dataclass(frozen=True)
class Claim:
    """A known divergence (from the verdict files) and where it explained a case in this run."""

    id: str
    kind: str
    when: str
    backends: tuple[str, ...]
    versions: dict[str, str]
    observed: str
    reference: str
    upstream: str
    reproducer: str
    checks: str  # what the classification checks, in words (the claimed semantics, exception or bound)
    described: bool  # False: a verdict names it but no verdict file describes it
    explained: dict[str, tuple[CaseResult, ...]]  # backend -> cases it explained
    possibly_resolved: dict[str, tuple[str, ...]]  # backend -> passing cases it applies to
    study: "ClaimStudyRow | None" = None  # the claim under injected faults (claims.json), when the claim study ran

    @property
    def seen(self) -> bool:
        return any(self.explained.values())

    @property
    def kinds(self) -> tuple[str, ...]:
        """The layer kinds of the cases it explained, on any backend (``case_kinds``), sorted."""
        return tuple(sorted({case.kinds for cases in self.explained.values() for case in cases}))

    def impact(self, backend: str) -> "ClaimImpact":
        cases = self.explained.get(backend, ())
        raises = sum(1 for c in cases if c.measured_status in UNMEASURED)
        return ClaimImpact(len(cases), raises, worst_judged(c.judged for c in cases if c.judged.ratio is not None or c.judged.abs_error is not None))


@dataclass(frozen=True)
class ClaimImpact:
    cases: int
    raised: int  # explained cases that raised instead of computing
    worst: Judged


@dataclass(frozen=True)
class ResolvedCandidate:
    claim: str
    backend: str
    cases: tuple[str, ...]


def _accepted(claim_id: str, claim_backends: tuple[str, ...], cross: CrossBackend,
              results: dict[str, dict[str, CaseResult]]) -> dict[str, tuple[CaseResult, ...]]:
    """Backend -> the cases an acceptance claim explained there: run on that backend, one the claim names, while
    others refused them (a case two claims explain, each for its own backends, counts once per backend)."""
    accepted: dict[str, list[CaseResult]] = {}
    for row in cross.acceptance:
        if claim_id in row.explained_by:
            for backend in row.ran_on:
                if backend in claim_backends and row.case in results.get(backend, {}):
                    accepted.setdefault(backend, []).append(results[backend][row.case])
    return {backend: tuple(cases) for backend, cases in accepted.items()}


def build_claims(verdict_files: dict[str, dict[str, Any]], results: dict[str, dict[str, CaseResult]],
                 cross: CrossBackend) -> tuple[Claim, ...]:
    described: dict[str, dict[str, Any]] = {}
    for data in verdict_files.values():
        for entry in data.get("divergences") or []:
            if isinstance(entry, dict) and entry.get("id"):
                described.setdefault(str(entry["id"]), entry)
    named = {claim for per_case in results.values() for r in per_case.values() for claim in (*r.explained_by, *r.possibly_resolved)}
    claims = []
    for claim_id in sorted(set(described) | named):
        entry = described.get(claim_id, {})
        if entry.get("kind") == "acceptance":  # it explains what the backends accept, judged across them
            explained = _accepted(claim_id, tuple(entry.get("backends") or ()), cross, results)
        else:
            explained = {
                backend: tuple(r for r in per_case.values() if r.verdict == "known" and claim_id in r.explained_by)
                for backend, per_case in results.items()
            }
        resolved = {
            backend: tuple(r.case for r in per_case.values() if claim_id in r.possibly_resolved)
            + tuple(case for claim, case, where in cross.acceptance_resolved if claim == claim_id and where == backend)
            for backend, per_case in results.items()
        }
        versions = entry.get("versions") or {}
        claims.append(Claim(
            id=claim_id, kind=str(entry.get("kind") or "?"), when=" ".join(str(entry.get("when") or "").split()),
            backends=tuple(entry.get("backends") or ()),
            versions={str(k): str(v) for k, v in versions.items()} if isinstance(versions, dict) else {},
            observed=" ".join(str(entry.get("observed") or "").split()),
            reference=" ".join(str(entry.get("reference") or "").split()),
            upstream=str(entry.get("upstream") or ""), reproducer=str(entry.get("reproducer") or ""),
            checks=_claim_checks(entry), described=bool(entry),
            explained={b: cases for b, cases in explained.items() if cases},
            possibly_resolved={b: cases for b, cases in resolved.items() if cases},
        ))
    claims.sort(key=lambda c: (not c.seen, c.id))
    return tuple(claims)


def _claim_checks(entry: dict[str, Any]) -> str:
    kind = entry.get("kind")
    if kind == "semantics" and isinstance(entry.get("semantics"), dict) and entry["semantics"]:
        return "every output matches the reference computed with " + ", ".join(f"{k}={v}" for k, v in entry["semantics"].items())
    if kind == "crash" and entry.get("exception"):
        return f"the innermost exception is {entry['exception']}" + (f" with a message matching {entry['message']!r}" if entry.get("message") else "")
    if kind == "acceptance" and entry.get("exception"):
        return (f"the backends it names run the case while the others refuse it with {entry['exception']}"
                + (f" matching {entry['message']!r}" if entry.get("message") else ""))
    if kind == "bound" and entry.get("outputs"):
        bound = read_number(entry.get("max_abs_error"))
        outputs = [str(o) for o in entry["outputs"]]
        which = "the mismatching outputs are finite" if "*" in outputs else f"only {', '.join(outputs)} mismatch"
        return which + (f" and off by at most {bound:g}" if bound is not None else "")
    return ""


def with_claim_study(claims: tuple[Claim, ...], claim_study: ClaimStudy | None) -> tuple[Claim, ...]:
    """The claims, each with its row of the claim study (None when the study did not run or did not study it)."""
    if claim_study is None:
        return claims
    studied = {row.claim: row for row in claim_study.rows}
    return tuple(replace(claim, study=studied.get(claim.id)) for claim in claims)


def build_resolved_candidates(claims: tuple[Claim, ...]) -> tuple[ResolvedCandidate, ...]:
    """Per claim and backend, the passing cases it applies to (it may no longer describe them)."""
    return tuple(
        ResolvedCandidate(claim.id, backend, cases)
        for claim in claims for backend, cases in claim.possibly_resolved.items()
    )
