"""The reference LSTM: a value derived by hand, invariants, and clear errors on bad input."""

import math

import numpy as np
import pytest

import reference


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_one_step_by_hand():
    # batch 1, time 1, features 2, units 1: z = x @ W + h0 @ U + b, gates in the order i, f, g, o.
    x = np.array([[[0.5, -1.0]]])
    kernel = np.array([[0.1, 0.2, 0.3, 0.4], [-0.5, 0.6, -0.7, 0.8]])
    recurrent = np.array([[0.9, -1.1, 1.2, -1.3]])
    bias = np.array([0.01, 1.0, -0.02, 0.03])
    h0, c0 = 0.25, -0.75
    z = [0.5 * kernel[0, k] - 1.0 * kernel[1, k] + h0 * recurrent[0, k] + bias[k] for k in range(4)]
    i, f, g, o = _sigmoid(z[0]), _sigmoid(z[1]), math.tanh(z[2]), _sigmoid(z[3])
    c = f * c0 + i * g
    h = o * math.tanh(c)
    output, h_out, c_out = reference.lstm(
        x, kernel, recurrent, bias, initial_state=[np.array([[h0]]), np.array([[c0]])], return_state=True
    )
    assert output[0, 0] == pytest.approx(h, abs=1e-15)
    assert h_out[0, 0] == pytest.approx(h, abs=1e-15)
    assert c_out[0, 0] == pytest.approx(c, abs=1e-15)


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
