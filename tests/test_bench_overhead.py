"""The harness-overhead benchmark's code paths (not its timings): bench-overhead --quick on the session's backend."""

import json
import math

import pytest

from conftest import run_harness

from harness.case.schema import builtin_cases
from harness.studies.bench_overhead import PARTS, sample_cases


def test_default_sample_is_deterministic_and_covers_the_axes():
    cases = builtin_cases()
    sample = sample_cases(cases, 24)
    assert [case.name for case in sample] == [case.name for case in sample_cases(cases, 24)]
    assert len(sample) == 24 and len({case.name for case in sample}) == 24
    for axis in ("dtype", "entry_point", "jit_compile", "mask", "kernel"):
        assert {getattr(case, axis) for case in sample} == {getattr(case, axis) for case in cases}, axis
    assert len(sample_cases(cases, 2)) == 2


@pytest.mark.backend
def test_quick_run_writes_a_record_with_finite_positive_ratios(session_backend, tmp_path):
    completed = run_harness("bench-overhead", "--backend", session_backend, "--out", str(tmp_path), "--quick", "--cases", "lstm_*")
    assert completed.returncode == 0, completed.stderr
    record = json.loads((tmp_path / f"{session_backend}.bench_overhead.json").read_text())
    assert record["schema"] == "keras-parity/bench-overhead" and record["finished"] is not None
    assert record["repeats"] == 1 and len(record["cases"]) == 2
    summary = record["summary"]
    assert summary["cases_ran"] >= 1
    for entry in record["cases"]:
        assert set(entry["parts_s"]) == set(PARTS)
        if entry["ran"]:
            assert math.isfinite(entry["ratio"]) and entry["ratio"] > 0
            assert entry["bare_s"]["median"] > 0 and entry["harness_s"]["median"] > 0
            assert set(entry["share"]) == set(PARTS) | {"other"}
    for key in ("median", "p10", "p90"):
        value = summary["ratio_harness_over_bare"][key]
        assert math.isfinite(value) and value > 0
    assert record["startup"]["import_keras_s"]["median"] > 0
    writes = record["incremental_write"]
    assert [point["cases"] for point in writes["points"]] == [1, 3]
    assert all(point["append_s"]["median"] > 0 and point["write_s"]["median"] > 0 for point in writes["points"])
    assert writes["write_each_case_once_total_s"] > 0 and writes["rewrite_every_case_total_s"] > 0
    assert "harness / bare Keras calls" in completed.stdout and "journal append" in completed.stdout


def test_the_write_benchmark_times_the_runs_own_write_path(monkeypatch):
    """incremental_writes appends through records.append_journal (the parity run's per-case write) and writes the
    whole record through parity.write_run_record; a case's entry weighs the same however many came before it."""
    from harness.records import store
    from harness.studies import bench_overhead

    appended, whole = [], []
    append, write_whole = store.append_journal, bench_overhead.write_run_record
    monkeypatch.setattr(store, "append_journal", lambda *args: appended.append(args[2]) or append(*args))
    monkeypatch.setattr(bench_overhead, "write_run_record", lambda *args: whole.append(len(args[2]["cases"])) or write_whole(*args))
    writes = bench_overhead.incremental_writes("jax", (1, 4, 9), 2, 483, None)
    assert appended == [0, 0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 8]  # each case once, the measured ones once per repetition
    assert whole == [1, 1, 4, 4, 9, 9]
    points = writes["points"]
    assert [point["entry_bytes"] for point in points] == [points[0]["entry_bytes"]] * 3
    assert points[0]["json_bytes"] < points[1]["json_bytes"] < points[2]["json_bytes"]
    assert writes["rewrite_every_case_total_s"] > 0 and writes["write_each_case_once_total_s"] > 0  # figures, not a race


@pytest.mark.parametrize("option", [("--sample", "0"), ("--repeats", "0"), ("--cases", "no_such_case_*")])
def test_bad_input_is_one_line_and_exit_2(option, tmp_path):
    completed = run_harness("bench-overhead", "--backend", "jax", "--out", str(tmp_path), *option)
    assert completed.returncode == 2
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
    assert not list(tmp_path.glob("*.bench_overhead.json"))



@pytest.mark.parametrize("medians, expected", [
    ((0.010, 0.020, 0.030), (0.0, 0.01)),              # a clean line through the origin
    ((0.012, 0.022, 0.032), (0.002, 0.01)),            # a fixed part and a slope, both kept
    ((0.030, 0.020, 0.025), (0.025, 0.0)),             # noise slopes it down: flat at the mean, not shrinking
    ((0.001, 0.030, 0.060), (0.0, 0.241 / 14)),        # noise puts the intercept at -0.029: through the origin instead
])
def test_the_write_fit_never_gives_a_negative_time(medians, expected):
    """Three noisy medians on a loaded machine gave a negative intercept, and the run's write totals came out
    negative (-0.02 s, -137 s); the fit holds both parts at zero or above, by least squares under that bound."""
    from harness.studies.bench_overhead import _fit

    points = [{"cases": n, "write_s": {"median": t}} for n, t in zip((1, 2, 3), medians)]
    assert _fit(points, "write_s") == pytest.approx(expected, abs=1e-12)
