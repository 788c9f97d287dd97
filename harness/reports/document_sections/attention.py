"""Needs attention: the warnings, the failing case results with everything the records say about why, and the raw
outputs missing from the records.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

import re

from harness.reports.case_results import ATTENTION_VERDICTS
from harness.reports.document import (
    Alternatives, Block, BulletList, Code, Content, Heading, Inline, JudgedText, ListItem, OneLine, OnlyIn, Paragraph, Section, Spacer,
    Strong, Verdict,
)
from harness.reports.document_sections.cross_backend import cross_distance
from harness.reports.formatting import format_number
from harness.reports.model import Failure, Report


def _banner(report: Report) -> Paragraph:
    """report.html's line of what needs attention (REPORT.md says it above its first section)."""
    if not report.attention_count:
        return Paragraph((Strong("Nothing needs attention"), ": every case passed, is a documented known divergence, or was refused by "
                          "design."), style="banner good")
    return Paragraph((Strong(f"{report.attention_count} need attention"), f": {len(report.failures)} failing case results, "
                      f"{len(report.cross.missing)} raw outputs missing from the records"
                      + (f", {len(report.cross.unexplained_acceptance)} cases refused on some backends and run on others without a claim"
                         if report.cross.unexplained_acceptance else "")
                      + (f", {report.record_failures} recorded statuses contradicted by the raw outputs" if report.record_failures else "")
                      + "."), style="banner bad")


def _failure_item(failure: Failure, markdown: bool) -> ListItem:
    """One failing case result and, under it, what the records say about why (REPORT.md and report.html differ in emphasis)."""
    result = failure.result
    head: list[Inline] = [Strong(result.case, anchor="fail-" + re.sub(r"[^A-Za-z0-9_-]", "_", f"{result.backend}-{result.case}")),
                          f" ({result.dtype}, {result.entry_point}): ", Verdict(result.verdict, result.verdict, markdown_mark=True)]
    if result.items:
        where = f" at {result.worst.api}/{result.worst.output}" if result.worst is not None else ""
        head += [", worst ratio ", JudgedText(result.judged), where]
    children: list[Content] = []
    if result.error is not None:
        where_raised: tuple[Inline, ...] = (" (", OneLine(result.error.where), ")") if result.error.where else ()
        children.append(("raised ", result.error.type if markdown else Code(result.error.type), *where_raised, ": ",
                         OneLine(result.error.message)))
    children += [(OneLine(item.message) if markdown else Code(item.message), " (ratio ", JudgedText(item.judged, markdown="ratio"), ")")
                 for item in failure.failing_items]
    children += [OneLine(problem) for problem in failure.other_problems]
    children += [(f"APIs disagree: {row.apis[0]} vs {row.apis[1]} on {row.output}: {format_number(row.max_abs_diff)} "
                  f"(bound {format_number(row.bound)}, ratio ", JudgedText(row.judged, markdown="ratio"), ")")
                 for row in failure.api_disagreements]
    children += [(f"{row.backends[0]} vs {row.backends[1]} (measured): ", *cross_distance(row)) for row in failure.cross_distances]
    children += [("applicable divergence did not match: ", OneLine(reason)) for reason in result.unexplained]
    if not result.classified:
        children.append("not classified (no verdict file): known divergences were not checked")
    return ListItem(tuple(head), tuple(children))


def attention_section(report: Report) -> Section:
    """What needs attention before anything else."""
    blocks: list[Block] = [OnlyIn("html", _banner(report))]
    if report.warnings:
        blocks.append(BulletList(tuple(("Warning: ", OneLine(w)) for w in report.warnings), item_style="warning"))
    blocks.append(Heading(f"Failures ({len(report.failures)})"))
    if not report.failures:
        blocks.append(Paragraph("None: no case failed, raised, timed out or was invalid."))
    for backend in report.backends:
        mine = [f for f in report.failures if f.result.backend == backend]
        if mine:
            counts = ", ".join(f"{sum(f.result.verdict == v for f in mine)} {v}" for v in ATTENTION_VERDICTS if any(f.result.verdict == v for f in mine))
            blocks += [Heading(f"{backend} ({counts})", 4),
                       Alternatives(BulletList(tuple(_failure_item(f, markdown=True) for f in mine)),
                                    BulletList(tuple(_failure_item(f, markdown=False) for f in mine)))]
    if report.failures:
        blocks.append(OnlyIn("markdown", Spacer()))
    blocks.append(Heading(f"Raw outputs missing from the records ({len(report.cross.missing)})"))
    if not report.cross.ran:
        blocks.append(Paragraph("Not checked (no cross_backend.json)."))
    elif not report.cross.missing:
        blocks.append(Paragraph("None: every output a run record names is in its arrays."))
    else:
        blocks.append(Alternatives(
            BulletList(tuple((OneLine(case), f" ({' vs '.join(backends)}): ", OneLine(name)) for case, backends, name in report.cross.missing)),
            BulletList(tuple((OneLine(case), " (", OneLine(" vs ".join(backends)), "): ", Code(name))
                             for case, backends, name in report.cross.missing)),
        ))
    unexplained = report.cross.unexplained_acceptance
    blocks.append(Heading(f"Refused on some backends, run on others, unexplained ({len(unexplained)})"))
    if not report.cross.ran:
        blocks.append(Paragraph("Not checked (no cross_backend.json)."))
    elif not unexplained:
        blocks.append(Paragraph(f"None: {len(report.cross.acceptance)} such cases, each explained by an acceptance claim "
                                "(see Known divergences)."))
    else:
        blocks.append(BulletList(tuple((OneLine(row.case), f": refused on {', '.join(row.refused_on)}, runs on {', '.join(row.ran_on)}: ",
                                        OneLine("; ".join(row.unexplained))) for row in unexplained)))
    return Section("attention", "Needs attention", "Needs attention", tuple(blocks))
