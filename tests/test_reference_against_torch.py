"""The reference against implementations nobody here wrote: torch.nn.LSTM, and torch's own activations.

torch.nn.LSTM uses the same gate order (i, f, g, o) with weights stored transposed, and two biases;
Keras's kernel maps to weight_ih.T, recurrent_kernel to weight_hh.T, bias to bias_ih (bias_hh = 0).

Three checks, all in float64, over hypothesis-drawn shapes with batch, time, features and units
distinct, random non-symmetric weights and (where drawn) a random non-zero initial [h0, c0]:

1. A right-padded mask maps to a packed sequence, which torch.nn.LSTM runs itself: the valid steps
   must agree, and the final state is the state at each row's last valid step.
2. Any mask (left-padded, holes, first step masked, all-masked rows, ...), with go_backwards and
   zero_output_for_mask: torch.nn.LSTM has no mask, so the test runs it one step at a time and applies
   Keras's mask semantics between steps (the states are carried unchanged through a masked step; its
   output is the previous output, zeros before the first step, or zeros with zero_output_for_mask).
3. Other activations: torch.nn.LSTM is fixed to sigmoid and tanh, so a small loop of the LSTM equations
   written with torch ops and torch's own activation functions (torch.nn.functional) stands in for it;
   that loop is itself checked against torch.nn.LSTM with sigmoid and tanh.

TOLERANCE: both sides compute in float64 and differ only by rounding: summation order in the matmuls
(torch's BLAS against NumPy's) and different but exact formulas for sigmoid, softplus and the like.
- sigmoid and tanh (checks 1 and 2): |h| < 1 and |c| grows by less than 1 a step. Measured over
  3,000 draws of check 2: at most 8.9e-16 (4 ulps of 1). 1e-12, the agreement README.md states,
  leaves three orders of magnitude for another BLAS or CPU and is still 1e9 times smaller than what
  these tests look for (a wrong mask step or gate changes outputs by 1e-3 and more).
- other activations (check 3): unbounded, unsaturated or negative activations let the recurrence
  grow and amplify rounding at every step (some draws overflow). Measured as the difference relative
  to the largest |h| or |c| the run computes ("peak"): with sizes up to 11, 3e-13 even with the peak
  below 10; with sizes up to 6 and the peak at most 10 (86% of 160,000 draws), 99.99% of draws
  below 1e-14 and the worst 9.3e-14 (tanh_shrink with linear gates); with larger peaks, 2.6e-13.
  So check 3 draws sizes 1 to 6, discards draws whose peak exceeds PEAK_LIMIT = 10, and allows
  1e-12 * max(1, peak): ten times the worst of 160,000 draws, a hundred times the 99.99th percentile.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import reference

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOLERANCE = 1e-12  # see the module docstring: float64 on both sides, measured differences 8.9e-16 at most
PEAK_LIMIT = 10.0  # other activations: the largest |h| or |c| a compared run may reach (module docstring)

# Keras activation name -> torch's own implementation (torch.nn.functional / torch), same arguments as
# keras.activations.get(name) uses. Not here: sparse_sigmoid, sparse_plus, squareplus, sparsemax (torch
# has no function for them, writing the formula again would not be independent) and exponential (exp
# of exp grows past any fixed tolerance within a few steps; the reference is checked for it in
# tests/test_backend_run.py against Keras itself).
TORCH_ACTIVATIONS = {
    "linear": lambda v: v,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": F.hardsigmoid,  # relu6(x + 3) / 6, Keras 3's definition
    "log_sigmoid": F.logsigmoid,
    "relu": F.relu,
    "relu6": F.relu6,
    "leaky_relu": lambda v: F.leaky_relu(v, negative_slope=0.2),  # Keras's default slope is 0.2
    "elu": F.elu,
    "selu": F.selu,
    "celu": F.celu,
    "gelu": lambda v: F.gelu(v, approximate="none"),  # keras.activations.gelu: approximate=False
    # torch switches to the identity above `threshold` (default 20: an error of log1p(exp(-20)) = 2e-9);
    # at 40 that error is below 5e-18, while exp(40) is still far from overflowing.
    "softplus": lambda v: F.softplus(v, threshold=40.0),
    "softsign": F.softsign,
    "silu": F.silu,
    "swish": F.silu,
    "hard_silu": F.hardswish,
    "hard_swish": F.hardswish,
    "mish": F.mish,
    "soft_shrink": lambda v: F.softshrink(v, 0.5),
    "hard_shrink": lambda v: F.hardshrink(v, 0.5),
    "hard_tanh": F.hardtanh,
    "tanh_shrink": F.tanhshrink,
    "softmax": lambda v: torch.softmax(v, dim=-1),  # on each gate's (batch, units) block, as Keras
    "log_softmax": lambda v: torch.log_softmax(v, dim=-1),
}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These are thousands of tiny float64 matmuls: with more than one thread, MKL's thread hand-off
    costs milliseconds per call (most of the runtime on a busy 2-core machine); one thread, restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


MASK_KINDS = ["none", "right_padded", "left_padded", "holes", "first_step_masked", "all_masked_row", "mixed"]
ROW_PATTERNS = ["valid", "right_padded", "left_padded", "holes", "first_step_masked", "all_masked"]


def _row_mask(pattern: str, time: int, rng: np.random.Generator) -> np.ndarray:
    """One row of a mask: True = the step is read."""
    steps = np.arange(time)
    if pattern == "valid":
        return np.ones(time, dtype=bool)
    if pattern == "all_masked":
        return np.zeros(time, dtype=bool)
    if pattern in ("right_padded", "left_padded"):
        length = int(rng.integers(1, time)) if time > 1 else 1
        return steps < length if pattern == "right_padded" else steps >= time - length
    if pattern == "holes":
        # Valid at both ends, at least one masked step between them (when there is room for one).
        row = rng.random(time) > 0.4
        row[0] = row[-1] = True
        if time >= 3:
            row[int(rng.integers(1, time - 1))] = False
        return row
    if pattern == "first_step_masked":
        row = rng.random(time) > 0.3
        row[0] = False
        if time >= 2:
            row[int(rng.integers(1, time))] = True  # something is read after the masked start
        return row
    raise ValueError(pattern)


def make_test_mask(kind: str, batch: int, time: int, rng: np.random.Generator) -> np.ndarray | None:
    """A (batch, time) mask (True = read the step), None for "none". A kind named after a row pattern
    gives row 0 fully valid and that pattern on every other row; "mixed" draws a pattern per row;
    "all_masked_row" draws valid or padded rows and masks the last row entirely."""
    if kind == "none":
        return None
    if kind == "mixed":
        patterns = [ROW_PATTERNS[int(i)] for i in rng.integers(0, len(ROW_PATTERNS), size=batch)]
    elif kind == "all_masked_row":
        patterns = [ROW_PATTERNS[int(i)] for i in rng.integers(0, 4, size=batch)]
        patterns[-1] = "all_masked"
    else:
        patterns = ["valid"] + [kind] * (batch - 1) if batch > 1 else [kind]
    return np.stack([_row_mask(pattern, time, rng) for pattern in patterns])


def torch_lstm_module(features: int, kernel, recurrent, bias):
    units = recurrent.shape[0]
    module = torch.nn.LSTM(features, units, batch_first=True, bias=True).double()
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(recurrent.T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(bias if bias is not None else np.zeros(4 * units)))
        module.bias_hh_l0.zero_()
    return module


def torch_lstm_packed(x, kernel, recurrent, bias, h0, c0, lengths):
    """torch.nn.LSTM over a packed (right-padded) sequence: torch handles the padding itself."""
    batch, time, features = x.shape
    module = torch_lstm_module(features, kernel, recurrent, bias)
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            torch.from_numpy(x), torch.tensor(lengths), batch_first=True, enforce_sorted=False
        )
        state = (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None])
        output, (h, c) = module(packed, state)
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=time)
    return output.numpy(), h[0].numpy(), c[0].numpy()


def module_step(module):
    """One LSTM step by torch.nn.LSTM itself (a sequence of length 1)."""

    def step(x_t, h, c):
        _, (h_new, c_new) = module(x_t[:, None, :], (h[None], c[None]))
        return h_new[0], c_new[0]

    return step


def equations_step(kernel, recurrent, bias, activation: str, recurrent_activation: str):
    """One LSTM step written with torch ops: z = x W + h U + b, gates i, f, g, o (Keras order)."""
    units = recurrent.shape[0]
    w = torch.from_numpy(kernel)
    u = torch.from_numpy(recurrent)
    b = torch.from_numpy(bias if bias is not None else np.zeros(4 * units))
    act = TORCH_ACTIVATIONS[activation]
    gate_act = TORCH_ACTIVATIONS[recurrent_activation]

    def step(x_t, h, c):
        z = torch.addmm(b, x_t, w) + torch.mm(h, u)
        i, f, g, o = torch.split(z, units, dim=1)
        c_new = gate_act(f) * c + gate_act(i) * act(g)
        h_new = gate_act(o) * act(c_new)
        return h_new, c_new

    return step


def run_with_keras_mask(step, x, h0, c0, mask, go_backwards: bool, zero_output_for_mask: bool, peak: list | None = None):
    """Run ``step`` over time the way keras.layers.LSTM applies a mask; outputs in processing order.

    ``peak``, when given, receives the largest |h| or |c| computed at any step (masked or not)."""
    batch, time, _ = x.shape
    x_t = torch.from_numpy(x)
    h = torch.from_numpy(h0)
    c = torch.from_numpy(c0)
    previous_output = torch.zeros_like(h)
    outputs = []
    largest = max(float(h.abs().max()), float(c.abs().max())) if h.numel() else 0.0
    with torch.no_grad():
        for t in (reversed(range(time)) if go_backwards else range(time)):
            h_new, c_new = step(x_t[:, t, :], h, c)
            largest = max(largest, float(h_new.abs().max()), float(c_new.abs().max()))
            if mask is None:
                h, c, output = h_new, c_new, h_new
            else:
                read = torch.from_numpy(mask[:, t : t + 1])
                h = torch.where(read, h_new, h)
                c = torch.where(read, c_new, c)
                output = torch.where(read, h_new, torch.zeros_like(h_new) if zero_output_for_mask else previous_output)
            outputs.append(output)
            previous_output = output
    if peak is not None:
        peak.append(largest)
    return torch.stack(outputs, dim=1).numpy(), previous_output.numpy(), h.numpy(), c.numpy()


@st.composite
def shapes(draw, largest: int = 11):
    """batch, time, features, units: four distinct sizes (time can be 1, the degenerate sequence)."""
    batch, time, features, units = draw(st.lists(st.integers(1, largest), min_size=4, max_size=4, unique=True))
    return batch, time, features, units


def make_weights(rng: np.random.Generator, features: int, units: int, use_bias: bool):
    kernel = rng.normal(size=(features, 4 * units)) / np.sqrt(features)
    recurrent = rng.normal(size=(units, 4 * units)) / np.sqrt(units)
    bias = rng.normal(size=(4 * units,)) * 0.5 if use_bias else None
    return kernel, recurrent, bias


def make_state(rng: np.random.Generator, batch: int, units: int, nonzero: bool):
    if not nonzero:
        return np.zeros((batch, units)), np.zeros((batch, units))
    return rng.normal(size=(batch, units)) * 0.5, rng.normal(size=(batch, units))


def assert_same_run(reference_result, torch_result, label: str, tolerance: float = TOLERANCE) -> None:
    names = ("sequence output", "last output", "h", "c")
    for name, ours, theirs in zip(names, reference_result, torch_result):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=tolerance, err_msg=f"{label}: {name}")


def run_reference(x, kernel, recurrent, bias, h0, c0, mask, go_backwards, zero_output_for_mask,
                  activation="tanh", recurrent_activation="sigmoid", initial_state_given=True):
    common = dict(
        mask=mask, initial_state=[h0, c0] if initial_state_given else None, go_backwards=go_backwards,
        zero_output_for_mask=zero_output_for_mask, activation=activation,
        recurrent_activation=recurrent_activation, return_state=True,
    )
    sequence, h, c = reference.lstm(x, kernel, recurrent, bias, return_sequences=True, **common)
    last = reference.lstm(x, kernel, recurrent, bias, return_sequences=False, **common)[0]
    return sequence, last, h, c


@settings(max_examples=150, deadline=None)
@given(shapes(), st.integers(0, 2**32 - 1), st.booleans(), st.booleans(), st.booleans())
def test_reference_matches_torch_lstm_on_packed_sequences(sizes, seed, use_bias, masked, go_backwards):
    batch, time, features, units = sizes
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, time, features))
    kernel, recurrent, bias = make_weights(rng, features, units, use_bias)
    h0, c0 = make_state(rng, batch, units, nonzero=True)
    lengths = rng.integers(1, time + 1, size=batch) if masked else np.full(batch, time)
    mask = np.arange(time)[None, :] < lengths[:, None]
    if go_backwards:
        # Keras reads each row from its last step to its first, the mask reversed with it, so a
        # right-padded row becomes left-padded. torch gets each row's valid steps reversed and
        # right-padded; its valid outputs are the reference's last `length` outputs.
        x_torch = np.zeros_like(x)
        for row, length in enumerate(lengths):
            x_torch[row, :length] = x[row, :length][::-1]
    else:
        x_torch = x.copy()
    expected_output, expected_h, expected_c = torch_lstm_packed(x_torch, kernel, recurrent, bias, h0, c0, lengths)
    output, h, c = reference.lstm(
        x, kernel, recurrent, bias, mask=mask if masked else None, initial_state=[h0, c0],
        go_backwards=go_backwards, return_sequences=True, return_state=True,
    )
    for row, length in enumerate(lengths):
        steps = slice(time - length, time) if go_backwards else slice(0, length)
        np.testing.assert_allclose(output[row, steps], expected_output[row, :length], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(h, expected_h, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(c, expected_c, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("initial_state", ["none", "random"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("mask_kind", MASK_KINDS)
@settings(max_examples=30, deadline=None)
@given(sizes=shapes(), seed=st.integers(0, 2**32 - 1), use_bias=st.booleans(), zero_output_for_mask=st.booleans())
def test_reference_matches_torch_lstm_stepped_with_keras_masks(
    mask_kind, go_backwards, initial_state, sizes, seed, use_bias, zero_output_for_mask
):
    batch, time, features, units = sizes
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, time, features))
    kernel, recurrent, bias = make_weights(rng, features, units, use_bias)
    h0, c0 = make_state(rng, batch, units, nonzero=initial_state == "random")
    mask = make_test_mask(mask_kind, batch, time, rng)
    module = torch_lstm_module(features, kernel, recurrent, bias)
    expected = run_with_keras_mask(module_step(module), x, h0, c0, mask, go_backwards, zero_output_for_mask)
    actual = run_reference(
        x, kernel, recurrent, bias, h0, c0, mask, go_backwards, zero_output_for_mask,
        initial_state_given=initial_state == "random",
    )
    assert_same_run(actual, expected, f"mask {mask_kind}\n{mask}")


@settings(max_examples=500, deadline=None)
@given(
    sizes=shapes(largest=6),  # longer sequences amplify rounding beyond the tolerance: module docstring
    seed=st.integers(0, 2**32 - 1),
    activation=st.sampled_from(sorted(TORCH_ACTIVATIONS)),
    recurrent_activation=st.sampled_from(sorted(TORCH_ACTIVATIONS)),
    mask_kind=st.sampled_from(MASK_KINDS),
    go_backwards=st.booleans(),
    nonzero_state=st.booleans(),
    use_bias=st.booleans(),
    zero_output_for_mask=st.booleans(),
)
def test_reference_matches_torch_equations_for_other_activations(
    sizes, seed, activation, recurrent_activation, mask_kind, go_backwards, nonzero_state, use_bias, zero_output_for_mask
):
    batch, time, features, units = sizes
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, time, features))
    kernel, recurrent, bias = make_weights(rng, features, units, use_bias)
    h0, c0 = make_state(rng, batch, units, nonzero=nonzero_state)
    mask = make_test_mask(mask_kind, batch, time, rng)
    step = equations_step(kernel, recurrent, bias, activation, recurrent_activation)
    peak: list[float] = []
    with np.errstate(over="ignore", invalid="ignore"):
        expected = run_with_keras_mask(step, x, h0, c0, mask, go_backwards, zero_output_for_mask, peak)
        actual = run_reference(
            x, kernel, recurrent, bias, h0, c0, mask, go_backwards, zero_output_for_mask, activation, recurrent_activation
        )
    # Unbounded (or negative) gate and cell activations can make the recurrence grow and amplify
    # rounding step after step, up to overflow, where equal infinities on both sides prove nothing.
    # Draws whose |h| or |c| exceed PEAK_LIMIT at some step are discarded (about 14% of them); see
    # the module docstring.
    assume(peak[0] <= PEAK_LIMIT and all(np.isfinite(v).all() for v in expected))
    tolerance = TOLERANCE * max(1.0, peak[0])
    label = f"activation {activation}, recurrent_activation {recurrent_activation}, mask {mask_kind}, peak {peak[0]:.3g}"
    assert_same_run(actual, expected, label, tolerance)


@settings(max_examples=50, deadline=None)
@given(sizes=shapes(), seed=st.integers(0, 2**32 - 1), use_bias=st.booleans())
def test_torch_equations_match_torch_lstm(sizes, seed, use_bias):
    # The stand-in for other activations is itself right: with sigmoid and tanh it is torch.nn.LSTM.
    batch, time, features, units = sizes
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, time, features))
    kernel, recurrent, bias = make_weights(rng, features, units, use_bias)
    h0, c0 = make_state(rng, batch, units, nonzero=True)
    module = torch_lstm_module(features, kernel, recurrent, bias)
    with torch.no_grad():
        expected, (h, c) = module(torch.from_numpy(x), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    step = equations_step(kernel, recurrent, bias, "tanh", "sigmoid")
    sequence, _, h_eq, c_eq = run_with_keras_mask(step, x, h0, c0, None, False, False)
    np.testing.assert_allclose(sequence, expected.numpy(), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(h_eq, h[0].numpy(), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(c_eq, c[0].numpy(), rtol=0, atol=TOLERANCE)


def test_torch_activations_are_keras_activations_by_name():
    # Every name the torch stand-in maps is one the reference accepts, so a renamed or dropped
    # activation cannot silently leave the cross-check.
    # Also directly, over a range wider than the LSTM draws reach (|z| up to 30: softplus's threshold,
    # exp's growth) in steps of 0.25, so the kinks at 0, +-0.5, +-1, +-3 and +-6 are hit exactly.
    assert set(TORCH_ACTIVATIONS) <= set(reference.ACTIVATIONS)
    values = torch.linspace(-30.0, 30.0, 241, dtype=torch.float64).reshape(1, 241)
    for name, function in TORCH_ACTIVATIONS.items():
        np.testing.assert_allclose(
            reference.get_activation(name)(values.numpy()), function(values).numpy(), rtol=0, atol=TOLERANCE, err_msg=name
        )


def test_test_masks_contain_what_they_are_named_for():
    # The mask builder of these tests makes the situations the tests claim to cover.
    rng = np.random.default_rng(0)
    batch, time = 5, 8
    left = make_test_mask("left_padded", batch, time, rng)
    assert left[0].all() and (~left[1:, 0]).all() and left[:, -1].all()
    holes = make_test_mask("holes", batch, time, rng)
    assert holes[:, 0].all() and holes[:, -1].all() and (~holes[1:, 1:-1]).any(axis=1).all()
    first = make_test_mask("first_step_masked", batch, time, rng)
    assert (~first[1:, 0]).all() and first[1:, 1:].any(axis=1).all()
    all_masked = make_test_mask("all_masked_row", batch, time, rng)
    assert not all_masked[-1].any()
    right = make_test_mask("right_padded", batch, time, rng)
    assert right[:, 0].all() and (~right[1:, -1]).all()
    assert make_test_mask("none", batch, time, rng) is None
