"""JAX specifics: install hint, version, device, and x64.

JAX computes in float32 unless ``jax_enable_x64`` is set, even when a Keras layer asks for float64:
the request is silently truncated (with a UserWarning). The harness enables x64 so that float64
cases really run in float64, and records the setting; float32 layers are unaffected because Keras
casts to the layer's dtype explicitly.
"""

import os

IMPORT_NAME = "jax"
INSTALL_HINT = "install it with: pip install 'keras-parity[jax]' (or run: nox -s \"parity(backend='jax')\")"


def configure() -> dict[str, str]:
    """Settings applied before Keras is imported; recorded with every run."""
    os.environ["JAX_ENABLE_X64"] = "1"
    return {"JAX_ENABLE_X64": "1"}


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
