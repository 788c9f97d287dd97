"""The kernels benchmark (harness/studies/bench_kernels.py, 'python -m harness bench-kernels'): its code paths on
the session's backend with tiny shapes and one repetition. The timings themselves are not tested (they mean
nothing at these shapes); the record's structure, the finite positive ratios and the exit codes are.
"""

import json
import math

import numpy as np
import pytest

from conftest import run_harness
from harness.studies.bench_kernels import (FORWARD_ENTRY_POINTS, GRADIENT_ENTRY_POINTS, QUICK_GROWTH_AXES, QUICK_SHAPES,
                                           exit_code, log_log_slope)

STATS = {"warmup_s", "repeats", "times_s", "median_s", "min_s", "max_s", "spread"}


def _check_stats(measured: dict, where: str) -> None:
    assert "error" not in measured, (where, measured)
    assert STATS <= set(measured), where
    assert measured["repeats"] == 1 and len(measured["times_s"]) == 1, where
    assert 0 < measured["min_s"] <= measured["median_s"] <= measured["max_s"], where


@pytest.mark.backend
def test_quick_benchmark_measures_every_entry_point(session_backend, tmp_path):
    completed = run_harness("bench-kernels", "--backend", session_backend, "--out", str(tmp_path), "--quick")
    assert completed.returncode == 0, completed.stderr
    assert "wrote" in completed.stdout
    record = json.loads((tmp_path / f"{session_backend}.bench_kernels.json").read_text())
    assert record["schema"] == "keras-parity/bench-kernels" and record["schema_version"] == 1
    assert record["backend"] == session_backend and record["finished"] is not None
    assert record["quick"] is True and record["repeats"] == 1
    assert [shape["shape"] for shape in record["shapes"]] == list(QUICK_SHAPES)
    for shape in record["shapes"]:
        name = shape["shape"]
        assert (shape["batch"], shape["time"], shape["features"], shape["units"]) == QUICK_SHAPES[name]
        for part in ("forward", "backward", "matmuls_float64", "matmuls_float32"):
            _check_stats(shape["reference"][part], f"{name} reference {part}")
        assert list(shape["backend"]["forward"]) == list(FORWARD_ENTRY_POINTS[session_backend])
        assert list(shape["backend"]["gradient"]) == list(GRADIENT_ENTRY_POINTS[session_backend])
        for entry, measured in shape["backend"]["forward"].items():
            _check_stats(measured, f"{name} forward {entry}")
            assert measured["max_rel_difference"] < 1e-5, (name, entry)  # the same computation as the reference
        for entry, measured in shape["backend"]["gradient"].items():
            _check_stats(measured, f"{name} gradient {entry}")
            assert measured["kernel_max_rel_difference"] < 1e-4, (name, entry)
        ratios = shape["ratios"]
        for part in ("forward", "backward"):
            assert math.isfinite(ratios[part]) and ratios[part] > 0, (name, ratios)
        assert ratios["forward_against"] in FORWARD_ENTRY_POINTS[session_backend]
        assert ratios["backward_against"] in GRADIENT_ENTRY_POINTS[session_backend]
    assert set(record["growth"]) == set(QUICK_GROWTH_AXES)
    for axis, growth in record["growth"].items():
        assert [point[axis] for point in growth["points"]] == list(QUICK_GROWTH_AXES[axis][0])
        for point in growth["points"]:
            _check_stats(point["reference_forward"], f"growth {axis} reference")
            _check_stats(point["backend_predict"], f"growth {axis} predict")
        for slope in growth["slope"].values():
            assert slope is not None and math.isfinite(slope), (axis, growth["slope"])


@pytest.mark.parametrize("repeats", ["0", "-3", "two"])
def test_bad_repeats_is_one_line_and_exit_2(repeats, tmp_path):
    completed = run_harness("bench-kernels", "--backend", "jax", "--out", str(tmp_path), "--repeats", repeats)
    assert completed.returncode == 2
    assert len(completed.stderr.strip().splitlines()) == 1 and "repeats" in completed.stderr
    assert not list(tmp_path.glob("*.bench_kernels.json"))


def test_log_log_slope_recovers_a_power_law():
    sizes = [8, 32, 128]
    assert log_log_slope(sizes, [3e-4 * size ** 1.5 for size in sizes]) == pytest.approx(1.5)
    assert log_log_slope([8], [1.0]) is None


def test_a_record_that_measured_nothing_or_raised_does_not_exit_0():
    assert exit_code({"shapes": [], "growth": None}) == 2
    raised = {"shapes": [{"shape": "small", "reference": {"forward": {"error": "ValueError: x"}, "backward": {}},
                          "backend": {"forward": {}, "gradient": {}}}], "growth": {}}
    assert exit_code(raised) == 2


def test_the_matmul_floor_does_the_reference_forwards_products():
    """reference_matmuls computes x @ kernel for every step plus one state @ recurrent_kernel per step, in the dtype
    asked: checked against the same products written out, so its time is the time of those products."""
    from harness.studies.bench_kernels import make_arrays, reference_matmuls

    arrays = make_arrays(3, 5, 4, 6, seed=7)
    for dtype in (np.float64, np.float32):
        got = reference_matmuls(arrays, dtype)
        x, kernel, recurrent = (arrays[key].astype(dtype) for key in ("x", "kernel", "recurrent_kernel"))
        state = np.tanh((x[:, 0] @ kernel)[:, :6]).astype(dtype)
        expected = np.stack([x[:, step] @ kernel + state @ recurrent for step in range(5)])
        assert got.dtype == dtype and got.shape == (5, 3, 24)
        np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)
