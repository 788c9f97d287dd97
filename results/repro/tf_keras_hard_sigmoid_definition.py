"""Keras 2 and Keras 3 define hard_sigmoid differently, so an LSTM using it changes numbers on migration.

tf_keras (Keras 2): clip(0.2 x + 0.5, 0, 1). Keras 3: relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1).
Run with tf_keras installed (pip install tf-keras==2.21.0 beside tensorflow-cpu==2.21.0):
    python tf_keras_hard_sigmoid_definition.py   (exits 1 while tf_keras's definition differs from Keras 3's)
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

x = np.array([-2.0, -1.0, 0.5, 2.0], dtype="float32")
keras2 = np.asarray(tf_keras.activations.hard_sigmoid(tf.constant(x)))
keras3_definition = np.clip(x / 6.0 + 0.5, 0.0, 1.0)
print("tf_keras", tf_keras.__version__, "tensorflow", tf.__version__)
print("tf_keras hard_sigmoid:       ", keras2)
print("Keras 3 definition, relu6(x+3)/6:", keras3_definition)
sys.exit(1 if not np.allclose(keras2, keras3_definition, atol=1e-6) else 0)
