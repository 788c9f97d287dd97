"""PyTorch: training a stateful LSTM or GRU (train_on_batch or fit) fails with an in-place modification error.

One bug for both kinds: each layer's own torch loop (lstm(), gru()) bypasses the copy of the states that
RNN.inner_loop makes; a stateful SimpleRNN, which has no loop of its own, trains (printed as the control).

Run:  KERAS_BACKEND=torch python torch_stateful_training_inplace_error.py   (exits 1 while the bug is present)
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

rng = np.random.default_rng(0)
batch, time, features, units = 2, 5, 3, 4
x = rng.normal(size=(2 * batch, time, features)).astype("float32")
y = np.zeros((2 * batch, units), dtype="float32")
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
failed = []
for layer_class in (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN):
    model = keras.Sequential([keras.Input((time, features), batch_size=batch), layer_class(units, stateful=True)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mse")
    try:
        model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    except Exception as error:  # the bug
        print(f"{layer_class.__name__}: fit raised", type(error).__name__ + ":", str(error).strip().splitlines()[0][:200])
        failed.append(layer_class.__name__)
        continue
    print(f"{layer_class.__name__}: fit ok")
sys.exit(1 if failed else 0)
