"""The fault study: which injected faults the tolerances detect.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.document import Alternatives, Content, Marked, Paragraph, Section, Strong, Table
from harness.reports.formatting import format_number
from harness.reports.model import Report


def faults_section(report: Report) -> Section:
    """The fault study: which injected faults the tolerances detect, the sweep, and each faulted case. Reads only
    ``report.faults``."""
    title, short_title = "Fault injection: do the tolerances catch real bugs?", "Fault injection"
    faults = report.faults
    if faults is None:
        return Section("faults", title, short_title, (Paragraph("Not run (nox -s faults)."),))
    blocks: list = [
        Paragraph("Each fault is patched into Keras at run time (never into the reference) and run through the harness on the cases it "
                  "names; a case detects it when its verdict after the known-divergence claims fails while the same case run unmodified "
                  "does not fail, its outputs differ from the unmodified ones, and its builds ran the kernel path the fault patches. "
                  "The same cases run unmodified must pass (or be explained by a claim)."),
        Paragraph("Detection: " + "; ".join(
            f"{d.backend} {d.detected} of {d.total}" + (f" ({d.errors} errors of the study)" if d.errors else "")
            + f", {len(d.false_alarms)} false alarms" for d in faults.detection
        ) + "."),
    ]
    for detection in faults.detection:
        for blind in detection.blind_sweeps:
            blocks.append(Paragraph(Marked(f"{detection.backend}: the sweep detected no perturbation ({blind}).", "over")))
        if detection.missed:
            blocks.append(Paragraph(Marked(f"Missed at this precision ({detection.backend}, {detection.precision}): "
                                           f"{', '.join(detection.missed)}.", "over")))
    markdown_rows, html_rows = [], []
    for row in faults.rows:
        markdown_cells: list[Content] = []
        html_cells: list[Content] = []
        for backend in faults.backends:
            cell = row.cells[backend]
            counts = f" ({cell.flagged}/{cell.runs} cases, error up to {format_number(cell.worst_error)})"
            shown = {"undetected": Strong("MISSED"), "error": Strong("ERROR")}.get(cell.status, cell.status)
            markdown_cells.append(shown if cell.status == "not run" else (shown, counts))
            band = {"detected": "ok", "undetected": "over", "error": "over"}.get(cell.status, "missing")
            html_cells.append(Marked(cell.status if cell.status == "not run" else cell.status + counts, band))
        markdown_rows.append((row.name, row.description, *markdown_cells))
        html_rows.append((row.name, row.description, *html_cells))
    header = ("fault", "what it does", *faults.backends)
    blocks.append(Alternatives(Table(header, tuple(markdown_rows)), Table(header, tuple(html_rows))))
    if faults.sweep:
        blocks += [Paragraph("Smallest constant added to the forget gate's pre-activation that the tolerances flag, per dtype:"),
                   Table(("dtype", "case", *faults.backends), tuple((s.dtype, s.case, *(s.cells[b] for b in faults.backends)) for s in faults.sweep))]
    if faults.cases:
        blocks += [Paragraph("Per case: the verdict, the faulted run's verdict after claims against the unmodified run's, and the kernel "
                             "path its builds ran:"),
                   Table(("fault", "case", *faults.backends), tuple((c.fault, c.case, *(c.cells[b] for b in faults.backends)) for c in faults.cases))]
    return Section("faults", title, short_title, tuple(blocks))
