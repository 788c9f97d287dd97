"""Every case across backends against the float64 reference.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.document import Alternatives, CaseOutcome, Paragraph, Section, Table
from harness.reports.model import Report


def reference_section(report: Report) -> Section:
    """Every case across backends against the float64 reference, largest ratio first."""
    rows = tuple((r.case, r.dtype, r.entry_point, *(CaseOutcome(r.cells[b]) for b in report.backends)) for r in report.case_rows)
    return Section("reference", "Against the float64 NumPy reference", "Against the float64 reference", (
        Alternatives(
            Paragraph("Each cell: verdict, then the largest ratio of error to tolerance over every API and output of the case, with "
                      "that output's absolute error. Rows: largest ratio first."),
            Paragraph("Each cell: verdict, then the largest ratio of error to tolerance over every API and output of the case, with "
                      "that output's absolute error. Largest ratio first."),
        ),
        Table(("case", "dtype", "entry point", *report.backends), rows, folded="cases"),
    ))
