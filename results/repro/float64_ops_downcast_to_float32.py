"""keras.ops compute some float64 inputs in float32 on JAX and PyTorch.

On JAX (with JAX_ENABLE_X64=1) keras.ops.tanh returns float32 for a float64 input; on PyTorch
keras.ops.matmul does. A float64 LSTM therefore runs its tanh in float32 on JAX, and a float64 Dense
runs its matmul in float32 on PyTorch. TensorFlow stays in float64.

The same tanh stops a float64 SimpleRNN on JAX (tanh, no mask, unroll=False): its new state is tanh(...)
alone, so the lax.scan carry comes back float32 and scan raises TypeError ("carry input and carry output must
have equal types"). The LSTM and GRU multiply their tanh by a float64 gate, so their carry stays float64 and
they run (with the float32 rounding above).

Run with only keras and one backend installed, for example:
    JAX_ENABLE_X64=1 KERAS_BACKEND=jax python float64_ops_downcast_to_float32.py
    KERAS_BACKEND=torch python float64_ops_downcast_to_float32.py
Exits 1 while any of the ops returns float32 or the float64 SimpleRNN cannot run.
"""

import importlib.util
import os
import re
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
x = rng.normal(size=(5, 7))
w = rng.normal(size=(7, 3))
x_backend = keras.ops.convert_to_tensor(x, dtype="float64")
w_backend = keras.ops.convert_to_tensor(w, dtype="float64")

print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
downcast = False
for name, result, exact in (
    ("tanh", keras.ops.tanh(x_backend), np.tanh(x)),
    ("sigmoid", keras.ops.sigmoid(x_backend), 1.0 / (1.0 + np.exp(-x))),
    ("matmul", keras.ops.matmul(x_backend, w_backend), x @ w),
):
    dtype = keras.backend.standardize_dtype(result.dtype)
    error = np.abs(keras.ops.convert_to_numpy(result).astype("float64") - exact).max()
    print(f"ops.{name}: float64 in, {dtype} out, max error {error:.3g}")
    downcast = downcast or dtype != "float64"

# The same downcast inside a layer: a float64 SimpleRNN with its default tanh, no mask, no unroll.
sequence = keras.ops.convert_to_tensor(rng.normal(size=(2, 6, 3)), dtype="float64")
try:
    output = keras.layers.SimpleRNN(4, dtype="float64")(sequence)
    print(f"float64 SimpleRNN: ran, output {keras.backend.standardize_dtype(output.dtype)}")
except TypeError as error:
    message = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # JAX colours its message
    first_line = next((line.strip() for line in message.splitlines() if "carry" in line), message.splitlines()[0])
    print(f"float64 SimpleRNN: raised TypeError: {first_line[:200]}")
    downcast = True
sys.exit(1 if downcast else 0)
