"""REPORT.md: the report model (harness.reports.model) rendered as Markdown. Computes nothing.

It leads with what needs attention (failures, unexplained cross-backend disagreements), then the known
divergences and the possibly resolved ones, then the closest calls; the long tables come after, largest
ratio first, with all but their first rows folded. ``harness.reports.publish.write_report`` writes it.

Every section is built once as a neutral document (harness.reports.report_document) and only formatted here
(_section_lines); this module writes the title, the flagged records and the attention line above them.
"""

from __future__ import annotations

from pathlib import Path

from harness.reports import report_document
from harness.reports.document import (
    Arrow, Block, BulletList, CaseOutcome, Code, Content, Folded, FoldedText, Heading, Inline, JudgedText, Link, Linked, ListItem,
    Marked, OneLine, Paragraph, Section, Spacer, Strong, Table, Verdict, blocks_for,
)
from harness.reports.model import (
    Judged, Report, build_report, format_case, format_judged, format_ratio,
)

SHOWN_ROWS = 20  # rows of a long table shown before the rest is folded

VERDICT_MARK = {"fail": "**FAIL**", "error": "**ERROR**", "timeout": "**TIMEOUT**", "invalid": "**INVALID**"}


def _cell(text: object) -> str:
    """Text that is safe inside a Markdown table cell (one line, no column separator)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _ratio(judged: Judged) -> str:
    """The ratio, in bold when it is over the tolerance (or non-finite)."""
    text = format_ratio(judged)
    return f"**{text}**" if judged.band == "over" else text


def _judged(judged: Judged) -> str:
    text = format_judged(judged)
    return f"**{text}**" if judged.band == "over" else text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table; an empty header cell is written as one space."""
    lines = ["|" + "|".join(f" {name} " if name else " " for name in header) + "|", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _folded_table(header: list[str], rows: list[list[str]], what: str) -> list[str]:
    """The first SHOWN_ROWS rows as a table, the rest in a collapsed <details> block (GitHub renders it)."""
    lines = _table(header, rows[:SHOWN_ROWS])
    rest = rows[SHOWN_ROWS:]
    if rest:
        lines += ["", f"<details><summary>{len(rest)} more {what} (smaller ratios)</summary>", ""]
        lines += _table(header, rest)
        lines += ["", "</details>"]
    return lines


def _inline(part: Inline) -> str:
    """One piece of document content as Markdown."""
    if isinstance(part, JudgedText):
        if part.markdown == "ratio":
            return _ratio(part.judged)
        return format_judged(part.judged) if part.markdown == "plain" else _judged(part.judged)
    if isinstance(part, CaseOutcome):
        text = format_case(part.result)
        return f"**{text}**" if part.result is not None and part.result.judged.band == "over" else text
    if isinstance(part, Strong):
        return f"**{part.text}**"
    if isinstance(part, Marked):
        return f"**{part.text}**" if part.band == "over" else part.text
    if isinstance(part, Code):
        return f"`{part.text}`"
    if isinstance(part, OneLine):
        return _cell(part.text)
    if isinstance(part, Verdict):
        return VERDICT_MARK.get(part.verdict, part.text) if part.markdown_mark else part.text
    if isinstance(part, Linked):
        return _cell(part.text)
    if isinstance(part, Arrow):
        return " -> "
    if isinstance(part, Link):
        return f"[{part.text}](#{part.target})"
    if isinstance(part, FoldedText):
        return f"<details><summary>{part.summary}</summary>" + "".join(_inline(inner) for inner in part.content) + "</details>"
    return part


def _text(content: Content) -> str:
    parts = content if isinstance(content, tuple) else (content,)
    return "".join(_inline(part) for part in parts)


def _block_lines(block: Block) -> list[str]:
    if isinstance(block, Paragraph):
        return [_text(block.content)]
    if isinstance(block, Table):
        rows = [[_cell(_text(cell)) for cell in row] for row in block.rows]
        if block.folded is not None:
            return _folded_table(list(block.header), rows, block.folded)
        return _table(list(block.header), rows)
    if isinstance(block, BulletList):
        caption = [block.caption, ""] if block.caption is not None else []
        lines = list(caption)
        for item in block.items:
            if isinstance(item, ListItem):
                lines += [f"- {_text(item.content)}"] + [f"  - {_text(child)}" for child in item.children]
            else:
                lines.append(f"- {_text(item)}")
        return lines
    if isinstance(block, Spacer):
        return []
    if isinstance(block, Heading):
        return ["#" * block.level + " " + _text(block.text)]
    if isinstance(block, Folded):
        return [f"<details><summary>{block.summary}</summary>", ""] + _blocks_lines(list(block.blocks)) + ["", "</details>"]
    raise TypeError(f"not a document block: {block!r}")


def _blocks_lines(blocks: list[Block]) -> list[str]:
    """Blocks one after another, a blank line between two (none before a list under_previous)."""
    lines: list[str] = []
    for index, block in enumerate(blocks):
        if index and not (isinstance(block, BulletList) and block.under_previous):
            lines.append("")
        lines += _block_lines(block)
    return lines


def _section_lines(section: Section) -> list[str]:
    """A document section: its heading, then its blocks, a blank line between two (none before a list under_previous)."""
    if "markdown" not in section.formats:
        raise ValueError(f"the {section.anchor} section is not part of REPORT.md")
    return [f"## {section.title}", ""] + _blocks_lines(blocks_for(section, "markdown"))


def _gradient_lines(report: Report) -> list[str]:
    """The gradients and training section, formatted (as render_markdown writes it)."""
    return _section_lines(report_document.gradients_section(report))


def _faults(report: Report) -> list[str]:
    """The fault section, formatted (as render_markdown writes it)."""
    return _section_lines(report_document.faults_section(report))


def render_markdown(report: Report) -> str:
    """REPORT.md for a built report model."""
    attention = report.attention_count
    lines = ["# keras-parity report", ""]
    if report.record_flags:  # before anything else: these records do not say what they are
        lines += ["> **Warning: records flagged by `classify`**; their numbers may not be what they seem:", ">"]
        lines += [f"> - {_cell(flag)}" for flag in report.record_flags] + [""]
    lines += [
        "Generated by `python -m harness report` from the records in this folder. Every error is shown as its ratio to the "
        "tolerance that judged it (at most 1 passes), with the absolute error beside it.", "",
        (f"**{attention} item{'s' if attention != 1 else ''} need{'s' if attention == 1 else ''} attention**: "
         f"{len(report.failures)} failing case result{'s' if len(report.failures) != 1 else ''}, "
         f"{len(report.cross.missing)} raw output{'s' if len(report.cross.missing) != 1 else ''} missing from the records"
         + (f", {report.record_failures} recorded status{'es' if report.record_failures != 1 else ''} contradicted by the raw outputs"
            if report.record_failures else "") + "."
         if attention else "**Nothing needs attention**: every case passed, is a documented known divergence, or was refused by design."),
        "",
    ]
    for section in report_document.build_document(report, {}):
        if "markdown" in section.formats:
            lines += _section_lines(section) + [""]
    return "\n".join(lines)


def render_report(folder: Path) -> str:
    """REPORT.md for the records in ``folder`` (builds the model)."""
    return render_markdown(build_report(folder))
