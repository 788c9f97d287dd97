"""keras.activations.sparsemax's output does not sum to 1 when more than one value is in the support.

Sparsemax is the Euclidean projection onto the probability simplex (Martins and Astudillo 2016): its
output is non-negative and sums to 1. Keras 3.15.1 computes the threshold from the sum of the
cumulative sums over the support instead of the support's sum (keras-team/keras#23425, fixed by #23469
after 3.15.1), on every backend. An LSTM with activation or recurrent_activation "sparsemax" inherits it.
Run:  KERAS_BACKEND=jax python sparsemax_threshold_sums_cumulative_sums.py   (any backend; exits 1 while present)
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

x = np.array([[0.0, 0.5, 1.0], [0.1, 0.2, 0.3]], dtype="float32")
out = keras.ops.convert_to_numpy(keras.activations.sparsemax(x))
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
print("sparsemax([0, 0.5, 1]) =", out[0], "(definition: [0, 0.25, 0.75])")
print("row sums:", out.sum(axis=-1), "(definition: 1)")
sys.exit(1 if not np.allclose(out.sum(axis=-1), 1.0, atol=1e-6) else 0)
