"""Figures of report.html, drawn from the report model (harness.reports.model) as PNG bytes.

Matplotlib is imported when a figure is drawn, not when this module is imported, so the rest of the
harness works without it. Figures are drawn with the Agg canvas directly (no pyplot, no global state)
and saved without the "Software" metadata, so the same records give the same bytes.

- ``ratio_heatmap``: log10 of the worst ratio of error to tolerance per case group (the case name up
  to its first "_") and backend, each cell annotated with its ratio and how many of its cases fail or
  are known divergences.
- ``growth_plot``: the float32 output's max abs error against sequence length (growth study),
  log-log, one line per backend and units value, with the float32 atol and the tightest bound.
- ``ratio_histogram``: distribution of the worst ratio per case, per backend, on logarithmic bins,
  with the pass line at 1. It replaces a ULP histogram: the records keep only each output's largest
  ULP distance, which elements whose expected value is near zero dominate (10^9 ULP on values of
  order 1e-8 that are correct to the last absolute digit), and not where that largest distance
  occurred, so no floor on |expected| can be applied after the fact. The ratio is what decides a
  verdict and is already floored by atol.
- ``drift_plot``: the training long runs' weight distance to the float64 NumPy trajectory per step, log scale, one
  line per backend and dtype policy, with the float32 rounding bound and the mixed policies' bounds the records hold.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from harness.reports.model import CaseResult, GradientsAndTraining, Growth, Report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

HEATMAP_CAPTION = (
    "Worst ratio of error to tolerance per case group (case name up to the first '_') and backend, log10 colour scale; "
    "1 is the pass line. Each cell: the ratio, and how many of the group's cases fail or are known divergences. "
    "Grey: nothing measured (errors, refusals, timeouts)."
)
GROWTH_CAPTION = "Error against the reference as the sequence grows, per backend and number of units, with the float32 tolerance"
HISTOGRAM_CAPTION = (
    "Distribution of the worst ratio of error to tolerance per case, per backend (all dtypes; 1 is the pass line, "
    "known divergences included above it). This replaces a ULP histogram: the records keep only each output's largest ULP "
    "distance, which near-zero expected values dominate (10^9 ULP on outputs of order 1e-8) and whose location is not "
    "recorded, so it cannot be floored after the fact; the ratio is what decides each verdict, and its atol is the floor."
)

DRIFT_CAPTION = (
    "Training drift: the largest weight difference to the float64 NumPy trajectory after each train_on_batch step of the long "
    "run (results/<backend>.training.json), one panel per optimizer, one line per backend (colour) and dtype policy (line style). "
    "Black: the float32 rounding bound k * eps32 * W_k (one float32 epsilon of the largest weight per step, accumulated "
    "linearly); grey, in the policy's line style: the mixed policy's bound, (eps_compute / eps32) times the float32 drift "
    "measured up to that step (the tightest over backends). Points of zero difference are not drawn (log scale)."
)


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("the figures need matplotlib: pip install 'matplotlib>=3.8'") from None
    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def case_group(name: str) -> str:
    """The heatmap row of a case: its name up to the first "_" (the whole name when there is none)."""
    return name.split("_", 1)[0]


# ---------------------------------------------------------------- ratio heatmap


def _heatmap_cells(report: Report) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Group labels, backends, worst ratios (NaN where nothing was measured, inf for non-finite), failing and known counts."""
    backends = list(report.backends)
    groups = list(dict.fromkeys(case_group(row.case) for row in report.case_rows))
    groups.sort()
    worst = np.full((len(groups), len(backends)), np.nan)
    failing = np.zeros(worst.shape, dtype=int)
    known = np.zeros(worst.shape, dtype=int)
    index = {group: i for i, group in enumerate(groups)}
    for column, backend in enumerate(backends):
        for result in report.results[backend].values():
            row = index[case_group(result.case)]
            failing[row, column] += result.verdict in ("fail", "error", "timeout", "invalid")
            known[row, column] += result.verdict == "known"
            ratio = result.judged.ratio
            if ratio is None:
                continue
            ratio = math.inf if math.isnan(ratio) else ratio
            if np.isnan(worst[row, column]) or ratio > worst[row, column]:
                worst[row, column] = ratio
    return groups, backends, worst, failing, known


def ratio_heatmap(report: Report) -> bytes:
    """Heatmap of log10(worst ratio to tolerance), rows = case groups, columns = backends, as PNG bytes."""
    groups, backends, worst, failing, known = _heatmap_cells(report)
    finite = worst[np.isfinite(worst) & (worst > 0)]
    low = math.floor(math.log10(finite.min())) if finite.size else -3
    high = max(1, math.ceil(math.log10(finite.max()))) if finite.size else 1
    low = min(low, -1)
    with np.errstate(divide="ignore"):
        values = np.log10(worst)
    values = np.where(worst == 0, low, values)
    values = np.where(np.isposinf(worst), high, values)
    masked = np.ma.masked_invalid(values)

    figure = _figure(2.8 + 1.5 * max(1, len(backends)), max(3.0, 1.6 + 0.34 * len(groups)))
    axes = figure.add_subplot()
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm

    colour_map = colormaps["RdYlGn_r"].with_extremes(bad="lightgrey")
    norm = TwoSlopeNorm(vcenter=0.0, vmin=low, vmax=max(high, 0.5))
    image = axes.imshow(masked, aspect="auto", cmap=colour_map, norm=norm, interpolation="nearest")
    axes.set_xticks(range(len(backends)), backends, fontsize=8)
    axes.set_yticks(range(len(groups)), groups, fontsize=8)
    axes.xaxis.tick_top()
    for r in range(len(groups)):
        for c in range(len(backends)):
            ratio = worst[r, c]
            if np.isnan(ratio):
                text = "not measured"
            else:
                text = "0" if ratio == 0 else ("non-finite" if np.isposinf(ratio) else f"{ratio:.2g}")
            marks = []
            if failing[r, c]:
                marks.append(f"{failing[r, c]} fail")
            if known[r, c]:
                marks.append(f"{known[r, c]} known")
            if marks:
                text += "\n" + ", ".join(marks)
            axes.text(c, r, text, ha="center", va="center", fontsize=6, color="black")
    colour_bar = figure.colorbar(image, ax=axes, fraction=0.08, pad=0.03)
    colour_bar.set_label("log10(error / tolerance); 0 is the pass line", fontsize=8)
    axes.set_ylabel("case group (name up to the first '_'), worst case", fontsize=8)
    axes.set_title("worst ratio of error to tolerance against the float64 reference", fontsize=9)
    figure.tight_layout()
    return _png(figure)


# ---------------------------------------------------------------- growth


def growth_plot(growth: Growth) -> bytes:
    """Max abs error of the float32 output against sequence length, log-log, as PNG bytes.

    One line per backend (colour) and units value (marker); a horizontal line at the float32 outputs
    atol and a dashed curve of the tightest bound: per length, the smallest ``atol + rtol * |expected|``
    at the element where any output came closest to its bound."""
    figure = _figure(8.0, 5.5)
    axes = figure.add_subplot()
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    markers = ["o", "s", "^", "D", "v", "P"]
    backends = list(growth.backends)
    all_units = sorted({p.units for p in growth.points})
    for backend in backends:
        for units in all_units:
            points = sorted(
                (p.time, p.output_error) for p in growth.points
                if p.backend == backend and p.units == units and p.output_error is not None
                and p.output_error > 0 and math.isfinite(p.output_error)
            )
            if not points:
                continue
            axes.plot(
                [t for t, _ in points], [e for _, e in points], color=colours[backends.index(backend) % len(colours)],
                marker=markers[all_units.index(units) % len(markers)], linewidth=1.2, markersize=4,
                label=f"{backend}, units {units}",
            )
    if growth.float32_atol is not None:
        axes.axhline(growth.float32_atol, color="black", linewidth=1.0, label=f"float32 atol ({growth.float32_atol:g})")
    bounds: dict[int, float] = {}
    for p in growth.points:
        if p.tightest_bound is not None:
            bounds[p.time] = min(bounds.get(p.time, math.inf), p.tightest_bound)
    if bounds:
        lengths = sorted(bounds)
        axes.plot(lengths, [bounds[t] for t in lengths], color="black", linestyle="--", linewidth=1.0,
                  label="tolerance bound at the tightest element")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("sequence length (timesteps)")
    axes.set_ylabel("max abs error of the output sequence vs float64 reference")
    axes.set_title("float32 LSTM error growth with sequence length")
    axes.grid(True, which="both", linewidth=0.3, alpha=0.5)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, ncol=2, loc="lower right")
    figure.tight_layout()
    return _png(figure)


# ---------------------------------------------------------------- ratio histogram


def _ratios(results: dict[str, CaseResult]) -> tuple[list[float], int, int]:
    """Finite positive worst ratios of the measured cases, and how many were exactly 0 and non-finite."""
    values, zeros, nonfinite = [], 0, 0
    for result in results.values():
        ratio = result.judged.ratio
        if ratio is None:
            continue
        if not math.isfinite(ratio):
            nonfinite += 1
        elif ratio == 0:
            zeros += 1
        else:
            values.append(ratio)
    return values, zeros, nonfinite


def ratio_histogram(report: Report) -> bytes:
    """Histogram of the worst ratio of error to tolerance per case, one step line per backend, log bins, as PNG bytes.

    A ratio of exactly 0 cannot sit on a log axis: those cases are counted in the legend, as are
    non-finite ratios (NaN or inf outputs)."""
    per_backend = {backend: _ratios(report.results[backend]) for backend in report.backends}
    everything = [v for values, _, _ in per_backend.values() for v in values]
    low = math.floor(math.log10(min(everything))) if everything else -3
    high = max(1, math.ceil(math.log10(max(everything)))) if everything else 1
    edges = np.logspace(low, high, 4 * (high - low) + 1)

    figure = _figure(8.0, 4.8)
    axes = figure.add_subplot()
    for backend, (values, zeros, nonfinite) in per_backend.items():
        extra = "".join([f", {zeros} at 0" if zeros else "", f", {nonfinite} non-finite" if nonfinite else ""])
        if values:
            axes.hist(values, bins=edges, histtype="step", linewidth=1.5, label=f"{backend} ({len(values)} cases{extra})")
        elif extra:
            axes.plot([], [], label=f"{backend} (0 cases{extra})")
    axes.axvline(1.0, color="black", linewidth=1.0, label="tolerance (ratio 1): above fails")
    axes.axvline(0.1, color="grey", linewidth=0.8, linestyle=":", label="ratio 0.1")
    axes.set_xscale("log")
    axes.set_xlabel("worst ratio of error to tolerance of the case, over APIs and outputs")
    axes.set_ylabel("number of cases")
    from matplotlib.ticker import MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title("distribution of the worst error-to-tolerance ratio per case")
    axes.grid(True, which="major", linewidth=0.3, alpha=0.5)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return _png(figure)


# ---------------------------------------------------------------- training drift


POLICY_STYLES = {"float32": "-", "mixed_float16": "--", "mixed_bfloat16": ":"}


def drift_plot(data: GradientsAndTraining) -> bytes:
    """Per step, the long runs' largest weight difference to the NumPy trajectory, log scale, with their bounds, as PNG bytes.

    One panel per optimizer; colour = backend, line style = dtype policy. Only what the records hold is drawn: a schema-1
    record has no bound, so its panel shows the drift alone."""
    optimizers = list(dict.fromkeys(line.optimizer for line in data.drift))
    backends = list(dict.fromkeys(line.backend for line in data.drift))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    figure = _figure(5.0 * max(1, len(optimizers)), 7.0)
    for index, optimizer in enumerate(optimizers, start=1):
        axes = figure.add_subplot(1, len(optimizers), index)
        lines = [line for line in data.drift if line.optimizer == optimizer]
        for line in lines:
            steps = [k + 1 for k, value in enumerate(line.distances) if value > 0 and math.isfinite(value)]
            values = [line.distances[k - 1] for k in steps]
            verdict = "" if line.passed is None else (" within bound" if line.passed else
                                                      " beyond bound, known" if line.known else " BEYOND bound")
            label = f"{line.backend} {line.policy}{verdict}" + (f" (cannot train: {line.error})" if line.error else "")
            axes.plot(steps, values, color=colours[backends.index(line.backend) % len(colours)],
                      linestyle=POLICY_STYLES.get(line.policy, "-."), linewidth=1.2, label=label)
        bounds: dict[str, tuple[float, ...]] = {}
        for line in lines:
            if line.bound and (line.policy not in bounds or sum(line.bound) < sum(bounds[line.policy])):
                bounds[line.policy] = line.bound
        for policy, bound in bounds.items():
            colour = "black" if policy == "float32" else "grey"
            name = "float32 rounding bound" if policy == "float32" else f"{policy} bound"
            axes.plot(range(1, len(bound) + 1), bound, color=colour, linestyle=POLICY_STYLES.get(policy, "-."), linewidth=1.6,
                      label=name)
        axes.set_yscale("log")
        axes.set_xlabel("train_on_batch step")
        axes.set_ylabel("max |weight - float64 NumPy weight|")
        axes.set_title(f"{optimizer}: drift from the float64 trajectory", fontsize=9)
        axes.grid(True, which="both", linewidth=0.3, alpha=0.5)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    figure.tight_layout()
    return _png(figure)


def report_figures(report: Report) -> dict[str, bytes]:
    """The figures of report.html keyed by caption, in page order; empty when matplotlib is not installed."""
    try:
        figures = {HEATMAP_CAPTION: ratio_heatmap(report)}
        if report.growth is not None:
            figures[GROWTH_CAPTION] = growth_plot(report.growth)
        figures[HISTOGRAM_CAPTION] = ratio_histogram(report)
        if report.gradients is not None and any(line.distances for line in report.gradients.drift):
            figures[DRIFT_CAPTION] = drift_plot(report.gradients)
    except ImportError:
        return {}
    return figures
