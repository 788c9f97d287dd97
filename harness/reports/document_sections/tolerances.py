"""The tolerances the records were judged with.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.document import BulletList, Paragraph, Section, Table
from harness.reports.formatting import format_tolerance
from harness.reports.model import Report


def tolerances_section(report: Report) -> Section:
    """The tolerances the records were judged with."""
    rows = tuple(
        (t.dtype, t.quantity, format_tolerance(t.rtol), format_tolerance(t.atol), format_tolerance(t.rel_floor),
         {True: "yes", False: "no", None: "n/a"}[t.measured], t.reason)
        for t in report.tolerances
    )
    blocks: list = [
        Paragraph("An element fails when |actual - expected| > atol + rtol * |expected|; the ratio is the largest "
                  "|actual - expected| / (atol + rtol * |expected|) over the elements."),
        Table(("dtype", "quantity", "rtol", "atol", "rel floor", "measured", "reason"), rows, numeric=frozenset({2, 3, 4})),
    ]
    if report.tolerance_differences:
        blocks.append(BulletList(tuple(report.tolerance_differences), under_previous=True))
    return Section("tolerances", "Tolerances", "Tolerances", tuple(blocks))
