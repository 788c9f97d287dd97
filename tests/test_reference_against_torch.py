"""The reference against an implementation nobody here wrote: torch.nn.LSTM in float64.

torch.nn.LSTM uses the same gate order (i, f, g, o) with weights stored transposed, and two biases;
Keras's kernel maps to weight_ih.T, recurrent_kernel to weight_hh.T, bias to bias_ih (bias_hh = 0).
A right-padded mask maps to a packed sequence: the valid steps must agree, and the final state is the
state at each row's last valid step. go_backwards maps to torch reading each row's valid steps reversed.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference

torch = pytest.importorskip("torch")

TOLERANCE = 1e-12  # both sides compute in float64; the issue asks for agreement within 1e-12


def torch_lstm(x, kernel, recurrent, bias, h0, c0, lengths):
    batch, time, features = x.shape
    units = recurrent.shape[0]
    module = torch.nn.LSTM(features, units, batch_first=True, bias=True).double()
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(recurrent.T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(bias if bias is not None else np.zeros(4 * units)))
        module.bias_hh_l0.zero_()
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            torch.from_numpy(x), torch.tensor(lengths), batch_first=True, enforce_sorted=False
        )
        state = (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None])
        output, (h, c) = module(packed, state)
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=time)
    return output.numpy(), h[0].numpy(), c[0].numpy()


@st.composite
def problems(draw):
    batch = draw(st.integers(1, 5))
    time = draw(st.integers(1, 12))
    features = draw(st.integers(1, 6))
    units = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**32 - 1))
    use_bias = draw(st.booleans())
    masked = draw(st.booleans())
    go_backwards = draw(st.booleans())
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, time + 1, size=batch) if masked else np.full(batch, time)
    return {
        "x": rng.normal(size=(batch, time, features)),
        "kernel": rng.normal(size=(features, 4 * units)) / np.sqrt(features),
        "recurrent": rng.normal(size=(units, 4 * units)) / np.sqrt(units),
        "bias": rng.normal(size=(4 * units,)) if use_bias else None,
        "h0": rng.normal(size=(batch, units)) * 0.5,
        "c0": rng.normal(size=(batch, units)),
        "lengths": lengths,
        "masked": masked,
        "go_backwards": go_backwards,
    }


@settings(max_examples=150, deadline=None)
@given(problems())
def test_reference_matches_torch_lstm(problem):
    x, lengths = problem["x"], problem["lengths"]
    batch, time, _ = x.shape
    mask = np.arange(time)[None, :] < lengths[:, None]
    if problem["go_backwards"]:
        # Keras reads each row from its last step to its first, the mask reversed with it, so a
        # right-padded row becomes left-padded. torch gets each row's valid steps reversed and
        # right-padded; its valid outputs are the reference's last `length` outputs.
        x_torch = np.zeros_like(x)
        for row, length in enumerate(lengths):
            x_torch[row, :length] = x[row, :length][::-1]
    else:
        x_torch = x.copy()
    expected_output, expected_h, expected_c = torch_lstm(
        x_torch, problem["kernel"], problem["recurrent"], problem["bias"], problem["h0"], problem["c0"], lengths
    )
    output, h, c = reference.lstm(
        x, problem["kernel"], problem["recurrent"], problem["bias"],
        mask=mask if problem["masked"] else None, initial_state=[problem["h0"], problem["c0"]],
        go_backwards=problem["go_backwards"], return_sequences=True, return_state=True,
    )
    for row, length in enumerate(lengths):
        steps = slice(time - length, time) if problem["go_backwards"] else slice(0, length)
        np.testing.assert_allclose(output[row, steps], expected_output[row, :length], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(h, expected_h, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(c, expected_c, rtol=0, atol=TOLERANCE)
