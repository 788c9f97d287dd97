"""The training-mode (dropout) study (REPORT.md only).

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.document import BulletList, Paragraph, Section, Table
from harness.reports.model import Report


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
