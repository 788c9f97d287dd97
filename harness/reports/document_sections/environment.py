"""What each record was made with, and the divergence files that classified the runs.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from typing import Any

from harness.reports.document import Alternatives, BulletList, Code, Folded, OneLine, Paragraph, Section, Strong, Table
from harness.reports.formatting import format_seconds
from harness.reports.model import Report


def _settings(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "none"


def environment_section(report: Report) -> Section:
    """What each record was made with, the divergence files that classified the runs, and the records left out."""
    title = "Environment and how to reproduce"
    runs = [e for e in report.environments if e.kind == "run"]
    keys = [k for k in dict.fromkeys(k for e in runs for k in e.versions) if k not in report.backends]
    rows = tuple(
        (e.backend, f"{e.device} ({e.device_class})", e.precision_mode, *(str(e.versions.get(k, "n/a")) for k in keys),
         str(e.versions.get(e.backend, "n/a")), _settings(e.settings), "none" if e.seed is None else str(e.seed), e.started, e.finished,
         format_seconds(e.wall_time_s), Code(e.command))
        for e in runs
    )
    blocks: list = [Table(("backend", "device (class)", "precision", *keys, "backend version", "settings", "seed", "started", "finished",
                           "wall time", "command"), rows)]
    details = [e for e in runs if e.device_details]
    if details:
        blocks.append(BulletList(tuple((f"{e.backend}: ", OneLine(", ".join(f"{name} {value}" for name, value in e.device_details)))
                                       for e in details), caption="Devices:"))
    verdicts_header = ("backend", "divergence file", "sha256", "classified", "run classified")
    markdown_rows, html_rows = [], []
    for e in runs:
        if e.verdicts is None:
            markdown_rows.append((e.backend, "not classified", "-", "-", "-"))
            html_rows.append((e.backend, "not classified", "-", "-", "-"))
            continue
        source = (e.backend, Code(e.verdicts.file), Code(e.verdicts.sha256), e.verdicts.classified)
        markdown_rows.append((*source, (e.verdicts.run_started,) + (() if e.verdicts.matches_run else (" (", Strong("not this run"), ")"))))
        html_rows.append((*source, (e.verdicts.run_started,) + (() if e.verdicts.matches_run else (" ", Strong("(not this run)")))))
    blocks.append(Alternatives(
        (Paragraph("Verdicts (which divergence file each backend's cases were classified against):"), Table(verdicts_header, tuple(markdown_rows))),
        (Paragraph("Verdicts: the divergence file each backend's cases were classified against."), Table(verdicts_header, tuple(html_rows))),
    ))
    side = [e for e in report.environments if e.kind != "run"]
    if side:
        side_table = Table(("record", "backend", "device (class)", "settings", "seed", "started", "finished", "command"), tuple(
            (e.kind, e.backend, f"{e.device} ({e.device_class})", _settings(e.settings), "none" if e.seed is None else str(e.seed),
             e.started, e.finished, Code(e.command)) for e in side))
        blocks.append(Alternatives((Paragraph("Side records:"), side_table),
                                   Folded("Side records (probes, growth, faults, serialization)", (side_table,))))
    if report.notes:
        blocks.append(BulletList(tuple(OneLine(n) for n in report.notes)))
    return Section("environment", title, title, tuple(blocks))
