"""Keras 2 (tf_keras) cannot build LSTM(unroll=True, zero_output_for_mask=True, return_sequences=False) with a mask.

Building the model raises "ValueError: Dimension 0 in both shapes must be equal"; with
return_sequences=True it builds, and Keras 3 builds and runs both.
Run with tf_keras installed (pip install tf-keras==2.21.0 beside tensorflow-cpu==2.21.0):
    python tf_keras_unroll_zero_output_last_step_fails.py   (exits 1 while the problem is present)
"""

import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["tensorflow"], "modules": ["tf_keras"], "gpu": False, "x64": False}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing:
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed"
          f"; found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)

import numpy as np
import tensorflow as tf
import tf_keras

x = np.random.default_rng(0).random((2, 7, 3)).astype("float32")
x[0, 5:] = 0.0  # row 0 right-padded: its last two steps are masked
print("tf_keras", tf_keras.__version__, "tensorflow", tf.__version__)
try:
    model = tf_keras.Sequential([tf_keras.Input((7, 3)), tf_keras.layers.Masking(0.0),
                                 tf_keras.layers.LSTM(5, unroll=True, zero_output_for_mask=True, return_sequences=False)])
    print("built; predict gives", model.predict(x, verbose=0).shape)
except ValueError as error:
    print("ValueError:", next((line for line in str(error).splitlines() if "Dimension" in line), str(error)[:200]))
    sys.exit(1)
sys.exit(0)
