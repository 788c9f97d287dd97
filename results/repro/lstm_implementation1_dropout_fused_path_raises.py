"""LSTM(implementation=1, dropout>0, recurrent_dropout=0, use_cudnn="auto") raises in training mode, on every backend.

Keras 3.15.1, keras/src/layers/rnn/lstm.py: with implementation=1 the LSTMCell sets dropout_mask_count = 4, so
get_dropout_mask returns a LIST of four per-gate masks. LSTM.inner_loop's fused-path branch (taken whenever
use_cudnn is "auto" or True and recurrent_dropout is 0, before the backend decides whether it has a fused kernel)
treats that list as one (batch, features) mask:

    dp_mask = self.cell.get_dropout_mask(sequences[:, 0, :])   # [4 x (batch, features)]
    dp_mask = ops.expand_dims(dp_mask, axis=1)                  # (4, 1, batch, features)
    dp_mask = ops.broadcast_to(dp_mask, ops.shape(sequences))   # (batch, time, features): fails

The exception is not NotImplementedError, so it escapes instead of falling back to the generic loop. The same layer
runs in inference (training=False), with use_cudnn=False, and with any recurrent_dropout (which skips that branch).
Bidirectional is not affected only because it rebuilds its layers from get_config, which omits `implementation`
(see lstm_implementation_lost_in_bidirectional.py).
Run:  KERAS_BACKEND=jax python lstm_implementation1_dropout_fused_path_raises.py   (exits 1 while the bug is present)
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
import numpy as np

x = np.random.default_rng(0).normal(size=(5, 7, 4)).astype("float32")
print("backend:", keras.backend.backend(), "keras", keras.__version__)
results = {}
for use_cudnn in ("auto", False):
    layer = keras.layers.LSTM(6, implementation=1, dropout=0.3, use_cudnn=use_cudnn, return_sequences=True)
    for training in (False, True):
        try:
            keras.ops.convert_to_numpy(layer(x, training=training))
            results[(use_cudnn, training)] = "runs"
        except Exception as error:
            while error.__cause__ or error.__context__:  # Keras re-raises with its call context; keep the original
                error = error.__cause__ or error.__context__
            results[(use_cudnn, training)] = f"raises {type(error).__name__}: {str(error).strip().splitlines()[0][:160]}"
        print(f"use_cudnn={use_cudnn!r:7} training={training!s:5}: {results[(use_cudnn, training)]}")
sys.exit(1 if results[("auto", True)] != "runs" and results[(False, True)] == "runs" else 0)
