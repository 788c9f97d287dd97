"""The benchmark report model (issue 16): everything BENCH.md shows, built once from the records.

``build_bench_report(bench_dir, results_dir)`` reads:

- ``bench_dir/<backend>.bench_kernels.json`` (harness.studies.bench_kernels): the float64 reference forward and
  backward against the backend's float32 entry points per shape, and the growth grid;
- ``bench_dir/<backend>.bench_overhead.json`` (harness.studies.bench_overhead): harness / bare Keras calls per case
  over a sample of the matrix, the parts' shares, Keras's start-up, the record rewrite cost;
- ``bench_dir/sessions/*.json`` and ``bench_dir/main_job.json`` (``bench_sessions``): the nox sessions' and the main
  job's wall time, CPU time and peak memory;
- ``results_dir/<backend>.json``: the parity run records, whose per-case durations give the cost against the number
  of cases and the predicted wall time on N machines (``bench_shards``).

Any of them may be missing: the model then holds nothing for that part and the targets it feeds are "not measured".
The targets (``bench_targets.judge``):

- the main job within 20 minutes (``main_job.json``; a run that was not from a clean clone does not count as met);
- each backend's default-matrix parity run within 5 minutes: the ``harness run`` command of its release parity
  session (start-up included) when the sessions were timed, else the run record's ``wall_time_s`` (the case loop
  only); a record that is not the whole default matrix, or ran a fault, does not count as met;
- the harness overhead, median of harness / bare over the sampled cases, at most 1.5x per backend (a quick record
  does not count as met);
- the reference forward within 2x the fastest backend's float32 forward at (128, 200, 64, 256), and its backward
  within 2x the fastest float32 gradient: per backend the ratio of the two measured side by side in one process,
  and the target's figure is the largest of these ratios (the one against the fastest backend). While a backend is
  missing, a figure under the bound does not count as met (the missing one may be faster).

Nothing here imports Keras or a backend; every number comes from a record.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.case.schema import builtin_cases
from harness.case.divergences import BACKENDS
from harness.records.header import SCHEMAS
from harness.records.store import RecordError, read_json_file
from harness.reports.bench_sessions import MainJob, SessionTiming, failed_sessions, parity_run_seconds, read_main_job, read_sessions
from harness.reports.bench_shards import MACHINES, CaseGrowth, ShardPrediction, case_growth, measured_cases, predict_shards
from harness.reports.bench_targets import NOT_MET, TargetResult, judge
from harness.reports.bench_why import main_job_why, overhead_why, parity_why, reference_why

MAIN_JOB_MINUTES = 20.0
PARITY_MINUTES = 5.0
OVERHEAD_RATIO = 1.5
REFERENCE_RATIO = 2.0
TARGET_SHAPE = (128, 200, 64, 256)  # (batch, time, features, units) of the reference targets
OVERHEAD_PARTS = ("isolate", "data", "reference", "build", "run", "compare", "verdict", "write", "other")
SLOWEST_CASES = 5  # the longest cases a run timing keeps by name (the why of a parity target)
KERNELS_SUFFIX = ".bench_kernels.json"
OVERHEAD_SUFFIX = ".bench_overhead.json"


@dataclass(frozen=True)
class Timing:
    median_s: float | None
    min_s: float | None
    max_s: float | None
    spread: float | None  # (max - min) / median
    repeats: int | None
    error: str | None


@dataclass(frozen=True)
class KernelEntry:
    part: str  # "forward" or "gradient"
    entry: str  # predict, call, call_compiled, tape_eager, jit_grad, ...
    timing: Timing
    reference_over_entry: float | None  # the reference forward (or backward) time over this entry point's
    max_rel_difference: float | None  # to the reference's outputs (forward) or kernel gradient (gradient)


@dataclass(frozen=True)
class KernelShape:
    backend: str
    shape: str
    dims: tuple[int, int, int, int]  # batch, time, features, units
    reference_forward: Timing
    reference_backward: Timing
    entries: tuple[KernelEntry, ...]
    forward_ratio: float | None
    forward_against: str | None
    backward_ratio: float | None
    backward_against: str | None
    reference_matmuls_float64: Timing | None = None  # only the reference forward's matrix products (its floor)
    reference_matmuls_float32: Timing | None = None  # the same products in float32 NumPy


@dataclass(frozen=True)
class GrowthSeries:
    backend: str
    axis: str  # batch, time, units
    series: str  # reference_forward, backend_predict
    sizes: tuple[int, ...]
    seconds: tuple[float | None, ...]
    slope: float | None


@dataclass(frozen=True)
class Kernels:
    backend: str
    quick: bool
    repeats: int
    cpu_count: int | None
    load_average: tuple[float | None, float | None]  # 1-minute load at the start and the end
    versions: str
    shapes: tuple[KernelShape, ...]
    growth: tuple[GrowthSeries, ...]
    growth_base: tuple[int, int, int] | None  # (batch, time, units) measured on every growth axis: the slopes' origin
    growth_base_reference_s: float | None  # the reference forward there
    growth_base_predict_s: float | None  # the backend's predict there


@dataclass(frozen=True)
class Overhead:
    backend: str
    quick: bool
    repeats: int
    cases_measured: int
    cases_ran: int
    from_cases: int
    ratio_median: float | None
    ratio_p90: float | None
    ratio_max: float | None
    harness_median_s: float | None
    bare_median_s: float | None
    shares: tuple[tuple[str, float | None], ...]  # (part, median share of the harness total)
    import_keras_s: float | None
    python_s: float | None
    write_points: tuple[tuple[int, float, float | None], ...]  # (cases, seconds to write the whole record, to append one case)
    rewrite_total_s: float | None
    write_once_total_s: float | None
    run_cases: int | None
    not_ran: tuple[str, ...]


@dataclass(frozen=True)
class RunTiming:
    backend: str
    source: str  # the run record's path
    cases: int
    default_matrix: bool  # the record holds exactly the default matrix's cases
    fault: str | None
    wall_time_s: float | None
    summed_durations_s: float
    unattributed_s: float | None  # wall_time_s less the summed case durations (writes, verdicts)
    growth: CaseGrowth | None
    predictions: tuple[ShardPrediction, ...]
    startup_source: str | None  # where the per-machine start-up came from; None when it was not measured
    median_case_s: float | None = None  # the median case's duration_s
    slowest_cases: tuple[tuple[str, float], ...] = ()  # the SLOWEST_CASES longest cases, (name, duration_s), longest first


@dataclass(frozen=True)
class BenchReport:
    bench_dir: str
    results_dir: str
    inputs: tuple[str, ...]
    targets: tuple[TargetResult, ...]
    kernels: tuple[Kernels, ...]
    overhead: tuple[Overhead, ...]
    sessions: tuple[SessionTiming, ...]
    main_job: MainJob | None
    runs: tuple[RunTiming, ...]
    growth_plot: str | None  # the SVG's file name in bench_dir, when there is growth to plot
    default_cases: int


# --------------------------------------------------------------------------------------------- reading


def _read_kind(path: Path, kind: str) -> dict[str, Any]:
    data = read_json_file(path)
    schema, version = SCHEMAS[kind]
    if data.get("schema") != schema or data.get("schema_version") != version:
        raise RecordError(f"{path} is not a {schema} record of schema_version {version} "
                          f"(it says {data.get('schema')!r}, {data.get('schema_version')!r})")
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _timing(raw: dict[str, Any]) -> Timing:
    return Timing(_number(raw.get("median_s")), _number(raw.get("min_s")), _number(raw.get("max_s")), _number(raw.get("spread")),
                  raw.get("repeats"), raw.get("error"))


def _ratio(numerator: Timing, denominator: Timing) -> float | None:
    if numerator.median_s is None or not denominator.median_s:
        return None
    return numerator.median_s / denominator.median_s


def _versions(record: dict[str, Any]) -> str:
    versions = record.get("versions") or {}
    return ", ".join(f"{name} {versions[name]}" for name in ("keras", "tensorflow", "jax", "torch", "numpy") if versions.get(name))


def _kernel_shape(backend: str, raw: dict[str, Any]) -> KernelShape:
    reference = {part: _timing(raw["reference"][part]) for part in ("forward", "backward")}
    matmuls = {dtype: _timing(raw["reference"][f"matmuls_{dtype}"]) if f"matmuls_{dtype}" in raw["reference"] else None
               for dtype in ("float64", "float32")}
    entries = []
    for part, against, difference in (("forward", "forward", "max_rel_difference"), ("gradient", "backward", "kernel_max_rel_difference")):
        for name, measured in raw["backend"][part].items():
            timing = _timing(measured)
            entries.append(KernelEntry(part, name, timing, _ratio(reference[against], timing), _number(measured.get(difference))))
    ratios = raw.get("ratios", {})
    return KernelShape(backend, raw["shape"], (raw["batch"], raw["time"], raw["features"], raw["units"]), reference["forward"],
                       reference["backward"], tuple(entries), _number(ratios.get("forward")), ratios.get("forward_against"),
                       _number(ratios.get("backward")), ratios.get("backward_against"), matmuls["float64"], matmuls["float32"])


def _growth(backend: str, raw: dict[str, Any] | None) -> tuple[GrowthSeries, ...]:
    series = []
    for axis, growth in (raw or {}).items():
        sizes = tuple(point[axis] for point in growth["points"])
        for name in ("reference_forward", "backend_predict"):
            seconds = tuple(_number(point[name].get("median_s")) for point in growth["points"])
            series.append(GrowthSeries(backend, axis, name, sizes, seconds, _number(growth["slope"].get(name))))
    return tuple(series)


def _growth_base(raw: dict[str, Any] | None) -> tuple[tuple[int, int, int] | None, float | None, float | None]:
    """The grid point every axis measured (its fixed dimensions), with its reference and predict times."""
    per_axis = [{(point["batch"], point["time"], point["units"]): point for point in growth["points"]} for growth in (raw or {}).values()]
    if not per_axis:
        return None, None, None
    common = sorted(set.intersection(*(set(points) for points in per_axis)))
    if not common:
        return None, None, None
    point = per_axis[0][common[0]]
    return common[0], _number(point["reference_forward"].get("median_s")), _number(point["backend_predict"].get("median_s"))


def _kernels(path: Path) -> Kernels:
    record = _read_kind(path, "bench_kernels")
    backend = record["backend"]
    load = record.get("load_average") or {}
    start, end = load.get("start"), load.get("end")
    return Kernels(backend, bool(record.get("quick")), record.get("repeats", 0), record.get("cpu_count"),
                   (start[0] if start else None, end[0] if end else None), _versions(record),
                   tuple(_kernel_shape(backend, shape) for shape in record.get("shapes", [])), _growth(backend, record.get("growth")),
                   *_growth_base(record.get("growth")))


def _overhead(path: Path) -> Overhead:
    record = _read_kind(path, "bench_overhead")
    summary = record["summary"]
    ratio = summary.get("ratio_harness_over_bare") or {}
    startup = record.get("startup") or {}
    writes = record.get("incremental_write") or {}
    shares = summary.get("median_share") or {}
    return Overhead(
        backend=record["backend"], quick=bool(record.get("quick")), repeats=record.get("repeats", 0),
        cases_measured=summary.get("cases_measured", 0), cases_ran=summary.get("cases_ran", 0),
        from_cases=(record.get("sample") or {}).get("from_cases", 0),
        ratio_median=_number(ratio.get("median")), ratio_p90=_number(ratio.get("p90")), ratio_max=_number(ratio.get("max")),
        harness_median_s=_number((summary.get("harness_s") or {}).get("median")),
        bare_median_s=_number((summary.get("bare_s") or {}).get("median")),
        shares=tuple((part, _number(shares.get(part))) for part in OVERHEAD_PARTS),
        import_keras_s=_number((startup.get("import_keras_s") or {}).get("median")),
        python_s=_number((startup.get("python_s") or {}).get("median")),
        write_points=tuple((point["cases"], point["write_s"]["median"], _number((point.get("append_s") or {}).get("median")))
                           for point in writes.get("points", [])),
        rewrite_total_s=_number(writes.get("rewrite_every_case_total_s")),
        write_once_total_s=_number(writes.get("write_each_case_once_total_s")), run_cases=writes.get("run_cases"),
        not_ran=tuple(entry["case"] for entry in summary.get("not_ran", [])),
    )


def _run_timing(path: Path, default_names: set[str], startup: dict[str, float]) -> RunTiming:
    record = _read_kind(path, "run")
    backend = record["backend"]
    cases, durations = measured_cases(record, path.name)
    startup_s = startup.get(backend)
    predictions = tuple(predict_shards(cases, durations, machines, startup_s) for machines in MACHINES if cases)
    summed = sum(durations.values())
    wall = _number(record.get("wall_time_s"))
    names = {result["case"] for result in record.get("cases", [])}
    return RunTiming(
        backend=backend, source=str(path), cases=len(record.get("cases", [])), default_matrix=names == default_names,
        fault=record.get("fault"), wall_time_s=wall, summed_durations_s=summed,
        unattributed_s=None if wall is None else wall - summed,
        growth=case_growth([durations[result["case"]] for result in record.get("cases", []) if result["case"] in durations]),
        predictions=predictions,
        startup_source=None if startup_s is None else f"import keras, median of {backend}.bench_overhead.json",
        median_case_s=statistics.median(durations.values()) if durations else None,
        slowest_cases=tuple(sorted(durations.items(), key=lambda item: (-item[1], item[0]))[:SLOWEST_CASES]),
    )


def _complete(reader: Any, path: Path, *args: Any) -> Any:
    """``reader(path, *args)``, with a record that lacks a field the report reads as one RecordError line."""
    try:
        return reader(path, *args)
    except (KeyError, TypeError, IndexError, AttributeError) as error:
        raise RecordError(f"{path} is incomplete: the benchmark report could not read it ({type(error).__name__}: {error})") from None


# --------------------------------------------------------------------------------------------- targets


def _main_job_target(main_job: MainJob | None, sessions: tuple[SessionTiming, ...]) -> TargetResult:
    name = "main job (nox, installs included)"
    if main_job is None:
        return judge(name, None, MAIN_JOB_MINUTES, "min")
    note = (f"main_job.json: {main_job.cpu_count} CPUs, nox --parallel {main_job.jobs}, {len(main_job.sessions)} sessions, "
            f"commit {main_job.commit[:12]}")
    reasons = [] if main_job.clean_clone else ["not from a clean clone (installs may have been reused)"]
    # A session that failed may have stopped early: the job's time is then a lower bound of the real one.
    reasons += [f"session {slug} failed (it may have stopped early)" for slug in failed_sessions(sessions, main_job.sessions)]
    reason = "; ".join(reasons) or None
    return judge(name, main_job.wall_s / 60.0, MAIN_JOB_MINUTES, "min", note=note, reason=reason)


def _parity_target(backend: str, sessions: tuple[SessionTiming, ...], run: RunTiming | None,
                   main_job: MainJob | None = None) -> TargetResult:
    name = f"{backend}: default-matrix parity run"
    timed = parity_run_seconds(sessions, backend)
    if timed is not None:
        seconds, note, session = timed
        # a failed session's run may have crashed early ('harness batch' keeps no exit code in the session record)
        reason = f"session {session.slug} failed (its run may have stopped early)" if session.status == "failed" else None
        if main_job is not None and session.commit != main_job.commit:  # a session run again later, on other code
            reason = f"session {session.slug} ran commit {session.commit[:12]}, the main job commit {main_job.commit[:12]}"
    elif run is not None and run.wall_time_s is not None:
        seconds, note = run.wall_time_s, f"{run.source} wall_time_s (the case loop, without start-up)"
        reason = None
        if not run.default_matrix:
            reason = f"the record holds {run.cases} cases, not the default matrix"
        if run.fault:
            reason = f"the record ran with fault {run.fault!r} injected"
    else:
        return judge(name, None, PARITY_MINUTES, "min")
    return judge(name, seconds / 60.0, PARITY_MINUTES, "min", note=note, reason=reason)


def _overhead_target(backend: str, overhead: Overhead | None, default_cases: int) -> TargetResult:
    name = f"{backend}: harness / bare Keras calls (median per case)"
    if overhead is None:
        return judge(name, None, OVERHEAD_RATIO, "x")
    note = f"{overhead.cases_ran} of {overhead.cases_measured} sampled cases ran, from {overhead.from_cases} cases"
    excluded = None
    if overhead.quick:
        excluded = "a --quick record (code paths only)"
    elif overhead.from_cases < default_cases:
        excluded = f"sampled from {overhead.from_cases} cases, not the default matrix's {default_cases}"
    return judge(name, overhead.ratio_median, OVERHEAD_RATIO, "x", note=note, excluded=excluded)


def _reference_target(part: str, kernels: tuple[Kernels, ...]) -> TargetResult:
    """The largest per-backend ratio at TARGET_SHAPE (reference over that backend's fastest entry point)."""
    label = "forward" if part == "forward" else "backward"
    against = "float32 forward" if part == "forward" else "float32 gradient"
    name = f"reference {label} / fastest backend {against} at {'x'.join(map(str, TARGET_SHAPE))}"
    ratios: list[tuple[float, str, str]] = []
    quick = False
    for record in kernels:
        for shape in record.shapes:
            if shape.dims != TARGET_SHAPE:
                continue
            ratio = shape.forward_ratio if part == "forward" else shape.backward_ratio
            entry = shape.forward_against if part == "forward" else shape.backward_against
            if ratio is not None and math.isfinite(ratio):
                ratios.append((ratio, record.backend, entry or "?"))
                quick = quick or record.quick
    if not ratios:
        return judge(name, None, REFERENCE_RATIO, "x", note=f"no record measured {'x'.join(map(str, TARGET_SHAPE))}")
    worst, backend, entry = max(ratios)
    note = f"against {backend} {entry}; " + ", ".join(f"{b} {r:.2f}x" for r, b, _ in sorted(ratios, key=lambda item: item[1]))
    missing = sorted(set(BACKENDS) - {b for _, b, _ in ratios})
    reason = f"{', '.join(missing)} not measured (it may be the fastest)" if missing else None
    return judge(name, worst, REFERENCE_RATIO, "x", note=note, reason=reason, excluded="a --quick record" if quick else None)


def _explained(target: TargetResult, why: Any) -> TargetResult:
    """``target`` with ``why()``'s lines when it is not met (a target met or not measured needs no why)."""
    return dataclasses.replace(target, why=tuple(why())) if target.status == NOT_MET else target


# --------------------------------------------------------------------------------------------- the model


def build_bench_report(bench_dir: Path, results_dir: Path, growth_plot: str | None = "growth.svg") -> BenchReport:
    """Read every record there is (module docstring) and judge the targets."""
    bench_dir, results_dir = Path(bench_dir), Path(results_dir)
    inputs: list[str] = []
    kernels, overhead = [], []
    for backend in BACKENDS:
        for suffix, reader, found in ((KERNELS_SUFFIX, _kernels, kernels), (OVERHEAD_SUFFIX, _overhead, overhead)):
            path = bench_dir / f"{backend}{suffix}"
            if path.exists():
                found.append(_complete(reader, path))
                inputs.append(str(path))
    sessions = read_sessions(bench_dir)
    main_job = read_main_job(bench_dir)
    inputs += [str(bench_dir / "sessions" / f"{session.slug}.json") for session in sessions]
    if main_job is not None:
        inputs.append(str(bench_dir / "main_job.json"))
    default_names = {case.name for case in builtin_cases()}
    startup = {record.backend: record.import_keras_s for record in overhead if record.import_keras_s is not None}
    runs = []
    for backend in BACKENDS:
        path = results_dir / f"{backend}.json"
        if path.exists():
            runs.append(_complete(_run_timing, path, default_names, startup))
            inputs.append(str(path))
    by_backend_run = {run.backend: run for run in runs}
    by_backend_overhead = {record.backend: record for record in overhead}
    targets = [_explained(_main_job_target(main_job, sessions), lambda: main_job_why(main_job, sessions, MAIN_JOB_MINUTES))]
    targets += [_explained(_parity_target(backend, sessions, by_backend_run.get(backend), main_job),
                           lambda backend=backend: parity_why(by_backend_run.get(backend), by_backend_overhead.get(backend)))
                for backend in BACKENDS]
    targets += [_explained(_overhead_target(backend, by_backend_overhead.get(backend), len(default_names)),
                           lambda backend=backend: overhead_why(by_backend_overhead[backend]))
                for backend in BACKENDS]
    targets += [_explained(_reference_target(part, tuple(kernels)), lambda part=part: reference_why(part, tuple(kernels), TARGET_SHAPE))
                for part in ("forward", "backward")]
    has_growth = any(series.seconds for record in kernels for series in record.growth)
    return BenchReport(str(bench_dir), str(results_dir), tuple(inputs), tuple(targets), tuple(kernels), tuple(overhead), sessions,
                       main_job, tuple(runs), growth_plot if has_growth else None, len(default_names))


def report_as_dict(report: BenchReport) -> dict[str, Any]:
    """The model as plain JSON-ready data (dataclasses to dicts, tuples to lists), with each target's how-far text."""
    data = dataclasses.asdict(report)
    for target, raw in zip(report.targets, data["targets"]):
        raw["how_far"] = target.how_far
    return data
