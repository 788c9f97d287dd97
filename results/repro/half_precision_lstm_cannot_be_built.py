"""LSTM(dtype="float16" or "bfloat16") cannot be built with its default initializer on CPU.

The default recurrent_initializer, Orthogonal, needs a QR decomposition that JAX and PyTorch do not
implement in half precision on CPU, and TensorFlow not in bfloat16. On JAX and PyTorch Keras swallows
the error while building a model, leaving the layer with only its kernel, so set_weights and predict
fail later; TensorFlow raises at once. Any other recurrent_initializer works.
Run:  KERAS_BACKEND=jax python half_precision_lstm_cannot_be_built.py   (exits 1 while the bug is present)
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

print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
failed = False
for dtype in ("float16", "bfloat16"):
    layer = keras.layers.LSTM(4, dtype=dtype)
    try:
        keras.Sequential([keras.Input((5, 3), dtype=dtype), layer])
    except Exception as error:
        print(f"{dtype}: building raised {type(error).__name__}: {str(error).strip().splitlines()[0][:120]}")
        failed = True
        continue
    names = [w.path.split("/")[-1] for w in layer.weights]
    print(f"{dtype}: weights after building {names}")
    failed = failed or len(names) != 3
sys.exit(1 if failed else 0)
