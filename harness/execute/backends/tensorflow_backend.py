"""TensorFlow specifics: install hint, version, device."""

IMPORT_NAME = "tensorflow"
INSTALL_HINT = "install it with: pip install 'keras-parity[tensorflow]' (or run: nox -s \"parity(backend='tensorflow')\")"


def configure() -> dict[str, str]:
    """Settings applied before Keras is imported; recorded with every run. None for this backend."""
    return {}


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
    return "gpu_tf32" if tf.config.experimental.is_tensor_float_32_execution_enabled() else "gpu_highest"
