"""Keras 3 activations, by name, in plain NumPy.

Each function mirrors the definition in ``keras/src/backend/numpy/nn.py`` (Keras 3.15) with the
default arguments that ``keras.activations.get(name)`` uses. They compute in the dtype of their
input; the reference calls them on float64 arrays.

Activations that cannot be used inside an LSTM cell are not accepted: ``glu`` halves the last axis
(the gate shapes would no longer match) and ``threshold`` has required arguments with no default.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_vector_erf = np.vectorize(math.erf, otypes=[np.float64])


def linear(x: np.ndarray) -> np.ndarray:
    return x


def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # Same value as 1 / (1 + exp(-x)), written so that neither branch overflows.
    positive = x >= 0
    exp_neg_abs = np.exp(-np.abs(x))
    return np.where(positive, 1.0 / (1.0 + exp_neg_abs), exp_neg_abs / (1.0 + exp_neg_abs)).astype(x.dtype)


def hard_sigmoid(x: np.ndarray) -> np.ndarray:
    # Keras 3 definition: relu6(x + 3) / 6 (Keras 2 used 0.2 * x + 0.5).
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0).astype(x.dtype)


def sparse_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(0.5 * (x + 1.0), 0.0, 1.0).astype(x.dtype)


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -softplus(-x)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0).astype(x.dtype)


def relu6(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, 0.0), 6.0).astype(x.dtype)


def leaky_relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.2 * x).astype(x.dtype)


def elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x >= 0.0, x, alpha * np.expm1(np.minimum(x, 0.0))).astype(x.dtype)


def selu(x: np.ndarray) -> np.ndarray:
    return (_SELU_SCALE * elu(x, _SELU_ALPHA)).astype(x.dtype)


def celu(x: np.ndarray) -> np.ndarray:
    return (np.maximum(x, 0.0) + np.expm1(np.minimum(x, 0.0))).astype(x.dtype)


def gelu(x: np.ndarray) -> np.ndarray:
    # keras.activations.gelu defaults to approximate=False: the exact erf form.
    return (x * (_vector_erf(x / math.sqrt(2.0)) + 1.0) / 2.0).astype(x.dtype)


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(x, 0.0).astype(x.dtype)


def softsign(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.abs(x))


def silu(x: np.ndarray) -> np.ndarray:
    return x * sigmoid(x)


def hard_silu(x: np.ndarray) -> np.ndarray:
    return x * hard_sigmoid(x)


def mish(x: np.ndarray) -> np.ndarray:
    return x * np.tanh(softplus(x))


def exponential(x: np.ndarray) -> np.ndarray:
    return np.exp(x)


def squareplus(x: np.ndarray) -> np.ndarray:
    return ((x + np.sqrt(x * x + 4.0)) / 2.0).astype(x.dtype)


def sparse_plus(x: np.ndarray) -> np.ndarray:
    return np.where(x <= -1.0, 0.0, np.where(x < 1.0, 0.25 * (x + 1.0) ** 2, x)).astype(x.dtype)


def soft_shrink(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0.0)).astype(x.dtype)


def hard_shrink(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) > 0.5, x, 0.0).astype(x.dtype)


def hard_tanh(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -1.0, 1.0).astype(x.dtype)


def tanh_shrink(x: np.ndarray) -> np.ndarray:
    return x - np.tanh(x)


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return shifted / np.sum(shifted, axis=-1, keepdims=True)


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def sparsemax(x: np.ndarray) -> np.ndarray:
    sorted_desc = -np.sort(-x, axis=-1)
    cumulative = np.cumsum(sorted_desc, axis=-1)
    rank = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    support = sorted_desc - (cumulative - 1.0) / rank > 0
    support_size = np.sum(support, axis=-1, keepdims=True)
    tau = (np.sum(np.where(support, cumulative, 0.0), axis=-1, keepdims=True) - 1.0) / support_size
    return np.maximum(x - tau, 0.0).astype(x.dtype)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": linear,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "sparse_sigmoid": sparse_sigmoid,
    "log_sigmoid": log_sigmoid,
    "relu": relu,
    "relu6": relu6,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "selu": selu,
    "celu": celu,
    "gelu": gelu,
    "softplus": softplus,
    "softsign": softsign,
    "silu": silu,
    "swish": silu,
    "hard_silu": hard_silu,
    "hard_swish": hard_silu,
    "mish": mish,
    "exponential": exponential,
    "squareplus": squareplus,
    "sparse_plus": sparse_plus,
    "soft_shrink": soft_shrink,
    "hard_shrink": hard_shrink,
    "hard_tanh": hard_tanh,
    "tanh_shrink": tanh_shrink,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "sparsemax": sparsemax,
}

REJECTED_ACTIVATIONS: dict[str, str] = {
    "glu": "it halves the last axis, so the gate shapes of a recurrent cell no longer match",
    "threshold": "it has required arguments (threshold, default_value) and cannot be used by name",
}


def get_activation(name: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """Return the activation called ``name``; ``None`` means linear, as in keras.activations.get."""
    if name is None:
        return linear
    if name in ACTIVATIONS:
        return ACTIVATIONS[name]
    if name in REJECTED_ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not accepted: {REJECTED_ACTIVATIONS[name]}")
    raise ValueError(f"unknown activation {name!r}; accepted: {', '.join(sorted(ACTIVATIONS))}")
