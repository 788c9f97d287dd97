"""On PyTorch a float64 LSTM given a mask, and keras.ops.mean, compute float64 inputs in float32.

Without a mask Keras's PyTorch backend runs a float64 LSTM in its fused loop (_fallback_lstm), in float64. With a
mask it takes the generic loop, whose LSTMCell calls keras.ops.matmul, which computes float64 in float32 on PyTorch
(the known divergence torch_float64_dense_matmul_in_float32 names Dense layers only, and says "the LSTM itself
stays in float64"): the same layer on the same inputs with a mask of all True differs from its unmasked output by
about 1e-8 instead of 1e-16. keras.ops.mean computes in dtypes.result_type(x.dtype, "float32"), which is float32
for a float64 input (keras/src/backend/torch/numpy.py), and returns float64: a float32-sized error, and every
gradient taken through it (an MSE loss) inherits it. Found by 'harness fuzz --gradients', whose float64
recomputation therefore writes its loss without keras.ops.mean.

Run with only keras and PyTorch installed:
    KERAS_BACKEND=torch python torch_float64_masked_lstm_and_mean_in_float32.py
Exits 1 while either is computed in float32 (TensorFlow: 0).
"""

import sys

import keras
import numpy as np

rng = np.random.default_rng(0)
x = keras.ops.convert_to_tensor(rng.normal(size=(3, 8, 5)), dtype="float64")
layer = keras.layers.LSTM(4, return_sequences=True, dtype="float64")
unmasked = keras.ops.convert_to_numpy(layer(x))
masked = keras.ops.convert_to_numpy(layer(x, mask=keras.ops.ones((3, 8), dtype="bool")))
lstm_difference = float(np.abs(unmasked - masked).max())

values = rng.normal(size=(1000,)) + 1.0
mean = keras.ops.mean(keras.ops.convert_to_tensor(values, dtype="float64"))
mean_error = abs(float(keras.ops.convert_to_numpy(mean)) - float(np.mean(values))) / abs(float(np.mean(values)))

print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
print(f"float64 LSTM, mask of all True against no mask: max difference {lstm_difference:.3g} (float64 rounding: about 1e-16)")
print(f"ops.mean of 1000 float64 values: {keras.backend.standardize_dtype(mean.dtype)} out, relative error {mean_error:.3g}")
sys.exit(1 if lstm_difference > 1e-12 or mean_error > 1e-12 else 0)
