"""JAX: gradients of the same Keras LSTM models computed on the GPU and on the CPU in one process.

keras-parity's gradient study found, on an H200 with jax 0.11.2 (keras 3.15.1), that the gradient of one LSTM layer
shared by two branches (seed_example3_shared_instance, branches_sharedon_seqon) is wrong by 0.049 to 0.085 at both
precision modes, while the forward outputs agree and two separate instances with the same weights get the right
gradients (their sum is what the shared layer's gradient must be). On the same machine's CPU, with the same versions,
the shared gradient is right. (The harness's third GPU gradient mismatch, a masked LSTM's gradient with respect to
its initial state, is also there on the CPU: a known forward divergence, jax_scan_masked_output_is_previous_state.)
This script computes each gradient with jax.grad over model.stateless_call on the GPU and on the host CPU,
eagerly and under jax.jit (as the harness does: jax.jit(jax.value_and_grad(...))), and for the shared layer also
checks shared == sum of two separate instances on each device.

What was run where: its first form (eager jax.grad only, and the shared layer called on two DIFFERENT inputs) ran on
the H200 and did NOT show the finding (shared minus sum 0 on both devices; GPU against CPU 3.1e-5, TF32-sized). The
harness's cases call the shared layer twice on the SAME input, under jax.jit. A hypothesis, not measured: XLA merges
the two identical cuDNN forward calls into one, and the two backward calls then share one cuDNN reserve space, which
cuDNN's backward pass may overwrite. This form (same input, eager and jit) was written after the session's GPU time
was spent and has not itself been run on a GPU yet.
Run:  KERAS_BACKEND=jax python jax_gpu_gradients_against_cpu.py   (exits 1 while GPU and CPU disagree, 2 without a GPU)
"""

import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["jax"], "modules": ["keras"], "gpu": True, "x64": False}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing:
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed"
          f"; found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)

import jax
import jax.numpy as jnp
import keras
import numpy as np

if jax.default_backend() != "gpu":
    print("cannot run here: no GPU: this reproducer compares JAX's GPU with its CPU")
    sys.exit(2)

rng = np.random.default_rng(0)
batch, time, features, units = 3, 7, 5, 4
lstm_weights = [rng.normal(scale=0.5, size=s).astype("float32") for s in [(features, 4 * units), (units, 4 * units), (4 * units,)]]
xa = rng.normal(size=(batch, time, features)).astype("float32")
h0 = rng.normal(scale=0.5, size=(batch, units)).astype("float32")
c0 = rng.normal(scale=0.5, size=(batch, units)).astype("float32")
mask = np.ones((batch, time), dtype=bool)
mask[0, 2] = mask[1, 4:6] = mask[2, 0] = False  # holes
target = rng.normal(size=(batch, time, 2 * units)).astype("float32")


def shared_model(shared: bool) -> keras.Model:
    """One LSTM called twice on the same input (the seed's example 3), or two instances with the same weights."""
    a = keras.Input((time, features))
    first = keras.layers.LSTM(units, return_sequences=True)
    second = first if shared else keras.layers.LSTM(units, return_sequences=True)
    model = keras.Model(a, keras.layers.Concatenate()([first(a), second(a)]))
    for layer in {id(first): first, id(second): second}.values():
        layer.set_weights(lstm_weights)
    return model


def grads_of_weights(model: keras.Model, inputs: np.ndarray, jit: bool) -> list[np.ndarray]:
    trainable = [v.value for v in model.trainable_variables]
    rest = [v.value for v in model.non_trainable_variables]

    def loss(values):
        out, _ = model.stateless_call(values, rest, inputs)
        return jnp.mean((out - target) ** 2)

    grad = jax.jit(jax.grad(loss)) if jit else jax.grad(loss)
    return [np.asarray(g) for g in grad(trainable)]


def masked_state_grads(jit: bool) -> list[np.ndarray]:
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

    grad = jax.grad(loss, argnums=(0, 1))
    return [np.asarray(g) for g in (jax.jit(grad) if jit else grad)(jnp.asarray(h0), jnp.asarray(c0))]


results = {}
for device in (jax.devices("gpu")[0], jax.devices("cpu")[0]):
    for jit in (False, True):
        with jax.default_device(device):
            keras.utils.clear_session()
            shared = grads_of_weights(shared_model(True), xa, jit)
            separate = grads_of_weights(shared_model(False), xa, jit)
            summed = [separate[i] + separate[i + 3] for i in range(3)]
            results[device.platform, jit] = {"shared": shared, "masked_state": masked_state_grads(jit),
                                             "shared_minus_sum": max(float(np.max(np.abs(s - t))) for s, t in zip(shared, summed))}
print("jax", jax.__version__, "keras", keras.__version__)
bad = False
for (platform, jit), found in results.items():
    print(f"{platform}{' jit' if jit else ''}: shared-layer gradient minus the sum of two separate instances: {found['shared_minus_sum']:.3g}")
    bad |= found["shared_minus_sum"] > 1e-4
for jit in (False, True):
    for name in ("shared", "masked_state"):
        worst = max(float(np.max(np.abs(g - c))) for g, c in zip(results["gpu", jit][name], results["cpu", jit][name]))
        print(f"{name}{' (jit)' if jit else ''}: max |GPU - CPU| = {worst:.3g}")
        bad |= worst > 1e-3
sys.exit(1 if bad else 0)
