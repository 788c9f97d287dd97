"""The report as one neutral document (harness.reports.document): the section builders, one module each in
harness.reports.document_sections, in the order both reports show them. Every word and number of those sections is
chosen there; markdown.py and html.py only format them.

Not built as document sections: each report's frame (REPORT.md's title, flagged-records warning and attention line;
report.html's head, banner of flagged records, introduction and contents), which each renderer writes on its own.
"""

from __future__ import annotations

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
from harness.reports.document_sections.training_mode import training_mode_section

__all__ = [
    "attention_section", "known_section", "closest_section", "between_versions_section", "summary_section", "figures_section", "reference_section",
    "apis_section", "cross_section", "serialization_section", "growth_section", "gradients_section",
    "training_mode_section", "claim_study_section", "faults_section", "tolerances_section", "environment_section",
]
