"""Backward pass of ``reference.dense.dense`` (float64 NumPy).

Forward: ``y = act(a)``, ``a = x @ kernel + bias`` on the last axis. Backward, given dL/dy::

    da      = act'(a)^T dL/dy          (a vector-Jacobian product; softmax mixes the last axis)
    dL/dx   = da @ kernel^T
    dL/dW   = sum over all leading axes of x^T da
    dL/db   = sum over all leading axes of da
"""

from __future__ import annotations

import numpy as np

from reference.activations import get_activation_derivative


def dense_backward(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    activation: str | None = None,
    grad_outputs: np.ndarray,
) -> dict[str, np.ndarray | None]:
    """Gradients {"x", "kernel", "bias" (None without bias)} of a scalar loss through ``dense``."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 2 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(f"kernel has shape {kernel.shape}; expected ({x.shape[-1]}, units) for x of shape {x.shape}")
    units = kernel.shape[1]
    pre_activation = x @ kernel
    if bias is not None:
        bias = np.asarray(bias, np.float64)
        if bias.shape != (units,):
            raise ValueError(f"bias has shape {bias.shape}; expected ({units},)")
        pre_activation = pre_activation + bias
    grad_outputs = np.asarray(grad_outputs, np.float64)
    if grad_outputs.shape != pre_activation.shape:
        raise ValueError(f"grad_outputs has shape {grad_outputs.shape}; expected {pre_activation.shape}")
    d_pre = get_activation_derivative(activation)(pre_activation, grad_outputs)
    flat_x = x.reshape(-1, kernel.shape[0])
    flat_d = d_pre.reshape(-1, units)
    return {
        "x": d_pre @ kernel.T,
        "kernel": flat_x.T @ flat_d,
        "bias": None if bias is None else flat_d.sum(axis=0),
    }
