"""Bidirectional(LSTM(implementation=1)) runs implementation 2 in both directions (Keras 3.15.1, every backend).

keras/src/layers/rnn/bidirectional.py rebuilds the forward and backward layers from the wrapped layer's
get_config(); LSTM.get_config (keras/src/layers/rnn/lstm.py) does not include `implementation` (the cell pops it
from kwargs), so both rebuilt cells get the default, 2 (use_cudnn, also not serialized, is copied back by hand;
implementation is not). The same holds for any LSTM saved and loaded, or cloned with clone_model. At inference the
two implementations compute the same function; in training mode they differ: implementation 1 draws four
independent dropout masks (one per gate), implementation 2 one mask shared by the gates. (With recurrent_dropout,
the rebuilt cell is switched back to implementation 1, so that case is unaffected.)
Run:  KERAS_BACKEND=jax python lstm_implementation_lost_in_bidirectional.py   (exits 1 while the bug is present)
"""

import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["tensorflow", "jax", "torch"], "modules": ["keras"], "gpu": False, "x64": False}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing:
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed"
          f"; found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)

import keras

layer = keras.layers.LSTM(6, implementation=1, dropout=0.3, return_sequences=True)
bidirectional = keras.layers.Bidirectional(layer)
clone = keras.layers.LSTM.from_config(layer.get_config())
print("backend:", keras.backend.backend(), "keras", keras.__version__)
print("the wrapped LSTM's cell:    implementation", layer.cell.implementation)
print("Bidirectional forward cell: implementation", bidirectional.forward_layer.cell.implementation)
print("Bidirectional backward cell: implementation", bidirectional.backward_layer.cell.implementation)
print("LSTM.from_config(get_config()): implementation", clone.cell.implementation, "; 'implementation' in get_config():",
      "implementation" in layer.get_config())
sys.exit(1 if bidirectional.forward_layer.cell.implementation != layer.cell.implementation else 0)
