"""JAX: with unroll=True, zero_output_for_mask=True is ignored: masked steps repeat the last output.

Bidirectional forces zero_output_for_mask=True (when returning sequences), so Bidirectional(LSTM(...,
unroll=True)) with a mask gives non-zero outputs at masked steps on JAX, zeros elsewhere.
Run:  KERAS_BACKEND=jax python jax_unroll_ignores_zero_output_for_mask.py   (exits 1 while the bug is present)
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
mask[1, 3:] = False  # row 1 is right-padded

lstm = keras.layers.LSTM(units, return_sequences=True, unroll=True, zero_output_for_mask=True)
lstm.build((batch, time, features))
out = keras.ops.convert_to_numpy(lstm(x, mask=mask))
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
print("row 1, masked steps 3-4 with zero_output_for_mask=True:", out[1, 3:, 0])
sys.exit(1 if np.abs(out[1, 3:]).max() > 0 else 0)
