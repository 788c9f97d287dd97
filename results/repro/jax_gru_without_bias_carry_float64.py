"""JAX with JAX_ENABLE_X64=1: a float32 GRU without a bias (use_bias=False, reset_after=True) cannot run.

Keras 3.15.1's JAX GRU entry point (keras/src/backend/jax/rnn.py, gru(): its own lax.scan, which runs on CPU too
whenever reset_after is true, there is no mask and unroll is false) stands in zero biases for a missing bias with
jnp.zeros(3 * hidden_size), whose dtype is JAX's default float: float64 once x64 is enabled. Adding them turns the
float32 state into float64 after one step, and lax.scan raises TypeError ("The input carry h has type float32[...]
but the corresponding output carry component has type float64[...]"). With a bias, a mask, unroll=True,
reset_after=False or use_cudnn=False the layer takes another path and runs; TensorFlow and PyTorch run it too.

Run with only keras and one backend installed, for example:
    JAX_ENABLE_X64=1 KERAS_BACKEND=jax python jax_gru_without_bias_carry_float64.py
Exits 1 while the GRU raises, 0 when it runs and agrees with the same GRU given an explicit zero bias.
"""

import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["tensorflow", "jax", "torch"], "modules": ["keras"], "gpu": False, "x64": True}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("JAX_ENABLE_X64", "1")  # the setting under which the bug shows on JAX
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing or (backend == "jax" and os.environ["JAX_ENABLE_X64"].lower() not in ("1", "true")):
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed"
          f" (and JAX_ENABLE_X64=1 on JAX); found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)

import keras
import numpy as np

rng = np.random.default_rng(0)
batch, time, features, units = 3, 6, 5, 4
x = rng.normal(size=(batch, time, features)).astype("float32")
kernel = rng.normal(size=(features, 3 * units)).astype("float32") / np.sqrt(features)
recurrent = rng.normal(size=(units, 3 * units)).astype("float32") / np.sqrt(units)
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)

with_zero_bias = keras.layers.GRU(units, return_sequences=True)
with_zero_bias.build((batch, time, features))
with_zero_bias.set_weights([kernel, recurrent, np.zeros((2, 3 * units), "float32")])
expected = keras.ops.convert_to_numpy(with_zero_bias(x))

without_bias = keras.layers.GRU(units, return_sequences=True, use_bias=False)
without_bias.build((batch, time, features))
without_bias.set_weights([kernel, recurrent])
try:
    out = keras.ops.convert_to_numpy(without_bias(x))
except TypeError as error:
    print("GRU(use_bias=False) raised:", type(error).__name__, next((line.strip() for line in str(error).splitlines() if "input carry" in line), str(error)[:200]))
    sys.exit(1)
print("GRU(use_bias=False) ran; largest difference from the zero-bias GRU:", float(np.abs(out - expected).max()))
sys.exit(0 if np.allclose(out, expected, rtol=1e-6, atol=1e-6) else 1)
