"""A Masking layer's mask is ignored when the LSTM is also given initial_state (Functional API).

lstm(Masking(0.0)(x), initial_state=[h, c]) processes the masked (all-zero) steps as if they were
valid; passing the same mask explicitly with mask=... gives the masked behaviour. All backends.
Run:  KERAS_BACKEND=tensorflow python masking_layer_ignored_with_initial_state.py   (exits 1 while the bug is present)
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
x[1, 3:] = 0.0  # the last two steps of row 1 are padding
h0 = rng.normal(size=(batch, units)).astype("float32")
c0 = rng.normal(size=(batch, units)).astype("float32")

x_in, h_in, c_in = keras.Input((time, features)), keras.Input((units,)), keras.Input((units,))
lstm = keras.layers.LSTM(units, return_sequences=True)
masked = keras.layers.Masking(0.0)(x_in)
implicit = keras.Model([x_in, h_in, c_in], lstm(masked, initial_state=[h_in, c_in]))
explicit_mask = keras.ops.any(keras.ops.not_equal(x_in, 0.0), axis=-1)
explicit = keras.Model([x_in, h_in, c_in], lstm(masked, mask=explicit_mask, initial_state=[h_in, c_in]))

a = implicit.predict([x, h0, c0], verbose=0)
b = explicit.predict([x, h0, c0], verbose=0)
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
print("row 1, masked steps 3-4, Masking layer only :", a[1, 3:, 0])
print("row 1, masked steps 3-4, explicit mask=     :", b[1, 3:, 0], "(repeats step 2:", b[1, 2, 0], ")")
sys.exit(1 if np.abs(a - b).max() > 1e-6 else 0)
