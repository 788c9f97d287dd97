"""PyTorch specifics: install hint, version, device."""

IMPORT_NAME = "torch"
INSTALL_HINT = "install it with: pip install 'keras-parity[torch]' (pin torch==2.13.0; or run: nox -s \"parity(backend='torch')\")"


def configure() -> dict[str, str]:
    """Settings applied before Keras is imported; recorded with every run. None for this backend."""
    return {}


def version() -> str:
    import torch

    return torch.__version__


def device() -> str:
    import torch

    return f"gpu:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


def device_class() -> str:
    """cpu, or on a GPU gpu_tf32 when TF32 is allowed for matmuls or cuDNN (cuDNN's default), else gpu_highest."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    return "gpu_tf32" if tf32 else "gpu_highest"
