"""keras.ops.mean computes a float64 input in float32 on PyTorch and on JAX, and returns float64.

Both backends' mean computes in dtypes.result_type(x.dtype, "float32") (keras/src/backend/torch/numpy.py,
keras/src/backend/jax/numpy.py), which Keras's type promotion makes float32 for a float64 input; the result is cast
back to float64, so it carries a float32-sized relative error (about 1e-7) under a float64 dtype. Every loss built
on it (Keras's MSE) inherits the error. Found by 'harness fuzz --gradients' on PyTorch (keras 3.15.1, torch 2.13.0),
and on JAX (jax 0.10.2, JAX_ENABLE_X64=1) when the reproducer test first ran it there; TensorFlow computes in float64.
No keras-parity case judges keras.ops.mean itself: the fuzzer's float64 recomputation writes its loss without it.

Run with keras and one backend installed:
    KERAS_BACKEND=jax python float64_mean_in_float32.py
Exits 1 while the mean is computed in float32 (PyTorch and JAX: 1; TensorFlow: 0).
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

values = np.random.default_rng(0).normal(size=(1000,)) + 1.0
mean = keras.ops.mean(keras.ops.convert_to_tensor(values, dtype="float64"))
exact = float(np.mean(values))
relative_error = abs(float(keras.ops.convert_to_numpy(mean)) - exact) / abs(exact)
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
print(f"ops.mean of 1000 float64 values: {keras.backend.standardize_dtype(mean.dtype)} out, relative error {relative_error:.3g} "
      "(float64 rounding: about 1e-16)")
sys.exit(1 if relative_error > 1e-12 else 0)
