"""The harness-overhead benchmark (issue 16): what a case costs in ``harness run`` beyond the bare Keras calls it makes.

For a deterministic sample of the case matrix, in this one process, each case is measured ``repeats`` times three ways,
in an order that rotates with the repetition:

- harness: what the parity run does per case (harness.studies.parity): ``measure.run_case`` (the one measure step),
  the case's verdict (``classify_result``), and the case's write: ``records.append_journal``, the function the run
  calls, into a journal in a temporary folder;
- bare: the same builds and entry points (``models.build_model`` + ``models.run_model`` per API, in the case's kernel
  mode), without the reference, the comparison, the kernel observation or the records;
- parts: the functions run_case calls, each timed on its own in the order run_case calls them: isolate (compiler
  caches reset), data (``make_case_data``), reference (``expected_outputs``), build and run (per API, summed), compare
  (``judge_outputs`` per API and ``api_agreement``), then verdict and write as above. ``other`` is the harness total
  less the parts (the kernel observation, the time limit, and noise: it may be negative).

Tracing and compiling happen inside the first predict of a model, so they are in ``run``, not in ``build``.
Every figure is a median over the repetitions, with its min and max; what is compared is a ratio of times measured
in this run (harness / bare per case, and each part's share of the harness total), never an absolute time.

Also measured: Keras's start-up (``python -c "import keras"`` in a subprocess with the backend set, against a bare
``python -c pass``), and the record writes over a run (synthetic copies of one real case result from
``results/<backend>.json``): the journal append of the n-th case, and the whole record of n cases (JSON, NPZ, verdicts:
``parity.write_run_record``, what the run writes at its start and end), for several n. A run of N cases writes N
appends and one whole record; before the journal it rewrote the whole record after every case, the sum over n of the
whole write, projected from a straight-line fit: both totals are reported side by side (``write_each_case_once_total_s``
and ``rewrite_every_case_total_s``; each point's ``write_s`` is the whole write of its n cases).
"""

from __future__ import annotations

import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.case.divergences import DIVERGENCES_FILE, load_divergences
from harness.case.schema import Case
from harness.case.tolerances import Tolerances, load_tolerances
from harness.case.weights import make_case_data
from harness.execute.backends import BackendInfo
from harness.execute.measure import DEFAULT_CASE_TIMEOUT_S, api_agreement, judge_outputs, run_case
from harness.records import store as records
from harness.records.header import make_header, now
from harness.studies.parity import write_run_record
from harness.truth.expected import expected_outputs
from harness.verdicts.classify import add_verdict, classify_result, new_verdict_record

DEFAULT_SAMPLE = 24
DEFAULT_REPEATS = 3
QUICK_SAMPLE = 2
WRITE_SIZES = (1, 50, 200, 483)
QUICK_WRITE_SIZES = (1, 3)
# The axes whose every value the default sample covers (the first case of each value joins it when the sample has room).
COVERED_AXES = ("dtype", "entry_point", "jit_compile", "mask", "kernel")
PARTS = ("isolate", "data", "reference", "build", "run", "compare", "verdict", "write")
RAN = ("pass", "fail", "invalid")  # statuses of a case whose builds all ran: the ones a ratio is computed for
REPO_RESULTS = Path(__file__).resolve().parents[2] / "results"


def sample_cases(cases: list[Case], size: int) -> list[Case]:
    """A deterministic sample of ``size`` cases in matrix order: when ``size`` leaves room, the first case of every
    value of COVERED_AXES (dtypes, entry points, jit_compile, masks, kernel modes), then evenly spaced cases of the
    matrix up to ``size``; otherwise only the evenly spaced ones."""
    if size < 1:
        raise ValueError(f"the sample size must be at least 1, not {size}")
    if size >= len(cases):
        return list(cases)
    chosen: list[int] = []
    for axis in COVERED_AXES:
        for value in dict.fromkeys(getattr(case, axis) for case in cases):
            first = next(index for index, case in enumerate(cases) if getattr(case, axis) == value)
            if first not in chosen:
                chosen.append(first)
    if len(chosen) > size:
        chosen = []
    spaced = [round(i * len(cases) / size) for i in range(size)]
    for index in spaced + list(range(len(cases))):
        if len(chosen) >= size:
            break
        if index not in chosen:
            chosen.append(index)
    return [cases[index] for index in sorted(chosen)]


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of repeated timings (seconds)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def distribution(values: list[float]) -> dict[str, float] | None:
    """Median, p10 and p90 of a quantity over the sample; None when the sample is empty."""
    if not values:
        return None
    array = np.asarray(values, dtype=float)
    return {"median": float(np.median(array)), "p10": float(np.percentile(array, 10)), "p90": float(np.percentile(array, 90)),
            "min": float(array.min()), "max": float(array.max()), "n": len(values)}


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


class _Writer:
    """Writes each case the way the parity run does (``records.append_journal``: its result, verdict and raw outputs
    into the run's journal), into a temporary folder whose lock is held throughout, as the run holds its folder's."""

    def __init__(self, backend: BackendInfo, header: dict[str, Any], folder: Path) -> None:
        self.backend, self.folder, self.index = backend, folder, 0
        records.start_journal(folder, backend.name, header, "")

    def write(self, result: dict[str, Any], arrays: dict[tuple[str, str], np.ndarray], verdict: dict[str, Any] | None) -> None:
        raw = {records.array_key(result["case"], api, name): value for (api, name), value in arrays.items()}
        records.append_journal(self.folder, self.backend.name, self.index, result, verdict, raw)
        self.index += 1


class _Bench:
    def __init__(self, backend: BackendInfo, seed: int, tolerances: Tolerances, writer: _Writer) -> None:
        self.backend, self.seed, self.tolerances, self.writer = backend, seed, tolerances, writer
        self.divergences = load_divergences()
        self.last: dict[str, tuple[dict[str, Any], dict[tuple[str, str], np.ndarray]]] = {}  # case -> its latest harness result

    def verdict(self, case: Case, result: dict[str, Any], arrays: dict[tuple[str, str], np.ndarray]) -> dict[str, Any]:
        return classify_result(case, self.backend.name, self.backend.versions, result, arrays, self.tolerances,
                               self.divergences, self.seed)

    def harness(self, case: Case) -> tuple[float, dict[str, Any]]:
        """One case as the run study measures, judges and records it; the seconds and the case result."""
        started = time.perf_counter()
        arrays: dict[tuple[str, str], np.ndarray] = {}
        result = run_case(case, self.seed, self.tolerances, arrays, DEFAULT_CASE_TIMEOUT_S)
        verdict = self.verdict(case, result, arrays)
        self.writer.write(result, arrays, verdict)
        took = time.perf_counter() - started
        self.last[case.name] = (result, arrays)
        return took, result

    def bare(self, case: Case) -> tuple[float, str | None]:
        """The case's builds and entry points alone; the seconds, and the exception that stopped them (None when none)."""
        from harness.execute import models
        from harness.execute.backends import isolate_case, kernel_mode

        isolate_case()  # outside the timing: the bare calls start from the same compiler caches as the harness's
        data = make_case_data(case, self.seed)  # outside the timing: the inputs and weights a user would already hold
        started = time.perf_counter()
        try:
            for api in case.apis:
                with kernel_mode(case.kernel):
                    model, blocks = models.build_model(api, case, data)
                    models.run_model(model, blocks, case, data)
        except Exception as error:  # a refused or failing build: timed up to the exception
            return time.perf_counter() - started, f"{type(error).__name__}: {str(error)[:200]}"
        return time.perf_counter() - started, None

    def parts(self, case: Case) -> tuple[dict[str, float], str | None]:
        """The functions run_case calls, each timed on its own (build and run summed over the APIs)."""
        from harness.execute import models
        from harness.execute.backends import isolate_case, kernel_mode

        seconds = dict.fromkeys(PARTS, 0.0)
        seconds["isolate"], _ = _timed(isolate_case)
        seconds["data"], data = _timed(lambda: make_case_data(case, self.seed))
        seconds["reference"], expected = _timed(lambda: expected_outputs(case, data))
        actual_by_api: dict[str, dict[str, np.ndarray]] = {}
        result: dict[str, Any] = {"case": case.name, "apis": {}, "api_agreement": [], "problems": [], "status": "pass", "error": None}
        try:
            for api in case.apis:
                with kernel_mode(case.kernel):
                    took, (model, blocks) = _timed(lambda: models.build_model(api, case, data))
                    seconds["build"] += took
                    took, outputs = _timed(lambda: models.run_model(model, blocks, case, data))
                    seconds["run"] += took
                started = time.perf_counter()
                actual = {name: np.asarray(value) for name, value in outputs.items()}
                actual_by_api[api] = actual
                items = judge_outputs(case, actual, expected, self.tolerances, api)
                result["apis"][api] = {"items": items, "passed": all(item["passed"] for item in items.values())}
                seconds["compare"] += time.perf_counter() - started
            started = time.perf_counter()
            result["api_agreement"] = api_agreement(actual_by_api, self.tolerances.api_max_abs_diff)
            seconds["compare"] += time.perf_counter() - started
        except Exception as error:
            return seconds, f"{type(error).__name__}: {str(error)[:200]}"
        arrays = {(api, name): value for api, actual in actual_by_api.items() for name, value in actual.items()}
        # The verdict and the write of the case's real result (the one above lacks the fields run_case adds).
        if case.name not in self.last:
            self.harness(case)
        real_result, real = self.last[case.name]
        seconds["verdict"], verdict = _timed(lambda: self.verdict(case, real_result, real))
        seconds["write"], _ = _timed(lambda: self.writer.write(real_result, real, verdict))
        return seconds, None


def measure_case(bench: _Bench, case: Case, repeats: int) -> dict[str, Any]:
    """One case's harness, bare and part timings over ``repeats`` repetitions (the order rotates each repetition)."""
    harness_s: list[float] = []
    bare_s: list[float] = []
    part_s: dict[str, list[float]] = {part: [] for part in PARTS}
    status, bare_error, parts_error = None, None, None
    for repetition in range(repeats):
        steps = ["harness", "bare", "parts"]
        steps = steps[repetition % 3:] + steps[:repetition % 3]
        for step in steps:
            if step == "harness":
                took, result = bench.harness(case)
                harness_s.append(took)
                status = result["status"]
            elif step == "bare":
                took, bare_error = bench.bare(case)
                bare_s.append(took)
            else:
                seconds, parts_error = bench.parts(case)
                for part, value in seconds.items():
                    part_s[part].append(value)
    entry: dict[str, Any] = {
        "case": case.name, "dtype": case.dtype, "mask": case.mask, "entry_point": case.entry_point, "jit_compile": case.jit_compile,
        "kernel": case.kernel, "apis": list(case.apis), "status": status, "bare_error": bare_error, "parts_error": parts_error,
        "harness_s": spread(harness_s), "bare_s": spread(bare_s), "parts_s": {part: spread(values) for part, values in part_s.items()},
    }
    entry["ran"] = status in RAN and bare_error is None and parts_error is None
    if entry["ran"]:
        total = entry["harness_s"]["median"]
        entry["ratio"] = total / entry["bare_s"]["median"]
        parts = {part: entry["parts_s"][part]["median"] for part in PARTS}
        entry["share"] = {part: value / total for part, value in parts.items()}
        entry["share"]["other"] = (total - sum(parts.values())) / total
    return entry


def startup_times(backend: str, repeats: int) -> dict[str, Any]:
    """Seconds for ``python -c "import keras"`` with KERAS_BACKEND=backend, and for a bare ``python -c pass``, each in a
    fresh subprocess ``repeats`` times."""
    environment = dict(os.environ, KERAS_BACKEND=backend)

    def timed_process(code: str) -> float:
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=600)
        took = time.perf_counter() - started
        if completed.returncode != 0:
            raise RuntimeError(f"python -c {code!r} failed: {completed.stderr.strip().splitlines()[-1:]}")
        return took

    python_s = [timed_process("pass") for _ in range(repeats)]
    keras_s = [timed_process("import keras") for _ in range(repeats)]
    return {"python_s": spread(python_s), "import_keras_s": spread(keras_s),
            "import_keras_less_python_s": statistics.median(keras_s) - statistics.median(python_s)}


def _source_case(backend: str, fallback: tuple[dict[str, Any], dict[tuple[str, str], np.ndarray]] | None,
                 ) -> tuple[str, dict[str, Any], dict[str, Any], dict[tuple[str, str], np.ndarray], dict[str, Any]]:
    """One real case result to copy: the case of median raw-output size in results/<backend>.json (+ .npz, and its
    verdict from .verdicts.json), or, when that record is missing, a result this benchmark measured. Returns
    (source, header, result, arrays, verdict)."""
    json_path, npz_path = REPO_RESULTS / f"{backend}.json", REPO_RESULTS / f"{backend}.npz"
    if json_path.exists() and npz_path.exists():
        record = records.read_record(json_path)
        raw = records.read_arrays(npz_path)
        sized = sorted((sum(value.nbytes for value in records.result_arrays(result, raw).values()), index)
                       for index, result in enumerate(record["cases"]))
        result = record["cases"][sized[len(sized) // 2][1]]
        header = {key: value for key, value in record.items() if key != "cases"}
        verdicts_file = REPO_RESULTS / f"{backend}.verdicts.json"
        verdicts = records.read_json_file(verdicts_file).get("cases", {}) if verdicts_file.exists() else {}
        return str(json_path), header, result, records.result_arrays(result, raw), verdicts.get(result["case"]) or _plain_verdict(result)
    if fallback is None:
        raise ValueError(f"{json_path} does not exist and no case of this benchmark ran")
    return "a case result measured by this benchmark", {"backend": backend}, fallback[0], fallback[1], _plain_verdict(fallback[0])


def _plain_verdict(result: dict[str, Any]) -> dict[str, Any]:
    """A verdict of the shape classify_result returns, for a case no known divergence applies to."""
    return {"measured_status": result["status"], "verdict": result["status"], "explained_by": [], "applicable": [],
            "unexplained": [], "possibly_resolved": []}


def _fit(points: list[dict[str, Any]], field: str) -> tuple[float, float]:
    """(fixed_s, per_case_s) of the least-squares line through the medians of ``field`` against the cases, both
    held non-negative (a time neither shrinks with more cases nor starts below zero): on a loaded machine a few noisy
    medians gave a negative slope or intercept, and the run's extrapolated write totals came out negative. Where the
    free fit breaks a bound, the best line with that part at zero is taken (least squares under the constraint)."""
    n_values = np.asarray([point["cases"] for point in points], dtype=float)
    t_values = np.asarray([point[field]["median"] for point in points], dtype=float)
    if len(points) < 2:
        return max(float(t_values[0]), 0.0), 0.0
    per_case, fixed = (float(value) for value in np.polyfit(n_values, t_values, 1))
    if per_case < 0:  # flat: the mean
        return max(float(t_values.mean()), 0.0), 0.0
    if fixed < 0:  # through the origin
        return 0.0, max(float(np.dot(n_values, t_values) / np.dot(n_values, n_values)), 0.0)
    return fixed, per_case


def incremental_writes(backend: str, sizes: tuple[int, ...], repeats: int, run_cases: int,
                       fallback: tuple[dict[str, Any], dict[tuple[str, str], np.ndarray]] | None) -> dict[str, Any]:
    """The record writes of a run, from copies of one real case result: for each n of ``sizes``, the journal append of
    the n-th case (``records.append_journal`` onto a journal holding n - 1 cases, as the run calls it) and the whole
    record of n cases (``parity.write_run_record``: NPZ, verdicts, JSON). Then, over a run of ``run_cases`` cases,
    what the run writes (an append per case and one whole record at the end, beside the start's) against what
    rewriting the whole record after every case cost before the journal (the sum over n of the whole write's
    straight-line fit)."""
    source, header, result, arrays, verdict = _source_case(backend, fallback)
    largest = max(sizes)
    cases, raw = [], {}
    for copy_index in range(largest):
        name = f"{result['case']}__copy{copy_index}"
        cases.append(copy.deepcopy(result) | {"case": name})
        raw[name] = {records.array_key(name, api, output): value for (api, output), value in arrays.items()}
    points = []
    with tempfile.TemporaryDirectory(prefix="bench-writes-") as folder_name:
        folder = Path(folder_name)
        with records.folder_lock(folder, backend, "bench-overhead"):  # held throughout, as the run holds its folder's
            records.start_journal(folder, backend, header, "")
            for index, case in enumerate(cases):
                if index + 1 not in sizes:
                    records.append_journal(folder, backend, index, case, verdict, raw[case["case"]])
                    continue
                append_s, entry_bytes = [], 0
                for _ in range(repeats):  # the n-th case, appended again: each time onto n - 1 cases
                    started = time.perf_counter()
                    entry_bytes = records.append_journal(folder, backend, index, case, verdict, raw[case["case"]])
                    append_s.append(time.perf_counter() - started)
                record = header | {"cases": cases[:index + 1]}
                outputs = {key: value for case_outputs in list(raw.values())[:index + 1] for key, value in case_outputs.items()}
                verdicts = new_verdict_record(record, [], DIVERGENCES_FILE)
                verdicts["cases"] = {case["case"]: verdict for case in cases[:index + 1]}
                add_verdict(verdicts, case["case"], verdict)  # the counts and possibly-resolved list, over every case
                whole_s = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    write_run_record(folder, backend, record, outputs, verdicts)
                    whole_s.append(time.perf_counter() - started)
                points.append({"cases": index + 1, "append_s": spread(append_s), "entry_bytes": entry_bytes, "write_s": spread(whole_s),
                               "json_bytes": (folder / f"{backend}.json").stat().st_size,
                               "npz_bytes": (folder / f"{backend}.npz").stat().st_size,
                               "verdicts_bytes": (folder / f"{backend}.verdicts.json").stat().st_size})
            records.clear_journal(folder, backend)
    whole_fixed, whole_per_case = _fit(points, "write_s")
    append_fixed, append_per_case = _fit(points, "append_s")
    append_median = statistics.median(point["append_s"]["median"] for point in points)
    journal_total = run_cases * append_median + 2 * whole_fixed + whole_per_case * run_cases
    rewrite_total = whole_fixed * run_cases + whole_per_case * run_cases * (run_cases + 1) / 2
    return {
        "source": source, "source_case": result["case"], "points": points,
        "fit": {"whole_write": {"fixed_s": whole_fixed, "per_case_s": whole_per_case},
                "append": {"fixed_s": append_fixed, "per_case_s": append_per_case},
                "model": "t(n) = fixed_s + per_case_s * n (least squares over the medians)"},
        "run_cases": run_cases,
        "write_each_case_once_total_s": journal_total,  # what the run writes now
        "write_each_case_once_model": "run_cases * median append + the whole write of an empty record (start) and of "
                                      "run_cases cases (end)",
        "rewrite_every_case_total_s": rewrite_total,
        "rewrite_model": "before the journal: the whole record rewritten after every case, sum over n = 1..run_cases of the fit",
        "rewrite_over_once": rewrite_total / journal_total if journal_total > 0 else None,
    }


def summarize(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The ratio harness / bare over the cases that ran (median, p10, p90), and each part's median share of the harness
    total."""
    ran = [entry for entry in entries if entry["ran"]]
    return {
        "cases_measured": len(entries), "cases_ran": len(ran),
        "not_ran": [{"case": entry["case"], "status": entry["status"], "bare_error": entry["bare_error"], "parts_error": entry["parts_error"]}
                    for entry in entries if not entry["ran"]],
        "ratio_harness_over_bare": distribution([entry["ratio"] for entry in ran]),
        "harness_s": distribution([entry["harness_s"]["median"] for entry in ran]),
        "bare_s": distribution([entry["bare_s"]["median"] for entry in ran]),
        "median_share": {part: float(np.median([entry["share"][part] for entry in ran])) if ran else None
                         for part in PARTS + ("other",)},
        "target_ratio": 1.5,
    }


def run_bench_overhead(cases: list[Case], backend: BackendInfo, out_dir: Path, seed: int, *, sample: int, repeats: int,
                       quick: bool, command: str, on_case_done: Callable[[int, int, dict[str, Any]], None] | None = None,
                       ) -> dict[str, Any]:
    """Measure the sample of ``cases`` and the incremental writes; write ``out_dir/<backend>.bench_overhead.json``."""
    chosen = sample_cases(cases, sample)
    header = make_header("bench_overhead", backend, seed=seed, command=command)
    tolerances = load_tolerances(backend.device_class, backend.name)
    run_header = make_header("run", backend, seed=seed, command=command)
    entries: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-case-records-") as folder_name:
        folder = Path(folder_name)
        with records.folder_lock(folder, backend.name, command):
            bench = _Bench(backend, seed, tolerances, _Writer(backend, run_header, folder))
            warmup_s, _ = bench.harness(chosen[0])  # the process's first case pays one-off costs: kept apart
            for index, case in enumerate(chosen):
                entries.append(measure_case(bench, case, repeats))
                if on_case_done is not None:
                    on_case_done(index + 1, len(chosen), entries[-1])
            fallback = next((bench.last[case.name] for case in chosen if bench.last[case.name][0]["status"] in RAN), None)
    cases_wall_s = time.perf_counter() - started
    sizes = QUICK_WRITE_SIZES if quick else WRITE_SIZES
    full_run = max(sizes[-1], len(cases))
    record = header | {
        "sample": {"requested": sample, "from_cases": len(cases), "cases": [case.name for case in chosen],
                   "rule": "the first case of every dtype, entry point, jit_compile, mask and kernel value when the sample has "
                           "room, then evenly spaced cases of the matrix (harness.studies.bench_overhead.sample_cases)"},
        "repeats": repeats, "quick": quick, "warmup_s": warmup_s, "cases_wall_s": cases_wall_s,
        "startup": startup_times(backend.name, repeats),
        "cases": entries,
        "summary": summarize(entries),
        "incremental_write": incremental_writes(backend.name, sizes, repeats, full_run, fallback),
    }
    record["finished"] = now()
    records.write_json(out_dir / f"{backend.name}.bench_overhead.json", record)
    return record


def print_case(done: int, total: int, entry: dict[str, Any]) -> None:
    """One progress line per case on stderr."""
    ratio = f"{entry['ratio']:.2f}x" if entry["ran"] else f"not ran ({entry['status']})"
    print(f"[{done}/{total}] {entry['case']}: harness {entry['harness_s']['median']:.2f}s, bare {entry['bare_s']['median']:.2f}s, "
          f"{ratio}", file=sys.stderr)


def summary_lines(record: dict[str, Any]) -> list[str]:
    """What a user reads on stdout: the ratio distribution, the parts, start-up and the write growth."""
    summary, writes, startup = record["summary"], record["incremental_write"], record["startup"]
    lines = []
    ratio = summary["ratio_harness_over_bare"]
    if ratio is not None:
        lines.append(f"{record['backend']}: harness / bare Keras calls over {summary['cases_ran']} of {summary['cases_measured']} cases "
                     f"({record['repeats']} repetitions each): median {ratio['median']:.2f}x, p10 {ratio['p10']:.2f}x, "
                     f"p90 {ratio['p90']:.2f}x (target {summary['target_ratio']}x)")
        lines.append("  median share of the harness total: " + ", ".join(
            f"{part} {share:.0%}" for part, share in summary["median_share"].items()))
    lines.append(f"  start-up: import keras {startup['import_keras_s']['median']:.2f}s (python alone {startup['python_s']['median']:.2f}s)")
    appends = ", ".join(f"n={point['cases']} {point['append_s']['median'] * 1000:.1f} ms" for point in writes["points"])
    wholes = ", ".join(f"n={point['cases']} {point['write_s']['median'] * 1000:.0f} ms" for point in writes["points"])
    lines.append(f"  record writes: a case's journal append {appends}; the whole record {wholes}")
    lines.append(f"  over a run of {writes['run_cases']} cases: {writes['write_each_case_once_total_s']:.1f}s (an append per case, the whole "
                 f"record at the start and end) against {writes['rewrite_every_case_total_s']:.1f}s rewriting the whole record "
                 "after every case (before the journal)")
    return lines

