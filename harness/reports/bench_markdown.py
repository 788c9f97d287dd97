"""BENCH.md from the benchmark report model (``bench_model.BenchReport``): text only, nothing computed here.

Sections: the targets (measured, target, met / not met / not measured and how far), the kernels (reference
against each backend entry point per shape, the long sequence), the harness overhead (distribution and parts),
the nox sessions and the main job, growth (batch, time, units and the number of cases, with the SVG), and the
matrix across N machines with a README-ready paragraph on how to run it. A part whose records are absent says
"not measured in this run".
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.reports.bench_model import (
    MAIN_JOB_MINUTES, OVERHEAD_PARTS, BenchReport, KernelShape, Kernels, Overhead, Timing,
)
from harness.reports.bench_shards import MACHINES

NOT_MEASURED = "not measured in this run"
PART_LABELS = {
    "isolate": "isolate (compiler caches reset)", "data": "data", "reference": "reference", "build": "build",
    "run": "run (compile included)", "compare": "compare", "verdict": "verdict", "write": "write", "other": "other",
}

SHARDS_PARAGRAPH = """\
**Running the full matrix on N machines.** `harness run --shard K/N` measures the K-th of N shares of the
selected cases; the shares depend only on the set of cases (`harness/case/shard.py`: each case's estimated work,
largest first, to the least loaded shard), so every machine computes the same split without talking to the others.
With the same pinned versions on every machine (`pip install -e '.[jax]'`, or the nox virtualenv), run on machine K:

    python -m harness run --backend jax --shard K/N --out shard-K     # and the same for tensorflow, torch

copy the N folders to one machine and merge them into a new folder:

    python -m harness merge merged shard-1 shard-2 ... shard-N
    python -m harness report merged

`harness merge` refuses, with one line, folders measured differently (another seed, Keras or backend version,
tolerance table or device class) or a case measured twice, names any shard that is missing, and re-judges the
merged records; the merged record equals the one-machine run case for case (`tests/test_shard_merge.py`). To publish
it as `results/`, merge into an empty `results` folder and run `nox -s report`. The wall time falls with N as the
table above predicts: the slowest shard's cases plus one Keras start-up per machine."""


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 120:
        return f"{value / 60:.1f} min"
    if value >= 1:
        return f"{value:.1f} s"
    return f"{value * 1000:.1f} ms"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _timing(timing: Timing) -> tuple[str, str]:
    if timing.error:
        return f"error: {timing.error}", "n/a"
    spread = "n/a" if timing.spread is None else f"{timing.spread:.0%}"
    return _seconds(timing.median_s), f"{spread} ({_seconds(timing.min_s)} to {_seconds(timing.max_s)})"


def _dims(dims: tuple[int, ...]) -> str:
    return "x".join(str(value) for value in dims)


def _targets(report: BenchReport) -> list[str]:
    lines = ["## Targets", "", "| Target | Measured | Target | Status | How far | From |", "|---|---|---|---|---|---|"]
    for target in report.targets:
        unit = "x" if target.unit == "x" else f" {target.unit}"
        measured = "n/a" if target.measured is None else f"{target.measured:.2f}{unit}"
        source = target.note if target.status != "not measured" or target.measured is not None else ""
        lines.append(f"| {target.name} | {measured} | <= {target.bound:g}{unit} | **{target.status}** | {target.how_far} | {source} |")
    explained = [target for target in report.targets if target.why]
    if explained:
        lines += ["", "### Why the targets not met are not met", "",
                  "Each line is built from the records this report read (`bench_why`), not written by hand.", ""]
        for target in explained:
            lines.append(f"- **{target.name}** ({target.how_far}):")
            lines += [f"  - {line}" for line in target.why]
    return lines + [""]


def _shape_rows(shape: KernelShape) -> list[str]:
    rows = []
    for label, timing, ratio in (("reference forward (float64)", shape.reference_forward, None),
                                 ("reference backward (float64)", shape.reference_backward, None)):
        median, spread = _timing(timing)
        rows.append(f"| {shape.shape} {_dims(shape.dims)} | {label} | {median} | {spread} | | |")
    for entry in shape.entries:
        median, spread = _timing(entry.timing)
        difference = "n/a" if entry.max_rel_difference is None else f"{entry.max_rel_difference:.1e}"
        rows.append(f"| {shape.shape} {_dims(shape.dims)} | {entry.part} `{entry.entry}` (float32) | {median} | {spread} | "
                    f"{_ratio(entry.reference_over_entry)} | {difference} |")
    return rows


def _kernels(report: BenchReport) -> list[str]:
    lines = ["## Kernels: the float64 reference against each backend's float32", ""]
    if not report.kernels:
        return lines + [f"{NOT_MEASURED} (no `<backend>.bench_kernels.json`; `python -m harness bench-kernels`).", ""]
    lines += ["Shapes are batch x time x features x units. One LSTM(units, return_sequences=True); the loss of the "
              "gradients is sum(y^2). Each time is the median of the timed calls after a warm-up, spread = (max - min) / "
              "median; *reference / this* is the reference forward (for forward entry points) or backward (for gradient "
              "entry points) over this entry point, measured in the same process (above 1: the reference is slower).", ""]
    for record in report.kernels:
        lines += _kernel_record(record)
    return lines


def _kernel_record(record: Kernels) -> list[str]:
    quick = " **--quick record: tiny shapes, the timings check code paths only.**" if record.quick else ""
    load = f"load average {_number(record.load_average[0])} at the start, {_number(record.load_average[1])} at the end"
    lines = [f"### {record.backend}", "",
             f"{record.versions}; {record.cpu_count} CPUs; median of {record.repeats}; {load}.{quick}", "",
             "| Shape | Computation | Median | Spread (min to max) | Reference / this | Max rel. difference |",
             "|---|---|---|---|---|---|"]
    for shape in record.shapes:
        lines += _shape_rows(shape)
    lines.append("")
    for shape in record.shapes:
        if shape.shape == "long":
            lines.append(f"Long sequence ({_dims(shape.dims)}): reference forward {_ratio(shape.forward_ratio)} the fastest "
                         f"forward (`{shape.forward_against}`), backward {_ratio(shape.backward_ratio)} the fastest gradient "
                         f"(`{shape.backward_against}`).")
            lines.append("")
    return lines


def _overhead(report: BenchReport) -> list[str]:
    lines = ["## Harness overhead: a case in `harness run` against the bare Keras calls it makes", ""]
    if not report.overhead:
        return lines + [f"{NOT_MEASURED} (no `<backend>.bench_overhead.json`; `python -m harness bench-overhead`).", ""]
    lines += ["Per sampled case: harness = measure, verdict and write of one case as the run does them; bare = the same "
              "builds and entry points without the harness. Distribution of harness / bare over the sample:", "",
              "| Backend | Cases ran / sampled (of) | Median | p90 | Max | Harness median | Bare median | Not run |",
              "|---|---|---|---|---|---|---|---|"]
    for record in report.overhead:
        quick = " (--quick)" if record.quick else ""
        lines.append(f"| {record.backend}{quick} | {record.cases_ran} / {record.cases_measured} ({record.from_cases}) | "
                     f"{_ratio(record.ratio_median)} | {_ratio(record.ratio_p90)} | {_ratio(record.ratio_max)} | "
                     f"{_seconds(record.harness_median_s)} | {_seconds(record.bare_median_s)} | "
                     f"{', '.join(record.not_ran) or 'none'} |")
    lines += ["", "Where a case's time goes: each part's median share of the harness total (compile is inside run: "
              "Keras traces and compiles within a model's first call). Start-up is once per process, not per case: "
              "`import keras` less a bare `python -c pass`, and how many median cases it is worth.", "",
              "| Backend | Start-up | " + " | ".join(PART_LABELS[part] for part in OVERHEAD_PARTS) + " |",
              "|---|---|" + "---|" * len(OVERHEAD_PARTS)]
    for record in report.overhead:
        lines.append(f"| {record.backend} | {_startup(record)} | " + " | ".join(_share(share) for _, share in record.shares) + " |")
    lines.append("")
    for record in report.overhead:
        points = ", ".join(f"{cases} case{'' if cases == 1 else 's'}: whole record {_seconds(whole)}"
                           + ("" if append is None else f", one case's journal append {_seconds(append)}")
                           for cases, whole, append in record.write_points)
        lines.append(f"- {record.backend}: writing the run record: {points or 'n/a'}. Over a run of {record.run_cases} cases: "
                     f"rewriting the whole record after every case {_seconds(record.rewrite_total_s)}, against "
                     f"{_seconds(record.write_once_total_s)} writing each case once.")
    return lines + [""]


def _startup(record: Overhead) -> str:
    if record.import_keras_s is None:
        return "n/a"
    startup = record.import_keras_s - (record.python_s or 0.0)
    cases = f" (= {startup / record.harness_median_s:.1f} cases)" if record.harness_median_s else ""
    return f"{_seconds(startup)}{cases}"


def _sessions(report: BenchReport) -> list[str]:
    lines = ["## Nox sessions and the main job", ""]
    job = report.main_job
    if job is None:
        lines.append(f"Main job: {NOT_MEASURED} (no `main_job.json`).")
    else:
        lines.append(f"Main job `{job.command}`: {_seconds(job.wall_s)} wall (target {MAIN_JOB_MINUTES:g} min), "
                     f"{len(job.sessions)} sessions, nox --parallel {job.jobs} on {job.cpu_count} CPUs, "
                     f"{'a clean clone (installs included)' if job.clean_clone else 'not a clean clone'}, commit "
                     f"{job.commit[:12]}, {job.started} to {job.finished}.")
    lines.append("")
    if not report.sessions:
        return lines + [f"Sessions: {NOT_MEASURED} (no `sessions/*.json`).", ""]
    lines += ["| Session | Status | Wall | CPU (user + sys) | CPU / wall | Peak memory | Longest command |", "|---|---|---|---|---|---|---|"]
    for session in report.sessions:
        longest = max(session.commands, key=lambda command: command.wall_s, default=None)
        command = "none" if longest is None else f"`{longest.text}` {_seconds(longest.wall_s)}"
        per_wall = _ratio(session.cpu_s / session.wall_s) if session.wall_s > 0 else "n/a"
        lines.append(f"| `{session.session}` | {session.status} | {_seconds(session.wall_s)} | {_seconds(session.cpu_s)} | {per_wall} | "
                     f"{session.peak_rss_mib:.0f} MiB | {command} |")
    total_wall = sum(session.wall_s for session in report.sessions)
    total_cpu = sum(session.cpu_s for session in report.sessions)
    lines += ["", f"Summed over the sessions: {_seconds(total_wall)} wall (sessions may overlap under --parallel), {_seconds(total_cpu)} CPU.", ""]
    return lines


def _growth(report: BenchReport, plot_link: str | None) -> list[str]:
    lines = ["## Growth: what a model costs", ""]
    if report.kernels:
        lines += ["Cost ~ size^slope (least-squares slope of log time against log size, the other dimensions fixed):", "",
                  "| Backend | Axis | Reference forward slope | Backend predict slope |", "|---|---|---|---|"]
        for record in report.kernels:
            for axis in ("batch", "time", "units"):
                slopes = {series.series: series.slope for series in record.growth if series.axis == axis}
                if slopes:
                    lines.append(f"| {record.backend} | {axis} | {_number(slopes.get('reference_forward'))} | "
                                 f"{_number(slopes.get('backend_predict'))} |")
        lines.append("")
        if plot_link is not None:
            lines += [f"![cost against batch, time and units, log-log]({plot_link})", ""]
        for record in report.kernels:
            if record.growth_base is None:
                continue
            batch, time, units = record.growth_base
            slopes = {series.axis: series.slope for series in record.growth if series.series == "reference_forward"}
            if any(slopes.get(axis) is None for axis in ("batch", "time", "units")):
                continue
            lines.append(f"- Predicting `check` on {record.backend}: the reference forward of an LSTM costs about "
                         f"{_seconds(record.growth_base_reference_s)} x (batch/{batch})^{slopes['batch']:.2f} x "
                         f"(time/{time})^{slopes['time']:.2f} x (units/{units})^{slopes['units']:.2f} on this machine "
                         f"(the backend's predict {_seconds(record.growth_base_predict_s)} at {batch}x{time}x{units}).")
        lines.append("")
    else:
        lines += [f"Batch, time, units: {NOT_MEASURED} (no kernels record).", ""]
    if not report.runs:
        return lines + [f"Number of cases: {NOT_MEASURED} (no run record in {report.results_dir}).", ""]
    lines += ["Against the number of cases (each run record's per-case durations in the order measured):", "",
              "| Backend | Cases | Summed durations | Median case | Seconds per case (fit) | Log-log slope | Run wall_time_s | Not in any case |",
              "|---|---|---|---|---|---|---|---|"]
    for run in report.runs:
        growth = run.growth
        lines.append(f"| {run.backend} | {run.cases}{'' if run.default_matrix else ' (not the default matrix)'} | "
                     f"{_seconds(run.summed_durations_s)} | {_seconds(growth.median_case_s if growth else None)} | "
                     f"{_seconds(growth.seconds_per_case if growth else None)} | {_number(growth.log_log_slope if growth else None)} | "
                     f"{_seconds(run.wall_time_s)} | {_seconds(run.unattributed_s)} |")
    return lines + ["", "A slope of 1 means each case costs the same whatever ran before; *not in any case* is the run's "
                    "wall time less its cases' durations (the record writes and verdicts after each case).", ""]


def _machines(report: BenchReport) -> list[str]:
    lines = ["## Across N machines", ""]
    runs = [run for run in report.runs if run.predictions]
    if not runs:
        lines.append(f"Prediction: {NOT_MEASURED} (no run record with per-case durations).")
    else:
        lines += ["Predicted wall time of each backend's matrix with `harness run --shard K/N` on N machines: the real shard "
                  "assignment of the recorded cases, the slowest shard's summed case durations plus one Keras start-up per "
                  "machine.", "",
                  "| Backend | Start-up per machine | " + " | ".join(f"N = {n}" for n in MACHINES) + " |",
                  "|---|---|" + "---|" * len(MACHINES)]
        for run in runs:
            startup = "not measured (left out)" if run.startup_source is None else _seconds(run.predictions[0].startup_s)
            first = run.predictions[0].predicted_s
            cells = []
            for prediction in run.predictions:
                speedup = f", {first / prediction.predicted_s:.1f}x faster" if prediction.machines > 1 and prediction.predicted_s > 0 else ""
                balance = f", slowest shard {prediction.imbalance:.2f}x the mean" if prediction.machines > 1 and prediction.imbalance else ""
                cells.append(f"{_seconds(prediction.predicted_s)}{speedup}{balance}")
            lines.append(f"| {run.backend} ({run.cases} cases) | {startup} | " + " | ".join(cells) + " |")
    return lines + ["", SHARDS_PARAGRAPH, ""]


def render_bench(report: BenchReport, markdown_path: Path | None = None) -> str:
    """BENCH.md's text. ``markdown_path``: where it will be written, so the SVG link is relative to it."""
    plot_link = None
    if report.growth_plot is not None:
        plot = Path(report.bench_dir) / report.growth_plot
        plot_link = os.path.relpath(plot, markdown_path.parent) if markdown_path is not None else str(plot)
        plot_link = Path(plot_link).as_posix()
    quick = [record.backend for record in (*report.kernels, *report.overhead) if record.quick]
    lines = ["# Benchmark", "",
             "Measured side by side: each figure is a ratio of times taken in one run on one machine, not an absolute time. "
             "Generated by `python -m harness bench-report` from the records below; a part whose record is absent says "
             f"\"{NOT_MEASURED}\", and a target is never met without a measurement.", ""]
    if quick:
        lines += [f"**Some records were measured with --quick ({', '.join(sorted(set(quick)))}): their timings check code paths "
                  "and judge no target.**", ""]
    lines += _targets(report) + _kernels(report) + _overhead(report) + _sessions(report) + _growth(report, plot_link) + _machines(report)
    lines += ["## Records read", ""] + ([f"- `{path}`" for path in report.inputs] or [f"- none: {NOT_MEASURED}"]) + [""]
    return "\n".join(lines)
