"""keras-nightly: the second of two stacked LSTMs no longer receives the mask (found by the between-versions view).

With a mask (Masking layer or a mask argument), the first LSTM returns sequences and passes the mask on
(LSTM.compute_mask); the second LSTM must skip the same steps: zeros before a row's first valid step, the
previous output at a masked step. Keras 3.15.1 does (every backend); keras-nightly 3.16.0.dev2026102704 runs
the second LSTM over the masked steps as if they were valid, on every backend.
Run:  KERAS_BACKEND=jax python nightly_stacked_lstm_mask_not_propagated.py   (any backend; exits 1 while present)
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
batch, time, features = 2, 6, 3
x = rng.normal(size=(batch, time, features)).astype("float32")
x[1, :2] = 0.0  # row 1 is left-padded: its first two steps are masked (all-zero rows behind Masking)
model = keras.Sequential([keras.Input((time, features)), keras.layers.Masking(0.0),
                          keras.layers.LSTM(5, return_sequences=True), keras.layers.LSTM(4, return_sequences=True)])
for layer in model.layers[1:]:  # random weights: with the default ones (zero bias) a zero input and state give
    # zero output, so an ignored mask would not show
    layer.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()])
first_mask = model.layers[1].compute_mask(x, model.layers[0].compute_mask(x))
out = keras.ops.convert_to_numpy(model(x))
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
print("mask the first LSTM passes on, row 1:", None if first_mask is None else keras.ops.convert_to_numpy(first_mask)[1])
print("second LSTM, row 1, masked steps 0-1 (expected zeros):", out[1, :2, 0])
sys.exit(1 if np.abs(out[1, :2]).max() > 0 else 0)
