"""The gradient and training studies.

Its section of the neutral document (harness.reports.document), worded for REPORT.md and report.html."""

from __future__ import annotations

from typing import Any

from harness.reports.document import (
    Alternatives, Block, BulletList, Content, Inline, JudgedText, OneLine, OnlyIn, Paragraph, Section, Strong, Table, Verdict,
)
from harness.reports.formatting import format_number
from harness.reports.model import Report


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
