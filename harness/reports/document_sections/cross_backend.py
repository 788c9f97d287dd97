"""The backends measured against each other.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.document import Alternatives, Block, BulletList, Folded, Inline, OneLine, Paragraph, Section, Strong, Table
from harness.reports.formatting import format_number, format_ratio
from harness.reports.model import CrossRow, Report


SHOWN_CROSS_ROWS = 20  # REPORT.md lists the cases with the largest differences, report.html folds every measurement


def cross_distance(row: CrossRow) -> tuple[Inline, ...]:
    """One measured distance: the largest absolute and relative difference, on which output, in units of the summed tolerances."""
    pair = row.worst
    if pair.shapes_differ:
        return (OneLine(pair.output), ": shapes differ")
    return (OneLine(pair.output), f": {format_number(pair.max_abs_diff)} abs, {format_number(pair.max_rel_diff)} rel, "
            f"{format_ratio(pair.judged)} of the summed tolerances")


def _listed(texts: list[str], separator: str = ", ") -> list[Inline]:
    """Record texts one after another, each kept on one line."""
    parts: list[Inline] = []
    for index, text in enumerate(texts):
        parts += ([separator] if index else []) + [OneLine(text)]
    return parts


def cross_section(report: Report) -> Section:
    """How far apart the same case is on two backends (cross_backend.json): measurements, not a check."""
    title = "Backend against backend (measurements)"
    cross = report.cross
    if not cross.ran:
        return Section("pairwise", title, title, (Paragraph("Not run (no cross_backend.json in this folder)."),))
    before = ("How far apart the same case (same inputs, same weights) is on two backends: every case both backends produced numbers for, "
              "whatever their verdicts, the output with the largest difference per case. ")
    after = (": a case that passes on both backends is within the sum of their tolerances by construction (each side is within its own "
             "tolerance of the same float64 reference), and a known or failing side is already reported against the reference. 'x tol' is "
             "the difference in units of the two sides' tolerances summed.")
    blocks: list[Block] = [
        Alternatives(Paragraph(before + "These are measurements, not a check" + after),
                     Paragraph((before, Strong("These are measurements, not a check"), after))),
        Table(("backends", "cases measured", "pass on both", "largest difference", "its case (verdicts)", "largest, both pass", "its case"), tuple(
            (f"{p.backends[0]} vs {p.backends[1]}", str(p.compared), str(p.both_pass),
             cross_distance(p.largest) if p.largest else "n/a",
             f"{p.largest.case} ({'/'.join(p.largest.verdicts)})" if p.largest else "n/a",
             cross_distance(p.largest_both_pass) if p.largest_both_pass else "n/a",
             p.largest_both_pass.case if p.largest_both_pass else "n/a") for p in cross.pairs
        ), numeric=frozenset({1, 2})),
    ]
    if cross.never_compared:
        blocks.append(Paragraph((f"{len(cross.never_compared)} cases were measured on no pair of backends (numbers on at most one): ",
                                 *_listed(list(cross.never_compared)), ".")))
    if cross.rows:
        header = ("case", "backends", "verdicts", "output", "abs difference", "rel difference", "x tol", "known divergence")
        rows = tuple(
            (r.case, f"{r.backends[0]} vs {r.backends[1]}", "/".join(r.verdicts), r.worst.output,
             "shapes differ" if r.worst.shapes_differ else format_number(r.worst.max_abs_diff), format_number(r.worst.max_rel_diff),
             format_ratio(r.worst.judged), ", ".join(r.explained_by) or "-")
            for r in cross.rows
        )
        shown, rest = rows[:SHOWN_CROSS_ROWS], cross.rows[SHOWN_CROSS_ROWS:]
        listed: list[Block] = [Paragraph(f"The {len(shown)} cases with the largest differences:"), Table(header, shown)]
        if rest:
            listed.append(Paragraph(f"{len(rest)} more cases, each with a difference of at most {format_number(rest[0].worst.max_abs_diff)} "
                                    "(every measurement is in report.html and cross_backend.json)."))
        blocks.append(Alternatives(tuple(listed), Folded(f"Every measurement ({len(rows)}), largest difference first",
                                                         (Table(header, rows, numeric=frozenset({4, 5, 6})),))))
    if cross.skipped:
        blocks.append(Folded(f"{len(cross.skipped)} case pairs not measured", (BulletList(tuple(
            (OneLine(case), " (", OneLine(" vs ".join(backends)), "): ", OneLine(reason)) for case, backends, reason in cross.skipped)),),
            one_line=True))
    return Section("pairwise", title, title, tuple(blocks))
