"""harness.reports.html: a self-contained report.html built from the report model, checked as text and rendered in a real headless Chromium."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from harness.records import store as records
from harness.reports.html import SECTIONS, render_html, write_html
from harness.reports.model import build_report
from test_report_model import (
    UPSTREAM, make_case, make_claim, make_error, make_item, make_pair, make_run, make_verdict, make_verdicts, write_folder,
)

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE_NAME = 'lstm_<script>alert("x")</script>&'
KNOWN_ID = "float64_ops_downcast_to_float32"
CHECK_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  var broken = images.filter(function (img) { return !img.complete || img.naturalWidth === 0; });
  var links = Array.from(document.querySelectorAll('a[href^="#"]'));
  var missing = links.map(function (a) { return a.getAttribute("href").slice(1); })
                     .filter(function (id) { return !document.getElementById(decodeURIComponent(id)); });
  var folded = Array.from(document.querySelectorAll("details")).filter(function (d) { return !d.open; });
  var pre = document.createElement("pre");
  pre.id = "render-check";
  pre.textContent = JSON.stringify({images: images.length, broken_images: broken.length,
                                    internal_links: links.length, missing_targets: missing, folded: folded.length});
  document.body.appendChild(pre);
});
</script>
"""


def tiny_png(width: int = 48, height: int = 24) -> bytes:
    """A small RGB gradient PNG, written with zlib only (no imaging library)."""
    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 5 % 256, y * 10 % 256, 128)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """torch and jax records: passes, a failure with a hostile name, a known divergence with an upstream link, an
    error, 25 more passing cases (so the long tables fold), and cross-backend comparisons."""
    filler = [make_case(f"act_{i:02d}", ratio=i / 100) for i in range(25)]
    torch_cases = [
        make_case("lstm_last_step", ratio=0.03, abs_error=3e-8),
        make_case(HOSTILE_NAME, "fail", items=[make_item(error=2e-3, ratio=180.0, mismatched=3)]),
        make_case("lstm_raises", "error", error=make_error("RuntimeError", "boom <b>")),
        *filler,
    ]
    jax_cases = [
        make_case("lstm_last_step", ratio=0.04, abs_error=4e-8), make_case(HOSTILE_NAME, ratio=0.5, abs_error=1e-7),
        make_case("lstm_raises", ratio=0.2),
        make_case("stacked_lstm_float64_call", "fail", items=[make_item(error=1e-8, ratio=2e4, mismatched=4)]),
        *filler,
    ]
    runs = {"torch": make_run("torch", torch_cases), "jax": make_run("jax", jax_cases, version="0.10.2")}
    claims = [make_claim(KNOWN_ID)]
    verdicts = {
        "torch": make_verdicts("torch", runs["torch"], claims=claims),
        "jax": make_verdicts("jax", runs["jax"], {"stacked_lstm_float64_call": make_verdict("fail", "known", explained_by=(KNOWN_ID,))}, claims),
    }
    pairs = [make_pair("lstm_last_step", "jax", "torch", 0.125, bound=1e-5)] + [make_pair(c["case"], "jax", "torch", 1e-8) for c in filler]
    return write_folder(tmp_path / "results", runs, verdicts, pairs)


@pytest.fixture
def figures() -> dict[str, bytes]:
    return {"Error heatmap <per case & backend>": tiny_png(), "Error vs sequence length": tiny_png(30, 30)}


def page_of(folder: Path, figures: dict[str, bytes]) -> str:
    return render_html(build_report(folder), figures)


def test_report_has_sections_in_order_and_escapes_text(results: Path, figures: dict[str, bytes]) -> None:
    page = page_of(results, figures)
    positions = [page.index(f'<section id="{anchor}">') for anchor, _ in SECTIONS]
    assert positions == sorted(positions)
    assert [anchor for anchor, _ in SECTIONS][:3] == ["attention", "known", "closest"]
    assert "<script>" not in page and "&lt;script&gt;" in page and "boom &lt;b&gt;" in page
    assert 'alt="Error heatmap &lt;per case &amp; backend&gt;"' in page
    assert page.index("Error heatmap") < page.index("Error vs sequence length")
    assert page.count('<img src="data:image/png;base64,') == 2
    assert f'href="{UPSTREAM}"' in page
    assert f"results/repro/{KNOWN_ID}.py" in page


def test_failures_lead_and_ratios_are_coloured(results: Path, figures: dict[str, bytes]) -> None:
    page = page_of(results, figures)
    attention = page[page.index('<section id="attention">'):page.index('<section id="known">')]
    assert "lstm_&lt;script&gt;" in attention and 'worst ratio <span class="r-over">180</span> <span class="abs">(2.0e-03)</span>' in attention
    assert "raised <code>RuntimeError</code>: boom &lt;b&gt;" in attention
    assert "lstm_&lt;script&gt;" in attention and "stacked_lstm_float64_call" not in attention  # known is not a failure
    assert "lstm_last_step" not in attention  # 0.125 apart across backends, but it passes on both: a measurement
    pairwise = page[page.index('<section id="pairwise">'):]
    assert "measurements, not a check" in pairwise
    assert '<td>lstm_last_step</td><td>jax vs torch</td><td>pass/pass</td><td>output</td><td class="num">1.25e-01</td>' in pairwise
    assert '<span class="r-ok">0.03</span> <span class="abs">(3.0e-08)</span>' in page
    assert '<span class="r-close">0.5</span>' in page
    reference = page[page.index('<section id="reference">'):page.index('<section id="apis">')]
    assert reference.index("stacked_lstm_float64_call") < reference.index("lstm_&lt;script&gt;") < reference.index("act_24")
    assert "<details><summary>9 more cases (smaller ratios)</summary>" in reference


def test_report_loads_nothing_from_outside(results: Path, figures: dict[str, bytes]) -> None:
    page = page_of(results, figures)
    for attribute, value in re.findall(r'\b(src|href)="([^"]*)"', page):
        assert value.startswith(("#", "data:image/png;base64,", "https://")), (attribute, value)
    assert "<link" not in page and "@import" not in page and "url(" not in page


def test_write_html_writes_report_html(results: Path, figures: dict[str, bytes]) -> None:
    path = write_html(results, figures)
    assert path == results / "report.html"
    assert path.read_text(encoding="utf-8") == page_of(results, figures)
    assert not list(results.glob(".report.html.*"))


def test_folder_without_records_raises_record_error(tmp_path: Path) -> None:
    with pytest.raises(records.RecordError, match="no run records"):
        write_html(tmp_path, {})


def _chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install the Debian packages chromium and chromium-driver to render report.html")
    return CHROMIUM


def _run_chromium(browser: Path, profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(browser), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", "--virtual-time-budget=5000", *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def render_check(browser: Path, page: str, work: Path) -> dict[str, Any]:
    """Load a copy of ``page`` with the check script injected; return what the script wrote into the DOM."""
    copy = work / "checked.html"
    copy.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    done = _run_chromium(browser, work / "profile-dom", "--dump-dom", copy.as_uri())
    match = re.search(r'<pre id="render-check">(.*?)</pre>', done.stdout, re.S)
    assert match, f"no render check in the dumped DOM (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def _png_size_and_ink(path: Path) -> tuple[int, int, float]:
    """Width and height from a PNG's IHDR, and the share of nonzero bytes in its filtered pixel data."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, position = b"", 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if kind == b"IDAT":
            idat += data[position + 8:position + 8 + length]
        position += 12 + length
    pixels = zlib.decompress(idat)
    return width, height, sum(1 for byte in pixels if byte) / len(pixels)


def test_report_renders_in_headless_chromium(results: Path, figures: dict[str, bytes], tmp_path: Path) -> None:
    browser = _chromium()
    path = write_html(results, figures)
    check = render_check(browser, path.read_text(encoding="utf-8"), tmp_path)
    print(f"render check: {check}")
    assert check["images"] == len(figures)
    assert check["broken_images"] == 0
    assert check["internal_links"] >= len(SECTIONS) + 1  # table of contents and the known divergence
    assert check["missing_targets"] == []
    assert check["folded"] >= 2  # the long per-case and per-comparison tables

    screenshot = tmp_path / "report.png"
    done = _run_chromium(browser, tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1280,1600", "--hide-scrollbars", path.as_uri())
    assert screenshot.exists(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    width, height, ink = _png_size_and_ink(screenshot)
    print(f"screenshot: {width}x{height}, {screenshot.stat().st_size} bytes, {ink:.1%} nonzero filtered bytes")
    assert (width, height) == (1280, 1600)
    assert screenshot.stat().st_size > 10_000 and ink > 0.01  # a blank page compresses to almost nothing


def test_render_check_catches_broken_images_and_links(tmp_path: Path) -> None:
    """The check itself is not vacuous: a broken image and a dangling anchor are reported."""
    browser = _chromium()
    page = (
        '<!DOCTYPE html><html><body><h1 id="top">t</h1><a href="#top">ok</a><a href="#nowhere">dangling</a>'
        '<img src="data:image/png;base64,AAAA" alt="broken"></body></html>'
    )
    check = render_check(browser, page, tmp_path)
    assert check == {"images": 1, "broken_images": 1, "internal_links": 2, "missing_targets": ["nowhere"], "folded": 0}


def test_crashes_show_where_and_claims_their_bound_in_html(tmp_path: Path, figures: dict[str, bytes]) -> None:
    from test_report_model import WHERE, _crash_folder

    html = render_html(build_report(_crash_folder(tmp_path, WHERE)), figures)
    assert "raised <code>RuntimeError</code> (in the functional build, at keras/src/backend/jax/rnn.py:120 in rnn): boom" in html
    assert "lstm_crash_known (AttributeError in the functional build, at keras/src/backend/jax/rnn.py:120 in rnn)" in html
    assert "<strong>Under injected faults:</strong> absorbs no injected fault on its 1 case.</p>" in html
    assert "<code>mask_dropped</code>: absorbs no kernel gradient scaled by more than 1 + 2.70e-06" in html
