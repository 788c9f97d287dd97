"""Known divergences: the documented divergences, where each explained a case in this run, and the ones that may be
resolved.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

import re

from harness.reports.case_results import CaseResult
from harness.reports.document import (
    Alternatives, Block, BulletList, Code, Content, Folded, FoldedText, Heading, Inline, JudgedText, Link, Linked, ListItem, OneLine,
    OnlyIn, Paragraph, Section, Spacer, Strong, Table,
)
from harness.reports.formatting import format_judged
from harness.reports.model import Claim, Report


def _html_anchor(claim_id: str) -> str:
    return "known-" + re.sub(r"[^A-Za-z0-9_-]", "_", claim_id)


def _raised_where(cases: tuple[CaseResult, ...]) -> list[Content]:
    """Where the explained cases that raised were raised (the build and the file, as recorded), with how many each."""
    counts: dict[str, int] = {}
    for case in cases:
        if case.error is not None:
            where = f"{case.error.type} {case.error.where}" if case.error.where else f"{case.error.type} (the record does not say where)"
            counts[where] = counts.get(where, 0) + 1
    return [(OneLine(where), f": {count} case{'s' if count != 1 else ''}") for where, count in sorted(counts.items())]


def _markdown_claim(claim: Claim, backends: tuple[str, ...]) -> list[Block]:
    """REPORT.md: a claim as a heading and one list (what it says, under injected faults, where it explained cases)."""
    blocks: list[Block] = [Heading(claim.id, 4)]
    items: list[Content | ListItem] = []
    if not claim.described:
        blocks.append(Paragraph("Named by a verdict but described in no verdict file."))
    else:
        items += [
            ("Kind: ", claim.kind, ". Applies when: ", OneLine(claim.when) if claim.when else "n/a", "."),
            *([("Explains a case only when ", OneLine(claim.checks), ".")] if claim.checks else []),
            ("Observed: ", OneLine(claim.observed)),
            ("Reference: ", OneLine(claim.reference)),
            (f"Upstream: {claim.upstream or 'no upstream issue found'}. Reproducer: ", Code(claim.reproducer), "."),
        ]
    if claim.study is not None:
        lost = claim.study.not_explained_now
        items.append(ListItem(("Under injected faults: ", OneLine(claim.study.bound_line()), "."),
                              tuple(("no longer explained: ", OneLine(line)) for line in lost[:5])
                              + ((f"... and {len(lost) - 5} more",) if len(lost) > 5 else ())))
    for backend in backends:
        cases = claim.explained.get(backend, ())
        if cases:
            impact = claim.impact(backend)
            raised = f", {impact.raised} raise" if impact.raised else ""
            names = ", ".join(c.case for c in cases)
            shown: Inline = FoldedText(f"the {len(cases)} cases", (names,)) if len(cases) > 8 else names
            items.append(ListItem((f"Explained on {backend}: {len(cases)} case{'s' if len(cases) != 1 else ''}{raised}, worst ratio "
                                   f"{format_judged(impact.worst)}: ", shown),
                                  tuple(("raised ", *where) for where in _raised_where(cases))))
    blocks.append(BulletList(tuple(items)) if items else OnlyIn("markdown", Spacer()))
    return blocks


def _html_case_list(cases: tuple[CaseResult, ...]) -> tuple[Inline, ...]:
    """report.html: the explained cases with their ratios (or what they raised), folded when there are more than 8."""
    parts: list[Inline] = []
    for index, case in enumerate(cases):
        if case.items:
            outcome: tuple[Inline, ...] = (JudgedText(case.judged),)
        elif case.error is None:
            outcome = (OneLine(case.measured_status),)
        else:
            outcome = (OneLine(case.error.type), *((" ", OneLine(case.error.where)) if case.error.where else ()))
        parts += ([", "] if index else []) + [OneLine(case.case), " (", *outcome, ")"]
    return tuple(parts) if len(cases) <= 8 else (FoldedText(f"{len(cases)} cases", tuple(parts)),)


def _html_claim(claim: Claim, backends: tuple[str, ...]) -> list[Block]:
    """report.html: a claim as paragraphs, what it absorbs under injected faults, and a table of where it explained cases."""
    blocks: list[Block] = [Heading(Code(claim.id), 3, _html_anchor(claim.id))]
    if not claim.described:
        blocks.append(Paragraph("Named by a verdict but described in no verdict file."))
    else:
        blocks += [
            Paragraph((Strong("Kind:"), " ", OneLine(claim.kind), ". ", Strong("Applies when:"), " ", OneLine(claim.when or "n/a"), ".")),
            *([Paragraph((Strong("Explains a case only when"), " ", OneLine(claim.checks), "."))] if claim.checks else []),
            Paragraph((Strong("Observed."), " ", OneLine(claim.observed))),
            Paragraph((Strong("Reference."), " ", OneLine(claim.reference))),
            Paragraph((Strong("Upstream:"), " ", Linked(claim.upstream) if claim.upstream else "no upstream issue found", ". ",
                       Strong("Reproducer:"), " ", Code(claim.reproducer))),
        ]
    if claim.study is not None:
        blocks.append(Paragraph((Strong("Under injected faults:"), " ", OneLine(claim.study.bound_line()), ".")))
        if claim.study.not_explained_now:
            blocks.append(Folded(f"{len(claim.study.not_explained_now)} recorded cases it no longer explains",
                                 (BulletList(tuple(OneLine(line) for line in claim.study.not_explained_now)),), one_line=True))
    rows = []
    for backend in backends:
        cases = claim.explained.get(backend, ())
        if cases:
            impact = claim.impact(backend)
            rows.append((backend, str(len(cases)), str(impact.raised), JudgedText(impact.worst), _html_case_list(cases)))
    if rows:
        blocks.append(Table(("backend", "cases explained", "raise", "worst ratio (abs)", "cases (ratio)"), tuple(rows),
                            numeric=frozenset({1, 2})))
    return blocks


def known_section(report: Report) -> Section:
    """The known divergences seen in this run, each with its claim; those documented but unseen; the possibly resolved."""
    seen = [c for c in report.claims if c.seen]
    blocks: list[Block] = []
    if not seen:
        blocks.append(Paragraph("None explained a case in this run."))
    else:
        counts = [tuple(str(len(c.explained.get(b, ()))) for b in report.backends) for c in seen]
        header = ("divergence", "kind", *report.backends)
        blocks += [
            Paragraph("Cases each documented divergence explained (its claim checked against the measurements), per backend."),
            Alternatives(
                Table(header, tuple((Link(c.id, c.id.lower()), c.kind, *n) for c, n in zip(seen, counts))),
                Table(header, tuple((Link(c.id, _html_anchor(c.id)), c.kind, *n) for c, n in zip(seen, counts)),
                      numeric=frozenset(range(2, 2 + len(report.backends)))),
            ),
        ]
        for claim in seen:
            blocks.append(Alternatives(tuple(_markdown_claim(claim, report.backends)), tuple(_html_claim(claim, report.backends))))
        blocks.append(OnlyIn("markdown", Spacer()))
    unseen = [c.id for c in report.claims if not c.seen]
    if unseen:
        listed: list[Inline] = []
        for index, claim_id in enumerate(unseen):
            listed += ([", "] if index else []) + [Code(claim_id)]
        blocks.append(Paragraph(("Documented but explaining no case in this run: ", *listed, ".")))
    blocks.append(Heading("Possibly resolved", 3, "possibly-resolved"))
    if not report.possibly_resolved:
        blocks.append(Paragraph("None: no divergence applies to a passing case where its alternative would have been distinguishable."))
    else:
        blocks += [
            Paragraph("Divergences that apply to these passing cases, where the claimed behaviour would have been distinguishable "
                      "from the reference: the bug may be fixed."),
            Alternatives(
                BulletList(tuple((Code(c.claim), f" on {c.backend}: {', '.join(c.cases)}") for c in report.possibly_resolved)),
                BulletList(tuple((Strong("possibly resolved"), ": ", Code(c.claim), f" on {c.backend}: ", OneLine(", ".join(c.cases)))
                                 for c in report.possibly_resolved)),
            ),
        ]
    return Section("known", "Known divergences", "Known divergences", tuple(blocks))
