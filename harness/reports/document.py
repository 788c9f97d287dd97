"""The report as a neutral document: sections of paragraphs, tables and lists, built once from the report model
(harness.reports.report_document) and formatted by the renderers (markdown, html), which compute nothing and word
nothing themselves.

Text is plain: each formatter escapes it for its format. A few values keep their meaning until formatted
(``JudgedText``: an error judged by its tolerance, which Markdown writes in bold when over and HTML colours). Where the
two reports differ in content, not only in format, the difference is data here: ``OnlyIn`` holds a block one format
shows and the other leaves out, ``Alternatives`` the same information worded for each format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from harness.reports.case_results import CaseResult
from harness.reports.judged import Judged

FORMATS = ("markdown", "html")


MARKDOWN_JUDGED = ("ratio and error", "ratio", "plain")


@dataclass(frozen=True)
class JudgedText:
    """An error next to the tolerance that judged it: HTML shows its ratio coloured by band, its absolute error beside it.

    ``markdown``: how REPORT.md writes it: "ratio and error" (format_judged) or "ratio" (format_ratio), in bold when over
    the tolerance; "plain": format_judged, never in bold."""

    judged: Judged
    markdown: str = "ratio and error"  # one of MARKDOWN_JUDGED


@dataclass(frozen=True)
class CaseOutcome:
    """A case on one backend in a table cell: its verdict, then its largest ratio and absolute error or what it raised
    (None: not run). REPORT.md writes it in bold when over the tolerance; report.html colours the verdict and the ratio."""

    result: CaseResult | None


@dataclass(frozen=True)
class Strong:
    """Text in bold."""

    text: str
    anchor: str | None = None  # HTML: the id of the element, when something links to it


@dataclass(frozen=True)
class Marked:
    """Text marked by a band ("ok", "close", "over", "missing"): HTML colours it; Markdown writes it in bold when over."""

    text: str
    band: str


@dataclass(frozen=True)
class Code:
    """Text in a monospace font (a command, a file, a claim id)."""

    text: str


@dataclass(frozen=True)
class OneLine:
    """Text from the records kept on one line (Markdown: its whitespace runs and line breaks collapsed, '|' escaped)."""

    text: str


@dataclass(frozen=True)
class Verdict:
    """Text standing for a verdict (the verdict itself, or a number of cases with it): HTML colours it by the verdict."""

    text: str
    verdict: str
    markdown_mark: bool = False  # Markdown: a verdict that needs attention in capitals and bold ("**FAIL**")


@dataclass(frozen=True)
class Linked:
    """Text from the records whose https URLs HTML turns into links (Markdown: kept on one line)."""

    text: str


@dataclass(frozen=True)
class Arrow:
    """"becomes": between an old and a new value."""


@dataclass(frozen=True)
class Link:
    """Text linking to an anchor of the same report."""

    text: str
    target: str  # the anchor, without '#'


@dataclass(frozen=True)
class FoldedText:
    """Inline content folded away under a summary (a <details> element in a line or a cell)."""

    summary: str
    content: tuple["Inline", ...]


Inline = Union[str, JudgedText, CaseOutcome, Strong, Marked, Code, OneLine, Verdict, Linked, Arrow, Link, FoldedText]
Content = Union[Inline, tuple[Inline, ...]]  # one piece of text, or pieces written one after another


@dataclass(frozen=True)
class Paragraph:
    content: Content
    style: str | None = None  # HTML: the class of the paragraph ("banner bad")


@dataclass(frozen=True)
class ListItem:
    """A list item with items under it."""

    content: Content
    children: tuple[Content, ...] = ()


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Content, ...], ...]
    numeric: frozenset[int] = frozenset()  # columns of numbers (HTML aligns them right)
    folded: str | None = None  # what the rows are ("cases"): the rows after the first SHOWN_ROWS are folded away


@dataclass(frozen=True)
class BulletList:
    items: tuple[Content | ListItem, ...]
    under_previous: bool = False  # Markdown: written directly under the previous block, without a blank line
    caption: str | None = None  # a line that introduces the list
    item_style: str | None = None  # HTML: the class of each item ("warning")


@dataclass(frozen=True)
class Spacer:
    """Markdown: one more blank line between the blocks around it (REPORT.md's layout). Used under OnlyIn("markdown")."""


@dataclass(frozen=True)
class Folded:
    """Blocks folded away under a summary line (a <details> element in both formats)."""

    summary: str
    blocks: tuple["Block", ...]
    one_line: bool = False  # HTML: the element written on one line


@dataclass(frozen=True)
class Figure:
    """A figure (PNG bytes drawn by harness.reports.plots), numbered, with its caption (report.html only)."""

    number: int
    caption: str
    png: bytes


@dataclass(frozen=True)
class Heading:
    """A heading inside a section (level 3: a subsection)."""

    text: Content
    level: int = 3
    anchor: str | None = None  # the HTML id, when something links to it


@dataclass(frozen=True)
class OnlyIn:
    """A block one format shows and the other leaves out."""

    format: str  # one of FORMATS
    block: "Block"


@dataclass(frozen=True)
class Alternatives:
    """The same information, worded (or laid out) for each format: a block, or blocks one after another."""

    markdown: "Block | tuple[Block, ...]"
    html: "Block | tuple[Block, ...]"

    def for_format(self, format: str) -> "tuple[Block, ...]":
        chosen = self.markdown if format == "markdown" else self.html
        return chosen if isinstance(chosen, tuple) else (chosen,)


Block = Union[Paragraph, Table, BulletList, Spacer, Folded, Figure, Heading, OnlyIn, Alternatives]


@dataclass(frozen=True)
class Section:
    anchor: str  # the HTML id, and the link target of the contents
    title: str  # the Markdown heading
    short_title: str  # the HTML heading and its entry in the contents
    blocks: tuple[Block, ...]
    formats: tuple[str, ...] = FORMATS  # the reports that show it


def blocks_for(section: Section, format: str) -> list[Block]:
    """The section's blocks as ``format`` shows them: OnlyIn blocks of the other format left out, Alternatives chosen."""
    chosen: list[Block] = []
    for block in section.blocks:
        if isinstance(block, OnlyIn):
            if block.format == format:
                chosen.append(block.block)
        elif isinstance(block, Alternatives):
            chosen += block.for_format(format)
        else:
            chosen.append(block)
    return chosen
