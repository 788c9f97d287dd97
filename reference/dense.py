"""Float64 NumPy reference for ``keras.layers.Dense``: ``activation(x @ kernel + bias)`` on the last axis."""

from __future__ import annotations

import numpy as np

from reference.activations import get_activation


def dense(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    activation: str | None = None,
    dtype: type | np.dtype = np.float64,
    matmul_in_float32: bool = False,
) -> np.ndarray:
    """Apply a Dense layer to the last axis of ``x``; ``kernel`` is (in_features, units). With
    ``matmul_in_float32`` the product x @ kernel is matmul_float32_operands (float32 operands, one float32
    rounding); the bias and the activation stay in ``dtype``."""
    x = np.asarray(x).astype(dtype, copy=False)
    kernel = np.asarray(kernel).astype(dtype, copy=False)
    if kernel.ndim != 2 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(f"kernel has shape {kernel.shape}; expected ({x.shape[-1]}, units) for x of shape {x.shape}")
    y = matmul_float32_operands(x, kernel).astype(dtype) if matmul_in_float32 else x @ kernel
    if bias is not None:
        bias = np.asarray(bias).astype(dtype, copy=False)
        if bias.shape != (kernel.shape[1],):
            raise ValueError(f"bias has shape {bias.shape}; expected ({kernel.shape[1]},)")
        y = y + bias
    return get_activation(activation)(y)


def matmul_float32_operands(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``x @ kernel`` (last axis of x against kernel's first) with both operands rounded to float32, the products
    summed in float64 and the sum rounded once to float32; returned as float64. A product of two float32 values
    is exact in float64, so this is the float32 matmul of a machine that adds exactly: what keras.ops.matmul
    computes for float64 inputs on PyTorch (Keras 3.15.1 casts them to float32) up to the order torch's float32
    kernel sums in, which adds a few float32 roundings (see harness.case.divergences: a semantics claim's ulps)."""
    x32 = np.asarray(x).astype(np.float32).astype(np.float64)
    kernel32 = np.asarray(kernel).astype(np.float32).astype(np.float64)
    if kernel32.ndim != 2 or x32.shape[-1] != kernel32.shape[0]:
        raise ValueError(f"kernel has shape {kernel32.shape}; expected ({x32.shape[-1]}, units) for x of shape {x32.shape}")
    return (x32 @ kernel32).astype(np.float32).astype(np.float64)
