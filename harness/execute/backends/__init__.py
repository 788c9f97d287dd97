"""Backend selection. Everything specific to one backend lives in its own module here.

Keras reads KERAS_BACKEND when it is first imported, so one process runs one backend: ``activate``
sets the variable, imports Keras and checks that Keras really runs the backend asked for. When a
command armed a backend log (``harness.execute.console.backend_log``), the backend's own output is
captured from here on, before anything of it is imported.

Precision modes (``activate(name, precision=...)``, ``harness run --precision``): ``default`` leaves each
backend as users get it; ``highest`` turns TensorFloat-32 off everywhere (TensorFlow's TF32 execution,
JAX's default matmul precision, PyTorch's cuBLAS and cuDNN TF32 flags). Either way the settings are read
back from the backend after they were applied and recorded (``BackendInfo.settings``), and the device
class follows from what was read back, never from the mode asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

BACKENDS = ("tensorflow", "jax", "torch")
PRECISIONS = ("default", "highest")


class BackendUnavailable(RuntimeError):
    """The backend (or Keras) is not installed in this interpreter; the message says how to install it."""


@dataclass(frozen=True)
class BackendInfo:
    name: str
    device: str
    versions: dict[str, str]
    settings: dict[str, Any]  # what was applied and, read back from the backend, the precision in effect
    device_class: str = "cpu"  # cpu | gpu_highest | gpu_tf32: which tolerance rows apply
    device_details: dict[str, Any] = field(default_factory=dict)  # the CPU, or the GPU with its driver, CUDA and cuDNN


def backend_module(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; accepted: {', '.join(BACKENDS)}")
    return importlib.import_module(f"harness.execute.backends.{name}_backend")


def activate(name: str, precision: str = "default") -> BackendInfo:
    """Make Keras run on ``name`` in this process, in precision mode ``precision`` (``PRECISIONS``), and
    describe the backend, device, versions and the settings read back."""
    module = backend_module(name)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision mode {precision!r}; accepted: {', '.join(PRECISIONS)}")
    if importlib.util.find_spec(module.IMPORT_NAME) is None:
        raise BackendUnavailable(f"backend {name!r} is not installed in this interpreter; {module.INSTALL_HINT}")
    if importlib.util.find_spec("keras") is None:
        raise BackendUnavailable(f"keras is not installed in this interpreter; {module.INSTALL_HINT}")
    from harness.execute.console import capture_backend_output

    capture_backend_output()
    os.environ["KERAS_BACKEND"] = name
    settings = module.configure(precision)
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
    settings = {"precision_mode": precision, **settings, **module.precision_settings()}
    return BackendInfo(name=name, device=module.device(), versions=versions, settings=settings,
                       device_class=module.device_class(), device_details=module.device_details())


def cpu_details() -> dict[str, Any]:
    """The host CPU, for a run on CPU (and beside a GPU's details): its model name where the system tells it."""
    return {"kind": "cpu", "processor": _cpu_model() or platform.processor() or "unknown", "machine": platform.machine(),
            "cpu_count": os.cpu_count()}


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return None


def nvidia_driver() -> str | None:
    """The NVIDIA driver version nvidia-smi reports for the first GPU; None where it cannot tell."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        completed = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                                   text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = completed.stdout.strip().splitlines()
    return lines[0].strip() if completed.returncode == 0 and lines else None


def best_effort(read: Any) -> Any:
    """``read()``, or a one-line note of why it could not be read (device details must never stop a run)."""
    try:
        return read()
    except Exception as error:  # a missing attribute on another version, a driver that does not answer
        return f"unavailable ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})".replace(": )", ")")
