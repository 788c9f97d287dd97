"""A self-contained report.html from the run records in a results folder (what REPORT.md shows, plus figures).

The page loads nothing: styles are inline, figures are embedded as ``data:`` URIs from PNG bytes the
caller supplies, and the only links are in-page anchors and plain https links to upstream issues.
Every piece of text taken from the records is escaped with ``html.escape``. Like REPORT.md, it only
reads the records; it never runs anything.
"""

from __future__ import annotations

import base64
import html
import itertools
import re
from pathlib import Path
from typing import Any

from harness.records import store as records
from harness.truth.compare import max_difference
from harness.case.divergences import Divergence, load_divergences, stale_divergences
from harness.reports.markdown import _case_names, _cell, _coverage, _fmt, load_records

COUNTED_STATUSES = ("pass", "known", "refused", "fail", "error", "timeout")
FAILED_STATUSES = ("fail", "error", "timeout")
SECTIONS = (
    ("summary", "Summary"),
    ("figures", "Figures"),
    ("pairwise", "Backend against backend"),
    ("known", "Known divergences"),
    ("failures", "Failures"),
    ("tolerances", "Tolerances"),
    ("environment", "Environment and how to reproduce"),
)
_HTTPS_URL = re.compile(r"https://[^\s<>\"')]+")
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #c8c8c8; padding: 0.25em 0.55em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.92em; color: #444; }
.st-pass { color: #17612a; } .st-known { color: #7a5a00; } .st-refused { color: #555; }
.st-fail, .st-error, .st-timeout { color: #a31515; font-weight: bold; }
nav ul { padding-left: 1.2em; }
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


def _table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """An HTML table; ``header`` is plain text (escaped here), ``rows`` hold cells that are already HTML."""
    numeric = numeric or set()
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{cell}</td>' if index in numeric else f"<td>{cell}</td>" for index, cell in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _section(anchor: str, title: str, body: list[str]) -> list[str]:
    return [f'<section id="{anchor}">', f"<h2>{_e(title)}</h2>", *body, "</section>"]


def _status_counts(record: dict[str, Any]) -> list[int]:
    statuses = [case["status"] for case in record["cases"]]
    return [statuses.count(status) for status in COUNTED_STATUSES]


def _summary(loaded: dict[str, dict[str, Any]]) -> list[str]:
    """Backends, versions, devices and the count of each status, then the coverage line of REPORT.md."""
    header = ["backend", "backend version", "keras", "numpy", "device", "cases", *COUNTED_STATUSES, "wall time", "fault injected"]
    rows = []
    for backend in sorted(loaded):
        record = loaded[backend]
        versions = record["versions"]
        wall = record.get("wall_time_s")
        counts = [f'<span class="st-{status}">{count}</span>' if count else "0" for status, count in zip(COUNTED_STATUSES, _status_counts(record))]
        rows.append([
            _e(backend), _e(versions.get(backend, "n/a")), _e(versions.get("keras", "n/a")), _e(versions.get("numpy", "n/a")),
            _e(record["device"]), str(len(record["cases"])), *counts,
            _e(f"{wall:.0f} s") if wall is not None else "n/a", _e(record.get("fault") or "none"),
        ])
    coverage = " ".join(_coverage(loaded)).strip()
    body = [_table(header, rows, numeric=set(range(5, 6 + len(COUNTED_STATUSES))))]
    if coverage:
        body.append(f"<p>{_e(coverage)}</p>")
    return body


def _figure_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figures(figures: dict[str, bytes]) -> list[str]:
    """Each figure in the given order, embedded as a data: URI, with its caption as caption and alt text."""
    if not figures:
        return ["<p>No figures were supplied.</p>"]
    body = []
    for index, (caption, png) in enumerate(figures.items(), start=1):
        body.append(
            f'<figure id="figure-{index}"><img src="{_figure_uri(png)}" alt="{_e(caption)}">'
            f"<figcaption>Figure {index}. {_e(caption)}</figcaption></figure>"
        )
    return body


def _pair_cell(first: dict[str, Any], second: dict[str, Any], name: str) -> str:
    """Largest difference between two backends' saved outputs for one case, as REPORT.md computes it."""
    prefix = f"{name}/"
    keys = [key for key in first if key.startswith(prefix) and key in second]
    if not keys:
        return "n/a"
    differences = [max_difference(first[key], second[key]) for key in keys]
    if all(bitwise for _, bitwise in differences):
        return "bitwise equal"
    return _fmt(max(difference for difference, _ in differences))


def _pairwise(folder: Path, loaded: dict[str, dict[str, Any]], names: list[str]) -> list[str]:
    """Table of the largest difference between every two backends, per case, from the saved .npz outputs."""
    pairs = list(itertools.combinations(sorted(loaded), 2))
    if not pairs:
        return ["<p>Only one backend was run: no pairwise comparison.</p>"]
    arrays = {backend: records.read_arrays(folder / f"{backend}.npz") for backend in loaded}
    rows = [[_e(name)] + [_e(_pair_cell(arrays[a], arrays[b], name)) for a, b in pairs] for name in names]
    return [
        "<p>Largest absolute difference between two backends over every API and output of the case "
        "(same inputs, same weights).</p>",
        _table(["case"] + [f"{a} vs {b}" for a, b in pairs], rows, numeric=set(range(1, len(pairs) + 1))),
    ]


def _known_hits(loaded: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Known divergence id -> the case@backend entries it explained in this run, in record order."""
    hits: dict[str, list[str]] = {}
    for backend in sorted(loaded):
        for case in loaded[backend]["cases"]:
            if case["status"] != "known":
                continue
            for divergence_id in case.get("known_divergences", []):
                hits.setdefault(divergence_id, []).append(f"{case['case']}@{backend}")
    return dict(sorted(hits.items()))


def _divergence_block(divergence_id: str, where: list[str], divergence: Divergence | None) -> list[str]:
    body = [f'<h3 id="{_anchor("known", divergence_id)}"><code>{_e(divergence_id)}</code></h3>']
    body.append(f"<p>Seen in: {_e(', '.join(where))}.</p>")
    if divergence is None:
        body.append("<p>Not described in harness/known_divergences.toml.</p>")
        return body
    upstream = _linkify(divergence.upstream) if divergence.upstream else "no upstream issue found"
    body += [
        f"<p><strong>Observed.</strong> {_e(' '.join(divergence.observed.split()))}</p>",
        f"<p><strong>Reference.</strong> {_e(' '.join(divergence.reference.split()))}</p>",
        f"<p><strong>Upstream:</strong> {upstream}. <strong>Reproducer:</strong> <code>{_e(divergence.reproducer)}</code></p>",
    ]
    return body


def _known(loaded: dict[str, dict[str, Any]]) -> list[str]:
    """Every known divergence seen in this run (explanation, upstream link, reproducer), then stale entries."""
    divergences = {d.id: d for d in load_divergences()}
    hits = _known_hits(loaded)
    body: list[str] = []
    if not hits:
        body.append("<p>None observed in this run.</p>")
    else:
        links = ", ".join(f'<a href="#{_anchor("known", d)}">{_e(d)}</a>' for d in hits)
        body.append(f"<p>{len(hits)} seen: {links}.</p>")
    for divergence_id, where in hits.items():
        body += _divergence_block(divergence_id, where, divergences.get(divergence_id))
    stale = stale_divergences({b: loaded[b]["cases"] for b in sorted(loaded)}, list(divergences.values()))
    if stale:
        items = "".join(
            f"<li><strong>possibly resolved</strong>: <code>{_e(d.id)}</code> no longer reproduces ({_e(', '.join(where))} pass).</li>"
            for d, where in stale
        )
        body.append(f"<ul>{items}</ul>")
    return body


def _failure_items(case: dict[str, Any]) -> list[str]:
    return [item["message"] for api in case["apis"].values() for item in api["items"].values() if not item["passed"]]


def _failures(loaded: dict[str, dict[str, Any]]) -> list[str]:
    """Failing, erroring and timed-out cases with their failing outputs' messages and REPORT.md's cell."""
    entries = []
    for backend in sorted(loaded):
        for case in loaded[backend]["cases"]:
            if case["status"] not in FAILED_STATUSES:
                continue
            error = f": {_e(case['error'])}" if case.get("error") else ""
            messages = "".join(f"<li><code>{_e(message)}</code></li>" for message in _failure_items(case))
            entries.append(
                f'<li><strong>{_e(case["case"])}</strong> on {_e(backend)}: '
                f'<span class="st-{_e(case["status"])}">{_e(case["status"])}</span>{error} '
                f"(worst abs error / ULP: {_e(_cell(case))})" + (f"<ul>{messages}</ul>" if messages else "") + "</li>"
            )
    return [f"<ul>{''.join(entries)}</ul>"] if entries else ["<p>None.</p>"]


def _tolerances(loaded: dict[str, dict[str, Any]]) -> list[str]:
    """The tolerance table of the first record (every record carries the same one), with its reasons."""
    first = loaded[sorted(loaded)[0]]
    rows = [
        [_e(dtype), _e(quantity), _e(f"{tol['rtol']:g}"), _e(f"{tol['atol']:g}"), _e(" ".join(str(tol.get("reason", "")).split()))]
        for dtype, quantities in first.get("tolerances", {}).items()
        for quantity, tol in quantities.items()
    ]
    return [
        "<p>An element fails when |actual - expected| &gt; atol + rtol * |expected|.</p>",
        _table(["dtype", "quantity", "rtol", "atol", "reason"], rows, numeric={2, 3}),
    ]


def _environment(loaded: dict[str, dict[str, Any]]) -> list[str]:
    """Versions, settings and the command of every record, and the platform and seed."""
    rows = []
    for backend in sorted(loaded):
        record = loaded[backend]
        versions = record["versions"]
        settings = ", ".join(f"{key}={value}" for key, value in record.get("settings", {}).items()) or "none"
        rows.append([
            _e(backend), _e(versions.get("keras")), _e(versions.get(backend)), _e(versions.get("numpy")), _e(versions.get("python")),
            _e(settings), _e(record.get("started", "n/a")), f"<code>{_e(record.get('command', 'n/a'))}</code>",
        ])
    first = loaded[sorted(loaded)[0]]
    return [
        _table(["backend", "keras", "backend version", "numpy", "python", "settings", "started", "command"], rows),
        f"<p>Platform: {_e(first['versions'].get('platform'))}. Seed: {_e(first.get('seed'))}.</p>",
    ]


def _navigation() -> list[str]:
    items = "".join(f'<li><a href="#{anchor}">{_e(title)}</a></li>' for anchor, title in SECTIONS)
    return [f'<nav id="contents"><ul>{items}</ul></nav>']


def render_html(folder: Path, figures: dict[str, bytes]) -> str:
    """The whole report.html for the run records in ``folder``; ``figures`` maps caption -> PNG bytes.

    Raises harness.records.store.RecordError when the folder holds no usable run records."""
    loaded = load_records(folder)
    names = _case_names(loaded)
    bodies = {
        "summary": _summary(loaded),
        "figures": _figures(figures),
        "pairwise": _pairwise(folder, loaded, names),
        "known": _known(loaded),
        "failures": _failures(loaded),
        "tolerances": _tolerances(loaded),
        "environment": _environment(loaded),
    }
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
        f"<p>Generated from the run records in <code>{_e(folder.name or folder)}</code> "
        f"({_e(', '.join(sorted(loaded)))}); REPORT.md beside it has every per-case table.</p>",
        *_navigation(),
    ]
    for anchor, title in SECTIONS:
        lines += _section(anchor, title, bodies[anchor])
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def write_html(folder: Path, figures: dict[str, bytes]) -> Path:
    """Write ``folder/report.html`` atomically and return its path."""
    path = folder / "report.html"
    records.write_text(path, render_html(folder, figures))
    return path
