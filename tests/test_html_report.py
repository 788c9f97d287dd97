"""harness.reports.html: a self-contained report.html, checked as text and rendered in a real headless Chromium."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.records import store as records
from harness.reports.html import render_html, write_html

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE_NAME = 'lstm_<script>alert("x")</script>&'
KNOWN_ID = "float64_ops_downcast_to_float32"  # an entry of harness/known_divergences.toml with upstream links
CHECK_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  var broken = images.filter(function (img) { return !img.complete || img.naturalWidth === 0; });
  var links = Array.from(document.querySelectorAll('a[href^="#"]'));
  var missing = links.map(function (a) { return a.getAttribute("href").slice(1); })
                     .filter(function (id) { return !document.getElementById(decodeURIComponent(id)); });
  var pre = document.createElement("pre");
  pre.id = "render-check";
  pre.textContent = JSON.stringify({images: images.length, broken_images: broken.length,
                                    internal_links: links.length, missing_targets: missing});
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


def _case(name: str, status: str, error: float, known: list[str] | None = None) -> dict[str, Any]:
    item = {"passed": status == "pass", "max_abs_error": error, "max_ulp": 12.0, "message": f"functional/output: {status} ({error:.2e})"}
    return {
        "case": name, "dtype": "float32", "entry_point": "predict", "status": status,
        "apis": {"functional": {"passed": item["passed"], "items": {"output": item}}},
        "api_agreement": [], "error": None, "known_divergences": known or [], "measured_status": status,
    }


def _record(backend: str, version: str, cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": records.SCHEMA, "schema_version": records.SCHEMA_VERSION, "backend": backend, "device": "cpu",
        "versions": {"keras": "3.15.1", backend: version, "numpy": "2.4.6", "python": "3.11.7", "platform": "Linux-test"},
        "settings": {"JAX_ENABLE_X64": "1"} if backend == "jax" else {},
        "command": f"python -m harness run --backend {backend} --out results", "seed": 7, "fault": None,
        "started": "2026-11-24T20:31:14+00:00", "wall_time_s": 3.0,
        "tolerances": {"float32": {"outputs": {"rtol": 1e-5, "atol": 1e-6, "reason": "float32 eps is 1.19e-7 <and> a bit"}}},
        "cases": cases,
    }


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder with torch and jax records (a pass, a failure, a known divergence) and their .npz outputs."""
    folder = tmp_path / "results"
    output = (np.arange(12, dtype=np.float32) / 8).reshape(3, 4)
    records.write_json(folder / "torch.json", _record("torch", "2.13.0", [_case("lstm_last_step", "pass", 3e-8), _case(HOSTILE_NAME, "fail", 2e-3)]))
    records.write_json(folder / "jax.json", _record("jax", "0.10.2", [
        _case("lstm_last_step", "pass", 4e-8), _case(HOSTILE_NAME, "pass", 1e-7),
        _case("stacked_lstm_float64_call", "known", 1e-8, known=[KNOWN_ID]),
    ]))
    records.write_arrays(folder / "torch.npz", {"lstm_last_step/functional/output": output, f"{HOSTILE_NAME}/functional/output": output})
    records.write_arrays(folder / "jax.npz", {"lstm_last_step/functional/output": output + np.float32(0.125), f"{HOSTILE_NAME}/functional/output": output})
    return folder


@pytest.fixture
def figures() -> dict[str, bytes]:
    return {"Error heatmap <per case & backend>": tiny_png(), "Error vs sequence length": tiny_png(30, 30)}


def test_report_has_sections_in_order_and_escapes_text(results: Path, figures: dict[str, bytes]) -> None:
    page = render_html(results, figures)
    positions = [page.index(f'<section id="{anchor}">') for anchor in ("summary", "figures", "pairwise", "known", "failures", "tolerances", "environment")]
    assert positions == sorted(positions)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'alt="Error heatmap &lt;per case &amp; backend&gt;"' in page
    assert page.index("Error heatmap") < page.index("Error vs sequence length")
    assert page.count('<img src="data:image/png;base64,') == 2
    assert 'href="https://github.com/keras-team/keras/issues/23223"' in page
    assert "results/repro/float64_ops_downcast_to_float32.py" in page
    assert "2.00e-03" in page  # the failure's worst error
    assert "<td class=\"num\">1.25e-01</td>" in page and "bitwise equal" in page  # torch vs jax, per case


def test_report_loads_nothing_from_outside(results: Path, figures: dict[str, bytes]) -> None:
    page = render_html(results, figures)
    for attribute, value in re.findall(r'\b(src|href)="([^"]*)"', page):
        assert value.startswith(("#", "data:image/png;base64,", "https://")), (attribute, value)
    assert "<link" not in page and "@import" not in page and "url(" not in page


def test_write_html_writes_report_html(results: Path, figures: dict[str, bytes]) -> None:
    path = write_html(results, figures)
    assert path == results / "report.html"
    assert path.read_text(encoding="utf-8") == render_html(results, figures)
    assert not list(results.glob(".report.html.*"))


def test_folder_without_records_raises_record_error(tmp_path: Path) -> None:
    with pytest.raises(records.RecordError, match="no run records"):
        render_html(tmp_path, {})


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
    assert check["internal_links"] >= 8  # table of contents and the known divergence
    assert check["missing_targets"] == []

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
    assert check == {"images": 1, "broken_images": 1, "internal_links": 2, "missing_targets": ["nowhere"]}
