"""TensorFlow: with unroll=True, go_backwards=True and zero_output_for_mask=True, the wrong steps are zeroed.

The unrolled loop returns its outputs in processing order (reversed in time) but zeroes them with the
mask in input order, so valid steps are zeroed and masked steps are not. Bidirectional forces
zero_output_for_mask=True on its backward layer, so a masked Bidirectional(LSTM(unroll=True)) is affected.
Run:  KERAS_BACKEND=tensorflow python tensorflow_unroll_go_backwards_zero_output_misaligned.py   (exits 1 while the bug is present)
"""

import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES). Not PyTorch:
# there an unrolled go_backwards LSTM raises on a mask (torch_go_backwards_unroll_mask_error.py).
REQUIRES = {"backends": ["tensorflow", "jax"], "modules": ["keras"], "gpu": False, "x64": False}
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
mask[1, 3:] = False  # row 1: steps 3 and 4 are padding


def outputs(unroll):
    lstm = keras.layers.LSTM(units, return_sequences=True, go_backwards=True, zero_output_for_mask=True, unroll=unroll)
    lstm.build((batch, time, features))
    lstm.set_weights([np.random.default_rng(1).normal(size=w.shape).astype("float32") * 0.5 for w in lstm.get_weights()])
    return keras.ops.convert_to_numpy(lstm(x, mask=mask))


loop, unrolled = outputs(False), outputs(True)
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
# Processing order is reversed: for row 1 the first two processed steps are the padding (zeros).
print("row 1, first output feature per processed step, unroll=False:", np.round(loop[1, :, 0], 4))
print("row 1, first output feature per processed step, unroll=True :", np.round(unrolled[1, :, 0], 4))
sys.exit(1 if np.abs(loop - unrolled).max() > 1e-5 else 0)
