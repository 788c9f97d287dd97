"""A fault computes the bug it names, on every kernel path it patches (the session's backend).

output_reads_previous_cell_state (h_t = o_t * tanh(c_{t-1})) is checked against a NumPy LSTM with exactly that
bug, and against the correct reference LSTM (which it must not match): a patch that does nothing, or that
computes another bug, fails here before the fault study could count it as detected. Unmasked runs take the
generic loop on TensorFlow and JAX and PyTorch's fused _fallback_lstm; a right-padded mask takes the generic loop
on PyTorch too.
"""

from __future__ import annotations

import numpy as np
import pytest

from reference.lstm import lstm as reference_lstm

pytestmark = pytest.mark.backend

BATCH, TIME, FEATURES, UNITS = 2, 6, 5, 3


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _stale_cell_lstm(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray,
                     lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The last valid step's h and c of an LSTM whose output reads the previous cell state."""
    hs, cs = [], []
    for row, length in enumerate(lengths):
        h = np.zeros(UNITS)
        c = np.zeros(UNITS)
        for t in range(length):
            z = x[row, t] @ kernel + h @ recurrent + bias
            i, f, g, o = (z[n * UNITS:(n + 1) * UNITS] for n in range(4))
            new_c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            c = new_c
        hs.append(h)
        cs.append(c)
    return np.array(hs), np.array(cs)


@pytest.mark.parametrize("masked", [False, True])
def test_output_reads_previous_cell_state_computes_that_bug(session_backend, masked):
    import keras

    from harness.execute import faults

    rng = np.random.default_rng(15)
    x = rng.standard_normal((BATCH, TIME, FEATURES)).astype("float32")
    kernel = rng.normal(scale=0.6, size=(FEATURES, 4 * UNITS)).astype("float32")
    recurrent = rng.normal(scale=0.6, size=(UNITS, 4 * UNITS)).astype("float32")
    bias = rng.normal(scale=0.4, size=(4 * UNITS,)).astype("float32")
    lengths = [TIME, TIME - 2] if masked else [TIME, TIME]
    mask = np.array([[t < length for t in range(TIME)] for length in lengths])

    layer = keras.layers.LSTM(UNITS, return_state=True)
    layer.build((BATCH, TIME, FEATURES))
    layer.set_weights([kernel, recurrent, bias])
    with faults.injected("output_reads_previous_cell_state") as injection:
        _, h, c = layer(x, mask=mask if masked else None)
    assert injection.total_calls > 0, injection.calls
    h, c = keras.ops.convert_to_numpy(h), keras.ops.convert_to_numpy(c)

    wrong_h, wrong_c = _stale_cell_lstm(x.astype(np.float64), kernel.astype(np.float64), recurrent.astype(np.float64),
                                        bias.astype(np.float64), lengths)
    np.testing.assert_allclose(h, wrong_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c, wrong_c, rtol=1e-5, atol=1e-5)
    _, right_h, right_c = reference_lstm(x, kernel, recurrent, bias, mask=mask if masked else None, return_state=True)
    assert np.max(np.abs(h - right_h)) > 1e-2 and np.max(np.abs(c - right_c)) > 1e-3  # the bug is not the LSTM
