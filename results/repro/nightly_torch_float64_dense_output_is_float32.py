"""keras-nightly on PyTorch: a float64 Dense layer returns float32 (found by the between-versions view).

Keras 3.15.1 on PyTorch already computes a float64 Dense's matmul in float32 (known divergence
torch_float64_dense_matmul_in_float32) but returns float64; keras-nightly 3.16.0.dev2026102704 returns
float32, so a float64 model ending in a Dense layer loses the dtype its policy promises. An LSTM alone
keeps float64 on both versions.
Run:  KERAS_BACKEND=torch python nightly_torch_float64_dense_output_is_float32.py   (exits 1 while present)
"""

import sys

import keras
import numpy as np

x = np.random.default_rng(0).normal(size=(3, 5))
dense = keras.layers.Dense(2, dtype="float64")
out = keras.ops.convert_to_numpy(dense(keras.ops.convert_to_tensor(x, dtype="float64")))
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
print("Dense(dtype='float64') output dtype:", out.dtype)
sys.exit(1 if out.dtype != np.float64 else 0)
