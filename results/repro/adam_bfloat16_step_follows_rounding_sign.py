"""Adam's first step under mixed_bfloat16 moves a weight by 2 * learning_rate away from the float64 step when the
float64 gradient of that weight is smaller than bfloat16's rounding of the terms it sums.

Adam's first update is -lr * g / (|g| + eps) = -lr * sign(g) whatever |g| is. A Dense layer's bias gradient under MSE is
the mean over the batch of 2 * (y - t) / units; when the outputs y are of order 1 and their mean residual is of order 1e-3,
bfloat16's rounding of y (eps 2^-7, an absolute error of up to 4e-3 at |y| = 1) decides the sign of the gradient, and with
it the direction of a full-size step. float32 resolves the residual and steps the right way.

This is what 'harness training' measures on TensorFlow (Keras 3.15.1, CPU) for its LSTM(6) -> Dense(2) model: Adam
under mixed_bfloat16, the Dense bias gradient +2.4e-3 (0.3% of the largest gradient, 0.775) comes out negative, the bias
steps +0.01 instead of -0.01 and stays 0.02 from the float64 trajectory (2.8x the first-order bfloat16 drift bound);
JAX and PyTorch round that output the other way. With this script's data (seed 4) TensorFlow flips two of the three
biases and JAX and PyTorch none; float32 flips none anywhere. Not a Keras bug: a property of Adam (a full-size step
whose sign rounding decides) that the first-order rounding bound of the training study does not cover.

Run with only keras and one backend installed:
    KERAS_BACKEND=tensorflow python adam_bfloat16_step_follows_rounding_sign.py
Exits 1 when a bias moved the opposite way to the float64 step under mixed_bfloat16 (0: no element flipped):
1 on TensorFlow, 0 on JAX and PyTorch with Keras 3.15.1.
"""

import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["tensorflow", "jax", "torch"], "modules": ["keras"], "gpu": False, "x64": False}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing:
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed"
          f"; found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)

import keras
import numpy as np

rng = np.random.default_rng(4)
batch, features, units, lr = 8, 5, 3, 0.01
x = rng.normal(size=(batch, features)).astype("float32")
kernel = rng.normal(size=(features, units)).astype("float32")
bias = rng.normal(0.0, 0.1, size=(units,)).astype("float32")
y = x.astype("float64") @ kernel.astype("float64") + bias
# Targets: y minus a residual whose mean over the batch is +1e-3 per unit (noise of 0.5 per row).
noise = rng.normal(0.0, 0.5, size=y.shape)
targets = (y - (noise - noise.mean(axis=0) + 1e-3)).astype("float32")
gradient = 2.0 * (y - targets.astype("float64")).mean(axis=0) / units  # float64 dL/dbias of mean((y - t)^2)


def first_step(policy: str) -> np.ndarray:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = keras.Sequential([keras.Input((features,)), keras.layers.Dense(units)])
        model.layers[0].set_weights([kernel, bias])
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss="mse")
        model.train_on_batch(x, targets)
        return np.asarray(model.layers[0].get_weights()[1], "float64") - bias
    finally:
        keras.config.set_dtype_policy(previous)


print("backend:", keras.backend.backend(), "keras", keras.__version__)
expected = -lr * np.sign(gradient)
print("float64 bias gradient:", gradient, "-> Adam's first step", expected)
flipped = False
for policy in ("float32", "mixed_bfloat16"):
    step = first_step(policy)
    wrong = np.sign(step) != np.sign(expected)
    print(f"{policy}: bias step {step}, opposite to float64 at {np.flatnonzero(wrong).tolist()}")
    flipped = flipped or (policy == "mixed_bfloat16" and bool(wrong.any()))
sys.exit(1 if flipped else 0)
