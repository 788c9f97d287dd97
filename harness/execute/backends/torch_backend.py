"""PyTorch specifics: install hint, version, device, precision, and where its LSTM kernels are."""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, Iterator

IMPORT_NAME = "torch"
INSTALL_HINT = "install it with: pip install 'keras-parity[torch]' (pin torch==2.13.0; or run: nox -s \"parity(keras='release', backend='torch')\")"


def configure(precision: str) -> dict[str, Any]:
    """Settings applied before Keras is imported; recorded with every run. ``highest`` turns TF32 off for
    cuBLAS matmuls and cuDNN (convolutions and RNNs: cuDNN allows TF32 by default).

    The legacy flags are used, not torch 2.9+'s ``fp32_precision`` properties: setting the new ones per
    operator makes the legacy getter of cuDNN raise (torch refuses to report "a mix of the legacy and new
    APIs"). After the legacy setters torch 2.13 reads back allow_tf32 False for both, and the new API
    reads "ieee" for cuBLAS matmuls and "none" (not "tf32") for cuDNN's RNNs; both are recorded."""
    if precision == "highest":
        import torch

        _remember_defaults(torch)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return {}


_DEFAULTS: dict[str, Any] = {}  # the TF32 flags as this process found them, before configure changed them


def _remember_defaults(torch: Any) -> None:
    if not _DEFAULTS:
        _DEFAULTS.update(matmul=torch.backends.cuda.matmul.allow_tf32, cudnn=torch.backends.cudnn.allow_tf32,
                         matmul_fp32=getattr(torch.backends.cuda.matmul, "fp32_precision", None))


def restore_precision() -> None:
    """Undo ``configure`` ('harness batch': a command that asked for highest must not leave TF32 off for the next):
    the legacy flags as found, then the matmul fp32_precision as found (the legacy setter changes it; restored, every
    getter reads what a fresh process reads)."""
    if not _DEFAULTS:
        return
    import torch

    torch.backends.cuda.matmul.allow_tf32 = _DEFAULTS["matmul"]
    torch.backends.cudnn.allow_tf32 = _DEFAULTS["cudnn"]
    if _DEFAULTS["matmul_fp32"] is not None:
        torch.backends.cuda.matmul.fp32_precision = _DEFAULTS["matmul_fp32"]


def gpu_present() -> bool:
    """Whether PyTorch sees a CUDA device."""
    import torch

    return bool(torch.cuda.is_available())


def _read(read: Any) -> Any:
    try:
        return read()
    except Exception as error:  # a getter that refuses (mixed legacy and new API settings) or does not exist
        return f"unreadable ({type(error).__name__})"


def precision_settings() -> dict[str, Any]:
    """The precision in effect, read back from PyTorch: the legacy TF32 flags, and the fp32_precision
    settings of torch 2.9+ where they exist."""
    import torch

    settings = {
        "tf32_matmul": _read(lambda: bool(torch.backends.cuda.matmul.allow_tf32)),
        "tf32_cudnn": _read(lambda: bool(torch.backends.cudnn.allow_tf32)),
        "float32_matmul_precision": _read(torch.get_float32_matmul_precision),
    }
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        settings["fp32_precision_matmul"] = _read(lambda: str(torch.backends.cuda.matmul.fp32_precision))
    if hasattr(getattr(torch.backends.cudnn, "rnn", None), "fp32_precision"):
        settings["fp32_precision_cudnn_rnn"] = _read(lambda: str(torch.backends.cudnn.rnn.fp32_precision))
    return settings


def isolate_case() -> None:
    """Reset torch.compile's caches. Otherwise, after torch._dynamo's recompile limit is reached by earlier
    cases, later jit_compile cases silently run eagerly, where Keras's ``lstm`` may pick another kernel than
    under compilation (it skips cuDNN while ``torch.compiler.is_compiling()``): measured, the builds of one
    case then disagreed by 3e-8 in a long run and agreed bitwise when run alone."""
    import torch

    torch._dynamo.reset()


def version() -> str:
    import torch

    return torch.__version__


def device() -> str:
    import torch

    return f"gpu:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


def device_class() -> str:
    """cpu, or on a GPU gpu_tf32 when TF32 is allowed for matmuls or cuDNN (cuDNN's default), else gpu_highest
    (read from the legacy flags, else from the fp32_precision settings)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    settings = precision_settings()
    legacy = (settings["tf32_matmul"], settings["tf32_cudnn"])
    if all(isinstance(flag, bool) for flag in legacy):
        return "gpu_tf32" if any(legacy) else "gpu_highest"
    newer = (settings.get("fp32_precision_matmul"), settings.get("fp32_precision_cudnn_rnn"))
    return "gpu_tf32" if "tf32" in newer or any(flag is True for flag in legacy) else "gpu_highest"


def device_details() -> dict[str, Any]:
    """The CPU, or the first GPU (name, compute capability, memory, driver) and the CUDA / cuDNN torch runs with."""
    import torch

    from harness.execute.backends import best_effort, cpu_details, nvidia_driver

    if not torch.cuda.is_available():
        return cpu_details()
    properties = torch.cuda.get_device_properties(0)
    return {
        "kind": "gpu", "name": properties.name, "gpu_count": torch.cuda.device_count(),
        "compute_capability": f"{properties.major}.{properties.minor}",
        "memory_gib": round(properties.total_memory / 2**30, 1), "driver": nvidia_driver(),
        "cuda": torch.version.cuda, "cudnn": best_effort(torch.backends.cudnn.version),
        "host": cpu_details(),
    }


def kernel_hooks() -> list[tuple[str, str, str]]:
    """(module, attribute, role) for harness.execute.kernels, from the cell table (harness.execute.kinds):
    inside PyTorch's ``lstm``, the cuDNN kernel
    (whose exceptions ``lstm`` swallows) and the loop it runs whenever cuDNN does not."""
    from harness.execute.kinds import kernel_hooks as hooks_by_cell

    return hooks_by_cell("torch")


@contextlib.contextmanager
def fused_on_cpu() -> Iterator[Any]:
    """Keras's PyTorch fused path on CPU, where ``torch._VF.lstm`` (the function that dispatches to cuDNN on
    CUDA tensors) has a native CPU kernel: ``_is_cuda_cudnn_available`` answers True, and ``lstm`` and
    ``bidirectional_lstm`` are recompiled from Keras's own source with their one device test
    (``device.type == "cuda"``) also accepting "cpu". Keras's ``lstm`` swallows any exception of its
    cuDNN call and falls back to its loop; the kernel observation (``_cudnn_lstm``'s outcome) tells which ran."""
    keras_rnn = importlib.import_module("keras.src.backend.torch.rnn")

    from harness.execute.backends import StandIn, aliases, keras_rnn_modules, patch_attributes, with_gate_opened

    stand_in = StandIn(kernel="torch._VF.lstm on CUDA (cuDNN)", stand_in="torch._VF.lstm on CPU",
                       gate="keras.src.backend.torch.rnn._is_cuda_cudnn_available -> True; device test accepts cpu",
                       numeric=True)
    vf_lstm = keras_rnn.torch._VF.lstm

    def counted_vf_lstm(*args, **kwargs):
        stand_in.calls += 1
        return vf_lstm(*args, **kwargs)

    lstm = with_gate_opened(keras_rnn.lstm, 'device.type == "cuda"', 'device.type in ("cuda", "cpu")')
    bidirectional = with_gate_opened(keras_rnn.bidirectional_lstm, 'device.type != "cuda"', 'device.type not in ("cuda", "cpu")')
    replacements = [(keras_rnn, "_is_cuda_cudnn_available", lambda: True), (keras_rnn.torch._VF, "lstm", counted_vf_lstm)]
    replacements += [(module, name, lstm) for module, name in aliases(keras_rnn.lstm, keras_rnn_modules("torch"))]
    replacements += [(module, name, bidirectional) for module, name in aliases(keras_rnn.bidirectional_lstm, keras_rnn_modules("torch"))]
    with patch_attributes(replacements):
        yield stand_in


# --- gradients (harness.execute.gradients) ----------------------------------------------------------


def loss_and_gradients(model: Any, inputs: list[Any], loss_fn: Any, differentiable: list[bool]) -> tuple[Any, list[Any], list[Any]]:
    """PyTorch's own autodiff: ``torch.autograd.grad`` of ``loss_fn(model outputs)`` (training=False) with
    respect to the trainable variables (``model.trainable_weights`` order) and to the inputs marked
    ``differentiable`` (None for the others)."""
    import keras
    import torch

    tensors = [keras.ops.convert_to_tensor(value) for value in inputs]
    tensors = [tensor.detach().requires_grad_(True) if wanted else tensor for tensor, wanted in zip(tensors, differentiable)]
    outputs = model(tensors if len(tensors) > 1 else tensors[0], training=False)
    loss = loss_fn(outputs)
    parameters = [variable.value for variable in model.trainable_weights]
    watched = [tensor for tensor, wanted in zip(tensors, differentiable) if wanted]
    grads = torch.autograd.grad(loss, parameters + watched, allow_unused=True)
    grads = [torch.zeros_like(target) if grad is None else grad for grad, target in zip(grads, parameters + watched)]
    weight_grads, input_grads = grads[: len(parameters)], iter(grads[len(parameters):])
    return loss.detach(), [grad.detach() for grad in weight_grads], [next(input_grads).detach() if wanted else None for wanted in differentiable]
