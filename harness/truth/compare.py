"""One comparison used everywhere: an actual array against an expected one, under (rtol, atol).

An element mismatches when ``|actual - expected| > atol + rtol * |expected|`` (rtol and atol always
together, as in numpy.isclose). Non-finite values are compared explicitly: a NaN or Inf in the actual
output where the expected value is finite is a mismatch, never a pass; an expected non-finite value
must be matched exactly (same infinity, or NaN for NaN). An expected value too large for the compared
dtype is expected to overflow to the infinity of its sign.

The relative error of an element is ``|actual - expected| / max(|expected|, rel_floor)``: the floor
keeps values near zero (where relative error means nothing) from dominating it.

The ULP distance is counted in the compared dtype: the expected value is rounded to that dtype and
the number of representable values between it and the actual value is counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from harness.case.tolerances import Tolerance


@dataclass(frozen=True)
class Comparison:
    passed: bool
    shape_actual: tuple[int, ...]
    shape_expected: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    max_ulp: float
    mismatched: int
    total: int
    nonfinite_actual: int
    worst_index: tuple[int, ...] | None
    worst_actual: float | None
    worst_expected: float | None
    rtol: float
    atol: float

    @property
    def mismatch_percent(self) -> float:
        return 100.0 * self.mismatched / self.total if self.total else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mismatch_percent"] = self.mismatch_percent
        return data

    def message(self, label: str) -> str:
        """A one-line description in the style of torch.testing: count, percent, worst index and values."""
        if self.shape_actual != self.shape_expected:
            return f"{label}: shape {self.shape_actual} != expected {self.shape_expected}"
        if self.passed:
            return f"{label}: ok (max abs {self.max_abs_error:.3g}, max ulp {self.max_ulp:.0f})"
        return (
            f"{label}: {self.mismatched} / {self.total} elements mismatch ({self.mismatch_percent:.1f}%), "
            f"{self.nonfinite_actual} non-finite; furthest beyond tolerance at {self.worst_index}: "
            f"{self.worst_actual!r} vs expected {self.worst_expected!r}; "
            f"max abs error {self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g} (rtol {self.rtol:g}, atol {self.atol:g})"
        )


_UNSIGNED_FOR_FLOAT = {2: np.uint16, 4: np.uint32, 8: np.uint64}
_SIGNED_FOR_FLOAT = {2: np.int16, 4: np.int32, 8: np.int64}


def _ordered_bits(values: np.ndarray) -> np.ndarray:
    """Map floats to integers that are ordered like the floats and 1 apart for adjacent floats."""
    size = values.dtype.itemsize
    bits = values.view(_SIGNED_FOR_FLOAT[size]).astype(np.int64)
    magnitude_mask = np.int64((1 << (8 * size - 1)) - 1)
    return np.where(bits < 0, -(bits & magnitude_mask), bits)


def ulp_distance(actual: np.ndarray, expected: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """Elementwise count of representable ``dtype`` values between actual and expected (float64 array)."""
    dtype = np.dtype(dtype)
    a = _ordered_bits(np.asarray(actual).astype(dtype))
    e = _ordered_bits(np.asarray(expected).astype(dtype))
    same_sign = (a >= 0) == (e >= 0)
    # Same sign: the exact integer difference. Opposite signs: the sum of distances to zero, which
    # could overflow int64 for float64, so it is added in float64.
    exact = np.abs(np.where(same_sign, a - e, 0)).astype(np.float64)
    across_zero = np.abs(a.astype(np.float64)) + np.abs(e.astype(np.float64))
    return np.where(same_sign, exact, across_zero)


def compare(actual: Any, expected: Any, tolerance: Tolerance, dtype: np.dtype | str) -> Comparison:
    """Compare ``actual`` (any dtype) with ``expected`` (float64 reference) in the compared ``dtype``."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return Comparison(
            passed=False, shape_actual=actual.shape, shape_expected=expected.shape,
            max_abs_error=float("inf"), max_rel_error=float("inf"), max_ulp=float("inf"),
            mismatched=int(expected.size), total=int(expected.size), nonfinite_actual=0,
            worst_index=None, worst_actual=None, worst_expected=None, rtol=tolerance.rtol, atol=tolerance.atol,
        )
    actual64 = actual.astype(np.float64)
    # A finite expected value beyond the compared dtype's range overflows there: the dtype's answer
    # is that infinity (as float32 exp(100) is inf), so it is the expected value.
    with np.errstate(over="ignore"):
        rounded = expected.astype(np.dtype(dtype)).astype(np.float64)
    expected = np.where(np.isfinite(expected) & np.isinf(rounded), rounded, expected)
    finite_both = np.isfinite(actual64) & np.isfinite(expected)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.where(finite_both, np.abs(actual64 - expected), 0.0)
        relative = np.where(finite_both, error / np.maximum(np.abs(expected), tolerance.rel_floor), 0.0)
        close = error <= tolerance.atol + tolerance.rtol * np.abs(expected)
    # Non-finite values: a match only when both sides hold the same non-finite value.
    same_nonfinite = (np.isnan(actual64) & np.isnan(expected)) | (
        np.isinf(actual64) & np.isinf(expected) & (np.sign(actual64) == np.sign(expected))
    )
    matches = np.where(finite_both, close, same_nonfinite)
    ulps = np.where(finite_both, ulp_distance(actual64, expected, dtype), 0.0)
    # Where a non-finite value mismatches, the errors are infinite.
    nonfinite_mismatch = ~finite_both & ~same_nonfinite
    if nonfinite_mismatch.any():
        error = np.where(nonfinite_mismatch, np.inf, error)
        relative = np.where(nonfinite_mismatch, np.inf, relative)
        ulps = np.where(nonfinite_mismatch, np.inf, ulps)

    worst_index = worst_actual = worst_expected = None
    if error.size:
        # The worst element: a mismatching one if any (the one furthest beyond its tolerance), else the largest error.
        excess = np.where(matches, -np.inf, error - (tolerance.atol + tolerance.rtol * np.abs(np.nan_to_num(expected))))
        flat = int(np.argmax(excess)) if not matches.all() else int(np.argmax(error))
        worst = np.unravel_index(flat, error.shape)
        worst_index = tuple(int(i) for i in worst)
        worst_actual = float(actual64[worst])
        worst_expected = float(expected[worst])
    return Comparison(
        passed=bool(matches.all()),
        shape_actual=actual.shape,
        shape_expected=expected.shape,
        max_abs_error=float(error.max()) if error.size else 0.0,
        max_rel_error=float(relative.max()) if relative.size else 0.0,
        max_ulp=float(ulps.max()) if ulps.size else 0.0,
        mismatched=int((~matches).sum()),
        total=int(matches.size),
        nonfinite_actual=int((~np.isfinite(actual64)).sum()),
        worst_index=worst_index,
        worst_actual=worst_actual,
        worst_expected=worst_expected,
        rtol=tolerance.rtol,
        atol=tolerance.atol,
    )


def max_difference(a: Any, b: Any) -> tuple[float, bool]:
    """Largest absolute elementwise difference of two same-shaped arrays, and whether they are bitwise equal."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return float("inf"), False
    bitwise_equal = a.dtype == b.dtype and a.tobytes() == b.tobytes()
    with np.errstate(invalid="ignore"):
        difference = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if difference.size == 0:
        return 0.0, bitwise_equal
    if np.isnan(difference).any():
        return float("nan"), bitwise_equal
    return float(difference.max()), bitwise_equal
