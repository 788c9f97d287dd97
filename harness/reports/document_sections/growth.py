"""How the error grows with the sequence.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.document import Alternatives, JudgedText, Paragraph, Section, Table
from harness.reports.model import Report


def growth_section(report: Report) -> Section:
    """How the error of one float32 LSTM grows with the sequence length and the units."""
    title = "Error as the sequence grows"
    growth = report.growth
    if growth is None:
        return Section("growth", title, title, (Paragraph("Not run (python -m harness growth, part of the parity sessions)."),))
    rows = []
    for time, units in growth.keys:
        cells: list[str | JudgedText] = []
        for backend in growth.backends:
            point = growth.point(backend, time, units)
            cells.append("not run" if point is None else ("error" if point.status == "error" else JudgedText(point.judged)))
        rows.append((str(time), str(units), *cells))
    return Section("growth", title, title, (
        Alternatives(
            Paragraph("One float32 LSTM against the float64 reference: the largest ratio of error to tolerance over output, h and c, "
                      "with its absolute error."),
            Paragraph("One float32 LSTM against the float64 reference: the largest ratio of error to tolerance over output, h and c."),
        ),
        Table(("steps", "units", *growth.backends), tuple(rows), numeric=frozenset({0, 1})),
        Paragraph(("Largest ratio anywhere: ", JudgedText(growth.worst), ".")),
    ))
