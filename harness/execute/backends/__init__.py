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

Keras-2 mode (``activate(name, keras_api="tf_keras")``, ``harness run --keras-api tf_keras``, TensorFlow only):
Keras 3 still selects and checks the backend, and the models are built with tf_keras (harness.execute.keras_api);
the versions then record ``keras`` = tf_keras's version and ``keras_api`` = ``"tf_keras"``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import sys
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterator

BACKENDS = ("tensorflow", "jax", "torch")
PRECISIONS = ("default", "highest")
# "auto" (the CLI's default): highest where the backend sees a GPU, default (the backend as shipped) elsewhere.
PRECISION_AUTO = "auto"


KERNEL_MODES = ("as_shipped", "generic", "fused_on_cpu")


class KernelModeRefused(RuntimeError):
    """The case's kernel mode cannot run here by design (fused_on_cpu on a GPU, where the as-shipped twin
    runs the real fused kernel)."""


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


def activate(name: str, precision: str = "default", keras_api: str | None = None) -> BackendInfo:
    """Make Keras run on ``name`` in this process, in precision mode ``precision`` (``PRECISIONS``), and
    describe the backend, device, versions and the settings read back. ``keras_api`` (harness.execute.keras_api:
    ``keras`` or ``tf_keras``; None: ``KERAS_PARITY_KERAS_API``, default ``keras``) is the Keras the models are
    built with."""
    from harness.execute import keras_api as api

    module = backend_module(name)
    if precision not in PRECISIONS + (PRECISION_AUTO,):
        raise ValueError(f"unknown precision mode {precision!r}; accepted: {', '.join(PRECISIONS + (PRECISION_AUTO,))}")
    keras_2 = api.is_keras_2(keras_api)
    if keras_2 and name not in api.KERAS_2_BACKENDS:
        raise BackendUnavailable(f"Keras 2 (tf_keras) runs on TensorFlow only, not on {name!r}; use --backend tensorflow")
    if keras_2 and importlib.util.find_spec("tf_keras") is None:
        raise BackendUnavailable(f"tf_keras (Keras 2) is not installed in this interpreter; {api.KERAS_2_INSTALL_HINT}")
    if importlib.util.find_spec(module.IMPORT_NAME) is None:
        raise BackendUnavailable(f"backend {name!r} is not installed in this interpreter; {module.INSTALL_HINT}")
    if importlib.util.find_spec("keras") is None:
        raise BackendUnavailable(f"keras is not installed in this interpreter; {module.INSTALL_HINT}")
    from harness.execute.console import capture_backend_output

    capture_backend_output()
    os.environ["KERAS_BACKEND"] = name
    if precision == PRECISION_AUTO:
        precision = "highest" if module.gpu_present() else "default"
    settings = module.configure(precision)
    import keras
    import numpy

    if keras.backend.backend() != name:
        raise BackendUnavailable(
            f"keras was already imported with backend {keras.backend.backend()!r}; run {name!r} in a fresh process"
        )
    api.select(api.KERAS_2 if keras_2 else "keras")  # before harness.execute.models is imported
    versions = {
        "keras": api.package().__version__,
        **({"keras_api": api.KERAS_2} if keras_2 else {}),
        name: module.version(),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    settings = {"precision_mode": precision, **settings, **module.precision_settings()}
    return BackendInfo(name=name, device=module.device(), versions=versions, settings=settings,
                       device_class=module.device_class(), device_details=module.device_details())


# The vector instruction sets that decide which float32 kernels oneDNN, Eigen, MKL and XLA pick on x86: the same
# TensorFlow build rounds recact_linear 2.05e-6 from the reference with AVX2 + FMA and 1.35e-6 with SSE4.1 only.
VECTOR_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                    "amx_tile", "amx_bf16", "asimd", "sve")
ISA_LIMIT_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "TF_ENABLE_ONEDNN_OPTS")


def cpu_details() -> dict[str, Any]:
    """The host CPU, for a run on CPU (and beside a GPU's details): its model name where the system tells it, the
    vector instruction sets it has (float32 kernels round differently by them) and any variable that limits them."""
    details = {"kind": "cpu", "processor": _cpu_model() or platform.processor() or "unknown", "machine": platform.machine(),
               "cpu_count": os.cpu_count(), "vector_isa": " ".join(_cpu_flags(VECTOR_ISA_FLAGS)) or "unknown"}
    limits = {name: os.environ[name] for name in ISA_LIMIT_VARIABLES if name in os.environ}
    if limits:
        details["isa_limits"] = " ".join(f"{name}={value}" for name, value in limits.items())
    return details


def _cpu_flags(wanted: tuple[str, ...]) -> list[str]:
    """Those of ``wanted`` that /proc/cpuinfo lists for the first CPU (flags on x86, Features on ARM), in that order."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith(("flags", "features")):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in wanted if flag in present]
    except OSError:
        pass
    return []


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


# --- the fused_on_cpu kernel mode -----------------------------------------------------------------


@dataclass
class StandIn:
    """What a fused_on_cpu block replaced, and how often the stand-in kernel was called."""

    kernel: str  # the fused kernel Keras calls on a GPU
    stand_in: str  # what runs instead on CPU
    gate: str  # how Keras's GPU check was opened
    numeric: bool  # whether the stand-in computes (False: it only records the call and declines)
    calls: int = 0

    def record(self, calls_before: int = 0) -> dict[str, Any]:
        return {"kernel": self.kernel, "stand_in": self.stand_in, "gate": self.gate, "numeric": self.numeric,
                "stand_in_calls": self.calls - calls_before}


@contextlib.contextmanager
def patch_attributes(replacements: list[tuple[ModuleType | Any, str, Any]]) -> Iterator[None]:
    """Set each (module, attribute, value) for the block, and restore the originals after it."""
    originals = [(target, attribute, getattr(target, attribute)) for target, attribute, _ in replacements]
    try:
        for target, attribute, value in replacements:
            setattr(target, attribute, value)
        yield
    finally:
        for target, attribute, original in reversed(originals):
            setattr(target, attribute, original)


def keras_rnn_modules(backend: str) -> tuple[str, ...]:
    """Where Keras looks up a backend's RNN functions: keras.src.backend (LSTM.inner_loop's ``backend.lstm``),
    the backend package, and the backend's rnn module, which defines them."""
    return ("keras.src.backend", f"keras.src.backend.{backend}", f"keras.src.backend.{backend}.rnn")


def aliases(function: Callable, module_names: tuple[str, ...]) -> list[tuple[ModuleType, str]]:
    """Every (module, attribute) among ``module_names`` that holds ``function`` itself (Keras re-exports its
    backend functions: keras.src.backend.lstm is keras.src.backend.torch.rnn.lstm)."""
    found = []
    for module_name in module_names:
        module = importlib.import_module(module_name)
        found += [(module, name) for name, value in module.__dict__.items() if value is function]
    return found


def with_gate_opened(function: Callable, closed: str, opened: str) -> Callable:
    """``function`` recompiled from Keras's own source with one device test replaced (``closed`` -> ``opened``),
    in its own module's globals, so that every other line of Keras's fused path runs as shipped. Raises
    RuntimeError when the test is not in the source exactly once (Keras changed: the mode cannot be trusted)."""
    import textwrap

    source = textwrap.dedent(inspect.getsource(function))
    if source.count(closed) != 1:
        raise RuntimeError(f"cannot open the GPU gate of {function.__module__}.{function.__qualname__}: expected {closed!r} "
                           f"exactly once in its source, found it {source.count(closed)} times (this Keras version differs)")
    namespace: dict[str, Any] = {}
    exec(compile(source.replace(closed, opened), inspect.getsourcefile(function) or "<keras>", "exec"), function.__globals__, namespace)
    return namespace[function.__name__]


def isolate_case() -> None:
    """Forget what earlier cases left in the backend's compiler caches, so that a case measures the same
    whatever ran before it in the process (the backend's module may define ``isolate_case``)."""
    import keras

    module = backend_module(keras.backend.backend())
    if hasattr(module, "isolate_case"):
        module.isolate_case()


@contextlib.contextmanager
def kernel_mode(kernel: str) -> Iterator[StandIn | None]:
    """The block runs in the case's kernel mode (``KERNEL_MODES``): ``fused_on_cpu`` drives Keras's fused-path
    code through the active backend's CPU stand-in (its module's ``fused_on_cpu()``); the other modes change
    nothing here (``generic`` is a build option, harness.execute.models)."""
    if kernel not in KERNEL_MODES:
        raise ValueError(f"unknown kernel mode {kernel!r}; accepted: {', '.join(KERNEL_MODES)}")
    if kernel != "fused_on_cpu":
        yield None
        return
    import keras

    module = backend_module(keras.backend.backend())
    if module.device_class() != "cpu":
        raise KernelModeRefused("kernel fused_on_cpu replaces the GPU kernel by a CPU stand-in; on a GPU the "
                                "as-shipped twin of this case runs the real fused kernel")
    with module.fused_on_cpu() as stand_in:
        yield stand_in


def reset_keras_state() -> None:
    """What one harness command may leave behind in Keras that a later one in the same process would see ('harness
    batch'): built models and layer-name counters, floatx and the global dtype policy; the precision mode it
    configured (TF32 off for --precision highest, kept by the backend for the process: the backend module's
    ``restore_precision``); the global random generators 'keras.utils.set_random_seed' seeds (the probe study
    does): Python's, which Keras draws its default seeds from (the training-mode study's captured dropout masks),
    NumPy's, TensorFlow's and PyTorch's, reseeded as a fresh process finds them (from the OS, no fixed seed).
    A no-op before Keras is imported."""
    if "keras" not in sys.modules:
        return
    import random

    import keras
    import numpy

    keras.backend.clear_session()
    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy("float32")
    module = backend_module(keras.backend.backend())
    if hasattr(module, "restore_precision"):
        module.restore_precision()
    random.seed()
    numpy.random.seed()
    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(None)
    if "torch" in sys.modules:
        sys.modules["torch"].seed()
