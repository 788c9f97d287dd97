"""model.predict() rounds float64 inputs to float32 even for a float64 model (all backends).

Run with only keras and one backend installed:  KERAS_BACKEND=torch python predict_rounds_float64_inputs.py
(on JAX, also set JAX_ENABLE_X64=1 so that float64 exists at all). Exits 1 while the bug is present.
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

x = np.random.default_rng(0).normal(size=(2, 10, 3))  # float64
model = keras.Sequential([keras.Input((10, 3), dtype="float64"), keras.layers.LSTM(4, dtype="float64")])

via_call = keras.ops.convert_to_numpy(model(x))
via_predict = model.predict(x, verbose=0)
via_call_on_float32_inputs = keras.ops.convert_to_numpy(model(x.astype("float32").astype("float64")))

print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
print("output dtypes:", via_call.dtype, via_predict.dtype)
print("max |predict - call|:", np.abs(via_predict - via_call).max())
print("max |predict - call on float32-rounded inputs|:", np.abs(via_predict - via_call_on_float32_inputs).max())
sys.exit(1 if np.abs(via_predict - via_call).max() > 0 else 0)
