"""The reference LSTM with explicit dropout masks: masks of ones are the plain LSTM, one shared input mask is
the plain LSTM on the masked sequence, per-gate masks act on their gate only (checked one scalar at a time),
and the seeded inverted-dropout masks hold 0 or 1 / (1 - rate)."""

import math

import numpy as np
import pytest

from reference.lstm import lstm
from reference.lstm_dropout import inverted_dropout_mask, lstm_with_dropout

BATCH, TIME, FEATURES, UNITS = 3, 5, 4, 6


def _weights(rng):
    return (rng.normal(0, 0.5, (FEATURES, 4 * UNITS)), rng.normal(0, 0.4, (UNITS, 4 * UNITS)), rng.normal(0, 0.5, 4 * UNITS))


@pytest.mark.parametrize("go_backwards", [False, True])
def test_masks_of_ones_are_the_plain_lstm(go_backwards):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(BATCH, TIME, FEATURES))
    kernel, recurrent, bias = _weights(rng)
    state = [rng.normal(size=(BATCH, UNITS)), rng.normal(size=(BATCH, UNITS))]
    ones_x, ones_h = [np.ones((BATCH, FEATURES))] * 4, [np.ones((BATCH, UNITS))] * 4
    got = lstm_with_dropout(x, kernel, recurrent, bias, input_masks=ones_x, recurrent_masks=ones_h, initial_state=state,
                            go_backwards=go_backwards, return_sequences=True, return_state=True)
    want = lstm(x, kernel, recurrent, bias, initial_state=state, go_backwards=go_backwards, return_sequences=True, return_state=True)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)


def test_one_input_mask_is_the_plain_lstm_on_the_masked_sequence():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(BATCH, TIME, FEATURES))
    kernel, recurrent, bias = _weights(rng)
    mask = inverted_dropout_mask(rng, (BATCH, FEATURES), 0.3, "float64")
    got = lstm_with_dropout(x, kernel, recurrent, bias, input_masks=mask, return_sequences=True)
    want = lstm(x * mask[:, None, :], kernel, recurrent, bias, return_sequences=True)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)
    # And the mask matters: without it the output differs by far more than rounding.
    assert np.max(np.abs(got - lstm(x, kernel, recurrent, bias, return_sequences=True))) > 1e-2


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def test_per_gate_masks_one_scalar_at_a_time():
    """Two steps of implementation 1 written out scalar by scalar: gate k sees x * m_k and h * r_k only."""
    rng = np.random.default_rng(5)
    time = 2
    x = rng.normal(size=(BATCH, time, FEATURES))
    kernel, recurrent, bias = _weights(rng)
    x_masks = [inverted_dropout_mask(rng, (BATCH, FEATURES), 0.3, "float64") for _ in range(4)]
    h_masks = [inverted_dropout_mask(rng, (BATCH, UNITS), 0.2, "float64") for _ in range(4)]
    assert not all(np.array_equal(x_masks[0], m) for m in x_masks[1:])
    got = lstm_with_dropout(x, kernel, recurrent, bias, input_masks=x_masks, recurrent_masks=h_masks, return_sequences=True)
    for b in range(BATCH):
        h, c = [0.0] * UNITS, [0.0] * UNITS
        for t in range(time):
            h_new, c_new = [0.0] * UNITS, [0.0] * UNITS
            for j in range(UNITS):
                z = []
                for gate in range(4):
                    column = gate * UNITS + j
                    total = bias[column]
                    total += sum(x[b, t, k] * x_masks[gate][b, k] * kernel[k, column] for k in range(FEATURES))
                    total += sum(h[u] * h_masks[gate][b, u] * recurrent[u, column] for u in range(UNITS))
                    z.append(total)
                c_new[j] = _sigmoid(z[1]) * c[j] + _sigmoid(z[0]) * math.tanh(z[2])
                h_new[j] = _sigmoid(z[3]) * math.tanh(c_new[j])
            h, c = h_new, c_new
            np.testing.assert_allclose(got[b, t], h, rtol=0, atol=1e-14)


def test_inverted_dropout_mask_values_and_rate():
    rng = np.random.default_rng(6)
    mask = inverted_dropout_mask(rng, (400, 50), 0.3)
    assert mask.dtype == np.float32
    assert set(np.unique(mask).tolist()) == {0.0, float(np.float32(1) / np.float32(0.7))}
    # 20000 draws: the zero fraction's standard deviation is sqrt(0.3 * 0.7 / 20000) = 0.0032; 5 of them.
    assert abs(float(np.mean(mask == 0)) - 0.3) < 5 * math.sqrt(0.3 * 0.7 / mask.size)


def test_bad_masks_are_one_line_errors():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(BATCH, TIME, FEATURES))
    kernel, recurrent, bias = _weights(rng)
    with pytest.raises(ValueError, match=r"input_masks\[0\] has shape \(3, 6\); expected \(3, 4\)"):
        lstm_with_dropout(x, kernel, recurrent, bias, input_masks=np.ones((BATCH, UNITS)))
    with pytest.raises(ValueError, match="4 of them"):
        lstm_with_dropout(x, kernel, recurrent, bias, recurrent_masks=[np.ones((BATCH, UNITS))] * 3)
    with pytest.raises(ValueError, match="NaN or Inf"):
        lstm_with_dropout(x, kernel, recurrent, bias, input_masks=np.full((BATCH, FEATURES), np.nan))
    with pytest.raises(ValueError, match="rate"):
        inverted_dropout_mask(rng, (2, 3), 0.0)
