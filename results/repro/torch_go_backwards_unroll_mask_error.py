"""PyTorch: an LSTM with go_backwards=True and unroll=True fails on masked input.

Run:  KERAS_BACKEND=torch python torch_go_backwards_unroll_mask_error.py   (exits 1 while the bug is present)
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
mask[1, 3:] = False

lstm = keras.layers.LSTM(units, return_sequences=True, go_backwards=True, unroll=True)
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
try:
    out = lstm(x, mask=mask)
except Exception as error:  # the bug
    print("raised", type(error).__name__ + ":", str(error).strip().splitlines()[0])
    sys.exit(1)
print("ok, output shape", tuple(out.shape))
