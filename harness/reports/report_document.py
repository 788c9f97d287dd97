"""The report as one neutral document (harness.reports.document): the section builders, one module each in
harness.reports.document_sections, and build_document, which builds them in the order both reports show them. Every
word and number of those sections is chosen there; markdown.py and html.py only format them.

Not built as document sections: each report's frame (REPORT.md's title, flagged-records warning and attention line;
report.html's head, banner of flagged records, introduction and contents), which each renderer writes on its own.
"""

from __future__ import annotations

from harness.reports.document import Section
from harness.reports.document_sections.apis import apis_section
from harness.reports.document_sections.attention import attention_section
from harness.reports.document_sections.between_versions import between_versions_section
from harness.reports.document_sections.claim_study import claim_study_section
from harness.reports.document_sections.closest import closest_section
from harness.reports.document_sections.cross_backend import cross_section
from harness.reports.document_sections.environment import environment_section
from harness.reports.document_sections.faults import faults_section
from harness.reports.document_sections.figures import figures_section
from harness.reports.document_sections.gradients import gradients_section
from harness.reports.document_sections.growth import growth_section
from harness.reports.document_sections.known import known_section
from harness.reports.document_sections.reference import reference_section
from harness.reports.document_sections.serialization import serialization_section
from harness.reports.document_sections.summary import summary_section
from harness.reports.document_sections.tolerances import tolerances_section
from harness.reports.model import Report
from harness.reports.document_sections.training_mode import training_mode_section

__all__ = ["build_document"]


def build_document(report: Report, figures: dict[str, bytes]) -> tuple[Section, ...]:
    """Every section of both reports, in order; each says which reports show it (Section.formats). ``figures``: caption ->
    PNG bytes (report.html's figures; REPORT.md has none)."""
    return (
        attention_section(report), known_section(report), closest_section(report), between_versions_section(report),
        summary_section(report), figures_section(figures), reference_section(report), apis_section(report), cross_section(report),
        serialization_section(report), growth_section(report), gradients_section(report), training_mode_section(report),
        claim_study_section(report), faults_section(report), tolerances_section(report), environment_section(report),
    )
