"""The figures (report.html only).

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.document import Block, Figure, Paragraph, Section


def figures_section(figures: dict[str, bytes]) -> Section:
    """The figures (caption -> PNG bytes, from harness.reports.plots), numbered in the given order: report.html only."""
    blocks: tuple[Block, ...] = tuple(Figure(number, caption, png) for number, (caption, png) in enumerate(figures.items(), start=1))
    return Section("figures", "Figures", "Figures", blocks or (Paragraph("No figures were supplied."),), formats=("html",))
