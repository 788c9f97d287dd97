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
) -> np.ndarray:
    """Apply a Dense layer to the last axis of ``x``; ``kernel`` is (in_features, units)."""
    x = np.asarray(x).astype(dtype, copy=False)
    kernel = np.asarray(kernel).astype(dtype, copy=False)
    if kernel.ndim != 2 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(f"kernel has shape {kernel.shape}; expected ({x.shape[-1]}, units) for x of shape {x.shape}")
    y = x @ kernel
    if bias is not None:
        bias = np.asarray(bias).astype(dtype, copy=False)
        if bias.shape != (kernel.shape[1],):
            raise ValueError(f"bias has shape {bias.shape}; expected ({kernel.shape[1]},)")
        y = y + bias
    return get_activation(activation)(y)
