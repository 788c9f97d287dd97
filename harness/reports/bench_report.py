"""``python -m harness bench-report DIR``: the benchmark report, written from the records of DIR.

Builds the model once (``bench_model.build_bench_report``) and writes, each atomically:

- the Markdown (``bench_markdown.render_bench``), by default ``results/BENCH.md``;
- ``DIR/growth.svg`` (``bench_svg.growth_svg``), linked from the Markdown, when a kernels record holds growth;
- ``DIR/bench.json`` (schema ``SCHEMAS["bench_report"]``): the model as data, every target with its status.

A missing record leaves its part "not measured in this run"; an unreadable one is a RecordError (one line, exit 2).
"""

from __future__ import annotations

from pathlib import Path

from harness.records.header import SCHEMAS, harness_commit, now
from harness.records.store import write_json, write_text
from harness.reports.bench_markdown import render_bench
from harness.reports.bench_model import BenchReport, build_bench_report, report_as_dict
from harness.reports.bench_svg import growth_svg

RECORD_FILE = "bench.json"


def write_bench_report(bench_dir: Path, results_dir: Path, markdown_path: Path, command: str = "") -> BenchReport:
    """Read DIR's records (and the run records of ``results_dir``), write the three files, return the model."""
    bench_dir = Path(bench_dir)
    report = build_bench_report(bench_dir, results_dir)
    bench_dir.mkdir(parents=True, exist_ok=True)
    if report.growth_plot is not None:
        write_text(bench_dir / report.growth_plot, growth_svg(tuple(series for record in report.kernels for series in record.growth)))
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(markdown_path, render_bench(report, markdown_path))
    schema, version = SCHEMAS["bench_report"]
    record = {"schema": schema, "schema_version": version, "command": command, "commit": harness_commit(), "generated": now(),
              "markdown": str(markdown_path)} | report_as_dict(report)
    write_json(bench_dir / RECORD_FILE, record)
    return report


def summary_lines(report: BenchReport) -> list[str]:
    """One line per target: its status and how far."""
    return [f"{target.status}: {target.name}: {target.how_far}" for target in report.targets]
