"""What the backends accept: a case Keras refuses on some backends and runs on others is a finding, judged
against the acceptance claims of the divergence file (``kind = "acceptance"``).

A refusal is Keras declining a configuration by design (``use_cudnn=True`` where its fused path cannot run:
the ValueError raised in the layer's own source, recognized by ``harness.execute.measure``); the case's verdict
on that backend is ``refused``. Each backend alone is consistent, but a user moving a model sees it run on one
backend and be refused on another: that difference is what is judged here.

For every case measured on two or more backends, refused on at least one and run on at least one (measured
``pass`` or ``fail``: its builds produced numbers, which the per-backend verdicts judge against the reference):
- the difference is explained when every backend that ran the case has an acceptance claim that applies to the
  case there (backend, versions, conditions, device), and every refusing backend's recorded exception is the one
  each of those claims names (type, whole message, source file when named: ``classify.exception_mismatch``, the
  rule crash claims follow), and no refusing backend is one of those claims' own backends;
- otherwise it is unexplained: a finding (``harness classify`` exits 1; the main job's report session fails).
A case that raised, timed out or was invalid on a side is not an acceptance difference: that side's own verdict
judges it. A case every backend refuses, or every backend runs, has no entry.
"""

from __future__ import annotations

from typing import Any

from harness.case.divergences import Divergence, device_kind
from harness.case.schema import parse_case
from harness.verdicts.classify import exception_mismatch

RAN = ("pass", "fail")


def judge_acceptance(runs: dict[str, dict[str, Any]], divergences: list[Divergence]) -> list[dict[str, Any]]:
    """One entry per case refused on some of ``runs`` (backend -> run record) and run on others:
    {"case", "refused_on", "ran_on", "explained_by", "unexplained"} (``unexplained`` empty when explained)."""
    by_case: dict[str, dict[str, dict[str, Any]]] = {}
    for backend, run in sorted(runs.items()):
        for result in run["cases"]:
            by_case.setdefault(result["case"], {})[backend] = result
    acceptance_claims = [d for d in divergences if d.kind == "acceptance"]
    entries = []
    for name, results in sorted(by_case.items()):
        refused_on = sorted(b for b, result in results.items() if result["status"] == "refused")
        ran_on = sorted(b for b, result in results.items() if result["status"] in RAN)
        if not refused_on or not ran_on:
            continue
        case = parse_case(results[ran_on[0]]["definition"], f"{ran_on[0]}.json")
        explained_by: set[str] = set()
        unexplained: list[str] = []
        for backend in ran_on:
            run = runs[backend]
            claims = [d for d in acceptance_claims
                      if d.applies_to(case, backend, run["versions"], device_kind(run.get("device_class", "cpu")))]
            if not claims:
                unexplained.append(f"no acceptance claim applies on {backend}")
                continue
            for claim in claims:
                reasons = [f"{claim.id}: names {refusing} among the backends that run it, but {refusing} refused it"
                           for refusing in refused_on if refusing in claim.backends]
                reasons += [f"{claim.id}: on {refusing}: {mismatch}" for refusing in refused_on
                            if (mismatch := exception_mismatch(claim, results[refusing].get("error") or {})) is not None]
                if reasons:
                    unexplained += reasons
                else:
                    explained_by.add(claim.id)
        entries.append({"case": name, "refused_on": refused_on, "ran_on": ran_on,
                        "explained_by": sorted(explained_by) if not unexplained else [], "unexplained": unexplained})
    return entries


def acceptance_possibly_resolved(runs: dict[str, dict[str, Any]], divergences: list[Divergence],
                                 entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Acceptance claims that applied to a case no backend refused: {"divergence", "case", "backend"}. The claim
    says the others refuse it; where they now run it too, the difference it describes is gone."""
    differing = {entry["case"] for entry in entries}
    claimed_backends = {backend for d in divergences if d.kind == "acceptance" for backend in d.backends}
    cases_on = {backend: {result["case"] for result in run["cases"]} for backend, run in runs.items()}
    resolved = []
    for backend, run in sorted(runs.items()):
        if backend not in claimed_backends:
            continue
        for result in run["cases"]:
            if result["status"] not in RAN or result["case"] in differing:
                continue
            if not any(result["case"] in cases_on[other] for other in runs if other != backend):
                continue  # measured on this backend alone: nothing to say about what the others accept
            case = parse_case(result["definition"], f"{backend}.json")
            device = device_kind(run.get("device_class", "cpu"))
            resolved += [{"divergence": d.id, "case": result["case"], "backend": backend} for d in divergences
                         if d.kind == "acceptance" and d.applies_to(case, backend, run["versions"], device)]
    return resolved
