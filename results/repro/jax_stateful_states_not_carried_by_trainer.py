"""JAX: a stateful LSTM does not carry its state through predict, evaluate (or fit, train_on_batch).

model(x) carries the state from one batch to the next on every backend; on JAX the trainer's
jitted steps (predict, predict_on_batch, evaluate, train_on_batch, fit) leave the state untouched.
Run:  KERAS_BACKEND=jax python jax_stateful_states_not_carried_by_trainer.py   (exits 1 while the bug is present)
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
x1, x2 = rng.normal(size=(2, batch, time, features)).astype("float32")


def build():
    lstm = keras.layers.LSTM(units, stateful=True, return_sequences=True)
    model = keras.Sequential([keras.Input((time, features), batch_size=batch), lstm])
    model.set_weights([rng2.normal(size=w.shape).astype("float32") * 0.5 for w in model.get_weights()])
    return model, lstm


rng2 = np.random.default_rng(1)
model, lstm = build()
first = keras.ops.convert_to_numpy(model(x1))
expected_second = keras.ops.convert_to_numpy(model(x2))  # state carried from x1
expected_h = keras.ops.convert_to_numpy(lstm.states[0])
lstm.reset_states()
results = {}
p1 = model.predict(x1, batch_size=batch, verbose=0)
results["state after predict(x1)"] = np.abs(keras.ops.convert_to_numpy(lstm.states[0]) - first[:, -1]).max()
p2 = model.predict(x2, batch_size=batch, verbose=0)
results["predict(x2) vs call(x2) after call(x1)"] = np.abs(p2 - expected_second).max()
lstm.reset_states()
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
model.evaluate(np.concatenate([x1, x2]), np.zeros((2 * batch, time, units)), batch_size=batch, verbose=0)
results["state after evaluate(x1, x2)"] = np.abs(keras.ops.convert_to_numpy(lstm.states[0]) - expected_h).max()
print("backend:", keras.backend.backend(), __import__(keras.backend.backend()).__version__, "keras", keras.__version__)
for name, value in results.items():
    print(f"max |{name} - expected|: {value:.3g}")
sys.exit(1 if max(results.values()) > 1e-5 else 0)
