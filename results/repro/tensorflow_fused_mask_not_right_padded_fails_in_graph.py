"""TensorFlow fused (cuDNN) path: a mask that is not right-padded fails predict() instead of falling back.

keras/src/backend/tensorflow/rnn.py `_cudnn_lstm` checks the mask with tf.Assert ("You are passing a RNN
mask that does not correspond to right-padded sequences, while using cuDNN ..."). Called eagerly, the
failed assertion raises InvalidArgumentError at once, `lstm` turns it into NotImplementedError and
Keras falls back to its generic loop. Inside a compiled function (predict, fit, evaluate) the Assert is
an op of the graph: it fails when the graph runs, after Keras's fallback could have happened, so the
model raises InvalidArgumentError. On CPU the fused path is never tried, so the same model works there.

On a machine without a GPU this script opens Keras's GPU check and replaces CudnnRNNV3 (which has no
CPU kernel) by a function that raises NotFoundError as a missing kernel does, as keras-parity's
kernel = "fused_on_cpu" does; on a GPU it runs the real kernel.
Run:  KERAS_BACKEND=tensorflow python tensorflow_fused_mask_not_right_padded_fails_in_graph.py   (exits 1 while present)
"""

import importlib
import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["tensorflow"], "modules": ["keras"], "gpu": False, "x64": False}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing:
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed"
          f"; found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)

import keras
import numpy as np
import tensorflow as tf

keras_rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")
if not tf.config.list_logical_devices("GPU"):
    keras_rnn._is_gpu_available = lambda: True

    def no_cpu_kernel(*args, **kwargs):
        raise tf.errors.NotFoundError(None, None, "CudnnRNNV3 has no CPU kernel")

    tf.raw_ops.CudnnRNNV3 = no_cpu_kernel

rng = np.random.default_rng(0)
batch, time, features, units = 3, 6, 4, 5
x = rng.normal(size=(batch, time, features)).astype("float32")
x[1, :2] = 0.0  # row 1 is left-padded: its first two steps are masked

model = keras.Sequential([keras.Input((time, features)), keras.layers.Masking(0.0), keras.layers.LSTM(units)])
print("backend:", keras.backend.backend(), tf.__version__, "keras", keras.__version__)
eager = keras.ops.convert_to_numpy(model(x))  # eager: the failed assertion makes Keras fall back
print("eager call works:", eager.shape)
try:
    model.predict(x, verbose=0)
except tf.errors.InvalidArgumentError as error:
    print("predict raised InvalidArgumentError:", str(error).split("[[")[0][-200:])
    sys.exit(1)
print("predict works")
sys.exit(0)
