"""The benchmark's growth figure as a standalone SVG (no plotting library): cost against batch, time and units.

One panel per axis, both scales logarithmic, so that a straight line of slope s means cost ~ size^s. Per
backend one colour: the backend's float32 ``predict`` as a solid line, the float64 reference measured in the
same process as a dashed line; the legend gives each line's log-log slope. Points without a time (a
measurement that raised) are left out. Same model, same bytes: nothing random, no timestamp.
"""

from __future__ import annotations

import math
from html import escape

from harness.reports.bench_model import GrowthSeries

COLOURS = {"tensorflow": "#d62728", "jax": "#1f77b4", "torch": "#2ca02c"}
OTHER_COLOUR = "#7f7f7f"
AXES = ("batch", "time", "units")
PANEL_W, PANEL_H, MARGIN_L, MARGIN_B, MARGIN_T, GAP = 260, 200, 58, 42, 28, 30
LEGEND_LINE = 16
SERIES_LABEL = {"backend_predict": "float32 predict", "reference_forward": "float64 reference forward"}


def _decades(low: float, high: float) -> list[float]:
    return [10.0 ** exponent for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]


def _label(value: float) -> str:
    return f"{value:g}" if 1e-3 <= value <= 1e4 else f"1e{round(math.log10(value))}"


def growth_svg(series: tuple[GrowthSeries, ...]) -> str:
    """The figure (module docstring) for every series of the kernels records; an SVG document as text."""
    series = tuple(line for line in series if any(value is not None and value > 0 for value in line.seconds))
    legend = sorted({(line.backend, line.series) for line in series})
    width = MARGIN_L + len(AXES) * (PANEL_W + GAP) + 10
    height = MARGIN_T + PANEL_H + MARGIN_B + LEGEND_LINE * (len(legend) + 1) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'font-family="sans-serif" font-size="11">', f'<rect width="{width}" height="{height}" fill="white"/>']
    times = [value for line in series for value in line.seconds if value is not None and value > 0]
    if not times:
        parts.append(f'<text x="10" y="20">no growth measurement</text></svg>')
        return "\n".join(parts) + "\n"
    y_ticks = _decades(min(times), max(times))
    y_low, y_high = math.log10(y_ticks[0]), math.log10(y_ticks[-1])
    y_high = y_high if y_high > y_low else y_low + 1
    for index, axis in enumerate(AXES):
        left = MARGIN_L + index * (PANEL_W + GAP)
        lines = [line for line in series if line.axis == axis]
        sizes = [size for line in lines for size in line.sizes if size > 0]
        parts.append(f'<text x="{left + PANEL_W / 2}" y="{MARGIN_T - 10}" text-anchor="middle" font-weight="bold">'
                     f'cost against {axis}</text>')
        parts.append(f'<rect x="{left}" y="{MARGIN_T}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="black"/>')
        if not sizes:
            continue
        x_low, x_high = math.log10(min(sizes)) - 0.05, math.log10(max(sizes)) + 0.05

        def x_of(size: float, left: float = left, x_low: float = x_low, x_high: float = x_high) -> float:
            return left + (math.log10(size) - x_low) / (x_high - x_low) * PANEL_W

        def y_of(seconds: float) -> float:
            return MARGIN_T + PANEL_H - (math.log10(seconds) - y_low) / (y_high - y_low) * PANEL_H

        for size in sorted(set(sizes)):
            x = x_of(size)
            parts.append(f'<line x1="{x:.1f}" y1="{MARGIN_T + PANEL_H}" x2="{x:.1f}" y2="{MARGIN_T + PANEL_H + 4}" stroke="black"/>')
            parts.append(f'<text x="{x:.1f}" y="{MARGIN_T + PANEL_H + 16}" text-anchor="middle">{size}</text>')
        parts.append(f'<text x="{left + PANEL_W / 2}" y="{MARGIN_T + PANEL_H + 32}" text-anchor="middle">{axis}</text>')
        for tick in y_ticks:
            y = y_of(tick)
            parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + PANEL_W}" y2="{y:.1f}" stroke="#dddddd"/>')
            if index == 0:
                parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_label(tick)} s</text>')
        for line in lines:
            points = [(x_of(size), y_of(value)) for size, value in zip(line.sizes, line.seconds)
                      if size > 0 and value is not None and value > 0]
            colour = COLOURS.get(line.backend, OTHER_COLOUR)
            dash = ' stroke-dasharray="5,3"' if line.series == "reference_forward" else ""
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>')
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in points]
    top = MARGIN_T + PANEL_H + MARGIN_B + 4
    parts.append(f'<text x="{MARGIN_L}" y="{top}">log-log slopes (batch / time / units): cost ~ size^slope</text>')
    for row, (backend, kind) in enumerate(legend, start=1):
        y = top + row * LEGEND_LINE
        colour = COLOURS.get(backend, OTHER_COLOUR)
        dash = ' stroke-dasharray="5,3"' if kind == "reference_forward" else ""
        slopes = []
        for axis in AXES:
            slope = next((line.slope for line in series if (line.backend, line.series, line.axis) == (backend, kind, axis)), None)
            slopes.append("n/a" if slope is None else f"{slope:.2f}")
        where = f"{backend} {SERIES_LABEL.get(kind, kind)}" + (f" (in the {backend} process)" if kind == "reference_forward" else "")
        parts.append(f'<line x1="{MARGIN_L}" y1="{y - 4}" x2="{MARGIN_L + 28}" y2="{y - 4}" stroke="{colour}" stroke-width="1.6"{dash}/>')
        parts.append(f'<text x="{MARGIN_L + 34}" y="{y}">{escape(where)}: {" / ".join(slopes)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
