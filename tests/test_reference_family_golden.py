"""The reference GRU and SimpleRNN reproduce the hard-coded outputs of Keras's own tests
(keras-team/keras, keras/src/layers/rnn/gru_test.py and simple_rnn_test.py): constant-initialized weights
(kernel 0.01, recurrent_kernel 0.02, bias 0.03 everywhere), inputs np.arange(...) in float32, the same
options (go_backwards, reset_after=False, use_bias=False, initial_state, masks, zero_output_for_mask, and
stateful: the second call starts from the first call's final state). No framework needed.

TOLERANCE: Keras computes these in float32 and its tests print 7 to 8 significant digits; the reference
computes in float64. Measured: at most 9.8e-8 from every golden value. ATOL = 2e-6 leaves 20x headroom and
is still 5e3 times smaller than what the injected bugs change (test_the_golden_values_catch_*: dropping the
recurrent bias or ignoring go_backwards move some output by 1e-2 or more).
"""

import numpy as np
import pytest

import reference

ATOL = 2e-6


def constant_gru(features: int, units: int, reset_after: bool = True, use_bias: bool = True):
    kernel = np.full((features, 3 * units), 0.01)
    recurrent = np.full((units, 3 * units), 0.02)
    bias = (np.full((2, 3 * units) if reset_after else (3 * units,), 0.03)) if use_bias else None
    return kernel, recurrent, bias


def constant_simple_rnn(features: int, units: int):
    return np.full((features, units), 0.01), np.full((units, units), 0.02), np.full((units,), 0.03)


SEQ_3_6_4 = np.arange(72).reshape((3, 6, 4)).astype("float32")
SEQ_2_4_3 = np.arange(24).reshape((2, 4, 3)).astype("float32")
SEQ_2_3_4 = np.arange(24).reshape((2, 3, 4)).astype("float32")
MASK = np.array([[True, True, False, True], [True, False, False, True]])


def rows(*values: float, units: int) -> np.ndarray:
    """Keras's expected outputs are the same value across units (constant weights): one value per row."""
    return np.repeat(np.array(values)[:, None], units, axis=1)


GRU_CASES = {
    # gru_test.py test_correctness (implementation 1 and 2 and unroll give the same numbers)
    "correctness": (SEQ_3_6_4, 3, {}, rows(0.5217289, 0.6371659, 0.39384964, units=3)),
    "correctness_go_backwards": (SEQ_3_6_4, 3, {"go_backwards": True}, rows(0.24406259, 0.611516, 0.3928808, units=3)),
    "correctness_reset_before": (SEQ_3_6_4, 3, {"reset_after": False}, rows(0.51447755, 0.6426879, 0.40208298, units=3)),
    "correctness_no_bias": (SEQ_3_6_4, 3, {"use_bias": False}, rows(0.49988455, 0.64701194, 0.4103359, units=3)),
    # test_pass_initial_state / test_pass_return_state
    "initial_state": (SEQ_2_4_3, 2, {"initial_state": [np.arange(4).reshape((2, 2)).astype("float32")]},
                      np.array([[0.23774096, 0.33508456], [0.83659905, 1.0227708]])),
    "initial_state_go_backwards": (SEQ_2_4_3, 2, {"initial_state": [np.arange(4).reshape((2, 2)).astype("float32")],
                                                   "go_backwards": True},
                                   np.array([[0.13486053, 0.23261218], [0.78257304, 0.9691353]])),
    # test_masking
    "masking": (SEQ_2_4_3, 2, {"mask": MASK}, rows(0.19393763, 0.30818558, units=2)),
    "masking_sequences": (SEQ_2_4_3, 2, {"mask": MASK, "return_sequences": True}, np.array([
        rows(0.03606692, 0.09497581, 0.09497581, 0.19393763, units=2),
        rows(0.16051409, 0.16051409, 0.16051409, 0.30818558, units=2)])),
    "masking_zero_output": (SEQ_2_4_3, 2, {"mask": MASK, "return_sequences": True, "zero_output_for_mask": True},
                            np.array([rows(0.03606692, 0.09497581, 0.0, 0.19393763, units=2),
                                      rows(0.16051409, 0.0, 0.0, 0.30818558, units=2)])),
    "masking_go_backwards": (SEQ_2_4_3, 2, {"mask": MASK, "go_backwards": True}, rows(0.11669192, 0.28380975, units=2)),
}

SIMPLE_RNN_CASES = {
    # simple_rnn_test.py test_correctness (unroll gives the same numbers)
    "correctness": (SEQ_2_3_4, 4, {}, rows(0.405432, 0.73605347, units=4)),
    "correctness_go_backwards": (SEQ_2_3_4, 4, {"go_backwards": True}, rows(0.11144729, 0.5528889, units=4)),
    # test_pass_initial_state
    "initial_state": (SEQ_2_4_3, 4, {"initial_state": [np.arange(8).reshape((2, 4)).astype("float32")]},
                      rows(0.33621645, 0.6262637, units=4)),
    "initial_state_go_backwards": (SEQ_2_4_3, 4, {"initial_state": [np.arange(8).reshape((2, 4)).astype("float32")],
                                                   "go_backwards": True}, rows(0.07344437, 0.43043602, units=4)),
    # test_masking
    "masking": (SEQ_2_4_3, 4, {"mask": MASK}, rows(0.32951632, 0.61799484, units=4)),
    "masking_sequences": (SEQ_2_4_3, 2, {"mask": MASK, "return_sequences": True}, np.array([
        rows(0.0599281, 0.15122814, 0.15122814, 0.32394567, units=2),
        rows(0.3969304, 0.3969304, 0.3969304, 0.608085, units=2)])),
    "masking_zero_output": (SEQ_2_4_3, 2, {"mask": MASK, "return_sequences": True, "zero_output_for_mask": True},
                            np.array([rows(0.0599281, 0.15122814, 0.0, 0.32394567, units=2),
                                      rows(0.3969304, 0.0, 0.0, 0.608085, units=2)])),
    "masking_go_backwards": (SEQ_2_4_3, 4, {"mask": MASK, "go_backwards": True}, rows(0.07376196, 0.43645123, units=4)),
}


def run_gru(x, units, options, bug=None):
    options = dict(options)
    reset_after, use_bias = options.pop("reset_after", True), options.pop("use_bias", True)
    kernel, recurrent, bias = constant_gru(x.shape[2], units, reset_after, use_bias)
    if bug == "drop_recurrent_bias" and bias is not None and reset_after:
        bias = np.stack([bias[0], np.zeros_like(bias[1])])
    if bug == "ignore_go_backwards":
        options["go_backwards"] = False
    return reference.gru(x, kernel, recurrent, bias, reset_after=reset_after, **options)


def run_simple_rnn(x, units, options, bug=None):
    options = dict(options)
    if bug == "ignore_go_backwards":
        options["go_backwards"] = False
    return reference.simple_rnn(x, *constant_simple_rnn(x.shape[2], units), **options)


@pytest.mark.parametrize("name", sorted(GRU_CASES))
def test_gru_reproduces_keras_golden_values(name):
    x, units, options, expected = GRU_CASES[name]
    np.testing.assert_allclose(run_gru(x, units, options), expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", sorted(SIMPLE_RNN_CASES))
def test_simple_rnn_reproduces_keras_golden_values(name):
    x, units, options, expected = SIMPLE_RNN_CASES[name]
    np.testing.assert_allclose(run_simple_rnn(x, units, options), expected, rtol=0, atol=ATOL)


def test_gru_statefulness_golden_values():
    # gru_test.py test_statefulness: the second call starts from the state the first one ended in
    kernel, recurrent, bias = constant_gru(4, 4)
    _, state = reference.gru(SEQ_2_3_4, kernel, recurrent, bias, return_state=True)
    output = reference.gru(SEQ_2_3_4, kernel, recurrent, bias, initial_state=[state])
    np.testing.assert_allclose(output, rows(0.29542392, 0.5885018, units=4), rtol=0, atol=ATOL)


def test_simple_rnn_statefulness_golden_values():
    weights = constant_simple_rnn(4, 4)
    _, state = reference.simple_rnn(SEQ_2_3_4, *weights, return_state=True)
    output = reference.simple_rnn(SEQ_2_3_4, *weights, initial_state=[state])
    np.testing.assert_allclose(output, rows(0.40559256, 0.7361247, units=4), rtol=0, atol=ATOL)


def _worst_change(cases, run, bug):
    changes = [float(np.max(np.abs(run(x, units, options, bug) - expected))) for x, units, options, expected
               in cases.values() if bug != "ignore_go_backwards" or options.get("go_backwards")]
    return max(changes)


@pytest.mark.parametrize("bug", ["drop_recurrent_bias", "ignore_go_backwards"])
def test_the_golden_values_catch_an_injected_gru_bug(bug):
    assert _worst_change(GRU_CASES, run_gru, bug) > 5e3 * ATOL


def test_the_golden_values_catch_an_injected_simple_rnn_bug():
    assert _worst_change(SIMPLE_RNN_CASES, run_simple_rnn, "ignore_go_backwards") > 5e3 * ATOL
