"""use_cudnn=True on a machine without a GPU: TensorFlow refuses it, PyTorch runs the LSTM and the GRU, JAX runs the GRU.

Keras 3.15.1's LSTM and GRU layers (keras/src/layers/rnn/lstm.py and gru.py, call()) try the backend's fused entry
point (backend.lstm / backend.gru) when use_cudnn is "auto" or True; when it raises NotImplementedError and
use_cudnn is True, the layer raises ValueError("use_cudnn=True was specified, but cuDNN is not supported for this
layer configuration with this backend. ..."). Whether that happens on a CPU depends on the backend's entry point:
- TensorFlow's lstm() and gru() need cuDNN and raise NotImplementedError on a CPU: refused;
- JAX's lstm() needs cuDNN (jax.experimental.rnn) and declines: refused; its gru() is a lax.scan of its own that
  runs on any device whenever reset_after is true, there is no mask and unroll is false: it runs;
- PyTorch's lstm() and gru() run a non-cuDNN path of their own when the input is not on CUDA: both run.
So the same layer, with the same configuration, is refused on one backend and runs on another, and where it runs
no cuDNN is involved. The numbers it computes match the generic loop's (keras-parity judges them against the
float64 reference); what differs is what the backend accepts.

Run with only keras and one backend installed, on a machine without a GPU (or with CUDA_VISIBLE_DEVICES=""):
    KERAS_BACKEND=torch python use_cudnn_true_accepted_on_cpu.py
Exits 1 where a use_cudnn=True layer runs (the backend accepts what TensorFlow refuses), 0 where both are refused.
"""

import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["tensorflow", "jax", "torch"], "modules": ["keras"], "gpu": False, "x64": False}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing:
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed; "
          f"found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras
import numpy as np

rng = np.random.default_rng(0)
batch, time, features, units = 3, 6, 5, 4
x = rng.normal(size=(batch, time, features)).astype("float32")
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)

accepted = []
for layer_class, gates in ((keras.layers.LSTM, 4), (keras.layers.GRU, 3)):
    weights = [rng.normal(size=(features, gates * units)).astype("float32") / np.sqrt(features),
               rng.normal(size=(units, gates * units)).astype("float32") / np.sqrt(units)]
    weights.append(rng.normal(size=(2, gates * units) if layer_class is keras.layers.GRU else (gates * units,)).astype("float32") * 0.1)
    outputs = {}
    for use_cudnn in (True, False):
        layer = layer_class(units, return_sequences=True, use_cudnn=use_cudnn)
        layer.build((batch, time, features))
        layer.set_weights(weights)
        try:
            outputs[use_cudnn] = keras.ops.convert_to_numpy(layer(x))
        except ValueError as error:
            outputs[use_cudnn] = None
            print(f"{layer_class.__name__}(use_cudnn={use_cudnn}) refused: " + next((line.strip() for line in str(error).splitlines() if "use_cudnn" in line), str(error)[:120]))
    if outputs[True] is not None:
        accepted.append(layer_class.__name__)
        print(f"{layer_class.__name__}(use_cudnn=True) ran on a CPU; largest difference from use_cudnn=False: "
              f"{float(np.abs(outputs[True] - outputs[False]).max()):.3g}")
sys.exit(1 if accepted else 0)
