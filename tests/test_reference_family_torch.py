"""The reference GRU and SimpleRNN against implementations nobody here wrote: torch.nn.GRU and torch.nn.RNN in
float64, forward and (through torch autograd) backward.

torch.nn.GRU is Keras's reset_after=True formulation (n = tanh(W_in x + b_in + r * (W_hn h + b_hn))) with the
gate blocks in the order r, z, n where Keras has z, r, h, weights stored transposed and two biases:
weight_ih = kernel[:, (r, z, h)].T, weight_hh = recurrent_kernel[:, (r, z, h)].T, bias_ih = bias[0][(r, z, h)],
bias_hh = bias[1][(r, z, h)]. Keras's reset_after=False (the reset gate applied to h *before* the recurrent
matmul, one bias) has no torch counterpart: it is checked against Keras (test_reference_family_keras.py), the
golden values and finite differences only. torch.nn.RNN with tanh is SimpleRNN (weight_ih = kernel.T,
weight_hh = recurrent_kernel.T, bias_ih = bias, bias_hh = 0). go_backwards is torch run on the time-reversed
sequence (Keras returns the outputs in processing order, so no flip back). torch has no sequence mask: masks
are covered by the other test files.

TOLERANCE: float64 on both sides, only summation order and the sigmoid's formula differ. Measured over 400
extra draws (sizes up to 6 x 14 x 7 x 8, both kinds, go_backwards): forward 9.4e-16, gradients 1.1e-14
(relative to max(1, peak)). 1e-12 leaves ~90x headroom; the injected bug (z and r swapped in the weights handed
to torch) moved the GRU outputs by 0.056 at least (median 0.88) over the same draws.
"""

import numpy as np
import pytest

import reference

torch = pytest.importorskip("torch")

TOLERANCE = 1e-12
SIZES = [(3, 5, 4, 2), (4, 7, 3, 5), (2, 9, 6, 3)]  # batch != time != features != units


def scaled(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b))) / max(1.0, float(np.max(np.abs(b))))


def torch_order(units: int) -> np.ndarray:
    """Keras column blocks (z, r, h) -> torch's (r, z, n)."""
    return np.r_[units : 2 * units, 0:units, 2 * units : 3 * units]


def run_torch(kind: str, x, kernel, recurrent, bias, h0, go_backwards: bool, g, gh, swap_zr: bool = False):
    """torch's outputs (processing order), final h and the gradients of sum(out * g) + sum(h * gh)."""
    batch, time, features = x.shape
    units = recurrent.shape[0]
    if kind == "gru":
        module = torch.nn.GRU(features, units, batch_first=True, dtype=torch.float64)
        order = torch_order(units)
        if swap_zr:
            order = np.r_[0 : 2 * units, 2 * units : 3 * units]
        weights = [kernel[:, order].T, recurrent[:, order].T, bias[0][order], bias[1][order]]
    else:
        module = torch.nn.RNN(features, units, nonlinearity="tanh", batch_first=True, dtype=torch.float64)
        weights = [kernel.T, recurrent.T, bias, np.zeros(units)]
    with torch.no_grad():
        for parameter, value in zip([module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0], weights):
            parameter.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    xt = torch.tensor(x[:, ::-1].copy() if go_backwards else x, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)
    out, h = module(xt, h0t)
    loss = (out * torch.from_numpy(g)).sum() + (h[0] * torch.from_numpy(gh)).sum()
    loss.backward()
    d_x = xt.grad.numpy()
    d_x = d_x[:, ::-1] if go_backwards else d_x
    grads = {"x": d_x, "h0": h0t.grad.numpy()[0]}
    w_ih, w_hh, b_ih, b_hh = (p.grad.numpy() for p in (module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0))
    if kind == "gru":
        back = np.argsort(torch_order(units))  # torch blocks -> Keras blocks
        grads.update(kernel=w_ih.T[:, back], recurrent_kernel=w_hh.T[:, back], bias=np.stack([b_ih[back], b_hh[back]]))
    else:
        grads.update(kernel=w_ih.T, recurrent_kernel=w_hh.T, bias=b_ih)
    return out.detach().numpy(), h.detach().numpy()[0], grads


def draw(kind: str, size, rng):
    batch, time, features, units = size
    gates = 3 if kind == "gru" else 1
    x = rng.normal(size=(batch, time, features))
    kernel = rng.normal(size=(features, gates * units)) / np.sqrt(features)
    recurrent = rng.normal(size=(units, gates * units)) / np.sqrt(units)
    bias = rng.normal(size=(2, 3 * units) if kind == "gru" else (units,)) * 0.5
    h0 = rng.normal(size=(batch, units)) * 0.5
    return x, kernel, recurrent, bias, h0


@pytest.mark.parametrize("kind", ["gru", "simple_rnn"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_forward_and_gradients_match_torch(kind, size, go_backwards):
    rng = np.random.default_rng(sum(size) + 100 * go_backwards + (kind == "gru"))
    x, kernel, recurrent, bias, h0 = draw(kind, size, rng)
    batch, time, _, units = size
    g, gh = rng.normal(size=(batch, time, units)), rng.normal(size=(batch, units))
    out_t, h_t, grads_t = run_torch(kind, x, kernel, recurrent, bias, h0, go_backwards, g, gh)
    forward = reference.gru if kind == "gru" else reference.simple_rnn
    backward = reference.gru_backward if kind == "gru" else reference.simple_rnn_backward
    common = dict(initial_state=[h0], go_backwards=go_backwards, return_sequences=True)
    out, h = forward(x, kernel, recurrent, bias, return_state=True, **common)
    assert scaled(out, out_t) <= TOLERANCE and scaled(h, h_t) <= TOLERANCE
    grads = backward(x, kernel, recurrent, bias, grad_outputs=g, grad_h=gh, **common)
    for name, expected in grads_t.items():
        assert scaled(grads[name], expected) <= TOLERANCE, f"{name}: {scaled(grads[name], expected):.3g}"


def test_the_comparison_catches_swapped_gates():
    rng = np.random.default_rng(9)
    x, kernel, recurrent, bias, h0 = draw("gru", SIZES[1], rng)
    batch, time, _, units = SIZES[1]
    g, gh = rng.normal(size=(batch, time, units)), rng.normal(size=(batch, units))
    # z and r handed to torch in Keras's order instead of torch's: what a reference with z and r swapped computes
    out_wrong, _, _ = run_torch("gru", x, kernel, recurrent, bias, h0, False, g, gh, swap_zr=True)
    out = reference.gru(x, kernel, recurrent, bias, initial_state=[h0], return_sequences=True)
    assert scaled(out, out_wrong) > 1e-2
