"""JAX: gradients of the same Keras LSTM models computed on the GPU and on the CPU in one process.

keras-parity's gradient study found, on an H200 with jax 0.11.2 (keras 3.15.1), gradients wrong by 0.03 to 0.08
for (a) one LSTM layer shared by two branches (seed_example3_shared_instance, branches_sharedon_seqon: the
shared layer's gradient is not the sum of two separate instances') and (b) a masked LSTM with a random
initial state, for the gradient with respect to that state (mask_holes_argument_backoff_unrolloff_initrandom).
This script computes each gradient with jax.grad over model.stateless_call on the GPU and on the host CPU,
and for the shared layer also checks shared == sum of two separate instances on each device.
Run:  KERAS_BACKEND=jax python jax_gpu_gradients_against_cpu.py   (exits 1 while GPU and CPU disagree, 2 without a GPU)
"""

import sys

import jax
import jax.numpy as jnp
import keras
import numpy as np

if jax.default_backend() != "gpu":
    print("no GPU: this reproducer compares JAX's GPU with its CPU")
    sys.exit(2)

rng = np.random.default_rng(0)
batch, time, features, units = 3, 7, 5, 4
lstm_weights = [rng.normal(scale=0.5, size=s).astype("float32") for s in [(features, 4 * units), (units, 4 * units), (4 * units,)]]
xa = rng.normal(size=(batch, time, features)).astype("float32")
xb = rng.normal(size=(batch, time, features)).astype("float32")
h0 = rng.normal(scale=0.5, size=(batch, units)).astype("float32")
c0 = rng.normal(scale=0.5, size=(batch, units)).astype("float32")
mask = np.ones((batch, time), dtype=bool)
mask[0, 2] = mask[1, 4:6] = mask[2, 0] = False  # holes
target = rng.normal(size=(batch, time, 2 * units)).astype("float32")


def shared_model(shared: bool) -> keras.Model:
    a, b = keras.Input((time, features)), keras.Input((time, features))
    first = keras.layers.LSTM(units, return_sequences=True)
    second = first if shared else keras.layers.LSTM(units, return_sequences=True)
    model = keras.Model([a, b], keras.layers.Concatenate()([first(a), second(b)]))
    for layer in {id(first): first, id(second): second}.values():
        layer.set_weights(lstm_weights)
    return model


def grads_of_weights(model: keras.Model, inputs: list) -> list[np.ndarray]:
    trainable = [v.value for v in model.trainable_variables]
    rest = [v.value for v in model.non_trainable_variables]

    def loss(values):
        out, _ = model.stateless_call(values, rest, inputs)
        return jnp.mean((out - target) ** 2)

    return [np.asarray(g) for g in jax.grad(loss)(trainable)]


def masked_state_grads() -> list[np.ndarray]:
    x_in, h_in, c_in = keras.Input((time, features)), keras.Input((units,)), keras.Input((units,))
    m_in = keras.Input((time,), dtype="bool")
    layer = keras.layers.LSTM(units, return_sequences=True)
    model = keras.Model([x_in, h_in, c_in, m_in], layer(x_in, initial_state=[h_in, c_in], mask=m_in))
    layer.set_weights(lstm_weights)
    trainable = [v.value for v in model.trainable_variables]
    rest = [v.value for v in model.non_trainable_variables]

    def loss(h, c):
        out, _ = model.stateless_call(trainable, rest, [xa, h, c, mask])
        return jnp.mean((out - target[..., :units]) ** 2)

    return [np.asarray(g) for g in jax.grad(loss, argnums=(0, 1))(jnp.asarray(h0), jnp.asarray(c0))]


results = {}
for device in (jax.devices("gpu")[0], jax.devices("cpu")[0]):
    with jax.default_device(device):
        keras.utils.clear_session()
        shared = grads_of_weights(shared_model(True), [xa, xb])
        separate = grads_of_weights(shared_model(False), [xa, xb])
        summed = [separate[i] + separate[i + 3] for i in range(3)]
        results[device.platform] = {"shared": shared, "shared_minus_sum": max(float(np.max(np.abs(s - t))) for s, t in zip(shared, summed)),
                                    "masked_state": masked_state_grads()}
print("jax", jax.__version__, "keras", keras.__version__)
bad = False
for platform, found in results.items():
    print(f"{platform}: shared-layer gradient minus the sum of two separate instances: {found['shared_minus_sum']:.3g}")
    bad |= found["shared_minus_sum"] > 1e-4
for name in ("shared", "masked_state"):
    worst = max(float(np.max(np.abs(g - c))) for g, c in zip(results["gpu"][name], results["cpu"][name]))
    print(f"{name}: max |GPU - CPU| = {worst:.3g}")
    bad |= worst > 1e-3
sys.exit(1 if bad else 0)
