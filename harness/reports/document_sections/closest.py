"""The closest calls: the passing cases nearest their tolerance.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.document import Alternatives, JudgedText, Paragraph, Section, Table
from harness.reports.formatting import format_number, format_tolerance
from harness.reports.model import Report


def closest_section(report: Report) -> Section:
    """The passing cases nearest their tolerance."""
    title = "Closest calls"
    intro = Alternatives(
        Paragraph("The passing cases nearest their tolerance (ratio = error / tolerance; 1 would fail)."),
        Paragraph("The passing cases nearest their tolerance (ratio = error / tolerance; above 1 would fail)."),
    )
    if not report.closest_calls:
        return Section("closest", title, title, (intro, Paragraph("No passing case was measured.")))
    markdown_rows, html_rows = [], []
    for r in report.closest_calls:
        item = r.worst
        where = f"{item.api}/{item.output}" if item else "n/a"
        tolerance = f"rtol {format_tolerance(item.rtol)}, atol {format_tolerance(item.atol)}" if item else "n/a"
        markdown_rows.append((r.case, r.backend, r.dtype, JudgedText(r.judged, markdown="ratio"), format_number(r.judged.abs_error),
                              where, tolerance))
        html_rows.append((r.case, r.backend, r.dtype, JudgedText(r.judged), where, tolerance))
    return Section("closest", title, title, (intro, Alternatives(
        Table(("case", "backend", "dtype", "ratio", "abs error", "where", "tolerance"), tuple(markdown_rows)),
        Table(("case", "backend", "dtype", "ratio (abs)", "where", "tolerance"), tuple(html_rows)),
    )))
