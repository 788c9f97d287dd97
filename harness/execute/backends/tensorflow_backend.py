"""TensorFlow specifics: install hint, version, device, precision, and where its LSTM kernels are."""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, Iterator

IMPORT_NAME = "tensorflow"
INSTALL_HINT = "install it with: pip install 'keras-parity[tensorflow]' (or run: nox -s \"parity(keras='release', backend='tensorflow')\")"


def configure(precision: str) -> dict[str, Any]:
    """Settings applied before Keras is imported; recorded with every run. ``highest`` turns TensorFloat-32
    execution off (TensorFlow enables it by default on GPUs that have it: matmuls and convolutions)."""
    if precision == "highest":
        import tensorflow as tf

        _DEFAULTS.setdefault("tf32", _tf32_enabled())
        tf.config.experimental.enable_tensor_float_32_execution(False)
    return {}


_DEFAULTS: dict[str, Any] = {}  # TensorFlow's TF32 setting as this process found it, before configure changed it


def restore_precision() -> None:
    """Undo ``configure`` ('harness batch': a command that asked for highest must not leave TF32 off for the next)."""
    if "tf32" in _DEFAULTS:
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(_DEFAULTS["tf32"])


def gpu_present() -> bool:
    """Whether TensorFlow sees a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _tf32_enabled() -> bool:
    import tensorflow as tf

    experimental = tf.config.experimental
    read = getattr(experimental, "tensor_float_32_execution_enabled", None) or experimental.is_tensor_float_32_execution_enabled
    return bool(read())


def precision_settings() -> dict[str, Any]:
    """The precision in effect, read back from TensorFlow."""
    return {"tf32_execution": _tf32_enabled()}


def version() -> str:
    import tensorflow as tf

    return tf.__version__


def device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return f"gpu:{gpus[0].name}" if gpus else "cpu"


def device_class() -> str:
    """cpu, or on a GPU gpu_tf32 when TensorFloat-32 is enabled (TensorFlow's default), else gpu_highest."""
    import tensorflow as tf

    if not tf.config.list_logical_devices("GPU"):
        return "cpu"
    return "gpu_tf32" if _tf32_enabled() else "gpu_highest"


def device_details() -> dict[str, Any]:
    """The CPU, or the first GPU (name, compute capability, driver) and the CUDA / cuDNN TensorFlow was built with."""
    import tensorflow as tf

    from harness.execute.backends import best_effort, cpu_details, nvidia_driver

    build = best_effort(lambda: dict(tf.sysconfig.get_build_info()))
    build = build if isinstance(build, dict) else {}
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return cpu_details()
    details = best_effort(lambda: dict(tf.config.experimental.get_device_details(gpus[0])))
    details = details if isinstance(details, dict) else {}
    capability = details.get("compute_capability")
    return {
        "kind": "gpu", "name": details.get("device_name", gpus[0].name), "gpu_count": len(gpus),
        "compute_capability": ".".join(str(part) for part in capability) if capability else None,
        "driver": nvidia_driver(), "cuda": build.get("cuda_version"), "cudnn": build.get("cudnn_version"),
        "host": cpu_details(),
    }


def kernel_hooks() -> list[tuple[str, str, str]]:
    """(module, attribute, role) for harness.execute.kernels, from the cell table (harness.execute.kinds):
    the cuDNN kernel inside TensorFlow's ``lstm``
    (it builds the CudnnRNNV3 op)."""
    from harness.execute.kinds import kernel_hooks as hooks_by_cell

    return hooks_by_cell("tensorflow")


@contextlib.contextmanager
def fused_on_cpu() -> Iterator[Any]:
    """Keras's TensorFlow fused path, checked structurally on CPU: ``tf.raw_ops.CudnnRNNV3`` has no CPU kernel
    (and no exact CPU stand-in), so its GPU check (``_is_gpu_available``) answers True and the op is replaced
    by a recorder that counts the call and raises ``NotFoundError`` ("no kernel for this device"), which Keras
    turns into its generic loop. The numbers are the generic loop's; what this mode checks is that Keras's
    fused code (weight re-layout, mask checks, reverse_sequence for go_backwards) ran up to the kernel
    (``stand_in_calls``, and the observed path ``fused_failed->generic``)."""
    import tensorflow as tf
    keras_rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")

    from harness.execute.backends import StandIn, patch_attributes

    stand_in = StandIn(kernel="tf.raw_ops.CudnnRNNV3", stand_in="a recorder that declines (no CPU kernel exists)",
                       gate="keras.src.backend.tensorflow.rnn._is_gpu_available -> True", numeric=False)

    def cudnn_rnn_v3_recorder(*args, **kwargs):
        stand_in.calls += 1
        raise tf.errors.NotFoundError(None, None, "CudnnRNNV3 has no CPU kernel (keras-parity fused_on_cpu recorder)")

    with patch_attributes([(keras_rnn, "_is_gpu_available", lambda: True), (tf.raw_ops, "CudnnRNNV3", cudnn_rnn_v3_recorder)]):
        yield stand_in


# --- gradients (harness.execute.gradients) ----------------------------------------------------------


def loss_and_gradients(model: Any, inputs: list[Any], loss_fn: Any, differentiable: list[bool]) -> tuple[Any, list[Any], list[Any]]:
    """TensorFlow's own autodiff: the loss ``loss_fn(model outputs)`` and its gradients, taken by
    ``tf.GradientTape``, with respect to ``model.trainable_weights`` (in that order) and to the inputs marked
    ``differentiable`` (None for the others). The model is called with training=False."""
    import tensorflow as tf

    tensors = [tf.convert_to_tensor(value) for value in inputs]
    with tf.GradientTape() as tape:
        for tensor, wanted in zip(tensors, differentiable):
            if wanted:
                tape.watch(tensor)
        outputs = model(tensors if len(tensors) > 1 else tensors[0], training=False)
        loss = loss_fn(outputs)
    watched = [tensor for tensor, wanted in zip(tensors, differentiable) if wanted]
    grads = tape.gradient(loss, list(model.trainable_weights) + watched,
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    weight_grads, input_grads = grads[: len(model.trainable_weights)], iter(grads[len(model.trainable_weights):])
    return loss, list(weight_grads), [next(input_grads) if wanted else None for wanted in differentiable]
