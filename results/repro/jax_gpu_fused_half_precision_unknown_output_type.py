"""JAX on a GPU: an LSTM in float16 or bfloat16 (or under a mixed policy) on Keras's fused (cuDNN) path raises
"ValueError: Unknown output type float16" (or bfloat16).

keras/src/backend/jax/rnn.py `lstm` sends any tanh/sigmoid LSTM without a mask to jax.experimental.rnn.lstm
when a GPU is present, whatever the compute dtype; the half-precision call fails, and Keras only falls back
to its generic loop on NotImplementedError, so the error reaches the user. The same layer runs on the CPU,
and on the GPU with use_cudnn=False or with a mask. Measured by keras-parity on dtype_float16_none,
dtype_bfloat16_none, dtype_mixedfloat16_none and dtype_mixedbfloat16_none (H200, jax 0.11.2, keras 3.15.1).
The error is raised by jaxlib/gpu_rnn.py `_rnn_fwd_lowering`, which lowers the cuDNN RNN for float32,
float64, complex64 and complex128 outputs only ("raise ValueError(f'Unknown output type {out_dtype}')").

What was run where: a first form of this script, an eager layer call (`layer(x)`), ran WITHOUT error for all four
dtypes on the H200, while the harness's cases (a Sequential/Functional/subclassed model with a Dense head, through
`model.predict`, i.e. compiled) raised. This form does both and exits 1 when either raises; it was written after
the session's GPU time was spent, so it has not itself been run on a GPU yet.
Run on a machine with an NVIDIA GPU:  KERAS_BACKEND=jax python jax_gpu_fused_half_precision_unknown_output_type.py
(exits 1 while the bug is present, 0 when fixed, 2 without a GPU)
"""

import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["jax"], "modules": ["keras"], "gpu": True, "x64": False}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing:
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed"
          f"; found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)

import jax
import keras
import numpy as np

if jax.default_backend() != "gpu":
    print("cannot run here: no GPU: this reproducer needs JAX's CUDA build on an NVIDIA GPU")
    sys.exit(2)

rng = np.random.default_rng(0)
batch, time, features, units = 3, 8, 5, 6
x = rng.normal(size=(batch, time, features)).astype("float32")
failures = []
for dtype in ("float16", "bfloat16", "mixed_float16", "mixed_bfloat16"):
    layer = keras.layers.LSTM(units, return_sequences=True, dtype=dtype, recurrent_initializer="zeros")
    model = keras.Sequential([keras.Input((time, features)), layer, keras.layers.Dense(2, dtype=dtype)])
    for how, call in (("eager layer call", lambda: layer(x)), ("model.predict", lambda: model.predict(x, verbose=0))):
        try:
            call()
            print(f"{dtype}, {how}: ran")
        except Exception as error:  # noqa: BLE001 - the point is which error
            print(f"{dtype}, {how}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
            failures.append((dtype, how))
print("jax", jax.__version__, "keras", keras.__version__, "device", jax.devices()[0].device_kind)
sys.exit(1 if failures else 0)
