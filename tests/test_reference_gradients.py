"""Gradients of the reference (reference.lstm_backward, reference.dense_backward, activation
derivatives) against central finite differences in float64, against torch autograd on torch.nn.LSTM,
and, on JAX, the activation derivatives against jax.grad of keras.activations at their kinks.

TOLERANCE (finite differences): central differences with step H = 1e-6 on a scalar loss
L = sum(outputs * G) + sum(h * Gh) + sum(c * Gc) with random G. Truncation error is ~H^2 |L'''|
(~1e-12) and rounding error ~eps |L| / H (~1e-10 for |L| ~ 1). The check allows
|diff| <= FD_ATOL * max(1, peak) + FD_RTOL * |analytic|, peak the largest |gradient| of that array
(rounding scales with the loss: unbounded activations reach gradients of 1e12 in rare draws).
Measured over 250 extra draws of the same space: the worst (|diff| - FD_RTOL |g|) / max(1, peak) is
1.0e-9, so FD_ATOL = 1e-7 leaves 100x headroom; dropping one term of the backward pass
(test_dropping_a_term_is_caught) moves the gradients by 0.1 to 1, six orders above the tolerance.

TORCH_TOLERANCE: float64 on both sides, only summation order differs; measured over 400 draws
(sizes up to 5, with/without bias and state, go_backwards, return_sequences): 2.7e-15 at worst.
1e-12 leaves ~400x headroom.
"""

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from reference.activations import ACTIVATIONS, get_activation, get_activation_derivative
from reference.dense_backward import dense_backward
from reference.lstm_backward import lstm_backward, lstm_forward_with_cache

# The module, not the function reference/__init__.py exports under the same name.
lstm_backward_module = importlib.import_module("reference.lstm_backward")

H = 1e-6
FD_ATOL = 1e-7
FD_RTOL = 1e-6

SMOOTH = ["tanh", "sigmoid", "softplus", "gelu", "silu", "mish", "elu", "softsign", "squareplus", "softmax",
          "log_softmax", "linear", "tanh_shrink", "log_sigmoid", "sparse_plus"]
KINKED = ["relu", "hard_sigmoid", "leaky_relu", "hard_tanh", "sparsemax", "relu6", "hard_silu"]
MASK_KINDS = ["none", "right_padded", "left_padded", "holes", "all_masked_row"]


def make_mask(kind: str, batch: int, time: int, rng: np.random.Generator) -> np.ndarray | None:
    if kind == "none":
        return None
    steps = np.arange(time)
    rows = [np.ones(time, dtype=bool)]
    for _ in range(batch - 1):
        length = int(rng.integers(1, time)) if time > 1 else 1
        if kind == "right_padded":
            rows.append(steps < length)
        elif kind == "left_padded":
            rows.append(steps >= time - length)
        elif kind == "holes":
            row = rng.random(time) > 0.4
            row[0] = row[-1] = True
            if time >= 3:
                row[int(rng.integers(1, time - 1))] = False
            rows.append(row)
        else:  # all_masked_row: padded rows and the last row fully masked
            rows.append(steps < length)
    mask = np.stack(rows)
    if kind == "all_masked_row":
        mask[-1] = False
    return mask


def numeric_gradient(loss, array: np.ndarray) -> np.ndarray:
    gradient = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + H
        up = loss()
        array[index] = original - H
        down = loss()
        array[index] = original
        gradient[index] = (up - down) / (2 * H)
    return gradient


def lstm_problem(seed, batch, time, features, units, use_bias, nonzero_state):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, time, features))
    kernel = rng.normal(size=(features, 4 * units)) / np.sqrt(features)
    recurrent = rng.normal(size=(units, 4 * units)) / np.sqrt(units)
    bias = rng.normal(size=(4 * units,)) * 0.5 if use_bias else None
    state = [rng.normal(size=(batch, units)) * 0.5, rng.normal(size=(batch, units))] if nonzero_state else None
    return rng, x, kernel, recurrent, bias, state


def lstm_fd_errors(x, kernel, recurrent, bias, state, options, rng):
    """(worst |numeric - analytic| - FD_RTOL |analytic|, worst |numeric - analytic|, analytic grads)."""
    batch, _, _ = x.shape
    units = recurrent.shape[0]
    output, _, _ = reference.lstm(x, kernel, recurrent, bias, initial_state=state, return_state=True, **options)
    g_out, g_h, g_c = rng.normal(size=output.shape), rng.normal(size=(batch, units)), rng.normal(size=(batch, units))
    h0, c0 = (state if state is not None else [np.zeros((batch, units)), np.zeros((batch, units))])
    h0, c0 = np.array(h0), np.array(c0)

    def loss():
        out, h, c = reference.lstm(x, kernel, recurrent, bias, initial_state=[h0, c0] if state is not None else None,
                                   return_state=True, **options)
        return np.sum(out * g_out) + np.sum(h * g_h) + np.sum(c * g_c)

    analytic = lstm_backward(x, kernel, recurrent, bias, initial_state=state, return_state=True, grad_outputs=g_out,
                             grad_h=g_h, grad_c=g_c, **options)
    arrays = {"x": x, "kernel": kernel, "recurrent_kernel": recurrent, "bias": bias}
    if state is not None:
        arrays.update(h0=h0, c0=c0)
    excess, worst = -np.inf, 0.0
    for name, array in arrays.items():
        if array is None:
            assert analytic[name] is None
            continue
        difference = np.abs(numeric_gradient(loss, array) - analytic[name])
        worst = max(worst, float(difference.max()))
        # Rounding in the differences scales with the loss: atol grows with the largest gradient
        # (recurrences with unbounded activations reach gradients of 1e12 in a few draws).
        scale = max(1.0, float(np.max(np.abs(analytic[name]))))
        excess = max(excess, float(np.max(difference - FD_RTOL * np.abs(analytic[name]))) / scale)
    return excess, worst, analytic


@st.composite
def sizes(draw):
    """batch, time, features, units: distinct, small enough for a full finite-difference sweep."""
    return tuple(draw(st.lists(st.integers(1, 5), min_size=4, max_size=4, unique=True)))


# derandomize: the kinked activations have a (tiny) chance of a difference step straddling a kink;
# a fixed set of examples keeps the file deterministic.
@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    size=sizes(), seed=st.integers(0, 2**32 - 1), use_bias=st.booleans(), nonzero_state=st.booleans(),
    mask_kind=st.sampled_from(MASK_KINDS), go_backwards=st.booleans(), return_sequences=st.booleans(),
    zero_output_for_mask=st.booleans(), activation=st.sampled_from(SMOOTH + KINKED),
    recurrent_activation=st.sampled_from(["sigmoid", "hard_sigmoid", "tanh", "softmax", "silu"]),
)
def test_lstm_backward_matches_finite_differences(size, seed, use_bias, nonzero_state, mask_kind, go_backwards,
                                                 return_sequences, zero_output_for_mask, activation, recurrent_activation):
    batch, time, features, units = size
    rng, x, kernel, recurrent, bias, state = lstm_problem(seed, batch, time, features, units, use_bias, nonzero_state)
    options = dict(mask=make_mask(mask_kind, batch, time, rng), go_backwards=go_backwards,
                   return_sequences=return_sequences, zero_output_for_mask=zero_output_for_mask,
                   activation=activation, recurrent_activation=recurrent_activation)
    excess, worst, _ = lstm_fd_errors(x, kernel, recurrent, bias, state, options, rng)
    assert excess <= FD_ATOL, f"worst difference {worst:.3g} ({options})"


@pytest.mark.parametrize("mask_kind", MASK_KINDS)
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_every_mask_kind_with_go_backwards_and_state(mask_kind, zero_output_for_mask):
    # The combinations the random draws may visit rarely, each explicitly: batch 4, time 5, features 3, units 2.
    rng, x, kernel, recurrent, bias, state = lstm_problem(5, 4, 5, 3, 2, True, True)
    for go_backwards in (False, True):
        for return_sequences in (False, True):
            options = dict(mask=make_mask(mask_kind, 4, 5, rng), go_backwards=go_backwards,
                           return_sequences=return_sequences, zero_output_for_mask=zero_output_for_mask)
            excess, worst, _ = lstm_fd_errors(x, kernel, recurrent, bias, state, options, rng)
            assert excess <= FD_ATOL, f"worst difference {worst:.3g} ({options})"


def test_dropping_a_term_is_caught(monkeypatch):
    # Drop the gradient carried back in time through the recurrent kernel (truncated BPTT, a classic bug):
    # the same check must fail, by far.
    rng, x, kernel, recurrent, bias, state = lstm_problem(9, 3, 4, 2, 5, True, True)
    options = dict(mask=make_mask("holes", 3, 4, rng), return_sequences=True)
    excess, worst, _ = lstm_fd_errors(x, kernel, recurrent, bias, state, options, np.random.default_rng(1))
    assert excess <= FD_ATOL
    monkeypatch.setattr(lstm_backward_module, "_through_recurrent_kernel", lambda dz, u: np.zeros((dz.shape[0], u.shape[0])))
    excess_bug, worst_bug, _ = lstm_fd_errors(x, kernel, recurrent, bias, state, options, np.random.default_rng(1))
    print(f"injected bug: worst difference {worst_bug:.3g}, scaled excess {excess_bug:.3g} (clean {worst:.3g})")
    assert excess_bug > 1e4 * FD_ATOL, f"the dropped term changed the gradients by only {worst_bug:.3g}"


def test_forward_with_cache_is_the_reference_forward():
    rng, x, kernel, recurrent, bias, state = lstm_problem(4, 3, 6, 4, 5, True, True)
    mask = make_mask("holes", 3, 6, rng)
    for go_backwards in (False, True):
        for zero in (False, True):
            common = dict(mask=mask, initial_state=state, go_backwards=go_backwards, zero_output_for_mask=zero)
            outputs, h, c, steps = lstm_forward_with_cache(x, kernel, recurrent, bias, **common)
            expected = reference.lstm(x, kernel, recurrent, bias, return_sequences=True, return_state=True,
                                      loop="readable", **common)
            for ours, theirs in zip((outputs, h, c), expected):
                np.testing.assert_array_equal(ours, theirs)
            assert [step.t for step in steps] == (list(range(5, -1, -1)) if go_backwards else list(range(6)))


def test_unsupported_semantics_and_bad_shapes_raise():
    _, x, kernel, recurrent, bias, _ = lstm_problem(0, 2, 3, 4, 5, True, False)
    grad = np.zeros((2, 5))
    with pytest.raises(ValueError, match="initial_output"):
        lstm_backward(x, kernel, recurrent, bias, initial_output="h0", grad_outputs=grad)
    with pytest.raises(ValueError, match="zero_output_mask_order"):
        lstm_backward(x, kernel, recurrent, bias, zero_output_mask_order="input", grad_outputs=grad)
    with pytest.raises(ValueError, match="grad_outputs has shape"):
        lstm_backward(x, kernel, recurrent, bias, return_sequences=True, grad_outputs=grad)
    with pytest.raises(ValueError, match="grad_h has shape"):
        lstm_backward(x, kernel, recurrent, bias, grad_outputs=grad, grad_h=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="recurrent_kernel has shape"):
        lstm_backward(x, kernel, recurrent[:, :-1], bias, grad_outputs=grad)


@pytest.mark.parametrize("activation", [None, "tanh", "relu", "softmax", "gelu", "sparsemax"])
@pytest.mark.parametrize("use_bias", [False, True])
def test_dense_backward_matches_finite_differences(activation, use_bias):
    rng = np.random.default_rng(2)
    x, kernel = rng.normal(size=(3, 2, 4)), rng.normal(size=(4, 5))
    bias = rng.normal(size=(5,)) if use_bias else None
    g = rng.normal(size=(3, 2, 5))

    def loss():
        return np.sum(reference.dense(x, kernel, bias, activation=activation) * g)

    grads = dense_backward(x, kernel, bias, activation=activation, grad_outputs=g)
    for name, array in (("x", x), ("kernel", kernel), ("bias", bias)):
        if array is None:
            assert grads[name] is None
            continue
        np.testing.assert_allclose(grads[name], numeric_gradient(loss, array), rtol=FD_RTOL, atol=FD_ATOL, err_msg=name)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivatives_match_finite_differences(name):
    # Away from the kinks (every kink is at 0, +-0.5, +-1, +-3 or 6: points at least 1e-3 away), on
    # values from -4 to 4 and an upstream gradient that is not all ones (softmax mixes the last axis).
    rng = np.random.default_rng(0)
    x = rng.uniform(-4.0, 4.0, size=(6, 7))
    kinks = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 6.0])
    x = np.where(np.min(np.abs(x[..., None] - kinks), axis=-1) < 1e-3, x + 1e-2, x)
    g = rng.normal(size=x.shape)
    function = get_activation(name)
    analytic = get_activation_derivative(name)(x, g)
    numeric = numeric_gradient(lambda: np.sum(function(x) * g), x)
    np.testing.assert_allclose(analytic, numeric, rtol=FD_RTOL, atol=FD_ATOL, err_msg=name)


def test_every_activation_has_a_derivative():
    assert set(ACTIVATIONS) == set(reference.activations.ACTIVATION_DERIVATIVES)
    assert get_activation_derivative(None)(np.ones(2), np.full(2, 3.0)).tolist() == [3.0, 3.0]
    with pytest.raises(ValueError, match="not accepted"):
        get_activation_derivative("glu")


@pytest.mark.backend
def test_activation_derivatives_at_kinks_match_keras_on_jax(session_backend):
    if session_backend != "jax":
        pytest.skip("the kink convention followed is JAX's (reference/activations.py lists where the others differ)")
    import jax
    import keras

    grid = np.concatenate([np.array([-6.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 6.0]), np.linspace(-5.1, 5.3, 15)])
    x = np.stack([grid, grid[::-1] * 0.7]).astype(np.float32)  # (2, 24); float32: JAX's default precision
    g = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
    for name in ACTIVATIONS:
        function = keras.activations.get(name)
        if name == "sparsemax" and not np.allclose(np.asarray(function(x)), get_activation(name)(x.astype(np.float64)), atol=1e-5):
            # Keras 3.15.1's sparsemax is not sparsemax (known divergence sparsemax_threshold_sums_cumulative_sums):
            # it must then be exactly the formula that claim names, and its derivative is not ours to compare.
            alternative = reference.activations.sparsemax_cumulative_threshold(x.astype(np.float64))
            np.testing.assert_allclose(np.asarray(function(x)), alternative, rtol=1e-5, atol=1e-5, err_msg=name)
            continue
        _, vjp = jax.vjp(function, jax.numpy.asarray(x))
        expected = np.asarray(vjp(jax.numpy.asarray(g))[0], np.float64)
        ours = get_activation_derivative(name)(x.astype(np.float64), g.astype(np.float64))
        # float32 on the JAX side: 1e-5 is ~100 float32 ulps of values of order 1; a kink convention differs by 0.2 and more.
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5, err_msg=name)


# --- against torch autograd --------------------------------------------------------------------------

TORCH_TOLERANCE = 1e-12  # module docstring: measured 2.7e-15


@settings(max_examples=40, deadline=None)
@given(size=sizes(), seed=st.integers(0, 2**32 - 1), use_bias=st.booleans(), nonzero_state=st.booleans(),
       go_backwards=st.booleans(), return_sequences=st.booleans())
def test_lstm_backward_matches_torch_autograd(size, seed, use_bias, nonzero_state, go_backwards, return_sequences):
    torch = pytest.importorskip("torch")
    batch, time, features, units = size
    rng, x, kernel, recurrent, bias, state = lstm_problem(seed, batch, time, features, units, use_bias, nonzero_state)
    options = dict(go_backwards=go_backwards, return_sequences=return_sequences)
    output, _, _ = reference.lstm(x, kernel, recurrent, bias, initial_state=state, return_state=True, **options)
    g_out, g_h, g_c = rng.normal(size=output.shape), rng.normal(size=(batch, units)), rng.normal(size=(batch, units))
    ours = lstm_backward(x, kernel, recurrent, bias, initial_state=state, grad_outputs=g_out, grad_h=g_h, grad_c=g_c, **options)

    module = torch.nn.LSTM(features, units, batch_first=True, bias=use_bias).double()
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(recurrent.T.copy()))
        if use_bias:
            module.bias_ih_l0.copy_(torch.from_numpy(bias))
            module.bias_hh_l0.zero_()
    h0 = state[0] if state is not None else np.zeros((batch, units))
    c0 = state[1] if state is not None else np.zeros((batch, units))
    x_t = torch.tensor(x[:, ::-1].copy() if go_backwards else x, requires_grad=True)  # Keras's processing order
    h0_t = torch.tensor(h0[None], requires_grad=True)
    c0_t = torch.tensor(c0[None], requires_grad=True)
    sequence, (h, c) = module(x_t, (h0_t, c0_t))
    result = sequence if return_sequences else sequence[:, -1]
    loss = (result * torch.from_numpy(g_out)).sum() + (h[0] * torch.from_numpy(g_h)).sum() + (c[0] * torch.from_numpy(g_c)).sum()
    loss.backward()
    grad_x = x_t.grad.numpy()
    theirs = {
        "x": grad_x[:, ::-1] if go_backwards else grad_x,
        "kernel": module.weight_ih_l0.grad.numpy().T,
        "recurrent_kernel": module.weight_hh_l0.grad.numpy().T,
        "bias": module.bias_ih_l0.grad.numpy() if use_bias else None,
        "h0": h0_t.grad.numpy()[0],
        "c0": c0_t.grad.numpy()[0],
    }
    for name, value in theirs.items():
        if value is None:
            assert ours[name] is None
            continue
        np.testing.assert_allclose(ours[name], value, rtol=0, atol=TORCH_TOLERANCE, err_msg=name)
