"""``python -m harness report DIR``: build the report model once and write every report from it.

REPORT.md (markdown), WHY.md (why), report.html (html, with the figures of plots). The renderers never
import each other; this module is the only one that knows all of them.
"""

from __future__ import annotations

from pathlib import Path

from harness.records import store
from harness.reports import html, markdown, plots, why
from harness.reports.model import build_report


def write_report(folder: Path) -> list[Path]:
    """Write REPORT.md, WHY.md and report.html into ``folder`` from the records there; return their paths.

    Raises harness.records.store.RecordError (one line) when the run records cannot be used."""
    report = build_report(folder)
    texts = {
        "REPORT.md": markdown.render_markdown(report),
        "WHY.md": why.render_why(report),
        "report.html": html.render_html(report, plots.report_figures(report)),
    }
    written = []
    for name, text in texts.items():
        store.write_text(folder / name, text)
        written.append(folder / name)
    return written
