"""The sections of REPORT.md and report.html as one neutral document (harness.reports.document), built from the report
model: every word and number both reports show is chosen here; the renderers only format it.

The sections not yet built here are still written by each renderer on its own (issue 17).
"""

from __future__ import annotations

from harness.reports.document import Alternatives, BulletList, JudgedText, Paragraph, Section, Table
from harness.reports.formatting import format_number, format_tolerance
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


def training_mode_section(report: Report) -> Section:
    """The training-mode (dropout) study: each case's verdict and worst tolerance ratio per backend (REPORT.md only)."""
    title = "Training mode (dropout)"
    data = report.training_mode
    if data is None:
        return Section("training-mode", title, title, (
            Paragraph("Not run (python -m harness training-mode, part of the release parity sessions)."),), formats=("markdown",))
    cells = {(row.case, row.backend): row for row in data.rows}
    rows = []
    for case in dict.fromkeys(row.case for row in data.rows):
        entries = []
        for backend in data.backends:
            row = cells.get((case, backend))
            entries.append("" if row is None else f"{row.verdict} ({row.worst_ratio:.2g})")
        rows.append((case, *entries))
    blocks: list = [
        Paragraph("dropout and recurrent_dropout with training=True: the masks Keras draws (one per sequence, 0 or 1/(1-rate), "
                  "the rate within 5 binomial standard deviations, per gate with implementation 1), the output against the NumPy "
                  "reference fed those masks, and with the harness's seeded masks the output and the train_on_batch / fit loss. "
                  "Worst ratio: the largest error-to-tolerance ratio of the case's compared quantities."),
        Table(("case", *data.backends), tuple(rows)),
    ]
    explained = [row for row in data.rows if row.verdict != "pass"]
    if explained:
        blocks.append(BulletList(tuple(f"{row.backend} {row.case}: {row.verdict}: {row.detail}" for row in explained)))
    if data.faults:
        blocks.append(Paragraph("Records made with a fault injected (not shown above): " + ", ".join(f"{b} ({f})" for b, f in data.faults)))
    return Section("training-mode", title, title, tuple(blocks), formats=("markdown",))


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
