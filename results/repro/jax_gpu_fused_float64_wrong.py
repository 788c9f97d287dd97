"""JAX on a GPU: a float64 LSTM on Keras's fused (cuDNN) path returns NaN or wrong numbers.

keras/src/backend/jax/rnn.py `lstm` sends any tanh/sigmoid LSTM without a mask to
jax.experimental.rnn.lstm (cuDNN) when a GPU is present, whatever the layer's dtype. With dtype="float64"
the result is NaN or far from Keras's own generic loop in float64 (use_cudnn=False) on the same GPU, and
from the same layer on the CPU. keras-parity measured NaN in lstm_float64_call and dtype_float64_none and
errors of 0.17 to 0.66 in stacked_lstm_float64_call (H200, jax 0.11.2, keras 3.15.1).
Run on a machine with an NVIDIA GPU:  KERAS_BACKEND=jax python jax_gpu_fused_float64_wrong.py
(exits 1 while the bug is present, 0 when fixed, 2 without a GPU)
"""

import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["jax"], "modules": ["keras"], "gpu": True, "x64": True}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 on JAX
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing or (backend == "jax" and os.environ["JAX_ENABLE_X64"].lower() not in ("1", "true")):
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed"
          f" (and JAX_ENABLE_X64=1 on JAX); found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)

import jax
import keras
import numpy as np

if jax.default_backend() != "gpu":
    print("cannot run here: no GPU: this reproducer needs JAX's CUDA build on an NVIDIA GPU")
    sys.exit(2)

rng = np.random.default_rng(0)
batch, time, features, units = 3, 8, 5, 4
x = rng.normal(size=(batch, time, features))
weights = [rng.normal(scale=0.5, size=shape) for shape in [(features, 4 * units), (units, 4 * units), (4 * units,)]]

outputs = {}
for use_cudnn in ("auto", False):  # the fused path, and Keras's generic loop
    layer = keras.layers.LSTM(units, return_sequences=True, use_cudnn=use_cudnn, dtype="float64")
    layer.build((batch, time, features))
    layer.set_weights(weights)
    outputs[use_cudnn] = np.asarray(keras.ops.convert_to_numpy(layer(x)), dtype=np.float64)

fused, generic = outputs["auto"], outputs[False]
print("jax", jax.__version__, "keras", keras.__version__, "device", jax.devices()[0].device_kind)
print("fused dtype:", fused.dtype, "non-finite elements:", int(np.sum(~np.isfinite(fused))), "of", fused.size)
print("max |fused - generic| over finite elements:", float(np.nanmax(np.abs(fused - generic))))
sys.exit(0 if np.all(np.isfinite(fused)) and np.allclose(fused, generic, rtol=1e-10, atol=1e-10) else 1)
