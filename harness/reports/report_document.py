"""The sections of REPORT.md and report.html as one neutral document (harness.reports.document), built from the report
model: every word and number both reports show is chosen here; the renderers only format it.

The sections not yet built here are still written by each renderer on its own (issue 17).
"""

from __future__ import annotations

from typing import Any

from harness.reports.between_versions import KINDS, TITLES, BetweenVersions, still_present_by_claim
from harness.reports.document import (
    Alternatives, Arrow, Block, BulletList, CaseOutcome, Code, Content, Figure, Folded, Heading, Inline, JudgedText, Linked, Marked, OneLine,
    OnlyIn, Paragraph, Section, Strong, Table, Verdict,
)
from harness.reports.formatting import format_names, format_number, format_ratio, format_seconds, format_tolerance
from harness.reports.model import CrossRow, Report, kind_cell


def _serialization_header(worst_column: str) -> tuple[str, ...]:
    return ("saved on", "loaded on", "models", "pass", worst_column, "largest difference from the saving backend", "not passing")


def serialization_section(report: Report) -> Section:
    """Models saved on one backend and loaded on another."""
    title = "Train on one backend, serve on another"
    if report.serialization is None:
        return Section("serialization", title, title, (Paragraph("Not run (nox runs it after the parity sessions: nox -s serialization)."),))
    rows = tuple(
        (r.saved_on, r.loaded_on, str(r.models), str(r.passed), JudgedText(r.judged), format_number(r.largest_difference),
         ", ".join(r.failures) or "none")
        for r in report.serialization
    )
    return Section("serialization", title, title, (
        Alternatives(
            Paragraph("Each case's Functional model saved with model.save() on one backend and loaded on another: against the "
                      "float64 reference (worst ratio to the tolerance), and the largest difference from the saving backend's own outputs."),
            Paragraph("Each case's Functional model saved with model.save() on one backend and loaded on another: against the float64 "
                      "reference, and the largest difference from the saving backend's own outputs."),
        ),
        Alternatives(
            Table(_serialization_header("worst ratio"), rows),
            Table(_serialization_header("worst ratio (abs)"), rows, numeric=frozenset({2, 3, 5})),
        ),
    ))


def growth_section(report: Report) -> Section:
    """How the error of one float32 LSTM grows with the sequence length and the units."""
    title = "Error as the sequence grows"
    growth = report.growth
    if growth is None:
        return Section("growth", title, title, (Paragraph("Not run (python -m harness growth, part of the parity sessions)."),))
    rows = []
    for time, units in growth.keys:
        cells: list[str | JudgedText] = []
        for backend in growth.backends:
            point = growth.point(backend, time, units)
            cells.append("not run" if point is None else ("error" if point.status == "error" else JudgedText(point.judged)))
        rows.append((str(time), str(units), *cells))
    return Section("growth", title, title, (
        Alternatives(
            Paragraph("One float32 LSTM against the float64 reference: the largest ratio of error to tolerance over output, h and c, "
                      "with its absolute error."),
            Paragraph("One float32 LSTM against the float64 reference: the largest ratio of error to tolerance over output, h and c."),
        ),
        Table(("steps", "units", *growth.backends), tuple(rows), numeric=frozenset({0, 1})),
        Paragraph(("Largest ratio anywhere: ", JudgedText(growth.worst), ".")),
    ))


def training_mode_section(report: Report) -> Section:
    """The training-mode (dropout) study: each case's verdict and worst tolerance ratio per backend (REPORT.md only)."""
    title = "Training mode (dropout)"
    data = report.training_mode
    if data is None:
        return Section("training-mode", title, title, (
            Paragraph("Not run (python -m harness training-mode, part of the release parity sessions)."),), formats=("markdown",))
    cells = {(row.case, row.backend): row for row in data.rows}
    rows = []
    for case in dict.fromkeys(row.case for row in data.rows):
        entries = []
        for backend in data.backends:
            row = cells.get((case, backend))
            entries.append("" if row is None else f"{row.verdict} ({row.worst_ratio:.2g})")
        rows.append((case, *entries))
    blocks: list = [
        Paragraph("dropout and recurrent_dropout with training=True: the masks Keras draws (one per sequence, 0 or 1/(1-rate), "
                  "the rate within 5 binomial standard deviations, per gate with implementation 1), the output against the NumPy "
                  "reference fed those masks, and with the harness's seeded masks the output and the train_on_batch / fit loss. "
                  "Worst ratio: the largest error-to-tolerance ratio of the case's compared quantities."),
        Table(("case", *data.backends), tuple(rows)),
    ]
    explained = [row for row in data.rows if row.verdict != "pass"]
    if explained:
        blocks.append(BulletList(tuple(f"{row.backend} {row.case}: {row.verdict}: {row.detail}" for row in explained)))
    if data.faults:
        blocks.append(Paragraph("Records made with a fault injected (not shown above): " + ", ".join(f"{b} ({f})" for b, f in data.faults)))
    return Section("training-mode", title, title, tuple(blocks), formats=("markdown",))


def tolerances_section(report: Report) -> Section:
    """The tolerances the records were judged with."""
    rows = tuple(
        (t.dtype, t.quantity, format_tolerance(t.rtol), format_tolerance(t.atol), format_tolerance(t.rel_floor),
         {True: "yes", False: "no", None: "n/a"}[t.measured], t.reason)
        for t in report.tolerances
    )
    blocks: list = [
        Paragraph("An element fails when |actual - expected| > atol + rtol * |expected|; the ratio is the largest "
                  "|actual - expected| / (atol + rtol * |expected|) over the elements."),
        Table(("dtype", "quantity", "rtol", "atol", "rel floor", "measured", "reason"), rows, numeric=frozenset({2, 3, 4})),
    ]
    if report.tolerance_differences:
        blocks.append(BulletList(tuple(report.tolerance_differences), under_previous=True))
    return Section("tolerances", "Tolerances", "Tolerances", tuple(blocks))


def closest_section(report: Report) -> Section:
    """The passing cases nearest their tolerance."""
    title = "Closest calls"
    intro = Alternatives(
        Paragraph("The passing cases nearest their tolerance (ratio = error / tolerance; 1 would fail)."),
        Paragraph("The passing cases nearest their tolerance (ratio = error / tolerance; above 1 would fail)."),
    )
    if not report.closest_calls:
        return Section("closest", title, title, (intro, Paragraph("No passing case was measured.")))
    markdown_rows, html_rows = [], []
    for r in report.closest_calls:
        item = r.worst
        where = f"{item.api}/{item.output}" if item else "n/a"
        tolerance = f"rtol {format_tolerance(item.rtol)}, atol {format_tolerance(item.atol)}" if item else "n/a"
        markdown_rows.append((r.case, r.backend, r.dtype, JudgedText(r.judged, markdown="ratio"), format_number(r.judged.abs_error),
                              where, tolerance))
        html_rows.append((r.case, r.backend, r.dtype, JudgedText(r.judged), where, tolerance))
    return Section("closest", title, title, (intro, Alternatives(
        Table(("case", "backend", "dtype", "ratio", "abs error", "where", "tolerance"), tuple(markdown_rows)),
        Table(("case", "backend", "dtype", "ratio (abs)", "where", "tolerance"), tuple(html_rows)),
    )))


def reference_section(report: Report) -> Section:
    """Every case across backends against the float64 reference, largest ratio first."""
    rows = tuple((r.case, r.dtype, r.entry_point, *(CaseOutcome(r.cells[b]) for b in report.backends)) for r in report.case_rows)
    return Section("reference", "Against the float64 NumPy reference", "Against the float64 reference", (
        Alternatives(
            Paragraph("Each cell: verdict, then the largest ratio of error to tolerance over every API and output of the case, with "
                      "that output's absolute error. Rows: largest ratio first."),
            Paragraph("Each cell: verdict, then the largest ratio of error to tolerance over every API and output of the case, with "
                      "that output's absolute error. Largest ratio first."),
        ),
        Table(("case", "dtype", "entry point", *report.backends), rows, folded="cases"),
    ))


def apis_section(report: Report) -> Section:
    """The APIs of one case against each other: per backend, then the cases whose APIs are not bitwise equal."""
    blocks: list = [
        Paragraph("The same case built in every API it can be written in, with identical weights, compared output by output "
                  "against the bound the APIs must meet (0: bitwise)."),
        BulletList(tuple(
            (OneLine(s.backend), f": {s.bitwise} of {s.cases} cases bitwise equal across APIs, {s.within} within their bound",
             *(("; outside: ", OneLine(", ".join(s.outside))) if s.outside else ()), ".")
            for s in report.api_summaries
        )),
    ]
    differing = [r for r in report.api_rows if not r.bitwise]
    if differing:
        rows = []
        for r in differing:
            cells: list[Content] = []
            for b in report.backends:
                cell = r.cells[b]
                if cell is None or not cell.api_agreement:
                    cells.append("n/a")
                elif all(a.bitwise_equal for a in cell.api_agreement):
                    cells.append("bitwise equal")
                else:
                    cells.append(JudgedText(cell.api_judged, markdown="plain"))
            rows.append((r.case, ", ".join(r.apis), *cells))
        blocks += [Paragraph("Cases whose APIs are not bitwise equal somewhere (largest ratio first):"),
                   Table(("case", "APIs", *report.backends), tuple(rows), folded="cases")]
    return Section("apis", "Sequential, Functional and subclassed models", "Sequential, Functional and subclassed", tuple(blocks))


def faults_section(report: Report) -> Section:
    """The fault study: which injected faults the tolerances detect, the sweep, and each faulted case. Reads only
    ``report.faults``."""
    title, short_title = "Fault injection: do the tolerances catch real bugs?", "Fault injection"
    faults = report.faults
    if faults is None:
        return Section("faults", title, short_title, (Paragraph("Not run (nox -s faults)."),))
    blocks: list = [
        Paragraph("Each fault is patched into Keras at run time (never into the reference) and run through the harness on the cases it "
                  "names; a case detects it when its verdict after the known-divergence claims fails while the same case run unmodified "
                  "does not fail, its outputs differ from the unmodified ones, and its builds ran the kernel path the fault patches. "
                  "The same cases run unmodified must pass (or be explained by a claim)."),
        Paragraph("Detection: " + "; ".join(
            f"{d.backend} {d.detected} of {d.total}" + (f" ({d.errors} errors of the study)" if d.errors else "")
            + f", {len(d.false_alarms)} false alarms" for d in faults.detection
        ) + "."),
    ]
    for detection in faults.detection:
        for blind in detection.blind_sweeps:
            blocks.append(Paragraph(Marked(f"{detection.backend}: the sweep detected no perturbation ({blind}).", "over")))
        if detection.missed:
            blocks.append(Paragraph(Marked(f"Missed at this precision ({detection.backend}, {detection.precision}): "
                                           f"{', '.join(detection.missed)}.", "over")))
    markdown_rows, html_rows = [], []
    for row in faults.rows:
        markdown_cells: list[Content] = []
        html_cells: list[Content] = []
        for backend in faults.backends:
            cell = row.cells[backend]
            counts = f" ({cell.flagged}/{cell.runs} cases, error up to {format_number(cell.worst_error)})"
            shown = {"undetected": Strong("MISSED"), "error": Strong("ERROR")}.get(cell.status, cell.status)
            markdown_cells.append(shown if cell.status == "not run" else (shown, counts))
            band = {"detected": "ok", "undetected": "over", "error": "over"}.get(cell.status, "missing")
            html_cells.append(Marked(cell.status if cell.status == "not run" else cell.status + counts, band))
        markdown_rows.append((row.name, row.description, *markdown_cells))
        html_rows.append((row.name, row.description, *html_cells))
    header = ("fault", "what it does", *faults.backends)
    blocks.append(Alternatives(Table(header, tuple(markdown_rows)), Table(header, tuple(html_rows))))
    if faults.sweep:
        blocks += [Paragraph("Smallest constant added to the forget gate's pre-activation that the tolerances flag, per dtype:"),
                   Table(("dtype", "case", *faults.backends), tuple((s.dtype, s.case, *(s.cells[b] for b in faults.backends)) for s in faults.sweep))]
    if faults.cases:
        blocks += [Paragraph("Per case: the verdict, the faulted run's verdict after claims against the unmodified run's, and the kernel "
                             "path its builds ran:"),
                   Table(("fault", "case", *faults.backends), tuple((c.fault, c.case, *(c.cells[b] for b in faults.backends)) for c in faults.cases))]
    return Section("faults", title, short_title, tuple(blocks))


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


def summary_section(report: Report) -> Section:
    """Per backend its verdict counts; the layer kinds side by side; what the cases cover; the kernel paths."""
    verdicts = list(report.summaries[0].counts) if report.summaries else []
    markdown_rows, html_rows = [], []
    for s in report.summaries:
        classified: Content = "yes" if s.classified else Strong("no")
        tail = (format_seconds(s.wall_time_s), s.fault or "none", classified)
        device = s.device + (f" ({s.device_class})" if s.device_class not in ("cpu", "?") else "")
        markdown_rows.append((s.backend, device, str(s.cases), *(str(s.counts.get(v, 0)) for v in verdicts), *tail))
        html_rows.append((s.backend, f"{s.device} ({s.device_class})", str(s.cases),
                          *(Verdict(str(s.counts[v]), v) if s.counts.get(v) else "0" for v in verdicts), *tail))
    rest = ("cases", *verdicts, "wall time", "fault injected", "classified")
    blocks: list[Block] = [Alternatives(
        Table(("backend", "device", *rest), tuple(markdown_rows)),
        Table(("backend", "device (class)", *rest), tuple(html_rows), numeric=frozenset(range(2, 3 + len(verdicts)))),
    )]
    if len(report.kind_rows) > 1:
        blocks += [
            Heading("By layer kind"),
            Paragraph(("Cases per recurrent kind (mixed stacks as ", Code("a+b"), "; a Bidirectional or branches counts as the kind it "
                       "wraps), the verdicts on each backend:")),
            Table(("kind", *report.backends), tuple((Code(row.kinds), *(kind_cell(row, b) for b in report.backends)) for row in report.kind_rows)),
        ]
    c = report.coverage
    if c.configurations:
        exercised = (f"Combinations exercised: {c.configurations} distinct configurations (combinations of axis values), "
                     f"{c.model_runs} model runs (configuration x API x backend), covering {c.values} values of {len(c.axes)} axes")
        axes = "; ".join(f"{axis} ({count})" for axis, count in c.axes) + "."
        blocks.append(Alternatives((Paragraph(exercised + ":"), Paragraph(axes)),
                                   (Paragraph(exercised + "."), Folded("Axes", (Paragraph(OneLine(axes)),), one_line=True))))
    return Section("summary", "Summary", "Summary", tuple(blocks + _kernel_blocks(report)))


def _kernel_blocks(report: Report) -> list[Block]:
    """Which kernel path the builds ran, as observed during each run (not inferred from Keras's rules)."""
    if not report.kernels:
        return []
    blocks: list[Block] = [
        Heading("Kernel paths"),
        Paragraph(("Observed while each build ran: ", Code("fused"), " (the layer's fused entry point computed it: a cuDNN kernel, or "
                   "JAX's own GRU scan, which runs on CPU), ", Code("generic"), " (Keras's loop, ", Code("backend.rnn"), "), ",
                   Code("fallback_loop"), " (the backend's own non-cuDNN loop inside its fused entry point: PyTorch's ",
                   Code("_fallback_lstm"), " and ", Code("_fallback_gru"), "); ", Code("fused_declined->"), " the fused entry point "
                   "refused before any kernel ran, ", Code("fused_failed->"), " a cuDNN kernel ran and failed, then the next path. "
                   "Builds (case x API) per path:")),
        Table(("backend", "precision", "builds", "paths (builds)", "cases that ran fused", "cases whose fused kernel failed", "note"), tuple(
            (k.backend, k.precision_mode, str(k.builds), "; ".join(f"{path}: {n}" for path, n in k.paths), format_names(k.fused_cases),
             format_names(k.failed_cases), f"{k.unrecorded} builds without a recorded path" if k.unrecorded else "")
            for k in report.kernels
        ), numeric=frozenset({2})),
    ]
    blocks += _fused_on_cpu_blocks(report)
    if report.kernel_rows:
        blocks.append(Folded(f"Kernel path per case ({len(report.kernel_rows)} cases)", (
            Table(("case", *report.backends), tuple((r.case, *(r.cells[b] for b in report.backends)) for r in report.kernel_rows)),)))
    return blocks


def _fused_on_cpu_blocks(report: Report) -> list[Block]:
    """The kernel = fused_on_cpu cases: Keras's fused-path code driven on CPU through a stand-in kernel."""
    if not report.fused_on_cpu:
        return []
    blocks: list[Block] = [
        Heading("Fused path on CPU"),
        Alternatives(
            Paragraph(("Cases with ", Code("kernel = fused_on_cpu"), " run Keras's own fused-path code (weight re-layout, go_backwards, "
                       "states, Bidirectional's fused call) with its GPU check opened and the cuDNN kernel replaced by a CPU stand-in: ",
                       Code("jax.experimental.rnn.lstm_ref"), " on JAX, ", Code("torch._VF.lstm"), " on CPU on PyTorch; TensorFlow's ",
                       Code("CudnnRNNV3"), " has no CPU kernel, so a recorder checks that the fused path reaches it and declines (the "
                       "numbers are then the generic loop's). Every case that could take the fused path on a GPU has such a twin. Worst "
                       "error against the reference of the passing ones, beside their as-shipped twins:")),
            Paragraph(("Cases with ", Code("kernel = fused_on_cpu"), " run Keras's own fused-path code with its GPU check opened and the "
                       "cuDNN kernel replaced by a CPU stand-in: ", Code("jax.experimental.rnn.lstm_ref"), " on JAX, ", Code("torch._VF.lstm"),
                       " on CPU on PyTorch; TensorFlow's ", Code("CudnnRNNV3"), " has no CPU kernel, so a recorder checks that the fused "
                       "path reaches it and declines (the numbers are then the generic loop's). Worst error against the reference of the "
                       "passing ones, beside their as-shipped twins:")),
        ),
        Table(("backend", "cases", "verdicts", "ran the stand-in kernel", "reached the kernel", "declined before it", "worst error, fused",
               "worst error, as shipped"), tuple(
            (f.backend, str(f.cases), ", ".join(f"{verdict} {n}" for verdict, n in f.verdicts), str(f.ran_fused), str(f.reached_kernel),
             str(f.never_reached), format_number(f.worst_fused), format_number(f.worst_twin))
            for f in report.fused_on_cpu
        ), numeric=frozenset({1, 3, 4, 5})),
    ]
    claims: dict[tuple[str, str, str], list[str]] = {}
    for f in report.fused_on_cpu:
        for case, verdict, explained in f.not_passing:
            claims.setdefault((f.backend, verdict, explained), []).append(case)
    if claims:
        blocks += [Paragraph("What the fused path does differently (cases by verdict and the claim that explains them):"),
                   Table(("backend", "verdict", "explained by", "cases"), tuple(
                       (backend, verdict, explained, format_names(tuple(cases), 4)) for (backend, verdict, explained), cases in claims.items()))]
    return blocks


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


SHOWN_CROSS_ROWS = 20  # REPORT.md lists the cases with the largest differences, report.html folds every measurement


def _cross_distance(row: CrossRow) -> tuple[Inline, ...]:
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
             _cross_distance(p.largest) if p.largest else "n/a",
             f"{p.largest.case} ({'/'.join(p.largest.verdicts)})" if p.largest else "n/a",
             _cross_distance(p.largest_both_pass) if p.largest_both_pass else "n/a",
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


def _gradient_distance(name: str, row: dict[str, Any]) -> tuple[tuple[Inline, ...], tuple[Inline, ...]]:
    """The largest gradient difference of one pair of backends, as REPORT.md and as report.html words it."""
    case, output = OneLine(str(row.get("case"))), OneLine(str(row.get("output")))
    if row.get("max_abs_diff") is None:
        return (f"{name}: {row.get('case')} {row.get('output')}: shapes differ",), (OneLine(name), ": shapes differ at ", case, " ", output)
    verdicts = row.get("verdicts")
    markdown = (f"{name}: {format_number(row['max_abs_diff'])} at {row.get('case')} {row.get('output')}"
                + (f" ({'/'.join(str(v) for v in verdicts)})" if verdicts else ""),)
    return markdown, (OneLine(name), f": {format_number(row['max_abs_diff'])} at ", case, " ", output)


def gradients_section(report: Report) -> Section:
    """Gradient errors per case and backend, the shared layer against two instances, backends against each other, and the
    training trajectories against the NumPy loop."""
    title = "Gradients and training"
    data = report.gradients
    if data is None:
        return Section("gradients", title, title, (
            Paragraph("Not run (python -m harness gradients / training, part of the release parity sessions)."),))
    by = {(row.case, row.backend): row for row in data.rows}
    rows = []
    for case in sorted({row.case for row in data.rows}):
        cells: list[Content] = []
        for backend in data.backends:
            row = by.get((case, backend))
            if row is None:
                cells.append("not run")
                continue
            where = () if row.verdict == "pass" else (
                f" at {row.where}" + (f" (forward: {', '.join(row.forward_divergences)})" if row.forward_divergences else ""),)
            cells.append((Verdict(row.verdict, row.verdict), " ", JudgedText(row.judged), *where))
        rows.append((case, *cells))
    blocks: list[Block] = [
        Alternatives(
            Paragraph("Each backend's own autodiff (TensorFlow's GradientTape, jax.value_and_grad over stateless_call, torch.autograd) "
                      "of a seeded MSE loss, in every API, against the float64 NumPy backward pass: the largest ratio of error to "
                      "tolerance over every weight's gradient, the input's and the loss."),
            Paragraph("Each backend's own autodiff of a seeded MSE loss, in every API, against the float64 NumPy backward pass: "
                      "the largest ratio of error to tolerance over every gradient and the loss."),
        ),
        Table(("case", *data.backends), tuple(rows)),
    ]
    if data.shared_pairs:
        blocks.append(Alternatives(
            tuple(BulletList((f"{backend}: the shared layer of {shared} against two separate instances holding its weights ({separate}): "
                              f"its gradient {'is' if passed else 'is NOT'} the sum of the two instances' gradients (largest ratio "
                              f"{ratio if ratio is None else f'{ratio:.2g}'}).",))
                  for backend, shared, separate, passed, ratio, _ in data.shared_pairs),
            BulletList(tuple((OneLine(backend), ": shared layer = sum of two instances' gradients: ", "yes" if passed else Strong("no"),
                              f" (largest ratio {ratio:.2g})" if ratio is not None else "")
                             for backend, _, _, passed, ratio, _ in data.shared_pairs)),
        ))
    if data.cross_compared is not None:
        distances = [_gradient_distance(name, row) for name, row in data.cross_largest]
        intro = (f"Backend against backend (measurements, not a check): {data.cross_compared} gradients measured on two backends, "
                 "whatever their verdicts; the largest difference per pair")
        html_largest: list[Inline] = []
        for index, (_, html_distance) in enumerate(distances):
            html_largest += (["; "] if index else []) + list(html_distance)
        markdown_blocks: tuple[Block, ...] = (
            Paragraph(intro + ":"),
            BulletList(tuple(markdown for markdown, _ in distances) + tuple(
                Strong(f"{entry.get('case')} ({' vs '.join(entry.get('backends') or ())}): gradient {entry.get('raw_output')} named by "
                       "the record is missing from its arrays") for entry in data.cross_missing), under_previous=True),
        )
        html_blocks: tuple[Block, ...] = (Paragraph((intro + ": ", *(html_largest or ["n/a"]), ".")),)
        if data.cross_missing:
            html_blocks += (BulletList(tuple(
                Strong(f"{entry.get('case')}: gradient {entry.get('raw_output')} named by the record is missing from its arrays")
                for entry in data.cross_missing)),)
        blocks.append(Alternatives(markdown_blocks, html_blocks))
    if data.training:
        blocks += [
            OnlyIn("markdown", Paragraph("Training (identical weights and batches, no shuffling) against the NumPy loop: the losses Keras "
                                         "reported (train_on_batch: each batch's; fit: the running mean) and the final weights.")),
            Table(("backend", "optimizer", "entry point", "status", "largest ratio", "losses reported"), tuple(
                (run.backend, run.optimizer, run.entry_point, (Verdict(run.status, run.status), *((f": {run.error}",) if run.error else ())),
                 JudgedText(run.judged), ", ".join(f"{value:.7g}" for value in run.keras_losses))
                for run in data.training)),
        ]
    long_runs = [(backend, optimizer, distances) for backend, optimizer, distances in data.long_runs if distances]
    if long_runs:
        markdown_runs = []
        for backend, optimizer, distances in long_runs:
            marks = sorted({0, len(distances) // 4, len(distances) // 2, len(distances) - 1})
            markdown_runs.append(BulletList((f"{backend} {optimizer}, {len(distances)} train_on_batch steps: largest weight difference to "
                                             "the NumPy trajectory " + ", ".join(f"{distances[k]:.2g} after step {k + 1}" for k in marks) + ".",)))
        html_runs: list[Inline] = ["Largest weight difference to the NumPy trajectory: "]
        for index, (backend, optimizer, distances) in enumerate(long_runs):
            html_runs += (["; "] if index else []) + [OneLine(backend), " ", OneLine(optimizer), f": {distances[-1]:.2g} after {len(distances)} steps"]
        blocks.append(Alternatives(tuple(markdown_runs), Paragraph((*html_runs, "."))))
    judged = [line for line in data.drift if line.passed is not None or line.error]
    if judged:
        markdown_items: list[Content] = []
        html_items: list[Content] = []
        for line in judged:
            name = f"{line.backend} {line.optimizer} {line.policy}"
            html_name = (OneLine(line.backend), " ", OneLine(line.optimizer), " ", OneLine(line.policy), ": ")
            if line.error:
                markdown_items.append(Strong(f"{name}: cannot train: {line.error}"))
                html_items.append((*html_name, Strong(f"cannot train: {line.error}")))
                continue
            scale = f"; loss scale {line.loss_scale:g}" if line.loss_scale is not None else ""
            measured = f"{line.distances[-1]:.2g} after {len(line.distances)} steps, worst {line.worst_ratio:.2g} of its bound"
            text = f"{name}: {measured}{scale}"
            if line.passed:
                markdown_items.append(text)
                verdict: tuple[Inline, ...] = ()
            elif line.known:
                markdown_items.append(f"{text}: beyond the bound, known: {' '.join(line.known.split())}")
                verdict = (" (beyond the bound, known: ", OneLine(" ".join(line.known.split())), ")")
            else:
                markdown_items.append(Strong(f"{text}: beyond what rounding explains"))
                verdict = (" (", Strong("beyond what rounding explains"), ")")
            html_items.append((*html_name, measured, *verdict, f", loss scale {line.loss_scale:g}" if line.loss_scale is not None else ""))
        blocks.append(Alternatives(
            (Paragraph("Drift of the long runs against what rounding explains (float32: k * eps32 * W_k; a mixed policy: eps_compute / "
                       "eps32 times the float32 drift measured; the drift plot in report.html):"),
             BulletList(tuple(markdown_items), under_previous=True)),
            BulletList(tuple(html_items), caption="Drift against what rounding explains (see the drift figure):"),
        ))
    if data.faults:
        blocks.append(OnlyIn("markdown", Paragraph("Records made with a fault injected (not measurements): "
                                                   + ", ".join(f"{b} {f}" for b, f in data.faults) + ".")))
    return Section("gradients", title, title, tuple(blocks))


def claim_study_section(report: Report) -> Section:
    """Per known-divergence claim, the largest injected fault it absorbs against the largest error it explains."""
    title = "Known divergences under injected faults"
    data = report.claim_study
    if data is None:
        return Section("claims", title, title, (Paragraph("Not run (python -m harness claims DIR, part of the report session)."),))
    blocks: list[Block] = [Paragraph((
        f"Every case a claim explains, replayed with faults injected into its recorded outputs (a forget-gate bias offset stepped down "
        f"until undetected, a gate swap, an error in an output the claim does not name, another exception or message) and judged again. "
        f"A claim fails when it absorbs a fault more than {data.factor:g}x the largest error it explains. ",
        "Every claim holds." if data.passed else Strong("Some claims absorb faults.")))]
    header = ("claim", "kind", "backends", "cases", "faults tried", "absorbed", "largest error explained", "absorbs no fault larger than", "ratio")
    numbers = [(row.claim, row.kind, ", ".join(row.backends), str(row.cases), str(row.faults_tried), str(row.faults_absorbed),
                format_number(row.largest_explained_error), format_number(row.largest_absorbed_error), format_number(row.ratio))
               for row in data.rows]
    blocks.append(Alternatives(
        Table((*header, ""), tuple((*cells, "ok" if row.passed else Strong("TOO LOOSE")) for cells, row in zip(numbers, data.rows))),
        Table((*header, "verdict"), tuple((*cells, "ok" if row.passed else (Strong("too loose"), ": ", OneLine("; ".join(row.reasons))))
                                          for cells, row in zip(numbers, data.rows)), numeric=frozenset({3, 4, 5, 6, 7, 8})),
    ))
    reasons = tuple(f"{row.claim}: {reason}" for row in data.rows for reason in row.reasons)
    if reasons:
        blocks.append(OnlyIn("markdown", BulletList(reasons)))
    gradient_rows = [row for row in data.rows if row.gradient_cases]
    if gradient_rows:
        caption = ("Gradient faults (a zeroed kernel gradient, the kernel gradient scaled by 1 + k stepped down until absorbed), judged by "
                   "the gradient study:")
        blocks.append(Alternatives(
            BulletList(tuple((f"{row.claim}: ", OneLine(row.bound_line())) for row in gradient_rows), caption=caption),
            BulletList(tuple((Code(row.claim), ": ", OneLine(row.bound_line())) for row in gradient_rows), caption=caption),
        ))
    lost_rows = [row for row in data.rows if row.not_explained_now]
    if lost_rows:
        caption = "Claims that no longer explain what their records say they explained (re-judged):"
        blocks.append(Alternatives(
            BulletList(tuple((f"{row.claim}: {len(row.not_explained_now)} recorded case{'s' if len(row.not_explained_now) != 1 else ''} it no "
                              "longer explains, not studied (first: ", OneLine(row.not_explained_now[0]), ")") for row in lost_rows),
                       caption=caption),
            BulletList(tuple((Code(row.claim), f": {len(row.not_explained_now)} recorded cases it no longer explains, not studied (first: ",
                              OneLine(row.not_explained_now[0]), ")") for row in lost_rows), caption=caption),
        ))
    return Section("claims", title, title, tuple(blocks))


def figures_section(figures: dict[str, bytes]) -> Section:
    """The figures (caption -> PNG bytes, from harness.reports.plots), numbered in the given order: report.html only."""
    blocks: tuple[Block, ...] = tuple(Figure(number, caption, png) for number, (caption, png) in enumerate(figures.items(), start=1))
    return Section("figures", "Figures", "Figures", blocks or (Paragraph("No figures were supplied."),), formats=("html",))
