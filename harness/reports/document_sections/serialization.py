"""Models saved on one backend and loaded on another.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.document import Alternatives, JudgedText, Paragraph, Section, Table
from harness.reports.formatting import format_number
from harness.reports.model import Report


def _serialization_header(worst_column: str) -> tuple[str, ...]:
    return ("saved on", "loaded on", "models", "pass", worst_column, "largest difference from the saving backend", "not passing")


def serialization_section(report: Report) -> Section:
    """Models saved on one backend and loaded on another."""
    title = "Train on one backend, serve on another"
    if report.serialization is None:
        return Section("serialization", title, title, (Paragraph("Not run (nox runs it after the parity sessions: nox -s serialization)."),))
    rows = tuple(
        (r.saved_on, r.loaded_on, str(r.models), str(r.passed), JudgedText(r.judged), format_number(r.largest_difference),
         ", ".join(r.failures) or "none")
        for r in report.serialization
    )
    return Section("serialization", title, title, (
        Alternatives(
            Paragraph("Each case's Functional model saved with model.save() on one backend and loaded on another: against the "
                      "float64 reference (worst ratio to the tolerance), and the largest difference from the saving backend's own outputs."),
            Paragraph("Each case's Functional model saved with model.save() on one backend and loaded on another: against the float64 "
                      "reference, and the largest difference from the saving backend's own outputs."),
        ),
        Alternatives(
            Table(_serialization_header("worst ratio"), rows),
            Table(_serialization_header("worst ratio (abs)"), rows, numeric=frozenset({2, 3, 5})),
        ),
    ))
