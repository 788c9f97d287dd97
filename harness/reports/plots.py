"""Figures from loaded records (plain dicts), as PNG bytes. Reads records only: no Keras, no backend.

Matplotlib is imported when a figure is drawn, not when this module is imported, so the rest of the
harness works without it. Figures are drawn with the Agg canvas directly (no pyplot, no global state)
and saved without the "Software" metadata, so the same records give the same bytes.

- ``growth_plot``: max abs error of the output against sequence length (growth records,
  ``<backend>.growth.json``), log-log, one line per backend and units value, with the float32 atol
  and the tolerance bound the errors are judged by.
- ``error_heatmap``: log10 of the worst max abs error against the reference, per case (rows) and
  backend (columns), from run records (``<backend>.json``). With ~290 cases one row per case is not
  readable, so by default rows are *case groups*: the case name up to its first "_" (``mask``,
  ``bidi``, ``opts``, ``act``, ...), and each cell holds the worst error over the group's measured
  cases, annotated with its value and, where some cases of the group did not run, with their count.
  ``group=False`` draws one row per case instead, in a tall figure with a small font.
- ``ulp_histogram``: distribution of the worst ULP distance per float32 case, one step histogram per
  backend, on logarithmic bins.
"""

from __future__ import annotations

import io
import math
from typing import Any, Iterable

import numpy as np

from harness.records.store import worst_item

UNMEASURED = ("error", "refused", "timeout")  # statuses with no comparison to draw
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


# ---------------------------------------------------------------- growth


def _growth_series(growth_records: dict[str, dict]) -> list[tuple[str, int, list[int], list[float]]]:
    """(backend, units, lengths, output max abs errors) for every backend and units value, sorted by length."""
    series = []
    for backend, record in growth_records.items():
        by_units: dict[int, list[tuple[int, float]]] = {}
        for point in record.get("points", []):
            output = point.get("quantities", {}).get("output")
            if output is None:
                continue
            by_units.setdefault(int(point["units"]), []).append((int(point["time"]), float(output["max_abs_error"])))
        for units in sorted(by_units):
            pairs = sorted(by_units[units])
            series.append((backend, units, [t for t, _ in pairs], [e for _, e in pairs]))
    return series


def _tightest_bounds(growth_records: dict[str, dict]) -> tuple[list[int], list[float]]:
    """Per length, the smallest bound any output was judged by at its tightest element (atol + rtol * |expected|)."""
    bounds: dict[int, float] = {}
    for record in growth_records.values():
        for point in record.get("points", []):
            output = point.get("quantities", {}).get("output")
            if output is None:
                continue
            time = int(point["time"])
            bounds[time] = min(bounds.get(time, math.inf), float(output["tightest_bound"]))
    lengths = sorted(bounds)
    return lengths, [bounds[t] for t in lengths]


def _float32_output_atol(growth_records: dict[str, dict]) -> float | None:
    for record in growth_records.values():
        entry = record.get("tolerances", {}).get("float32", {}).get("outputs")
        if entry is not None:
            return float(entry["atol"])
        for point in record.get("points", []):
            output = point.get("quantities", {}).get("output")
            if output is not None:
                return float(output["atol"])
    return None


def growth_plot(growth_records: dict[str, dict]) -> bytes:
    """Max abs error of the float32 output against sequence length, log-log, as PNG bytes.

    ``growth_records`` maps a backend name to its loaded ``<backend>.growth.json``. One line per
    backend (colour) and units value (marker); a horizontal line at the float32 outputs atol and a
    dashed curve of the tolerance bound: per length, the smallest ``atol + rtol * |expected|`` at the
    element where any output came closest to its bound.
    """
    figure = _figure(8.0, 5.5)
    axes = figure.add_subplot()
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    markers = ["o", "s", "^", "D", "v", "P"]
    backends = list(growth_records)
    all_units = sorted({units for _, units, _, _ in _growth_series(growth_records)})
    for backend, units, lengths, errors in _growth_series(growth_records):
        positive = [(t, e) for t, e in zip(lengths, errors) if e > 0 and math.isfinite(e)]
        if not positive:
            continue
        axes.plot(
            [t for t, _ in positive], [e for _, e in positive],
            color=colours[backends.index(backend) % len(colours)],
            marker=markers[all_units.index(units) % len(markers)],
            linewidth=1.2, markersize=4, label=f"{backend}, units {units}",
        )
    atol = _float32_output_atol(growth_records)
    if atol is not None:
        axes.axhline(atol, color="black", linewidth=1.0, label=f"float32 atol ({atol:g})")
    bound_lengths, bounds = _tightest_bounds(growth_records)
    if bound_lengths:
        axes.plot(bound_lengths, bounds, color="black", linestyle="--", linewidth=1.0,
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


# ---------------------------------------------------------------- run records


def worst_case_error(case: dict) -> float | None:
    """The largest max abs error over a case's APIs and outputs; None when the case was not measured."""
    return None if case.get("status") in UNMEASURED else worst_item(case, "max_abs_error")


def worst_case_ulp(case: dict) -> float | None:
    """The largest max ULP over a case's APIs and outputs; None when the case was not measured."""
    return None if case.get("status") in UNMEASURED else worst_item(case, "max_ulp")


def case_group(name: str) -> str:
    """The heatmap row of a case: its name up to the first "_" (the whole name when there is none)."""
    return name.split("_", 1)[0]


def _ordered_unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name, None)
    return list(seen)


def _heatmap_cells(run_records: dict[str, dict], group: bool) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Row labels, backends, worst errors (NaN where nothing was measured), unmeasured counts."""
    backends = list(run_records)
    rows = _ordered_unique(
        (case_group(case["case"]) if group else case["case"])
        for record in run_records.values() for case in record.get("cases", [])
    )
    worst = np.full((len(rows), len(backends)), np.nan)
    unmeasured = np.zeros((len(rows), len(backends)), dtype=int)
    index = {row: i for i, row in enumerate(rows)}
    for column, backend in enumerate(backends):
        for case in run_records[backend].get("cases", []):
            row = index[case_group(case["case"]) if group else case["case"]]
            error = worst_case_error(case)
            if error is None:
                unmeasured[row, column] += 1
            elif np.isnan(worst[row, column]) or error > worst[row, column]:
                worst[row, column] = error
    return rows, backends, worst, unmeasured


def error_heatmap(run_records: dict[str, dict], group: bool = True) -> bytes:
    """Heatmap of log10(worst max abs error vs the reference), rows = case groups (or cases), columns = backends.

    ``run_records`` maps a backend name to its loaded run record. The worst error of a case is taken
    over its APIs and outputs; cases with status error, refused or timeout are not measured and, when
    nothing of a cell was measured (or the case is missing from that backend), the cell is masked
    (grey). An exact zero is drawn at the bottom of the colour scale and marked "0"; an infinite error
    (non-finite output where a finite value was expected) at the top, marked "inf".
    ``group=True`` (default): one row per case-name prefix (up to the first "_"), worst over the group,
    with "n not run" when some of its cases were not measured. ``group=False``: one row per case.
    """
    rows, backends, worst, unmeasured = _heatmap_cells(run_records, group)
    finite = worst[np.isfinite(worst) & (worst > 0)]
    low = math.floor(math.log10(finite.min())) if finite.size else -8
    high = math.ceil(math.log10(finite.max())) if finite.size else 0
    if high <= low:
        high = low + 1
    with np.errstate(divide="ignore"):
        values = np.log10(worst)
    values = np.where(worst == 0, low, values)
    values = np.where(np.isposinf(worst), high, values)
    masked = np.ma.masked_invalid(values)

    row_height = 0.32 if group else 0.11
    height = max(3.0, 1.6 + row_height * len(rows))
    width = 2.6 + 1.3 * max(1, len(backends))
    figure = _figure(width, height)
    axes = figure.add_subplot()
    from matplotlib import colormaps

    colour_map = colormaps["viridis"].with_extremes(bad="lightgrey")
    image = axes.imshow(masked, aspect="auto", cmap=colour_map, vmin=low, vmax=high, interpolation="nearest")
    label_size = 8 if group else 4
    axes.set_xticks(range(len(backends)), backends, fontsize=8)
    axes.set_yticks(range(len(rows)), rows, fontsize=label_size)
    axes.xaxis.tick_top()
    if group:
        for r in range(len(rows)):
            for c in range(len(backends)):
                error = worst[r, c]
                if np.isnan(error):
                    text = "not run" if unmeasured[r, c] else "missing"
                else:
                    text = "0" if error == 0 else ("inf" if np.isposinf(error) else f"{error:.1e}")
                    if unmeasured[r, c]:
                        text += f"\n({unmeasured[r, c]} not run)"
                dark = not np.isnan(values[r, c]) and (values[r, c] - low) / (high - low) < 0.55
                axes.text(c, r, text, ha="center", va="center", fontsize=6, color="white" if dark else "black")
    colour_bar = figure.colorbar(image, ax=axes, fraction=0.08, pad=0.03)
    colour_bar.set_label("log10(max abs error vs float64 reference)", fontsize=8)
    what = "case group (name up to the first '_'), worst case" if group else "case"
    axes.set_ylabel(what, fontsize=8)
    axes.set_title("worst max abs error against the reference\n(grey: not run — error, refused or timeout)", fontsize=9)
    figure.tight_layout()
    return _png(figure)


def ulp_histogram(run_records: dict[str, dict]) -> bytes:
    """Histogram of the worst max ULP per float32 case, one step line per backend, logarithmic bins.

    Only measured cases of dtype float32 count. Log bins cannot hold 0: cases at 0 ULP (bit-exact)
    are drawn in the first bin, [0.5, 1), and counted in the legend.
    """
    per_backend: dict[str, list[float]] = {}
    for backend, record in run_records.items():
        values = []
        for case in record.get("cases", []):
            if case.get("dtype") != "float32":
                continue
            ulp = worst_case_ulp(case)
            if ulp is not None and math.isfinite(ulp):
                values.append(ulp)
        per_backend[backend] = values
    largest = max((max(v) for v in per_backend.values() if v), default=1.0)
    top = max(1, math.ceil(math.log10(max(largest, 1.0)) + 1e-9))
    edges = np.concatenate([[0.5], np.logspace(0, top, 4 * top + 1)])

    figure = _figure(8.0, 4.8)
    axes = figure.add_subplot()
    for backend, values in per_backend.items():
        if not values:
            continue
        array = np.asarray(values)
        zeros = int((array == 0).sum())
        axes.hist(np.where(array == 0, 0.75, array), bins=edges, histtype="step", linewidth=1.5,
                  label=f"{backend} ({len(values)} cases, {zeros} at 0 ULP)")
    axes.set_xscale("log")
    axes.set_xlabel("worst ULP distance of the case (float32), over APIs and outputs")
    axes.set_ylabel("number of cases")
    from matplotlib.ticker import MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title("float32 cases: distribution of the worst ULP distance from the reference")
    axes.grid(True, which="major", linewidth=0.3, alpha=0.5)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    figure.tight_layout()
    return _png(figure)
