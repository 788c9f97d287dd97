"""The summary: verdict counts, layer kinds, coverage, kernel paths and the fused path on CPU.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from harness.reports.document import (
    Alternatives, Block, Code, Content, Folded, Heading, OneLine, Paragraph, Section, Strong, Table, Verdict,
)
from harness.reports.formatting import format_names, format_number, format_seconds
from harness.reports.model import Report, kind_cell


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
