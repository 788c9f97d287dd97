"""Merge the run records in a folder into REPORT.md. Reads records only; never runs anything."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable

from harness.records import store as records
from harness.truth.compare import max_difference
from harness.execute.backends import BACKENDS
from harness.case.divergences import load_divergences, stale_divergences

STATUS_MARK = {
    "pass": "pass", "fail": "**FAIL**", "error": "**ERROR**", "timeout": "**TIMEOUT**", "known": "known", "refused": "refused",
}


def load_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Every ``<backend>.json`` record in ``folder``, keyed by backend; RecordError for a bad one."""
    if not folder.is_dir():
        raise records.RecordError(f"{folder} is not a folder of results")
    loaded = {}
    for path in sorted(p for p in folder.glob("*.json") if p.stem in BACKENDS):
        record = records.read_record(path)
        if record["backend"] != path.stem:
            raise records.RecordError(f"{path} holds a record of backend {record['backend']!r}; expected {path.stem!r}")
        loaded[record["backend"]] = record
    if not loaded:
        raise records.RecordError(f"{folder} holds no run records (<backend>.json); run 'python -m harness run' first")
    return loaded


def _fmt(value: float | None) -> str:
    return f"{value:.2e}" if value is not None and value == value else "n/a"


def _cell(case: dict[str, Any] | None) -> str:
    if case is None:
        return "not run"
    if case["status"] in ("error", "timeout", "refused"):
        return f"{STATUS_MARK[case['status']]}: {case['error']}"
    ulp = records.worst_item(case, "max_ulp")
    ulp_text = f"{ulp:.0f}" if ulp is not None else "n/a"
    return f"{STATUS_MARK[case['status']]} {_fmt(records.worst_item(case, 'max_abs_error'))} / {ulp_text}"


def _api_cell(case: dict[str, Any] | None) -> str:
    if case is None or not case.get("api_agreement"):
        return "n/a"
    rows = case["api_agreement"]
    if all(row["bitwise_equal"] for row in rows):
        return "bitwise equal"
    return f"max {_fmt(max(row['max_abs_diff'] for row in rows))}"


def _case_names(loaded: dict[str, dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for record in loaded.values():
        for case in record["cases"]:
            if case["case"] not in names:
                names.append(case["case"])
    return names


def _by_case(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {case["case"]: case for case in record["cases"]}


def _per_case_table(
    intro: str,
    fixed_columns: list[str],
    fixed_cells: Callable[[dict[str, Any]], list[str]],
    backend_cell: Callable[[dict[str, Any] | None], str],
    names: list[str],
    by_backend: dict[str, dict[str, dict[str, Any]]],
) -> list[str]:
    """A Markdown table with one row per case: some columns from the case, then one cell per backend."""
    backends = list(by_backend)
    header = ["case", *fixed_columns, *backends]
    lines = [intro, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        some = next(by_backend[b][name] for b in backends if name in by_backend[b])
        cells = [name, *fixed_cells(some), *(backend_cell(by_backend[b].get(name)) for b in backends)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _pairwise(folder: Path, loaded: dict[str, dict[str, Any]], names: list[str]) -> list[str]:
    arrays = {backend: records.read_arrays(folder / f"{backend}.npz") for backend in loaded}
    pairs = list(itertools.combinations(sorted(loaded), 2))
    if not pairs:
        return ["Only one backend was run: no pairwise comparison."]
    lines = [
        "Largest absolute difference between two backends over every API and output of the case (same inputs, same weights).",
        "",
        "| case | " + " | ".join(f"{a} vs {b}" for a, b in pairs) + " |",
        "|---|" + "---|" * len(pairs),
    ]
    for name in names:
        cells = []
        for first, second in pairs:
            prefix = f"{name}/"
            keys = [key for key in arrays[first] if key.startswith(prefix) and key in arrays[second]]
            if not keys:
                cells.append("n/a")
                continue
            differences = [max_difference(arrays[first][key], arrays[second][key]) for key in keys]
            if all(bitwise for _, bitwise in differences):
                cells.append("bitwise equal")
            else:
                cells.append(_fmt(max(difference for difference, _ in differences)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _axis_values(config: dict[str, Any]) -> list[tuple[str, Any]]:
    pairs = [(key, value) for key, value in config.items() if key not in ("layers", "batch", "time", "features")]
    for spec in config.get("layers", []):
        prefix = spec["type"]
        for key, value in spec.items():
            if key == "layer":
                pairs += [(f"branches.lstm.{k}", v) for k, v in value.items() if k != "type"]
            elif key not in ("type", "units"):
                pairs.append((f"{prefix}.{key}", value))
        pairs.append(("layer", prefix))
    return pairs


def _coverage(loaded: dict[str, dict[str, Any]]) -> list[str]:
    """How many distinct configurations, model runs and axis values the records exercised."""
    configurations = set()
    axis_values: dict[str, set] = {}
    model_runs = 0
    for record in loaded.values():
        for case in record["cases"]:
            config = case.get("config")
            if config is None:
                continue
            configurations.add(repr(sorted(_axis_values(config))))
            for key, value in _axis_values(config):
                axis_values.setdefault(key, set()).add(repr(value))
            model_runs += len(case["apis"])
    if not configurations:
        return []
    lines = [
        f"Combinations exercised: {len(configurations)} distinct configurations (combinations of axis values), "
        f"{model_runs} model runs (configuration x API x backend), covering {sum(len(v) for v in axis_values.values())} "
        f"values of {len(axis_values)} axes:",
        "",
    ]
    lines.append("; ".join(f"{key} ({len(values)})" for key, values in sorted(axis_values.items())) + ".")
    return lines


def _growth(folder: Path) -> list[str]:
    """Worst float32 error (output, h, c) against the reference per sequence length, units and backend."""
    studies = load_growth_records(folder)
    if not studies:
        return ["Not run (python -m harness growth, part of the parity sessions)."]
    backends = sorted(studies)
    lines = [
        "One float32 LSTM called eagerly, batch 5, 3 features, against the float64 reference: the worst absolute error "
        "over output, h and c, and in brackets the headroom (the tolerance bound over the error at the tightest element; "
        "below 1 would be a failure).",
        "",
        "| steps | units | " + " | ".join(backends) + " |",
        "|---|---|" + "---|" * len(backends),
    ]
    keys = sorted({(p["time"], p["units"]) for study in studies.values() for p in study["points"]}, key=lambda k: (k[1], k[0]))
    worst_headroom = float("inf")
    for time, units in keys:
        cells = []
        for backend in backends:
            point = next((p for p in studies[backend]["points"] if p["time"] == time and p["units"] == units), None)
            if point is None or "quantities" not in point:
                cells.append("error" if point else "not run")
                continue
            error = max(q["max_abs_error"] for q in point["quantities"].values())
            headroom = min(q["headroom"] for q in point["quantities"].values())
            worst_headroom = min(worst_headroom, headroom)
            cells.append(f"{_fmt(error)} ({headroom:.1f}x)")
        lines.append(f"| {time} | {units} | " + " | ".join(cells) + " |")
    lines += ["", f"Smallest headroom anywhere: {worst_headroom:.1f}x."]
    return lines


def _faults(folder: Path) -> list[str]:
    """The fault catalogue's detection per backend and the smallest detected perturbation per dtype."""
    studies = records.read_backend_records(folder, "faults", "keras-parity/faults")
    if not studies:
        return ["Not run (nox -s faults)."]
    backends = sorted(studies)
    names = list(next(iter(studies.values()))["faults"])
    detected = {b: sum(entry["detected"] for entry in studies[b]["faults"].values()) for b in backends}
    false_alarms = {b: sum(entry["status"] not in ("pass", "known") for entry in studies[b]["clean"].values()) for b in backends}
    lines = [
        "Each fault is patched into Keras at run time (never into the reference) and run through the normal harness "
        "on the cases it names; it is detected when a case fails. The same cases run unmodified must not fail.",
        "",
        "Detection rate: " + "; ".join(f"{b} {detected[b]} of {len(names)}, {false_alarms[b]} false alarms" for b in backends) + ".",
        "",
        "| fault | what it does | " + " | ".join(backends) + " |",
        "|---|---|" + "---|" * len(backends),
    ]
    for name in names:
        description = studies[backends[0]]["faults"][name]["description"]
        cells = []
        for backend in backends:
            entry = studies[backend]["faults"].get(name)
            if entry is None:
                cells.append("not run")
                continue
            worst = max((run["max_abs_error"] or 0.0) for run in entry["runs"].values()) if entry["runs"] else 0.0
            cells.append(("detected" if entry["detected"] else "**MISSED**") + f" ({len(entry['flagged_cases'])}/{len(entry['runs'])} cases, error up to {_fmt(worst)})")
        lines.append(f"| {name} | {description} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Smallest constant added to the forget gate's pre-activation that the tolerances flag (a sweep from 1 down by "
        "factors of 10), per dtype:",
        "",
        "| dtype | case | " + " | ".join(backends) + " |",
        "|---|---|" + "---|" * len(backends),
    ]
    for dtype, entry in studies[backends[0]]["sweep"].items():
        cells = []
        for backend in backends:
            sweep = studies[backend]["sweep"].get(dtype, {})
            if sweep.get("clean_status") != "pass":
                cells.append(f"n/a (unmodified case: {sweep.get('clean_status', 'not run')})")
            elif sweep.get("smallest_detected") is None:
                cells.append("none detected")
            else:
                cells.append(f"{sweep['smallest_detected']:g}")
        lines.append(f"| {dtype} | {entry['case']} | " + " | ".join(cells) + " |")
    return lines


def _serialization(folder: Path) -> list[str]:
    """Models saved as .keras on one backend and loaded on another (harness.studies.serialization records)."""
    studies = records.read_backend_records(folder, "serialization", "keras-parity/serialization")
    loads = [(backend, entry) for backend, data in studies.items() for entry in data["loads"]]
    if not loads:
        return ["Not run (nox runs it after the parity sessions: nox -s serialization)."]
    lines = [
        "Each case's Functional model, saved with model.save() on one backend and loaded with keras.saving.load_model() "
        "on another: its status against the float64 reference, and the largest difference from the saving backend's own outputs.",
        "",
        "| saved on | loaded on | models | agree with reference | largest difference from the saving backend | failures |",
        "|---|---|---|---|---|---|",
    ]
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for loaded_on, entry in loads:
        pairs.setdefault((entry["saved_on"], loaded_on), []).append(entry)
    for (saved_on, loaded_on), entries in sorted(pairs.items()):
        passed = sum(entry["status"] == "pass" for entry in entries)
        differences = [v["max_abs_diff"] for entry in entries for v in entry["vs_saving_backend"].values()]
        failures = ", ".join(
            f"{e['case']} ({e['status']}" + (f": {', '.join(e.get('known_divergences', []))}" if e["status"] == "known" else "") + ")"
            for e in entries if e["status"] != "pass"
        ) or "none"
        lines.append(
            f"| {saved_on} | {loaded_on} | {len(entries)} | {passed} | {_fmt(max(differences)) if differences else 'n/a'} | {failures} |"
        )
    return lines


def render_report(folder: Path) -> str:
    loaded = load_records(folder)
    backends = sorted(loaded)
    names = _case_names(loaded)
    by_backend = {backend: _by_case(loaded[backend]) for backend in backends}
    divergences = {d.id: d for d in load_divergences()}

    lines = ["# keras-parity report", ""]
    lines += ["Generated by `python -m harness report` from the run records in this folder.", ""]
    lines += [
        "## Summary", "",
        "| backend | device | cases | pass | known | refused | fail | error | timeout | wall time | fault injected |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend in backends:
        statuses = [case["status"] for case in loaded[backend]["cases"]]
        counts = [statuses.count(status) for status in ("pass", "known", "refused", "fail", "error", "timeout")]
        fault = loaded[backend].get("fault") or "none"
        wall = loaded[backend].get("wall_time_s")
        wall_text = f"{wall:.0f} s" if wall is not None else "n/a"
        device = loaded[backend]["device"] + (f" ({loaded[backend]['device_class']})" if loaded[backend].get("device_class", "cpu") != "cpu" else "")
        lines.append(
            f"| {backend} | {device} | {len(statuses)} | " + " | ".join(map(str, counts))
            + f" | {wall_text} | {fault} |"
        )
    lines += [""] + _coverage(loaded)

    lines += ["", "## Against the float64 NumPy reference", ""]
    lines += _per_case_table(
        "Each cell: status, then the largest absolute error / largest ULP distance (in the case's dtype) over every "
        "model-building API and every output (output, h, c) of the case.",
        ["dtype", "entry point"], lambda some: [some["dtype"], some.get("entry_point", "predict")], _cell, names, by_backend,
    )

    lines += ["", "## Sequential, Functional and subclassed models", ""]
    lines += _per_case_table(
        "The same case built in every API it can be written in, with identical weights: the largest difference "
        "between any two APIs, or \"bitwise equal\" when every output agrees to the last bit.",
        ["APIs"], lambda some: [", ".join(some["apis"])], _api_cell, names, by_backend,
    )

    lines += ["", "## Backend against backend", ""] + _pairwise(folder, loaded, names)

    lines += ["", "## Train on one backend, serve on another", ""] + _serialization(folder)

    lines += ["", "## Error as the sequence grows", ""] + _growth(folder)

    lines += ["", "## Fault injection: do the tolerances catch real bugs?", ""] + _faults(folder)

    lines += ["", "## Failures", ""]
    failures = [
        (backend, case) for backend in backends for case in loaded[backend]["cases"] if case["status"] in ("fail", "error", "timeout")
    ]
    if not failures:
        lines.append("None.")
    for backend, case in failures:
        lines.append(f"- **{case['case']}** on {backend}: {case['status']}" + (f": {case['error']}" if case["error"] else ""))
        for api in case["apis"].values():
            for item in api["items"].values():
                if not item["passed"]:
                    lines.append(f"  - {item['message']}")

    lines += ["", "## Known divergences", ""]
    seen = sorted({d for backend in backends for case in loaded[backend]["cases"] for d in case.get("known_divergences", []) if case["status"] == "known"})
    if not seen:
        lines.append("None observed in this run.")
    for divergence_id in seen:
        divergence = divergences.get(divergence_id)
        hits = [f"{case['case']}@{backend}" for backend in backends for case in loaded[backend]["cases"] if divergence_id in case.get("known_divergences", []) and case["status"] == "known"]
        lines.append(f"### {divergence_id}")
        lines.append("")
        lines.append(f"Seen in: {', '.join(hits)}.")
        if divergence is not None:
            lines += ["", divergence.observed, "", f"Reference: {divergence.reference}", ""]
            lines.append(f"Reproducer: `{divergence.reproducer}`. Upstream: {divergence.upstream or 'no upstream issue found'}.")
        lines.append("")
    stale = stale_divergences({b: loaded[b]["cases"] for b in backends}, list(divergences.values()))
    for divergence, where in stale:
        lines.append(f"- **possibly resolved**: `{divergence.id}` no longer reproduces ({', '.join(where)} pass).")

    lines += ["", "## Tolerances", ""]
    lines += ["An element fails when |actual - expected| > atol + rtol * |expected|.", ""]
    lines += ["| dtype | quantity | rtol | atol | reason |", "|---|---|---|---|---|"]
    first = loaded[backends[0]]
    for dtype, rows in first["tolerances"].items():
        for quantity, tol in rows.items():
            lines.append(f"| {dtype} | {quantity} | {tol['rtol']:g} | {tol['atol']:g} | {' '.join(tol['reason'].split())} |")

    lines += ["", "## Environment and how to reproduce", ""]
    lines += ["| backend | keras | backend version | numpy | python | settings | started | command |", "|---|---|---|---|---|---|---|---|"]
    for backend in backends:
        record = loaded[backend]
        versions = record["versions"]
        settings = ", ".join(f"{k}={v}" for k, v in record.get("settings", {}).items()) or "none"
        lines.append(
            f"| {backend} | {versions.get('keras')} | {versions.get(backend)} | {versions.get('numpy')} | "
            f"{versions.get('python')} | {settings} | {record['started']} | `{record['command']}` |"
        )
    lines += ["", f"Platform: {first['versions'].get('platform')}. Seed: {first.get('seed')}.", ""]
    return "\n".join(lines)


def load_growth_records(folder: Path) -> dict[str, dict[str, Any]]:
    return records.read_backend_records(folder, "growth", "keras-parity/growth")


def report_figures(folder: Path) -> dict[str, bytes]:
    """The plots of report.html, keyed by caption; empty when matplotlib is not installed."""
    try:
        from harness.reports import plots
    except ImportError:
        return {}
    run_records = load_records(folder)
    figures = {
        "Error against the float64 reference, per case group and backend: log10 of the worst absolute error, known "
        "divergences included (the bright cells are the known divergences listed below; grey: errors, not run)": plots.error_heatmap(run_records)
    }
    growth = load_growth_records(folder)
    if growth:
        figures["Error against the reference as the sequence grows, per backend and number of units, with the float32 tolerance"] = plots.growth_plot(growth)
    figures["Distribution of the worst ULP distance per float32 case, per backend"] = plots.ulp_histogram(run_records)
    return figures


def write_report(folder: Path) -> list[Path]:
    """Write REPORT.md, WHY.md and report.html into ``folder``; all only read the records there."""
    from harness.reports.html import render_html
    from harness.reports.why import render_why

    texts = {
        "REPORT.md": render_report(folder),
        "WHY.md": render_why(folder, load_records(folder)),
        "report.html": render_html(folder, report_figures(folder)),
    }
    written = []
    for name, text in texts.items():
        records.write_text(folder / name, text)
        written.append(folder / name)
    return written
