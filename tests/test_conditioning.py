"""The ill-conditioning rule (harness.truth.conditioning), without Keras: the condition estimate on functions whose
conditioning is known, on a real case's reference gradients (well conditioned, and nearly cancelling), and the
classification of synthetic disagreements: rounding that the condition explains vs a wrong gradient."""

from dataclasses import replace

import numpy as np
import pytest

from harness.case.schema import builtin_cases, select_cases
from harness.case.tolerances import load_tolerances
from harness.case.weights import make_case_data
from harness.truth.compare import compare
from harness.truth.conditioning import (
    EXPLAIN_FACTOR, EXPLAINED_MEASURED, SHRINK, UNIT_ROUNDOFF, classify, classify_key, gradient_condition, relative_condition, relative_error,
)
from harness.truth.expected_gradients import expected_gradients


def test_relative_error_is_normwise_and_never_explains_a_nan():
    assert relative_error([1.0, -2.0], [1.0, -2.0]) == 0.0
    assert relative_error([1.0, -2.5], [1.0, -2.0]) == pytest.approx(0.25)
    assert np.isnan(relative_error([np.nan, 1.0], [1.0, 1.0]))
    assert np.isnan(relative_error([np.inf], [1.0]))
    assert np.isnan(relative_error([1.0, 2.0], [1.0]))  # a shape mismatch is not a rounding error
    assert relative_error([0.0], [0.0]) == 0.0 and relative_error([1e-30], [0.0]) == np.inf


def test_condition_of_a_difference_that_nearly_cancels_is_large_and_of_a_sum_is_one():
    a = np.linspace(1.0, 2.0, 9)
    b = a - 1e-4 * np.linspace(1.0, 3.0, 9)

    def gradient_of(params):
        x, y = params
        return {"difference": x - y, "sum": x + y}

    kappa = relative_condition(gradient_of, [a, b])
    # |d(a - b)| <= eps (|a| + |b|): kappa up to (|a| + |b|) / |a - b|, about 4 / 3e-4 at the largest element.
    assert 1e3 < kappa["difference"] <= float(np.max(np.abs(a) + np.abs(b)) / np.max(np.abs(a - b))) * 1.001
    assert kappa["sum"] <= 1.0 + 1e-6
    # Deterministic: the same directions every time.
    assert relative_condition(gradient_of, [a, b]) == kappa


def _case_and_data(name="lstm_last_step", seed=5):
    case = select_cases(builtin_cases(), name)[0]
    return case, make_case_data(case, seed)


def test_reference_gradients_of_a_case_are_well_conditioned_until_the_outputs_nearly_equal_the_targets():
    case, data = _case_and_data()
    _, _, outputs, targets = expected_gradients(case, data, seed=5)
    well = gradient_condition(case, data, targets)
    assert set(well) >= {"grad/lstm_0/kernel", "grad/lstm_0/recurrent_kernel", "grad/input/x", "loss"}
    assert max(well.values()) < 100, well
    # Targets 1e-6 from the outputs: dL/dy = 2 (y - t) / n loses six digits to cancellation, and so does every gradient.
    rng = np.random.default_rng(0)
    near = {name: value + 1e-6 * rng.normal(size=value.shape) for name, value in outputs.items()}
    ill = gradient_condition(case, data, near)
    assert min(ill[key] for key in ill if key.startswith("grad/")) > 1e4, ill


@pytest.mark.parametrize(
    "error32, error64, kappa, verdict",
    [
        (1e-4, 1e-13, 1e4, "ill_conditioned"),     # a float32 error that kappa * u explains, gone in float64
        (1e-5, 5e-8, 200.0, "ill_conditioned"),    # float64 with float32 islands: still 200x smaller
        (1e-4, 1e-4, 1e4, "bug"),                  # the same error in float64: not rounding (a scaled gradient)
        (1e-4, 1e-5, 1e4, "bug"),                  # shrinks, but by less than SHRINK
        (0.3, 0.3, 10.0, "bug"),                   # a term of the backward pass dropped
        (1e-3, 1e-14, 10.0, "bug"),                # float64 agrees, but kappa does not explain the float32 error
        (float("nan"), 0.0, 1.0, "bug"),           # NaN never passes
        (1e-6, float("nan"), 1.0, "bug"),
        (1e-6, 1e-15, float("nan"), "bug"),        # nor does a condition that could not be estimated
    ],
)
def test_classify_key(error32, error64, kappa, verdict):
    judgement = classify_key("grad/lstm_0/kernel", error32, error64, kappa)
    assert judgement.verdict == verdict, judgement
    assert judgement.key in judgement.line() and verdict in judgement.line()


def test_the_factor_and_the_shrink_are_the_boundaries():
    u32 = UNIT_ROUNDOFF["float32"]
    error = EXPLAIN_FACTOR * 10 * u32
    at = classify_key("k", error, error / SHRINK, 10.0)
    assert at.verdict == "ill_conditioned" and at.explained32 == pytest.approx(EXPLAIN_FACTOR) and at.shrink == pytest.approx(SHRINK)
    assert classify_key("k", error * 1.01, 0.0, 10.0).verdict == "bug"
    assert classify_key("k", error, error / SHRINK * 1.01, 10.0).verdict == "bug"
    # kappa below 1 is floored at 1: rounding the result alone costs u.
    assert classify_key("k", 2 * u32, 0.0, 0.0).verdict == "ill_conditioned"
    assert EXPLAIN_FACTOR >= 10 * EXPLAINED_MEASURED  # the stated headroom


def test_a_known_claim_about_the_backends_float64_never_counts_as_float64_agreeing():
    """A float64 recomputation whose error does not shrink is a bug, even where a known divergence says the backend's
    float64 is not float64 end to end (the claim bounds forward outputs, not this gradient): it is only recorded."""
    claimed = classify_key("k", 1e-6, 1e-7, 50.0, float64_claim="jax_float64_tanh_in_float32")
    assert claimed.verdict == "bug" and claimed.float64_claim == "jax_float64_tanh_in_float32"
    assert "never counts as float64 agreeing" in claimed.line() and claimed.to_json()["float64_claim"] == claimed.float64_claim
    assert classify_key("k", 1e-6, 1e-6 / SHRINK, 50.0, float64_claim="x").verdict == "ill_conditioned"  # the shrink alone decides
    assert classify_key("k", 1e-6, 1e-7, 50.0).verdict == "bug"


def test_classify_needs_every_failing_gradient_explained():
    ill = classify_key("a", 1e-4, 1e-13, 1e4)
    bug = classify_key("b", 0.3, 0.3, 10.0)
    assert classify([ill]) == "ill_conditioned"
    assert classify([ill, bug]) == "bug"
    assert classify([]) == "bug"  # a failure without a gradient beyond tolerance is not conditioning


def _rounded_run(case, data, targets, u, seed):
    """A backward-error model of a computation in a precision with unit roundoff ``u``: the float64 reference gradient
    at inputs, weights and states each perturbed by a relative ``u`` (random signs)."""
    rng = np.random.default_rng(seed)

    def nudge(array):
        return np.asarray(array, np.float64) * (1.0 + u * rng.choice((-1.0, 1.0), size=np.shape(array)))

    moved = replace(data, x=nudge(data.x), layer_weights=tuple(tuple(tuple(nudge(w) for w in group) for group in layer)
                                                                for layer in data.layer_weights))
    return expected_gradients(case, moved, targets=targets)[1]


def test_rule_on_a_real_case_cancelling_elements_are_ill_conditioned_a_wrong_gradient_is_a_bug():
    """Targets of scale 1000 make the gradients of order 10 to 100: their small elements are sums of
    large terms that cancel (a loss of significance), and float32 rounding alone takes them beyond the tolerance."""
    case, data = _case_and_data()
    _, _, outputs, _ = expected_gradients(case, data, seed=5)
    rng = np.random.default_rng(1)
    targets = {name: 1000.0 * rng.normal(size=value.shape) for name, value in outputs.items()}
    expected = expected_gradients(case, data, targets=targets)[1]
    kappa = gradient_condition(case, data, targets)
    tolerance = load_tolerances()["float32"]["gradients"]
    key = "grad/lstm_0/recurrent_kernel"

    as_float32 = _rounded_run(case, data, targets, UNIT_ROUNDOFF["float32"], 2)
    as_float64 = _rounded_run(case, data, targets, UNIT_ROUNDOFF["float64"], 3)
    # float32 rounding alone puts this gradient beyond the gradient tolerance: a disagreement to classify ...
    comparison = compare(as_float32[key], expected[key], tolerance, "float32")
    assert not comparison.passed and abs(comparison.worst_expected) < 0.1 * np.max(np.abs(expected[key])), comparison
    judgement = classify_key(key, relative_error(as_float32[key], expected[key]), relative_error(as_float64[key], expected[key]), kappa[key])
    # ... which the rule puts down to conditioning,
    assert judgement.verdict == "ill_conditioned", judgement.line()
    # and the float64 computation of the same model passes.
    assert compare(as_float64[key], expected[key], tolerance, "float32").passed

    # The same computation with a wrong gradient (scaled by 1 + 1e-4 in either precision) is a bug.
    wrong32, wrong64 = as_float32[key] * (1 + 1e-4), as_float64[key] * (1 + 1e-4)
    wrong = classify_key(key, relative_error(wrong32, expected[key]), relative_error(wrong64, expected[key]), kappa[key])
    assert wrong.verdict == "bug", wrong.line()
