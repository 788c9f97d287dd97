"""JAX fused (cuDNN) path: go_backwards=True with return_sequences=True returns the sequence in input order.

Keras documents (and its generic loop returns) a go_backwards LSTM's sequence in processing order: the
output for the last input step first. keras/src/backend/jax/rnn.py `lstm` (the cuDNN path added in
keras-team/keras#22399) flips the inputs, runs the kernel, then flips the outputs back
("if go_backwards and return_sequences: outputs = jnp.flip(outputs, axis=1)"), so on a GPU the same
layer returns the reversed sequence. The final output and the states are right.

On a machine without a GPU this script opens Keras's GPU check and gives the kernel JAX's own CPU
reference for it (jax.experimental.rnn.lstm_ref: the cuDNN kernel's equations), as keras-parity's
kernel = "fused_on_cpu" does; on a GPU it runs the real kernel.
Run:  KERAS_BACKEND=jax python jax_fused_go_backwards_sequence_flipped.py   (exits 1 while the bug is present)
"""

import importlib
import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["jax"], "modules": ["keras"], "gpu": False, "x64": False}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing:
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed"
          f"; found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)

import jax
import jax.experimental.rnn as jax_rnn
import keras
import numpy as np

keras_rnn = importlib.import_module("keras.src.backend.jax.rnn")
if jax.default_backend() != "gpu":
    keras_rnn._is_gpu_available = lambda: True

    def lstm_on_cpu(x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, num_layers, dropout, bidirectional, precision=None):
        w_ih, w_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(weights, input_size, hidden_size, num_layers, bidirectional)
        return jax_rnn.lstm_ref(x, h_0, c_0, w_ih, w_hh, b_ih, b_hh, seq_lengths, input_size, hidden_size, num_layers, dropout, bidirectional)

    jax_rnn.lstm = lstm_on_cpu

rng = np.random.default_rng(0)
batch, time, features, units = 2, 5, 3, 4
x = rng.normal(size=(batch, time, features)).astype("float32")
weights = [rng.normal(scale=0.5, size=shape).astype("float32") for shape in [(features, 4 * units), (units, 4 * units), (4 * units,)]]

outputs = {}
for use_cudnn in ("auto", False):  # the fused path, and Keras's generic loop
    layer = keras.layers.LSTM(units, go_backwards=True, return_sequences=True, use_cudnn=use_cudnn)
    layer.build((batch, time, features))
    layer.set_weights(weights)
    outputs[use_cudnn] = keras.ops.convert_to_numpy(layer(x))

print("backend:", keras.backend.backend(), jax.__version__, "keras", keras.__version__, "device", jax.default_backend())
print("fused, first step:  ", outputs["auto"][0, 0])
print("generic, first step:", outputs[False][0, 0])
print("fused equals generic reversed in time:", np.allclose(outputs["auto"], outputs[False][:, ::-1], atol=1e-5))
sys.exit(1 if not np.allclose(outputs["auto"], outputs[False], atol=1e-5) else 0)
