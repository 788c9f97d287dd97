"""report.html: the report model (harness.reports.model) rendered as one self-contained page. Computes nothing.

The page loads nothing: styles are inline, figures are embedded as ``data:`` URIs from PNG bytes the
caller supplies, and the only links are in-page anchors and plain https links to upstream issues.
Every piece of text taken from the records is escaped with ``html.escape``. Errors are shown as their
ratio to the tolerance that judged them, coloured (green below 0.1, amber up to 1, red above 1 or
non-finite), with the absolute error beside them; long tables show their first rows and fold the rest
into a <details> element.

Every section is built once as a neutral document (harness.reports.report_document) and only formatted here
(_section_body): the wording of paragraphs and list items is escaped as content (quotes kept), table cells and
record text (OneLine, Code, ...) as attribute-safe text. This module writes the head, the banner of flagged records,
the introduction and the contents (SECTIONS: the anchors and titles of the document's sections report.html shows).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from harness.records import store
from harness.reports import report_document
from harness.reports.document import (
    Arrow, Block, BulletList, CaseOutcome, Code, Content, Figure, Folded, FoldedText, Heading, Inline, JudgedText, Link, Linked,
    ListItem, Marked, OneLine, Paragraph, Section, Strong, Table, Verdict, blocks_for,
)
from harness.reports.model import (
    CaseResult, Judged, Report, build_report, format_number, format_ratio,
)

SHOWN_ROWS = 20
SECTIONS = (
    ("attention", "Needs attention"),
    ("known", "Known divergences"),
    ("closest", "Closest calls"),
    ("between-versions", "Between Keras versions"),
    ("summary", "Summary"),
    ("figures", "Figures"),
    ("reference", "Against the float64 reference"),
    ("apis", "Sequential, Functional and subclassed"),
    ("pairwise", "Backend against backend (measurements)"),
    ("serialization", "Train on one backend, serve on another"),
    ("growth", "Error as the sequence grows"),
    ("gradients", "Gradients and training"),
    ("claims", "Known divergences under injected faults"),
    ("faults", "Fault injection"),
    ("tolerances", "Tolerances"),
    ("environment", "Environment and how to reproduce"),
)
_HTTPS_URL = re.compile(r"https://[^\s<>\"')]+")
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 76em;
       padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #c8c8c8; padding: 0.25em 0.55em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.9em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.92em; color: #444; }
details { margin: 0.6em 0; } summary { cursor: pointer; color: #0b4f8a; }
.r-ok { background: #dff3e3; } .r-close { background: #fdf0c4; } .r-over { background: #f8d3d0; font-weight: bold; }
.r-missing { color: #777; }
.abs { color: #555; font-size: 0.9em; }
.st-pass { color: #17612a; } .st-known { color: #7a5a00; } .st-refused { color: #555; }
.st-fail, .st-error, .st-timeout, .st-invalid { color: #a31515; font-weight: bold; }
.banner { padding: 0.6em 0.9em; border-radius: 4px; }
.banner.bad { background: #f8d3d0; } .banner.good { background: #dff3e3; }
.warning { color: #7a3d00; }
nav ul { padding-left: 1.2em; columns: 2; }
""".strip()


def _e(value: Any) -> str:
    """Text (or anything str() can print) escaped for HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def _linkify(text: str) -> str:
    """Escape ``text`` and turn each plain https URL in it into a link; nothing else becomes a link."""
    parts = []
    position = 0
    for match in _HTTPS_URL.finditer(text):
        parts.append(_e(text[position:match.start()]))
        url = match.group(0).rstrip(".,;:")
        parts.append(f'<a href="{_e(url)}">{_e(url)}</a>')
        position = match.start() + len(url)
    parts.append(_e(text[position:]))
    return "".join(parts)


def _anchor(prefix: str, name: str) -> str:
    """A stable id for an in-page anchor (letters, digits, '-' and '_' only)."""
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _ratio(judged: Judged) -> str:
    """The coloured ratio, then the absolute error in grey."""
    ratio = f'<span class="r-{judged.band}">{_e(format_ratio(judged))}</span>'
    if judged.ratio is None and judged.abs_error is None:
        return ratio
    return f'{ratio} <span class="abs">({_e(format_number(judged.abs_error, 1))})</span>'


def _verdict(verdict: str) -> str:
    return f'<span class="st-{_e(verdict)}">{_e(verdict)}</span>'


def _case_cell(result: CaseResult | None) -> str:
    if result is None:
        return "not run"
    if not result.items:
        return _verdict(result.verdict) + (f": {_e(result.error.type)}" if result.error is not None else "")
    return f"{_verdict(result.verdict)} {_ratio(result.judged)}"


def _table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """An HTML table; ``header`` is plain text (escaped here), ``rows`` hold cells that are already HTML."""
    numeric = numeric or set()
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{cell}</td>' if index in numeric else f"<td>{cell}</td>" for index, cell in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _folded(header: list[str], rows: list[list[str]], what: str, numeric: set[int] | None = None) -> list[str]:
    """The first SHOWN_ROWS rows, then the rest folded into a <details> element."""
    body = [_table(header, rows[:SHOWN_ROWS], numeric)]
    rest = rows[SHOWN_ROWS:]
    if rest:
        body.append(f"<details><summary>{len(rest)} more {_e(what)} (smaller ratios)</summary>\n{_table(header, rest, numeric)}\n</details>")
    return body


def _section(anchor: str, title: str, body: list[str]) -> list[str]:
    return [f'<section id="{anchor}">', f"<h2>{_e(title)}</h2>", *body, "</section>"]


def _prose(text: str) -> str:
    """Fixed wording of a paragraph, escaped for HTML content (quotes kept as they are)."""
    return html.escape(text, quote=False)


def _inline(part: Inline, escape) -> str:
    """One piece of document content as HTML; plain text through ``escape``."""
    if isinstance(part, JudgedText):
        return _ratio(part.judged)
    if isinstance(part, CaseOutcome):
        return _case_cell(part.result)
    if isinstance(part, Strong):
        anchor = f' id="{part.anchor}"' if part.anchor is not None else ""
        return f"<strong{anchor}>{_e(part.text)}</strong>"
    if isinstance(part, Marked):
        return f'<span class="r-{part.band}">{_e(part.text)}</span>'
    if isinstance(part, Code):
        return f"<code>{_e(part.text)}</code>"
    if isinstance(part, OneLine):
        return _e(part.text)
    if isinstance(part, Verdict):
        return f'<span class="st-{_e(part.verdict)}">{_e(part.text)}</span>'
    if isinstance(part, Linked):
        return _linkify(part.text)
    if isinstance(part, Arrow):
        return " &rarr; "
    if isinstance(part, Link):
        return f'<a href="#{part.target}">{_e(part.text)}</a>'
    if isinstance(part, FoldedText):
        return f"<details><summary>{_e(part.summary)}</summary>" + "".join(_inline(inner, escape) for inner in part.content) + "</details>"
    return escape(part)


def _text(content: Content, escape=_e) -> str:
    parts = content if isinstance(content, tuple) else (content,)
    return "".join(_inline(part, escape) for part in parts)


def _list_item(item: Content | ListItem) -> str:
    if not isinstance(item, ListItem):
        return _text(item, _prose)
    children = "".join(f"<li>{_text(child, _prose)}</li>" for child in item.children)
    return _text(item.content, _prose) + (f"<ul>{children}</ul>" if children else "")


def _block(block: Block) -> str:
    if isinstance(block, Paragraph):
        style = f' class="{block.style}"' if block.style is not None else ""
        return f"<p{style}>{_text(block.content, _prose)}</p>"
    if isinstance(block, Table):
        rows = [[_text(cell) for cell in row] for row in block.rows]
        if block.folded is not None:
            return "\n".join(_folded(list(block.header), rows, block.folded, set(block.numeric)))
        return _table(list(block.header), rows, set(block.numeric))
    if isinstance(block, BulletList):
        caption = f"<p>{_prose(block.caption)}</p>" if block.caption is not None else ""
        opening = f'<li class="{block.item_style}">' if block.item_style is not None else "<li>"
        return caption + "<ul>" + "".join(opening + _list_item(item) + "</li>" for item in block.items) + "</ul>"
    if isinstance(block, Figure):
        return (f'<figure id="figure-{block.number}"><img src="{_figure_uri(block.png)}" alt="{_e(block.caption)}">'
                f"<figcaption>Figure {block.number}. {_e(block.caption)}</figcaption></figure>")
    if isinstance(block, Heading):
        anchor = f' id="{block.anchor}"' if block.anchor is not None else ""
        return f"<h{block.level}{anchor}>{_text(block.text)}</h{block.level}>"
    if isinstance(block, Folded):
        parts = [f"<details><summary>{_e(block.summary)}</summary>", *(_block(inner) for inner in block.blocks), "</details>"]
        return ("" if block.one_line else "\n").join(parts)
    raise TypeError(f"not a document block: {block!r}")


def _section_body(section: Section) -> list[str]:
    """A document section's blocks as HTML, one element each."""
    if "html" not in section.formats:
        raise ValueError(f"the {section.anchor} section is not part of report.html")
    return [_block(block) for block in blocks_for(section, "html")]


def _figure_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _gradients(report: Report) -> list[str]:
    """The gradients and training section, formatted (as render_html writes it)."""
    return _section_body(report_document.gradients_section(report))


def _faults(report: Report) -> list[str]:
    """The fault section, formatted (as render_html writes it)."""
    return _section_body(report_document.faults_section(report))

def _navigation() -> list[str]:
    items = "".join(f'<li><a href="#{anchor}">{_e(title)}</a></li>' for anchor, title in SECTIONS)
    return [f'<nav id="contents"><ul>{items}</ul></nav>']


def render_html(report: Report, figures: dict[str, bytes]) -> str:
    """The whole report.html for a built report model; ``figures`` maps caption -> PNG bytes."""
    bodies = {section.anchor: _section_body(section) for section in report_document.build_document(report, figures)
              if "html" in section.formats}
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>keras-parity report</title>",
        f"<style>\n{_STYLE}\n</style>",
        "</head>",
        "<body>",
        "<h1>keras-parity report</h1>",
        *([f'<div class="banner bad" id="record-flags"><strong>Warning: records flagged by <code>classify</code></strong>; their '
           "numbers may not be what they seem:<ul>" + "".join(f"<li>{_e(flag)}</li>" for flag in report.record_flags) + "</ul></div>"]
          if report.record_flags else []),
        f"<p>Generated from the records in <code>{_e(report.folder)}</code> ({_e(', '.join(report.backends))}). Every error is "
        f"shown as its ratio to the tolerance that judged it (at most 1 passes; "
        f'<span class="r-ok">below 0.1</span>, <span class="r-close">0.1 to 1</span>, <span class="r-over">above 1</span>), '
        f"with the absolute error beside it.</p>",
        *_navigation(),
    ]
    for anchor, title in SECTIONS:
        lines += _section(anchor, title, bodies[anchor])
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def write_html(folder: Path, figures: dict[str, bytes]) -> Path:
    """Write ``folder/report.html`` (atomically) from the records there and return its path."""
    path = folder / "report.html"
    store.write_text(path, render_html(build_report(folder), figures))
    return path
