"""reference.optimizers (Keras 3's SGD and Adam) and reference.losses: steps worked out by hand, then
the same steps run by Keras itself on float64 variables.

TOLERANCE against Keras: both sides compute in float64 with the operations in the same order; the
only differences are pow (beta^t) and sqrt implementations and the fused operations a backend may
use. Measured over the cases below (5 steps each): 0.0 on JAX, 4.4e-16 on PyTorch (|w| ~ 1).
1e-13 leaves ~200x headroom and stays far below what a formula change moves
(epsilon inside the square root, a missing bias correction or the non-Nesterov rule move the
parameters by 1e-5 and more in these cases).
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from reference import losses, optimizers

KERAS_TOLERANCE = 1e-13
# Keras on TensorFlow rounds the Python-float hyperparameters to float32 before casting them to the
# float64 variable dtype (tf.cast / convert_to_tensor of a Python float makes a float32 constant):
# with float(np.float32(momentum)) the reference matches TensorFlow's SGD with momentum exactly (0.0);
# Adam (beta_1, beta_2, 1 - beta, epsilon all rounded) measured 5.0e-7 at worst (amsgrad case), 2.5e-8
# with the defaults. On TensorFlow the comparison therefore allows 2e-6 (4x the worst measured): still
# far below a formula change (1e-5 and more here). JAX and PyTorch: 0 and 4.4e-16 measured.
BACKEND_TOLERANCE = {"tensorflow": 2e-6}


def test_sgd_plain_momentum_and_nesterov_by_hand():
    params, grads = {"w": np.array([1.0])}, {"w": np.array([1.0])}
    new, _ = optimizers.sgd_step(params, grads, optimizers.sgd_init(params), 1, learning_rate=0.1)
    assert new["w"][0] == pytest.approx(0.9, abs=1e-15)
    # momentum 0.9, lr 0.1, gradient 1 twice: m1 = -0.1, m2 = 0.9 * -0.1 - 0.1 = -0.19.
    state = optimizers.sgd_init(params, momentum=0.9)
    w1, state1 = optimizers.sgd_step(params, grads, state, 1, learning_rate=0.1, momentum=0.9)
    w2, state2 = optimizers.sgd_step(w1, grads, state1, 2, learning_rate=0.1, momentum=0.9)
    assert (w1["w"][0], w2["w"][0], state2["momentums"]["w"][0]) == pytest.approx((0.9, 0.71, -0.19), abs=1e-15)
    # Nesterov: w <- w + (m_new * momentum - g * lr): 1 + (-0.09 - 0.1) = 0.81; 0.81 + (-0.171 - 0.1) = 0.539.
    n1, nstate1 = optimizers.sgd_step(params, grads, state, 1, learning_rate=0.1, momentum=0.9, nesterov=True)
    n2, _ = optimizers.sgd_step(n1, grads, nstate1, 2, learning_rate=0.1, momentum=0.9, nesterov=True)
    assert (n1["w"][0], n2["w"][0]) == pytest.approx((0.81, 0.539), abs=1e-15)
    assert params["w"][0] == 1.0 and state["momentums"]["w"][0] == 0.0  # arguments untouched


def test_adam_first_steps_by_hand():
    lr, eps = 0.01, 1e-7
    params = {"w": np.array([0.5, -0.25])}
    state = optimizers.adam_init(params)
    # step 1, g = (2, -0.5): m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1,
    # w <- w - m alpha / (sqrt(v) + eps) = w - lr sqrt(0.001) g / (sqrt(0.001) |g| + eps).
    g1 = np.array([2.0, -0.5])
    new, state = optimizers.adam_step(params, {"w": g1}, state, 1, learning_rate=lr, epsilon=eps)
    expected = params["w"] - lr * math.sqrt(0.001) * g1 / (math.sqrt(0.001) * np.abs(g1) + eps)
    np.testing.assert_allclose(new["w"], expected, rtol=0, atol=1e-15)
    # step 2, g = 0: m = 0.09 g1, v = 0.000999 g1^2, alpha = lr sqrt(1 - 0.999^2) / (1 - 0.9^2).
    new2, _ = optimizers.adam_step(new, {"w": np.zeros(2)}, state, 2, learning_rate=lr, epsilon=eps)
    alpha = lr * math.sqrt(1 - 0.999**2) / (1 - 0.9**2)
    expected2 = new["w"] - 0.09 * g1 * alpha / (np.sqrt(0.000999 * g1**2) + eps)
    np.testing.assert_allclose(new2["w"], expected2, rtol=0, atol=1e-15)


def test_adam_amsgrad_keeps_the_largest_velocity():
    params = {"w": np.array([1.0])}
    state = optimizers.adam_init(params, amsgrad=True)
    w1, state = optimizers.adam_step(params, {"w": np.array([2.0])}, state, 1, amsgrad=True)
    w2, state = optimizers.adam_step(w1, {"w": np.array([0.0])}, state, 2, amsgrad=True)
    # v1 = 0.004, v2 = 0.999 * 0.004 = 0.003996 < v1: amsgrad divides by sqrt(v1), plain Adam by sqrt(v2).
    assert state["velocity_hats"]["w"][0] == pytest.approx(0.004, abs=1e-16)
    alpha = 0.001 * math.sqrt(1 - 0.999**2) / (1 - 0.9**2)
    assert w2["w"][0] == pytest.approx(w1["w"][0] - 0.18 * alpha / (math.sqrt(0.004) + 1e-7), abs=1e-15)


def test_optimizer_errors_are_clear():
    params = {"w": np.zeros(3)}
    with pytest.raises(ValueError, match="name different arrays"):
        optimizers.sgd_step(params, {"v": np.zeros(3)}, optimizers.sgd_init(params), 1)
    with pytest.raises(ValueError, match=r"grads\['w'\] has shape"):
        optimizers.sgd_step(params, {"w": np.zeros(2)}, optimizers.sgd_init(params), 1)
    with pytest.raises(ValueError, match="counts updates from 1"):
        optimizers.adam_step(params, {"w": np.zeros(3)}, optimizers.adam_init(params), 0)


def test_mean_squared_error_is_keras_reduction_by_hand():
    y_true = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    y_pred = np.array([[1.0, 1.0, 0.0], [1.0, 3.0, 1.0]])
    # per sample: mean((1, 0, 4)) = 5/3, mean((0, 4, 0)) = 4/3; sum_over_batch_size: (5/3 + 4/3) / 2 = 1.5
    assert losses.mean_squared_error(y_true, y_pred) == pytest.approx(1.5, abs=1e-15)
    assert losses.mean_squared_error(y_true, y_pred, reduction="sum") == pytest.approx(3.0, abs=1e-15)
    np.testing.assert_allclose(losses.mean_squared_error_gradient(y_true, y_pred), 2 * (y_pred - y_true) / 6, atol=1e-15)
    assert losses.mean_absolute_error(y_true, y_pred) == pytest.approx((1 + 2 + 2) / 6, abs=1e-15)
    np.testing.assert_array_equal(losses.mean_absolute_error_gradient(y_true, y_pred), np.sign(y_pred - y_true) / 6)
    with pytest.raises(ValueError, match="reduction"):
        losses.mean_squared_error(y_true, y_pred, reduction="mean")


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum"])
@pytest.mark.parametrize("shape", [(3, 4), (2, 5, 3)])
def test_loss_gradients_match_central_differences(reduction, shape):
    rng = np.random.default_rng(7)
    y_true, y_pred = rng.normal(size=shape), rng.normal(size=shape)
    for value, gradient in [(losses.mean_squared_error, losses.mean_squared_error_gradient),
                            (losses.mean_absolute_error, losses.mean_absolute_error_gradient)]:
        numeric = np.zeros(shape)
        for index in np.ndindex(shape):
            bumped = y_pred.copy()
            bumped[index] += 1e-6
            up = value(y_true, bumped, reduction)
            bumped[index] -= 2e-6
            numeric[index] = (up - value(y_true, bumped, reduction)) / 2e-6
        # Quadratic and piecewise-linear: central differences are exact up to rounding, ~1e-10 here.
        np.testing.assert_allclose(gradient(y_true, y_pred, reduction), numeric, rtol=0, atol=1e-8)


# --- against Keras itself ----------------------------------------------------------------------------

KERAS_CASES = [
    ("sgd", {"learning_rate": 0.05}),
    ("sgd", {"learning_rate": 0.05, "momentum": 0.9}),
    ("sgd", {"learning_rate": 0.05, "momentum": 0.7, "nesterov": True}),
    ("adam", {}),
    ("adam", {"learning_rate": 0.02, "beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-3}),
    ("adam", {"learning_rate": 0.02, "amsgrad": True}),
]
STEPS = 5

# Run in a subprocess: float64 needs floatx float64 (Keras keeps the learning rate in a floatx
# variable) and, on JAX, JAX_ENABLE_X64 before JAX is imported; neither may leak into other tests.
KERAS_SCRIPT = """
import json, sys
import numpy as np
import keras
keras.config.set_floatx("float64")
cases, initial, gradients = json.loads(sys.stdin.read())
results = []
for kind, options in cases:
    variables = [keras.Variable(np.array(value), dtype="float64") for value in initial]
    optimizer = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}[kind](**options)
    for step_grads in gradients:
        optimizer.apply([keras.ops.convert_to_tensor(np.array(g), dtype="float64") for g in step_grads], variables)
    results.append([np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in variables])
print(json.dumps(results))
"""


@pytest.mark.backend
def test_optimizers_match_keras(session_backend):
    rng = np.random.default_rng(3)
    initial = [rng.normal(size=(3, 4)), rng.normal(size=(5,))]
    # Gradients of several magnitudes (epsilon matters where |g| is small), including an exact zero.
    gradients = [[rng.normal(size=(3, 4)) * 10.0 ** rng.integers(-4, 1, size=(3, 4)), rng.normal(size=(5,))]
                 for _ in range(STEPS)]
    gradients[2][1][0] = 0.0
    payload = json.dumps([KERAS_CASES, [a.tolist() for a in initial], [[g.tolist() for g in step] for step in gradients]])
    env = dict(os.environ, KERAS_BACKEND=session_backend, JAX_ENABLE_X64="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", KERAS_SCRIPT], input=payload, capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    keras_results = json.loads(done.stdout.strip().splitlines()[-1])
    for (kind, options), keras_params in zip(KERAS_CASES, keras_results):
        params = {str(k): a for k, a in enumerate(initial)}
        init = optimizers.sgd_init(params, options.get("momentum", 0.0)) if kind == "sgd" else \
            optimizers.adam_init(params, options.get("amsgrad", False))
        step_function = optimizers.sgd_step if kind == "sgd" else optimizers.adam_step
        state = init
        for step, step_grads in enumerate(gradients, start=1):
            params, state = step_function(params, {str(k): g for k, g in enumerate(step_grads)}, state, step, **options)
        for k, keras_value in enumerate(keras_params):
            moved = np.max(np.abs(np.array(keras_value) - initial[k]))
            assert moved > 1e-4, f"{kind} {options}: the parameters barely moved, the comparison proves nothing"
            np.testing.assert_allclose(params[str(k)], np.array(keras_value), rtol=0, atol=BACKEND_TOLERANCE.get(session_backend, KERAS_TOLERANCE),
                                       err_msg=f"{kind} {options}, variable {k}")
