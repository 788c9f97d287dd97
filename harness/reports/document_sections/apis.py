"""The APIs of one case against each other.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.document import BulletList, Content, JudgedText, OneLine, Paragraph, Section, Table
from harness.reports.model import Report


def apis_section(report: Report) -> Section:
    """The APIs of one case against each other: per backend, then the cases whose APIs are not bitwise equal."""
    blocks: list = [
        Paragraph("The same case built in every API it can be written in, with identical weights, compared output by output "
                  "against the bound the APIs must meet (0: bitwise)."),
        BulletList(tuple(
            (OneLine(s.backend), f": {s.bitwise} of {s.cases} cases bitwise equal across APIs, {s.within} within their bound",
             *(("; outside: ", OneLine(", ".join(s.outside))) if s.outside else ()), ".")
            for s in report.api_summaries
        )),
    ]
    differing = [r for r in report.api_rows if not r.bitwise]
    if differing:
        rows = []
        for r in differing:
            cells: list[Content] = []
            for b in report.backends:
                cell = r.cells[b]
                if cell is None or not cell.api_agreement:
                    cells.append("n/a")
                elif all(a.bitwise_equal for a in cell.api_agreement):
                    cells.append("bitwise equal")
                else:
                    cells.append(JudgedText(cell.api_judged, markdown="plain"))
            rows.append((r.case, ", ".join(r.apis), *cells))
        blocks += [Paragraph("Cases whose APIs are not bitwise equal somewhere (largest ratio first):"),
                   Table(("case", "APIs", *report.backends), tuple(rows), folded="cases")]
    return Section("apis", "Sequential, Functional and subclassed models", "Sequential, Functional and subclassed", tuple(blocks))
