"""The reference LSTM: a value derived by hand, invariants, and clear errors on bad input."""

import math

import numpy as np
import pytest

import reference


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _lstm_by_scalars(x, kernel, recurrent, bias, h0, c0):
    """The LSTM equations one scalar at a time: no matmul, no slicing of the gate axis.

    Column ``gate * units + j`` of kernel, recurrent kernel and bias belongs to unit j of gate
    ``gate``, gates in the order input, forget, cell, output (the Keras layout)."""
    batch, time, features = len(x), len(x[0]), len(x[0][0])
    units = len(recurrent)
    outputs = [[[0.0] * units for _ in range(time)] for _ in range(batch)]
    h_final, c_final = [], []
    for b in range(batch):
        h = [float(v) for v in h0[b]]
        c = [float(v) for v in c0[b]]
        for t in range(time):
            h_new, c_new = [0.0] * units, [0.0] * units
            for j in range(units):
                z = [0.0, 0.0, 0.0, 0.0]
                for gate in range(4):
                    column = gate * units + j
                    total = float(bias[column])
                    for k in range(features):
                        total += float(x[b][t][k]) * float(kernel[k][column])
                    for u in range(units):
                        total += h[u] * float(recurrent[u][column])
                    z[gate] = total
                input_gate = _sigmoid(z[0])
                forget_gate = _sigmoid(z[1])
                candidate = math.tanh(z[2])
                output_gate = _sigmoid(z[3])
                c_new[j] = forget_gate * c[j] + input_gate * candidate
                h_new[j] = output_gate * math.tanh(c_new[j])
            h, c = h_new, c_new
            outputs[b][t] = list(h)
        h_final.append(h)
        c_final.append(c)
    return outputs, h_final, c_final


def test_steps_by_scalar_formulas():
    # batch 2, time 3, features 4, units 5: all distinct, so a transposed kernel, a swapped gate
    # block, a gate read from the wrong column or rows mixed up give a different number (or a shape error).
    rng = np.random.default_rng(11)
    batch, time, features, units = 2, 3, 4, 5
    x = rng.normal(size=(batch, time, features))
    kernel = rng.normal(size=(features, 4 * units)) / 2.0
    recurrent = rng.normal(size=(units, 4 * units)) / 2.0
    bias = rng.normal(size=(4 * units,))
    h0 = rng.normal(size=(batch, units)) * 0.5
    c0 = rng.normal(size=(batch, units))
    expected_outputs, expected_h, expected_c = _lstm_by_scalars(
        x.tolist(), kernel.tolist(), recurrent.tolist(), bias.tolist(), h0.tolist(), c0.tolist()
    )
    outputs, h, c = reference.lstm(
        x, kernel, recurrent, bias, initial_state=[h0, c0], return_sequences=True, return_state=True
    )
    # Both sides are float64 with values below 1; only the summation order differs (10 terms per
    # gate, 3 steps). Measured: at most 2.2e-16 (1 ulp of 1); 1e-14 leaves room for another BLAS
    # and is far below what a layout or gate-order bug changes (0.01 and more).
    np.testing.assert_allclose(outputs, np.array(expected_outputs), rtol=0, atol=1e-14)
    np.testing.assert_allclose(h, np.array(expected_h), rtol=0, atol=1e-14)
    np.testing.assert_allclose(c, np.array(expected_c), rtol=0, atol=1e-14)
    # The numbers are not degenerate: every unit and row differs, so a permutation cannot pass.
    assert len(np.unique(np.round(c, 6))) == batch * units


def _random_problem(rng, batch=3, time=7, features=4, units=5):
    return (
        rng.normal(size=(batch, time, features)),
        rng.normal(size=(features, 4 * units)) * 0.5,
        rng.normal(size=(units, 4 * units)) * 0.5,
        rng.normal(size=(4 * units,)) * 0.5,
    )


def test_go_backwards_equals_forward_on_reversed_input():
    rng = np.random.default_rng(1)
    x, kernel, recurrent, bias = _random_problem(rng)
    backwards = reference.lstm(x, kernel, recurrent, bias, go_backwards=True, return_sequences=True)
    forward_on_reversed = reference.lstm(x[:, ::-1], kernel, recurrent, bias, return_sequences=True)
    np.testing.assert_array_equal(backwards, forward_on_reversed)


def test_masked_steps_carry_state_and_repeat_output():
    rng = np.random.default_rng(2)
    x, kernel, recurrent, bias = _random_problem(rng)
    mask = np.ones((3, 7), dtype=bool)
    mask[1, 4:] = False
    outputs, h, c = reference.lstm(x, kernel, recurrent, bias, mask=mask, return_sequences=True, return_state=True)
    truncated, h_short, c_short = reference.lstm(x[1:2, :4], kernel, recurrent, bias, return_sequences=True, return_state=True)
    np.testing.assert_allclose(outputs[1, :4], truncated[0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(outputs[1, 4:], np.repeat(truncated[0, -1:], 3, axis=0), rtol=0, atol=1e-15)
    np.testing.assert_allclose(h[1], h_short[0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(c[1], c_short[0], rtol=0, atol=1e-15)
    zeroed = reference.lstm(x, kernel, recurrent, bias, mask=mask, return_sequences=True, zero_output_for_mask=True)
    assert np.all(zeroed[1, 4:] == 0.0)


def test_leading_masked_steps_output_zeros_even_with_initial_state():
    rng = np.random.default_rng(3)
    x, kernel, recurrent, bias = _random_problem(rng)
    mask = np.ones((3, 7), dtype=bool)
    mask[0, :2] = False
    state = [rng.normal(size=(3, 5)), rng.normal(size=(3, 5))]
    outputs = reference.lstm(x, kernel, recurrent, bias, mask=mask, initial_state=state, return_sequences=True)
    assert np.all(outputs[0, :2] == 0.0)


# Rows of the mask used by the alternative-semantics tests (batch 4, time 7): fully valid; the first
# two steps masked plus a hole; a hole after valid steps plus the last step masked; all masked. No row
# reads the same forwards and backwards, so input order and processing order differ with go_backwards.
_SEMANTICS_MASK = np.array(
    [
        [1, 1, 1, 1, 1, 1, 1],
        [0, 0, 1, 1, 0, 1, 1],
        [1, 1, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 0],
    ],
    dtype=bool,
)


def _semantics_problem(seed: int):
    rng = np.random.default_rng(seed)
    x, kernel, recurrent, bias = _random_problem(rng, batch=4, time=7, features=3, units=5)
    state = [rng.normal(size=(4, 5)) * 0.5, rng.normal(size=(4, 5))]
    return x, kernel, recurrent, bias, state


@pytest.mark.parametrize("go_backwards", [False, True])
def test_initial_output_h0_changes_only_the_leading_masked_outputs(go_backwards):
    x, kernel, recurrent, bias, state = _semantics_problem(6)
    mask = _SEMANTICS_MASK
    common = dict(mask=mask, initial_state=state, go_backwards=go_backwards, return_state=True)
    documented, h, c = reference.lstm(x, kernel, recurrent, bias, return_sequences=True, **common)
    alternative, h_alt, c_alt = reference.lstm(x, kernel, recurrent, bias, return_sequences=True, initial_output="h0", **common)
    # Leading masked steps, in processing order: before the first valid step that is processed.
    processed_mask = mask[:, ::-1] if go_backwards else mask
    leading = np.cumsum(processed_mask, axis=1) == 0
    # Forwards, row 1 starts with two masked steps; backwards, row 2 starts (from its end) with one.
    assert leading.sum(axis=1).tolist() == ([0, 0, 1, 7] if go_backwards else [0, 2, 0, 7])
    h0 = np.broadcast_to(state[0][:, None, :], documented.shape)
    np.testing.assert_array_equal(alternative[leading], h0[leading])
    assert np.all(documented[leading] == 0.0)
    np.testing.assert_array_equal(alternative[~leading], documented[~leading])
    np.testing.assert_array_equal(h_alt, h)
    np.testing.assert_array_equal(c_alt, c)
    # The last output is the last processed one: h0 for the all-masked row, unchanged elsewhere.
    last_documented = reference.lstm(x, kernel, recurrent, bias, **common)[0]
    last_alternative = reference.lstm(x, kernel, recurrent, bias, initial_output="h0", **common)[0]
    np.testing.assert_array_equal(last_alternative, alternative[:, -1])
    np.testing.assert_array_equal(last_alternative[3], state[0][3])
    np.testing.assert_array_equal(last_alternative[:3], last_documented[:3])


def test_zero_output_mask_order_input_zeroes_by_the_unreversed_mask():
    x, kernel, recurrent, bias, state = _semantics_problem(7)
    mask = _SEMANTICS_MASK
    common = dict(mask=mask, initial_state=state, go_backwards=True, return_state=True)
    # Without zero_output_for_mask a masked step repeats the previous output (zeros before the first
    # valid step): that is the output before zeroing, in processing order.
    repeated, h, c = reference.lstm(x, kernel, recurrent, bias, return_sequences=True, **common)
    alternative, h_alt, c_alt = reference.lstm(
        x, kernel, recurrent, bias, return_sequences=True, zero_output_for_mask=True, zero_output_mask_order="input", **common
    )
    documented = reference.lstm(x, kernel, recurrent, bias, return_sequences=True, zero_output_for_mask=True, **common)[0]
    # Input order: position p of the output is zeroed when mask[:, p] is False although that output
    # belongs to input step time - 1 - p. Processing order (documented): zeroed by mask[:, ::-1].
    np.testing.assert_array_equal(alternative, np.where(mask[:, :, None], repeated, 0.0))
    np.testing.assert_array_equal(documented, np.where(mask[:, ::-1, None], repeated, 0.0))
    assert not np.array_equal(alternative, documented)
    np.testing.assert_array_equal(h_alt, h)
    np.testing.assert_array_equal(c_alt, c)
    # The last output (return_sequences=False) is not affected by the order.
    last_alternative = reference.lstm(x, kernel, recurrent, bias, zero_output_for_mask=True, zero_output_mask_order="input", **common)
    last_documented = reference.lstm(x, kernel, recurrent, bias, zero_output_for_mask=True, **common)
    for alternative_array, documented_array in zip(last_alternative, last_documented):
        np.testing.assert_array_equal(alternative_array, documented_array)


@pytest.mark.parametrize("return_sequences", [True, False])
def test_zero_output_mask_order_input_is_the_default_when_reading_forwards(return_sequences):
    x, kernel, recurrent, bias, state = _semantics_problem(8)
    common = dict(
        mask=_SEMANTICS_MASK, initial_state=state, return_sequences=return_sequences, zero_output_for_mask=True, return_state=True
    )
    alternative = reference.lstm(x, kernel, recurrent, bias, zero_output_mask_order="input", **common)
    documented = reference.lstm(x, kernel, recurrent, bias, **common)
    for alternative_array, documented_array in zip(alternative, documented):
        np.testing.assert_array_equal(alternative_array, documented_array)


def test_computes_in_requested_dtype():
    rng = np.random.default_rng(4)
    x, kernel, recurrent, bias = _random_problem(rng)
    assert reference.lstm(x, kernel, recurrent, bias).dtype == np.float64
    assert reference.lstm(x, kernel, recurrent, bias, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda a: a.update(x=a["x"][0]), "x has shape"),
        (lambda a: a.update(kernel=a["kernel"][:, :-1]), "kernel has shape"),
        (lambda a: a.update(recurrent_kernel=a["recurrent_kernel"][:-1]), "recurrent_kernel has shape"),
        (lambda a: a.update(bias=a["bias"][:-1]), "bias has shape"),
        (lambda a: a.update(mask=np.ones((3, 6), dtype=bool)), "mask has shape"),
        (lambda a: a.update(mask=np.ones((3, 7))), "mask must be a bool array"),
        (lambda a: a.update(initial_state=[np.zeros((3, 5))]), "initial_state must be [h0, c0]"),
        (lambda a: a.update(initial_state=[np.zeros((3, 4)), np.zeros((3, 5))]), "initial_state[0] (h0) has shape"),
        (lambda a: a.update(activation="not_an_activation"), "unknown activation 'not_an_activation'; accepted:"),
        (lambda a: a.update(recurrent_activation="glu"), "activation 'glu' is not accepted"),
        (lambda a: a.update(initial_output="h_0"), "initial_output is 'h_0'; accepted: zeros, h0"),
        (lambda a: a.update(initial_output=None), "initial_output is None; accepted: zeros, h0"),
        (lambda a: a.update(zero_output_mask_order="reversed"), "zero_output_mask_order is 'reversed'; accepted: processing, input"),
    ],
)
def test_bad_input_gives_one_line_error(change, fragment):
    rng = np.random.default_rng(5)
    x, kernel, recurrent, bias = _random_problem(rng)
    arguments = {"x": x, "kernel": kernel, "recurrent_kernel": recurrent, "bias": bias}
    change(arguments)
    with pytest.raises(ValueError) as raised:
        reference.lstm(**arguments)
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)


def test_sparsemax_is_the_projection_onto_the_simplex():
    """The definition (Martins and Astudillo 2016), not Keras 3.15.1's formula (keras-team/keras#23425)."""
    from reference.activations import sparsemax, sparsemax_cumulative_threshold

    rng = np.random.default_rng(3)
    x = rng.normal(scale=0.3, size=(5, 7))
    out = sparsemax(x)
    assert np.all(out >= 0) and np.allclose(out.sum(axis=-1), 1.0, atol=1e-12)
    assert np.sum(out > 0) > x.shape[0]  # several values in some support: where the two formulas differ
    # the projection: no point of the simplex is closer to x (checked against random points of the simplex)
    others = rng.dirichlet(np.ones(7), size=(200, 5))
    assert np.all(np.sum((out - x) ** 2, axis=-1) <= np.min(np.sum((others - x) ** 2, axis=-1), axis=0) + 1e-12)
    example = np.array([[0.0, 0.5, 1.0]])
    assert np.allclose(sparsemax(example), [[0.0, 0.25, 0.75]])
    assert np.allclose(sparsemax_cumulative_threshold(example), [[0.0, 0.0, 0.25]])  # what Keras 3.15.1 returns
