"""Losses as Keras 3 computes them, with their gradients with respect to the predictions (float64).

Keras 3 (``keras.losses.MeanSquaredError`` and friends, default reduction "sum_over_batch_size"):
the per-sample loss is the mean over the last axis, then the reduction

    "sum_over_batch_size":  L = sum(per_sample) / per_sample.size
    "sum":                  L = sum(per_sample)

so for predictions of shape (batch, ..., d) and N = batch * ... (everything but the last axis):

    mean_squared_error   per_sample = mean_d (y_pred - y_true)^2   dL/dy_pred = 2 (y_pred - y_true) / (d * N')
    mean_absolute_error  per_sample = mean_d |y_pred - y_true|     dL/dy_pred = sign(y_pred - y_true) / (d * N')

with N' = N for "sum_over_batch_size" and 1 for "sum". sign(0) = 0, the derivative of |.| at 0 that
JAX, TensorFlow and PyTorch use. No sample weights.
"""

from __future__ import annotations

import numpy as np

REDUCTIONS = ("sum_over_batch_size", "sum")


def _prepare(y_true: np.ndarray, y_pred: np.ndarray, reduction: str) -> tuple[np.ndarray, np.ndarray, float]:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction is {reduction!r}; accepted: {', '.join(REDUCTIONS)}")
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64)
    if y_true.shape != y_pred.shape or y_pred.ndim == 0:
        raise ValueError(f"y_true has shape {y_true.shape} and y_pred {y_pred.shape}; expected the same, at least 1-D")
    per_sample_count = y_pred.size // y_pred.shape[-1]
    scale = 1.0 / y_pred.shape[-1] / (per_sample_count if reduction == "sum_over_batch_size" else 1)
    return y_true, y_pred, scale


def _reduce(per_sample: np.ndarray, reduction: str) -> float:
    total = float(np.sum(per_sample))
    return total / per_sample.size if reduction == "sum_over_batch_size" else total


def mean_squared_error(y_true: np.ndarray, y_pred: np.ndarray, reduction: str = "sum_over_batch_size") -> float:
    """Keras 3's ``MeanSquaredError()(y_true, y_pred)``: mean over the last axis, then the reduction."""
    y_true, y_pred, _ = _prepare(y_true, y_pred, reduction)
    return _reduce(np.mean((y_pred - y_true) ** 2, axis=-1), reduction)


def mean_squared_error_gradient(
    y_true: np.ndarray, y_pred: np.ndarray, reduction: str = "sum_over_batch_size"
) -> np.ndarray:
    """dL/dy_pred of ``mean_squared_error``: 2 (y_pred - y_true) / (d * N)."""
    y_true, y_pred, scale = _prepare(y_true, y_pred, reduction)
    return 2.0 * (y_pred - y_true) * scale


def mean_absolute_error(y_true: np.ndarray, y_pred: np.ndarray, reduction: str = "sum_over_batch_size") -> float:
    """Keras 3's ``MeanAbsoluteError()(y_true, y_pred)``."""
    y_true, y_pred, _ = _prepare(y_true, y_pred, reduction)
    return _reduce(np.mean(np.abs(y_pred - y_true), axis=-1), reduction)


def mean_absolute_error_gradient(
    y_true: np.ndarray, y_pred: np.ndarray, reduction: str = "sum_over_batch_size"
) -> np.ndarray:
    """dL/dy_pred of ``mean_absolute_error``: sign(y_pred - y_true) / (d * N), sign(0) = 0."""
    y_true, y_pred, scale = _prepare(y_true, y_pred, reduction)
    return np.sign(y_pred - y_true) * scale
