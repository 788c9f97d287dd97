"""The comparison: ULP counting, mismatch reports, and non-finite values never passing silently."""

import numpy as np
import pytest

from harness.truth.compare import Tolerance, compare, max_difference, ulp_distance

TIGHT = Tolerance(rtol=1e-6, atol=1e-7, rel_floor=1e-3, reason="test")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adjacent_floats_are_one_ulp_apart(dtype):
    values = np.array([-2.5, -1e-30, 0.0, 1e-30, 1.0, 3.0e5], dtype=dtype)
    following = np.nextafter(values, np.array(np.inf, dtype=dtype))
    np.testing.assert_array_equal(ulp_distance(following, values, dtype), np.ones(values.shape))
    three_up = np.nextafter(np.nextafter(following, np.inf, dtype=dtype), np.inf, dtype=dtype)
    np.testing.assert_array_equal(ulp_distance(three_up, values, dtype), np.full(values.shape, 2.0) + 1)


def test_ulp_distance_across_zero_counts_both_sides():
    smallest = np.array([np.finfo(np.float32).smallest_subnormal], dtype=np.float32)
    assert ulp_distance(-smallest, smallest, "float32")[0] == 2.0


def test_mismatch_reports_count_percent_worst_index_and_values():
    expected = np.zeros((2, 3))
    actual = expected.copy()
    actual[1, 2] = 1e-3
    actual[0, 1] = 2e-7
    result = compare(actual, expected, TIGHT, "float64")
    assert not result.passed
    assert result.mismatched == 2 and result.total == 6
    assert result.mismatch_percent == pytest.approx(100 * 2 / 6)
    assert result.worst_index == (1, 2)
    assert result.worst_actual == 1e-3 and result.worst_expected == 0.0
    message = result.message("output")
    assert "2 / 6 elements mismatch (33.3%)" in message and "(1, 2)" in message


def test_within_tolerance_passes_and_just_outside_fails():
    expected = np.array([1.0, -2.0, 0.0])
    bound = TIGHT.atol + TIGHT.rtol * np.abs(expected)
    assert compare(expected + 0.99 * bound, expected, TIGHT, "float64").passed
    assert not compare(expected + np.array([0, 1.01, 0]) * bound, expected, TIGHT, "float64").passed


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_actual_never_passes(bad):
    expected = np.array([0.5, 0.25])
    actual = np.array([0.5, bad])
    result = compare(actual, expected, Tolerance(rtol=1e9, atol=1e9, rel_floor=1.0, reason="huge"), "float64")
    assert not result.passed
    assert result.nonfinite_actual == 1
    assert result.max_abs_error == np.inf
    assert result.worst_index == (1,)


def test_expected_non_finite_must_be_matched_exactly():
    expected = np.array([np.nan, np.inf])
    assert compare(np.array([np.nan, np.inf]), expected, TIGHT, "float64").passed
    assert not compare(np.array([np.nan, -np.inf]), expected, TIGHT, "float64").passed


def test_shape_mismatch_fails():
    result = compare(np.zeros((2, 3)), np.zeros((3, 2)), TIGHT, "float64")
    assert not result.passed and "shape" in result.message("h")


def test_relative_error_uses_floor_near_zero():
    result = compare(np.array([1e-9]), np.array([0.0]), TIGHT, "float64")
    assert result.max_rel_error == pytest.approx(1e-9 / TIGHT.rel_floor)


def test_max_difference_and_bitwise_equality():
    a = np.array([1.0, 2.0], dtype=np.float32)
    assert max_difference(a, a.copy()) == (0.0, True)
    b = np.nextafter(a, np.float32(np.inf))
    difference, bitwise = max_difference(a, b)
    assert difference > 0 and not bitwise
    assert max_difference(a, a.astype(np.float64)) == (0.0, False)


def test_tolerance_table_merges_device_overrides():
    from harness.case.tolerances import load_tolerances

    cpu = load_tolerances("cpu")
    tf32 = load_tolerances("gpu_tf32")
    highest = load_tolerances("gpu_highest")
    assert highest == cpu
    assert tf32["float32"]["outputs"].atol > cpu["float32"]["outputs"].atol
    assert tf32["float64"] == cpu["float64"]
    for rows in tf32.values():
        for tolerance in rows.values():
            assert tolerance.reason and tolerance.rtol > 0 and tolerance.atol > 0
    with pytest.raises(ValueError, match="unknown device class 'tpu'"):
        load_tolerances("tpu")
