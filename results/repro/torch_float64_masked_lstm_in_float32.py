"""On PyTorch a float64 LSTM given a mask computes its matmuls in float32.

Without a mask Keras's PyTorch backend runs a float64 LSTM in its fused loop (_fallback_lstm), in float64. With a
mask it takes the generic loop, whose LSTMCell calls keras.ops.matmul, which computes float64 in float32 on PyTorch
(as a float64 Dense does: torch_float64_dense_matmul_in_float32): the same layer on the same inputs with a mask of
all True differs from its unmasked output by about 1e-8 instead of 1e-16. Found by 'harness fuzz --gradients';
the claim is torch_float64_masked_lstm_matmuls_in_float32. keras.ops.mean's own float32 computation is
float64_mean_in_float32.py.

Run with keras and one backend installed:
    KERAS_BACKEND=torch python torch_float64_masked_lstm_in_float32.py
Exits 1 while the masked LSTM is computed in float32 (PyTorch: 1; TensorFlow and JAX: 0).
"""

import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["tensorflow", "jax", "torch"], "modules": ["keras"], "gpu": False, "x64": True}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 on JAX
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing or (backend == "jax" and os.environ["JAX_ENABLE_X64"].lower() not in ("1", "true")):
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed"
          f" (and JAX_ENABLE_X64=1 on JAX); found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)

import keras
import numpy as np

rng = np.random.default_rng(0)
x = keras.ops.convert_to_tensor(rng.normal(size=(3, 8, 5)), dtype="float64")
layer = keras.layers.LSTM(4, return_sequences=True, dtype="float64")
unmasked = keras.ops.convert_to_numpy(layer(x))
masked = keras.ops.convert_to_numpy(layer(x, mask=keras.ops.ones((3, 8), dtype="bool")))
lstm_difference = float(np.abs(unmasked - masked).max())

print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
print(f"float64 LSTM, mask of all True against no mask: max difference {lstm_difference:.3g} (float64 rounding: about 1e-16)")
sys.exit(1 if lstm_difference > 1e-12 else 0)
