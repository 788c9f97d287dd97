"""Backend selection. Everything specific to one backend lives in its own module here.

Keras reads KERAS_BACKEND when it is first imported, so one process runs one backend: ``activate``
sets the variable, imports Keras and checks that Keras really runs the backend asked for. When a
command armed a backend log (``harness.execute.console.backend_log``), the backend's own output is
captured from here on, before anything of it is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
from dataclasses import dataclass
from types import ModuleType

BACKENDS = ("tensorflow", "jax", "torch")


class BackendUnavailable(RuntimeError):
    """The backend (or Keras) is not installed in this interpreter; the message says how to install it."""


@dataclass(frozen=True)
class BackendInfo:
    name: str
    device: str
    versions: dict[str, str]
    settings: dict[str, str]
    device_class: str = "cpu"  # cpu | gpu_highest | gpu_tf32: which tolerance rows apply


def backend_module(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; accepted: {', '.join(BACKENDS)}")
    return importlib.import_module(f"harness.execute.backends.{name}_backend")


def activate(name: str) -> BackendInfo:
    """Make Keras run on ``name`` in this process and describe the backend, device and versions."""
    module = backend_module(name)
    if importlib.util.find_spec(module.IMPORT_NAME) is None:
        raise BackendUnavailable(f"backend {name!r} is not installed in this interpreter; {module.INSTALL_HINT}")
    if importlib.util.find_spec("keras") is None:
        raise BackendUnavailable(f"keras is not installed in this interpreter; {module.INSTALL_HINT}")
    from harness.execute.console import capture_backend_output

    capture_backend_output()
    os.environ["KERAS_BACKEND"] = name
    settings = module.configure()
    import keras
    import numpy

    if keras.backend.backend() != name:
        raise BackendUnavailable(
            f"keras was already imported with backend {keras.backend.backend()!r}; run {name!r} in a fresh process"
        )
    versions = {
        "keras": keras.__version__,
        name: module.version(),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    return BackendInfo(name=name, device=module.device(), versions=versions, settings=settings, device_class=module.device_class())
