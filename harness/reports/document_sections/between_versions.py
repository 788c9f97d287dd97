"""This Keras version against another.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.between_versions import KINDS, TITLES, BetweenVersions, still_present_by_claim
from harness.reports.document import (
    Arrow, Block, BulletList, Code, Content, Heading, Linked, OneLine, Paragraph, Section, Table, Verdict,
)
from harness.reports.model import Report


def between_versions_section(report: Report) -> Section:
    """This Keras version against another (between_versions.json), and the comparisons in subfolders that name this folder."""
    title = "Between Keras versions"
    view = report.between_versions
    if view is None and not report.other_between_versions:
        return Section("between-versions", title, title, (Paragraph((
            "No other Keras version was compared with this folder (", Code("nox"), " runs keras-nightly beside the release and compares "
            "them; or ", Code("python -m harness between-versions results results/keras-nightly"), ").")),))
    blocks = _between_view_blocks(view, 3, "between") if view is not None else []
    for index, other in enumerate(report.other_between_versions, start=2):  # e.g. Keras 2 (results/tf-keras) against this Keras 3
        blocks.append(Heading(OneLine(other.keras_line()), 3, f"between{index}"))
        blocks += _between_view_blocks(other, 4, f"between{index}")
    return Section("between-versions", title, title, tuple(blocks))


def _between_view_blocks(view: BetweenVersions, level: int, prefix: str) -> list[Block]:
    """One comparison's counts, its changes by kind and its known divergences still present."""
    counts = view.counts
    blocks: list[Block] = [Paragraph((
        "What changed per case and backend from ", OneLine(view.keras_line()), f", from the classified records of both (compared "
        f"{view.compared}): {counts.get('fixed', 0)} fixed, {counts.get('regression', 0)} regressions, {counts.get('changed', 0)} changed "
        f"behaviour, {counts.get('drift', 0)} drift beyond the sum of the two tolerances; {counts.get('still_present', 0)} known "
        f"divergences still present, {counts.get('unchanged', 0)} unchanged. A failure on the second version is judged with that "
        "version's numbers: a claim observed on the first never absorbs it."))]
    for kind in KINDS:
        changes = view.of_kind(kind)
        blocks.append(Heading(f"{TITLES[kind]} ({len(changes)})", level, f"{prefix}-{kind}"))
        if not changes:
            blocks.append(Paragraph("None."))
            continue
        blocks.append(Table(("case", "backend", "verdict", "magnitude", "what changed", "reproducer"), tuple(
            (c.case, c.backend, (Verdict(c.old_verdict, c.old_verdict), Arrow(), Verdict(c.new_verdict, c.new_verdict)), c.magnitude,
             Linked(c.detail), Code(c.reproducer))
            for c in changes)))
    grouped = still_present_by_claim(view)
    blocks.append(Heading(f"Known divergences still present ({len(view.still_present)})", level, f"{prefix}-still-present"))
    if grouped:
        blocks += [
            Paragraph("Known on the first version and failing on the second only because the claim's version range stops at the first: "
                      "the same claim, its range ignored, describes the second measurement exactly (widen the range once confirmed)."),
            BulletList(tuple((Code(claims), f" on {backend}: {len(cases)} case{'s' if len(cases) != 1 else ''} (", OneLine(", ".join(cases)), ")")
                             for claims, backend, cases in grouped)),
        ]
    else:
        blocks.append(Paragraph("None."))
    others: list[tuple[Content, ...]] = []
    if view.only_old:
        others.append((f"{len(view.only_old)} cases only in ", OneLine(view.old_folder)))
    if view.only_new:
        others.append((f"{len(view.only_new)} cases only in ", OneLine(view.new_folder)))
    if view.not_compared:
        others.append((f"{len(view.not_compared)} not compared (", OneLine("; ".join(view.not_compared[:5])), ")"))
    if others:
        listed: list = []
        for index, part in enumerate(others):
            listed += ([", "] if index else []) + list(part)
        blocks.append(Paragraph(("Not classified: ", *listed, ".")))
    return blocks
