"""JAX specifics: install hint, version, device, x64, precision, and where its LSTM kernels are.

JAX computes in float32 unless ``jax_enable_x64`` is set, even when a Keras layer asks for float64:
the request is silently truncated (with a UserWarning). The harness enables x64 so that float64
cases really run in float64, and records the setting; float32 layers are unaffected because Keras
casts to the layer's dtype explicitly.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from typing import Any, Iterator

IMPORT_NAME = "jax"
INSTALL_HINT = "install it with: pip install 'keras-parity[jax]' (or run: nox -s \"parity(keras='release', backend='jax')\")"


# JAX's persistent compilation cache (issue 16): most of a JAX case's time is XLA compiling, and the cases and
# their model-building APIs lower to the same programs again and again (the weights are arguments, not
# constants). XLA's output is a function of the program, the compile options and the jaxlib version, all in the
# cache key, so a cached executable computes bitwise what a fresh compile would (tests/test_batch.py checks it).
# KERAS_PARITY_JAX_CACHE names the folder; set it empty to turn the cache off.
COMPILATION_CACHE_ENV = "KERAS_PARITY_JAX_CACHE"


def compilation_cache_dir() -> str | None:
    """Where JAX keeps compiled programs between cases and runs: ``$KERAS_PARITY_JAX_CACHE`` (empty: no cache),
    by default one folder per user in the temporary directory; None when off."""
    value = os.environ.get(COMPILATION_CACHE_ENV)
    if value is not None:
        return value or None
    return os.path.join(tempfile.gettempdir(), f"keras-parity-jax-cache-{os.getuid()}")


def configure(precision: str) -> dict[str, Any]:
    """Settings applied before Keras is imported; recorded with every run. ``highest`` sets JAX's default
    matmul precision to "highest" (JAX's default on GPU lets float32 matmuls use TF32 tensor cores). Every
    compiled program goes into the persistent compilation cache (``compilation_cache_dir``), whatever it cost."""
    os.environ["JAX_ENABLE_X64"] = "1"
    import jax

    if precision == "highest":
        _DEFAULTS.setdefault("matmul_precision", jax.config.jax_default_matmul_precision)
        jax.config.update("jax_default_matmul_precision", "highest")
    cache = compilation_cache_dir()
    if cache is not None:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return {"JAX_ENABLE_X64": "1", "jax_compilation_cache": "persistent" if cache is not None else "off"}


_DEFAULTS: dict[str, Any] = {}  # JAX's settings as this process found them, before configure changed them


def restore_precision() -> None:
    """Undo ``configure``'s precision ('harness batch': a command that asked for highest must not leave it to the next)."""
    if "matmul_precision" in _DEFAULTS:
        import jax

        jax.config.update("jax_default_matmul_precision", _DEFAULTS["matmul_precision"])


def gpu_present() -> bool:
    """Whether JAX's default backend is a GPU (asked before Keras is imported, with float64 enabled as configure does)."""
    os.environ["JAX_ENABLE_X64"] = "1"
    import jax

    return jax.default_backend() != "cpu"


def precision_settings() -> dict[str, Any]:
    """The precision in effect, read back from JAX (None: JAX's default)."""
    import jax

    value = jax.config.jax_default_matmul_precision
    return {"jax_default_matmul_precision": None if value is None else str(value), "jax_enable_x64": bool(jax.config.jax_enable_x64)}


def version() -> str:
    import jax

    return jax.__version__


def device() -> str:
    import jax

    first = jax.devices()[0]
    return "cpu" if first.platform == "cpu" else f"{first.platform}:{first.device_kind}"


def device_class() -> str:
    """cpu, or on a GPU gpu_highest when float32 matmuls are asked for in full precision, else gpu_tf32
    (JAX's default matmul precision on GPU uses TF32 tensor cores)."""
    import jax

    if jax.devices()[0].platform == "cpu":
        return "cpu"
    precision = str(jax.config.jax_default_matmul_precision or "").lower()
    return "gpu_highest" if precision in ("highest", "float32") else "gpu_tf32"


def device_details() -> dict[str, Any]:
    """The CPU, or the first GPU (kind, compute capability, driver) and the CUDA / cuDNN jaxlib runs with."""
    import jax

    from harness.execute.backends import best_effort, cpu_details, nvidia_driver

    first = jax.devices()[0]
    if first.platform == "cpu":
        return cpu_details()

    def cuda_versions() -> dict[str, Any]:
        from jax._src.lib import cuda_versions as versions

        if versions is None:
            return {}
        return {"cuda": versions.cuda_runtime_get_version(), "cudnn": versions.cudnn_get_version(),
                "cuda_driver_api": versions.cuda_driver_get_version()}

    libraries = best_effort(cuda_versions)
    return {
        "kind": "gpu", "platform": first.platform, "name": first.device_kind, "gpu_count": len(jax.devices()),
        "compute_capability": best_effort(lambda: str(first.compute_capability)),
        "driver": nvidia_driver(), **(libraries if isinstance(libraries, dict) else {"cuda": libraries}),
        "host": cpu_details(),
    }


def kernel_hooks() -> list[tuple[str, str, str]]:
    """(module, attribute, role) for harness.execute.kernels, from the cell table (harness.execute.kinds):
    the cuDNN kernel JAX's ``lstm`` and ``bidirectional_lstm`` import at call time (``from jax.experimental.rnn import lstm``)."""
    from harness.execute.kinds import kernel_hooks as hooks_by_cell

    return hooks_by_cell("jax")


@contextlib.contextmanager
def fused_on_cpu() -> Iterator[Any]:
    """Keras's JAX fused path on CPU: its GPU check (``_is_gpu_available``) answers True, and the cuDNN kernel
    ``jax.experimental.rnn.lstm`` is replaced by ``jax.experimental.rnn.lstm_ref``, JAX's own reference for
    it (the same equations and the same flat cuDNN weight layout, unpacked by ``unpack_lstm_weights``, as a
    ``lax.scan``). Everything Keras does around the kernel (the weight re-layout, go_backwards, the states,
    Bidirectional's fused call) runs as shipped."""
    import jax.experimental.rnn as jax_rnn
    keras_rnn = importlib.import_module("keras.src.backend.jax.rnn")

    from harness.execute.backends import StandIn, patch_attributes

    stand_in = StandIn(kernel="jax.experimental.rnn.lstm (cuDNN)", stand_in="jax.experimental.rnn.lstm_ref",
                       gate="keras.src.backend.jax.rnn._is_gpu_available -> True", numeric=True)

    def lstm_on_cpu(x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, num_layers, dropout, bidirectional,
                    precision=None):
        stand_in.calls += 1
        w_ih, w_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(weights, input_size, hidden_size, num_layers, bidirectional)
        return jax_rnn.lstm_ref(x, h_0, c_0, w_ih, w_hh, b_ih, b_hh, seq_lengths, input_size, hidden_size, num_layers,
                                dropout, bidirectional)

    with patch_attributes([(keras_rnn, "_is_gpu_available", lambda: True), (jax_rnn, "lstm", lstm_on_cpu)]):
        yield stand_in


# --- gradients (harness.execute.gradients) ----------------------------------------------------------


def loss_and_gradients(model: Any, inputs: list[Any], loss_fn: Any, differentiable: list[bool]) -> tuple[Any, list[Any], list[Any]]:
    """JAX's own autodiff: ``jax.value_and_grad`` over the model's ``stateless_call`` (not training), with
    respect to the trainable variables' values (``model.trainable_weights`` order) and to the inputs marked
    ``differentiable`` (None for the others)."""
    import jax
    import jax.numpy as jnp

    trainable = [variable.value for variable in model.trainable_variables]
    non_trainable = [variable.value for variable in model.non_trainable_variables]
    arrays = [jnp.asarray(value) for value in inputs]
    positions = [k for k, wanted in enumerate(differentiable) if wanted]

    def loss_of(weights, wanted_inputs):
        full = list(arrays)
        for k, value in zip(positions, wanted_inputs):
            full[k] = value
        # No training argument: stateless_call passes keyword arguments to call() itself, and a subclassed
        # model's call() need not take one (training defaults to off).
        outputs, _ = model.stateless_call(weights, non_trainable, full if len(full) > 1 else full[0])
        return loss_fn(outputs)

    # One compiled computation (eager JAX would compile every scan and op of the model separately).
    loss, (weight_grads, input_grads) = jax.jit(jax.value_and_grad(loss_of, argnums=(0, 1)))(trainable, [arrays[k] for k in positions])
    by_position = dict(zip(positions, input_grads))
    return loss, list(weight_grads), [by_position.get(k) for k in range(len(arrays))]
