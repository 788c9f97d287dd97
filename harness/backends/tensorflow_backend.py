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
