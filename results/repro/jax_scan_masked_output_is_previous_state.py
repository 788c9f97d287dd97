"""JAX: for leading masked steps with a non-zero initial_state, the LSTM outputs h0 instead of zeros.

Keras documents that a masked step outputs "the output from the previous timestep". Before the first
valid step there is no previous output: TensorFlow, PyTorch and every unroll=True loop output zeros;
JAX's lax.scan loop (unroll=False) outputs the previous *state*, h0.
Run:  KERAS_BACKEND=jax python jax_scan_masked_output_is_previous_state.py   (exits 1 while JAX differs)
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

rng = np.random.default_rng(0)
batch, time, features, units = 2, 5, 3, 4
x = rng.normal(size=(batch, time, features)).astype("float32")
mask = np.ones((batch, time), dtype=bool)
mask[1, :2] = False  # row 1 is left-padded: its first two steps are masked
h0 = rng.normal(size=(batch, units)).astype("float32")
c0 = rng.normal(size=(batch, units)).astype("float32")


def outputs(unroll):
    lstm = keras.layers.LSTM(units, return_sequences=True, unroll=unroll)
    lstm.build((batch, time, features))
    lstm.set_weights([np.random.default_rng(1).normal(size=w.shape).astype("float32") * 0.5 for w in lstm.get_weights()])
    return keras.ops.convert_to_numpy(lstm(x, mask=mask, initial_state=[h0, c0]))


scan, unrolled = outputs(False), outputs(True)
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
print("row 1, masked step 0, unroll=False:", scan[1, 0])
print("row 1, masked step 0, unroll=True :", unrolled[1, 0])
print("h0 of row 1                       :", h0[1])
sys.exit(1 if np.abs(scan[1, :2]).max() > 0 else 0)
