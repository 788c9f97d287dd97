"""keras-nightly on PyTorch: a float64 Dense layer returns float32 (found by the between-versions view).

Keras 3.15.1 on PyTorch already computes a float64 Dense's matmul in float32 (known divergence
torch_float64_dense_matmul_in_float32) but returns float64; keras-nightly 3.16.0.dev2026102704 returns
float32, so a float64 model ending in a Dense layer loses the dtype its policy promises. An LSTM alone
keeps float64 on both versions.
Run:  KERAS_BACKEND=torch python nightly_torch_float64_dense_output_is_float32.py   (exits 1 while present)
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

x = np.random.default_rng(0).normal(size=(3, 5))
dense = keras.layers.Dense(2, dtype="float64")
out = keras.ops.convert_to_numpy(dense(keras.ops.convert_to_tensor(x, dtype="float64")))
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
print("Dense(dtype='float64') output dtype:", out.dtype)
sys.exit(1 if out.dtype != np.float64 else 0)
