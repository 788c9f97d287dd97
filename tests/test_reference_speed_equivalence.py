"""The fast reference loops (reference.lstm.fast_forward, reference.lstm_backward._fast_backward, the
defaults) against the readable ones (``loop="readable"``) at float64 rounding.

The fast forward differs from the readable one in one formulation, the logistic sigmoid (1 / (1 + exp(-x))
in place against reference.activations.sigmoid's two-branch form: at most 4 ulps apart); the fast backward
also takes sigmoid' and tanh' from the cached gates and sums dW, dU and db over all steps in one matmul
instead of step by step. Everything else is the same operation on the same operands.

TOLERANCE: max |fast - readable| <= TOLERANCE * max(1, max |readable|), per returned array (finite values;
inf and nan must be the same on both sides). Measured over 400 draws of the space of ``draw_problem`` and
``random_options`` (sizes up to 9 x 40 x 7 x 10, every mask kind, go_backwards, initial state or none,
zero_output_for_mask, the alternative semantics, the activation pairs of ACTIVATION_PAIRS, pre-activations
of unit variance; draws from np.random.default_rng(12345) with this file's helpers, each size drawn in
[1, 9] x [1, 40] x [1, 7] x [1, 10]): forward 3.2e-16 at worst, backward 1.7e-15 at worst. TOLERANCE =
1e-13 leaves about 60x headroom over the backward and 300x over the forward. Swapping two gates of the
fast path, or a sigmoid wrong by 1e-10 relative, moves the results by more than 1e-3 and 1e-11
respectively (test_the_comparison_catches_*): both rejected.
"""

import importlib

import numpy as np
import pytest

import reference
from reference.lstm_backward import lstm_backward

lstm_module = importlib.import_module("reference.lstm")
lstm_backward_module = importlib.import_module("reference.lstm_backward")

TOLERANCE = 1e-13
MASK_KINDS = ["none", "right_padded", "left_padded", "holes", "all_masked_row"]
ACTIVATION_PAIRS = [  # (activation, recurrent_activation): the defaults, kinked ones, last-axis ones, no derivative from the output
    ("tanh", "sigmoid"), ("relu", "hard_sigmoid"), ("softmax", "sigmoid"), ("tanh", "softmax"), ("gelu", "tanh"),
    ("softsign", "silu"), ("sparsemax", "tanh"),
]


def make_mask(kind: str, batch: int, time: int, rng: np.random.Generator) -> np.ndarray | None:
    if kind == "none":
        return None
    steps = np.arange(time)
    lengths = rng.integers(1, time + 1, size=batch)
    if kind == "right_padded":
        mask = steps[None, :] < lengths[:, None]
    elif kind == "left_padded":
        mask = steps[None, :] >= time - lengths[:, None]
    elif kind == "holes":
        mask = rng.random((batch, time)) > 0.4
    else:  # all_masked_row
        mask = steps[None, :] < lengths[:, None]
        mask[-1] = False
    return mask


def draw_problem(rng: np.random.Generator, batch: int, time: int, features: int, units: int) -> dict:
    """Weights scaled so that pre-activations have unit variance; non-symmetric, a fresh draw per array."""
    return {
        "x": rng.normal(size=(batch, time, features)),
        "kernel": rng.normal(size=(features, 4 * units)) / np.sqrt(features),
        "recurrent_kernel": rng.normal(size=(units, 4 * units)) / np.sqrt(units),
        "bias": rng.normal(size=(4 * units,)) * 0.5,
        "state": [rng.normal(size=(batch, units)) * 0.5, rng.normal(size=(batch, units))],
    }


def scaled_difference(fast: np.ndarray | None, readable: np.ndarray | None) -> float:
    """max |fast - readable| / max(1, max |readable|) over the finite values; inf when the shapes differ, only
    one is None, or the non-finite values (inf, nan) are not the same in both."""
    if fast is None or readable is None:
        return 0.0 if fast is None and readable is None else np.inf
    if fast.shape != readable.shape:
        return np.inf
    finite = np.isfinite(readable)
    if not np.array_equal(np.isfinite(fast), finite) or not np.array_equal(fast[~finite], readable[~finite], equal_nan=True):
        return np.inf
    difference = np.max(np.abs(fast - readable)[finite], initial=0.0)
    return float(difference / max(1.0, float(np.max(np.abs(readable[finite]), initial=0.0))))


def forward_difference(problem: dict, **options) -> float:
    """The worst scaled difference of [output, h, c] between the fast and the readable forward."""
    arrays = (problem["x"], problem["kernel"], problem["recurrent_kernel"], problem["bias"])
    fast = reference.lstm(*arrays, return_state=True, **options)
    readable = reference.lstm(*arrays, return_state=True, loop="readable", **options)
    return max(scaled_difference(a, b) for a, b in zip(fast, readable))


def backward_difference(problem: dict, rng: np.random.Generator, **options) -> float:
    """The worst scaled difference over every gradient between the fast and the readable backward."""
    arrays = (problem["x"], problem["kernel"], problem["recurrent_kernel"], problem["bias"])
    batch, time, _ = problem["x"].shape
    units = problem["recurrent_kernel"].shape[0]
    grads = dict(grad_outputs=rng.normal(size=(batch, time, units) if options.get("return_sequences") else (batch, units)),
                 grad_h=rng.normal(size=(batch, units)), grad_c=rng.normal(size=(batch, units)))
    fast = lstm_backward(*arrays, **grads, **options)
    readable = lstm_backward(*arrays, **grads, loop="readable", **options)
    assert fast.keys() == readable.keys()
    return max(scaled_difference(fast[name], readable[name]) for name in readable)


def random_options(rng: np.random.Generator, batch: int, time: int, with_alternatives: bool) -> dict:
    activation, recurrent_activation = ACTIVATION_PAIRS[int(rng.integers(len(ACTIVATION_PAIRS)))]
    options = dict(
        mask=make_mask(MASK_KINDS[int(rng.integers(len(MASK_KINDS)))], batch, time, rng),
        go_backwards=bool(rng.integers(2)), return_sequences=bool(rng.integers(2)),
        zero_output_for_mask=bool(rng.integers(2)), activation=activation, recurrent_activation=recurrent_activation,
    )
    if with_alternatives:
        options.update(initial_output=["zeros", "h0"][int(rng.integers(2))],
                       zero_output_mask_order=["processing", "input"][int(rng.integers(2))])
    return options


SIZES = [(5, 7, 3, 4), (3, 11, 6, 2), (9, 4, 1, 10), (2, 40, 7, 5)]  # batch != time != features != units


@pytest.mark.parametrize("size", SIZES)
def test_fast_forward_equals_readable_forward(size):
    rng = np.random.default_rng(sum(size))
    for _ in range(25):
        problem = draw_problem(rng, *size)
        options = random_options(rng, size[0], size[1], with_alternatives=True)
        options["initial_state"] = problem["state"] if rng.integers(2) else None
        difference = forward_difference(problem, **options)
        assert difference <= TOLERANCE, f"fast forward {difference:.3g} from the readable one ({options})"


@pytest.mark.parametrize("size", SIZES)
def test_fast_backward_equals_readable_backward(size):
    rng = np.random.default_rng(100 + sum(size))
    for _ in range(25):
        problem = draw_problem(rng, *size)
        options = random_options(rng, size[0], size[1], with_alternatives=False)
        options["initial_state"] = problem["state"] if rng.integers(2) else None
        difference = backward_difference(problem, rng, **options)
        assert difference <= TOLERANCE, f"fast backward {difference:.3g} from the readable one ({options})"


@pytest.mark.parametrize("mask_kind", MASK_KINDS)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_every_mask_kind_with_go_backwards_and_initial_state(mask_kind, go_backwards):
    rng = np.random.default_rng(7)
    problem = draw_problem(rng, 6, 9, 4, 5)
    for zero_output_for_mask in (False, True):
        options = dict(mask=make_mask(mask_kind, 6, 9, rng), go_backwards=go_backwards, return_sequences=True,
                       zero_output_for_mask=zero_output_for_mask, initial_state=problem["state"])
        assert forward_difference(problem, **options) <= TOLERANCE
        assert backward_difference(problem, rng, **options) <= TOLERANCE


def test_float32_fast_forward_keeps_the_dtype_and_the_readable_values():
    rng = np.random.default_rng(3)
    problem = draw_problem(rng, 4, 6, 3, 5)
    arrays = (problem["x"], problem["kernel"], problem["recurrent_kernel"], problem["bias"])
    fast = reference.lstm(*arrays, return_sequences=True, dtype=np.float32)
    readable = reference.lstm(*arrays, return_sequences=True, dtype=np.float32, loop="readable")
    assert fast.dtype == readable.dtype == np.float32
    # float32 rounding: the sigmoids differ by a few float32 ulps
    assert scaled_difference(fast.astype(np.float64), readable.astype(np.float64)) <= 1e-5


def test_the_backward_runs_the_forward_once(monkeypatch):
    rng = np.random.default_rng(11)
    problem = draw_problem(rng, 3, 5, 2, 4)
    calls = []
    original = lstm_backward_module.fast_forward

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(lstm_backward_module, "fast_forward", counted)
    monkeypatch.setattr(lstm_module, "fast_forward", counted)
    lstm_backward(problem["x"], problem["kernel"], problem["recurrent_kernel"], problem["bias"],
                  grad_outputs=rng.normal(size=(3, 4)))
    assert len(calls) == 1


def test_the_comparison_catches_swapped_gates():
    # The fast path with the input and forget gates swapped (their kernel columns exchanged on the fast side
    # only) must be far outside the tolerance, forward and backward.
    rng = np.random.default_rng(21)
    problem = draw_problem(rng, 5, 7, 3, 4)
    units = 4
    swapped = np.r_[units : 2 * units, 0:units, 2 * units : 4 * units]
    wrong = dict(problem, kernel=problem["kernel"][:, swapped], recurrent_kernel=problem["recurrent_kernel"][:, swapped],
                 bias=problem["bias"][swapped])
    arrays = (problem["x"], problem["kernel"], problem["recurrent_kernel"], problem["bias"])
    wrong_arrays = (wrong["x"], wrong["kernel"], wrong["recurrent_kernel"], wrong["bias"])
    readable = reference.lstm(*arrays, return_sequences=True, loop="readable")
    fast_wrong = reference.lstm(*wrong_arrays, return_sequences=True)
    assert scaled_difference(fast_wrong, readable) > 1e-3
    grad = rng.normal(size=readable.shape)
    gradients = lstm_backward(*arrays, return_sequences=True, grad_outputs=grad, loop="readable")
    gradients_wrong = lstm_backward(*wrong_arrays, return_sequences=True, grad_outputs=grad)
    assert scaled_difference(gradients_wrong["x"], gradients["x"]) > 1e-3


@pytest.mark.parametrize("part", ["forward", "backward"])
def test_the_comparison_catches_a_sigmoid_wrong_by_1e_10(monkeypatch, part):
    rng = np.random.default_rng(31)
    problem = draw_problem(rng, 5, 7, 3, 4)
    options = dict(return_sequences=True, initial_state=problem["state"])
    clean = forward_difference(problem, **options) if part == "forward" else backward_difference(problem, rng, **options)
    assert clean <= TOLERANCE
    original = lstm_module.sigmoid_in_place

    def slightly_wrong(a):
        original(a)
        a *= 1.0 + 1e-10

    monkeypatch.setattr(lstm_module, "sigmoid_in_place", slightly_wrong)
    wrong = forward_difference(problem, **options) if part == "forward" else backward_difference(problem, rng, **options)
    assert wrong > 10 * TOLERANCE, f"a sigmoid wrong by 1e-10 moved the results by only {wrong:.3g}"


@pytest.mark.skipif(np.finfo(np.longdouble).nmant <= 52, reason="needs an extended-precision long double")
def test_sigmoid_in_place_is_the_logistic_function_to_3_ulps():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-800.0, 800.0, 20001), rng.normal(scale=10.0, size=100000),
                        rng.uniform(-708.0, 708.0, size=100000)])
    wide = x.astype(np.longdouble)
    exact = (1 / (1 + np.exp(-wide))).astype(np.float64)  # 64-bit significand: the float64 rounding of the exact value
    ours = x.copy()
    lstm_module.sigmoid_in_place(ours)
    assert np.all(np.isfinite(ours))
    # Above x = -708 the logistic function is a normal float64: measured within 2.3 ulps on 4e6 points (the
    # two-branch reference.activations.sigmoid: 2.4).
    normal = x > -708.0

    def ulps(values: np.ndarray) -> float:
        return float((np.abs(values - exact)[normal] / np.spacing(exact[normal])).max())
    assert ulps(ours) <= 3.0
    # Below, exp(-x) overflows and ours is 0 where the logistic function is under 2.3e-308 (subnormal).
    assert np.max(np.abs(ours - exact)[~normal]) <= np.finfo(np.float64).tiny
    # Where both compute 1 / (1 + exp(-x)) they are the same bits.
    expected = reference.get_activation("sigmoid")(x)
    assert np.array_equal(ours[x >= 0], expected[x >= 0])
    # The check itself: a sigmoid 5 ulps off is refused.
    assert ulps(ours * (1 + 5 * 2.0**-52)) > 3.0


def test_unknown_loop_is_refused():
    rng = np.random.default_rng(0)
    problem = draw_problem(rng, 2, 3, 4, 5)
    with pytest.raises(ValueError, match="loop is 'quick'"):
        reference.lstm(problem["x"], problem["kernel"], problem["recurrent_kernel"], loop="quick")
    with pytest.raises(ValueError, match="loop is 'quick'"):
        lstm_backward(problem["x"], problem["kernel"], problem["recurrent_kernel"], grad_outputs=np.zeros((2, 5)),
                      loop="quick")
