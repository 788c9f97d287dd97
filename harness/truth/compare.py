"""One comparison used everywhere: an actual array against an expected one, under (rtol, atol).

An element mismatches when ``|actual - expected| > atol + rtol * |expected|`` (rtol and atol always
together, as in numpy.isclose). Non-finite values never pass by accident:
- a NaN or Inf in the actual output is a mismatch, unless the case declares non-finite values
  expected (``allow_nonfinite``), and then only where the expected value is the same NaN or infinity;
- an expected value that is non-finite, or finite but beyond the range of the compared dtype (it
  would overflow there), makes the comparison *invalid*: the case cannot be judged in that dtype,
  which is never a pass. With ``allow_nonfinite`` an expected NaN or infinity is a valid expectation.

The tolerance ratio of an element is ``|actual - expected| / (atol + rtol * |expected|)``: at most 1
passes; its maximum over the array says how close the comparison came to failing.

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
    tolerance_ratio: float
    mismatched: int
    total: int
    nonfinite_actual: int
    invalid_expected: int
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
        if self.invalid_expected:
            return (
                f"{label}: invalid: {self.invalid_expected} expected values are non-finite or beyond the compared dtype's "
                "range, so this output cannot be judged in that dtype"
            )
        if self.passed:
            return f"{label}: ok (max abs {self.max_abs_error:.3g}, {self.tolerance_ratio:.2g} of tolerance, max ulp {self.max_ulp:.0f})"
        return (
            f"{label}: {self.mismatched} / {self.total} elements mismatch ({self.mismatch_percent:.1f}%), "
            f"{self.nonfinite_actual} non-finite; furthest beyond tolerance at {self.worst_index}: "
            f"{self.worst_actual!r} vs expected {self.worst_expected!r}; "
            f"max abs error {self.max_abs_error:.3g} ({self.tolerance_ratio:.3g}x tolerance), max rel error {self.max_rel_error:.3g} "
            f"(rtol {self.rtol:g}, atol {self.atol:g})"
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


def compare(actual: Any, expected: Any, tolerance: Tolerance, dtype: np.dtype | str, allow_nonfinite: bool = False) -> Comparison:
    """Compare ``actual`` (any dtype) with ``expected`` (float64 reference) in the compared ``dtype``."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return Comparison(
            passed=False, shape_actual=actual.shape, shape_expected=expected.shape,
            max_abs_error=float("inf"), max_rel_error=float("inf"), max_ulp=float("inf"), tolerance_ratio=float("inf"),
            mismatched=int(expected.size), total=int(expected.size), nonfinite_actual=0, invalid_expected=0,
            worst_index=None, worst_actual=None, worst_expected=None, rtol=tolerance.rtol, atol=tolerance.atol,
        )
    actual64 = actual.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = expected.astype(np.dtype(dtype)).astype(np.float64)
    overflows = np.isfinite(expected) & ~np.isfinite(rounded)
    invalid = overflows | (~np.isfinite(expected) & (not allow_nonfinite))
    finite_both = np.isfinite(actual64) & np.isfinite(expected)
    bound = tolerance.atol + tolerance.rtol * np.abs(np.where(np.isfinite(expected), expected, 0.0))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        error = np.where(finite_both, np.abs(actual64 - expected), 0.0)
        relative = np.where(finite_both, error / np.maximum(np.abs(expected), tolerance.rel_floor), 0.0)
        ratio = np.where(finite_both, error / bound, 0.0)
    close = finite_both & (error <= bound)
    same_nonfinite = (np.isnan(actual64) & np.isnan(expected)) | (
        np.isinf(actual64) & np.isinf(expected) & (np.sign(actual64) == np.sign(expected))
    )
    matches = close | (same_nonfinite & allow_nonfinite)
    with np.errstate(over="ignore", invalid="ignore"):
        ulps = np.where(finite_both, ulp_distance(actual64, expected, dtype), 0.0)
    mismatch = ~matches
    nonfinite_mismatch = mismatch & ~finite_both
    if nonfinite_mismatch.any():
        # A NaN or Inf where it is not expected: the error is not a number, and is reported as such.
        error = np.where(nonfinite_mismatch, np.where(np.isnan(actual64) | np.isnan(expected), np.nan, np.inf), error)
        relative = np.where(nonfinite_mismatch, error, relative)
        ratio = np.where(nonfinite_mismatch, error, ratio)
        ulps = np.where(nonfinite_mismatch, error, ulps)

    worst_index = worst_actual = worst_expected = None
    if error.size:
        # The worst element: a non-finite mismatch first, then the one furthest beyond its tolerance.
        key = np.where(np.isnan(ratio), np.inf, ratio)
        flat = int(np.argmax(key))
        worst = np.unravel_index(flat, error.shape)
        worst_index = tuple(int(i) for i in worst)
        worst_actual = float(actual64[worst])
        worst_expected = float(expected[worst])
    return Comparison(
        passed=bool(matches.all() and not invalid.any()),
        shape_actual=actual.shape,
        shape_expected=expected.shape,
        max_abs_error=_nan_max(error),
        max_rel_error=_nan_max(relative),
        max_ulp=_nan_max(ulps),
        tolerance_ratio=_nan_max(ratio),
        mismatched=int(mismatch.sum()),
        total=int(matches.size),
        nonfinite_actual=int((~np.isfinite(actual64)).sum()),
        invalid_expected=int(invalid.sum()),
        worst_index=worst_index,
        worst_actual=worst_actual,
        worst_expected=worst_expected,
        rtol=tolerance.rtol,
        atol=tolerance.atol,
    )


def compared_item(actual: Any, expected: Any, tolerance: Tolerance, dtype: np.dtype | str, label: str) -> dict[str, Any]:
    """``compare`` as a record item: the comparison's fields and its one-line message under ``label``."""
    comparison = compare(actual, expected, tolerance, dtype)
    return comparison.to_json() | {"message": comparison.message(label)}


def _nan_max(values: np.ndarray) -> float:
    """The largest value, NaN when any value is NaN (a NaN error is the worst there is); 0 when empty."""
    if values.size == 0:
        return 0.0
    if np.isnan(values).any():
        return float("nan")
    return float(values.max())


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
