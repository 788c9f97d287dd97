"""The known divergences under injected faults.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.document import Alternatives, Block, BulletList, Code, OneLine, OnlyIn, Paragraph, Section, Strong, Table
from harness.reports.formatting import format_number
from harness.reports.model import Report


def claim_study_section(report: Report) -> Section:
    """Per known-divergence claim, the largest injected fault it absorbs against the largest error it explains."""
    title = "Known divergences under injected faults"
    data = report.claim_study
    if data is None:
        return Section("claims", title, title, (Paragraph("Not run (python -m harness claims DIR, part of the report session)."),))
    blocks: list[Block] = [Paragraph((
        f"Every case a claim explains, replayed with faults injected into its recorded outputs (a forget-gate bias offset stepped down "
        f"until undetected, a gate swap, an error in an output the claim does not name, another exception or message) and judged again. "
        f"A claim fails when it absorbs a fault more than {data.factor:g}x the largest error it explains. ",
        "Every claim holds." if data.passed else Strong("Some claims absorb faults.")))]
    header = ("claim", "kind", "backends", "cases", "faults tried", "absorbed", "largest error explained", "absorbs no fault larger than", "ratio")
    numbers = [(row.claim, row.kind, ", ".join(row.backends), str(row.cases), str(row.faults_tried), str(row.faults_absorbed),
                format_number(row.largest_explained_error), format_number(row.largest_absorbed_error), format_number(row.ratio))
               for row in data.rows]
    blocks.append(Alternatives(
        Table((*header, ""), tuple((*cells, "ok" if row.passed else Strong("TOO LOOSE")) for cells, row in zip(numbers, data.rows))),
        Table((*header, "verdict"), tuple((*cells, "ok" if row.passed else (Strong("too loose"), ": ", OneLine("; ".join(row.reasons))))
                                          for cells, row in zip(numbers, data.rows)), numeric=frozenset({3, 4, 5, 6, 7, 8})),
    ))
    reasons = tuple(f"{row.claim}: {reason}" for row in data.rows for reason in row.reasons)
    if reasons:
        blocks.append(OnlyIn("markdown", BulletList(reasons)))
    gradient_rows = [row for row in data.rows if row.gradient_cases]
    if gradient_rows:
        caption = ("Gradient faults (a zeroed kernel gradient, the kernel gradient scaled by 1 + k stepped down until absorbed), judged by "
                   "the gradient study:")
        blocks.append(Alternatives(
            BulletList(tuple((f"{row.claim}: ", OneLine(row.bound_line())) for row in gradient_rows), caption=caption),
            BulletList(tuple((Code(row.claim), ": ", OneLine(row.bound_line())) for row in gradient_rows), caption=caption),
        ))
    lost_rows = [row for row in data.rows if row.not_explained_now]
    if lost_rows:
        caption = "Claims that no longer explain what their records say they explained (re-judged):"
        blocks.append(Alternatives(
            BulletList(tuple((f"{row.claim}: {len(row.not_explained_now)} recorded case{'s' if len(row.not_explained_now) != 1 else ''} it no "
                              "longer explains, not studied (first: ", OneLine(row.not_explained_now[0]), ")") for row in lost_rows),
                       caption=caption),
            BulletList(tuple((Code(row.claim), f": {len(row.not_explained_now)} recorded cases it no longer explains, not studied (first: ",
                              OneLine(row.not_explained_now[0]), ")") for row in lost_rows), caption=caption),
        ))
    return Section("claims", title, title, tuple(blocks))
