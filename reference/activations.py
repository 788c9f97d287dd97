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


def _sparsemax_support(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x sorted in descending order, its cumulative sums, the support {k : 1 + k z_(k) > sum_{j<=k} z_(j)}
    in that order, and the support's size K."""
    sorted_desc = -np.sort(-x, axis=-1)
    cumulative = np.cumsum(sorted_desc, axis=-1)
    rank = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    support = sorted_desc - (cumulative - 1.0) / rank > 0
    return sorted_desc, cumulative, support, np.sum(support, axis=-1, keepdims=True)


def sparsemax(x: np.ndarray) -> np.ndarray:
    """The Euclidean projection onto the probability simplex (Martins and Astudillo 2016, Algorithm 1):
    tau = (sum_{j<=K} z_(j) - 1) / K over the support (``_sparsemax_support``) and sparsemax(x) =
    max(x - tau, 0), which sums to 1."""
    sorted_desc, _, support, support_size = _sparsemax_support(x)
    tau = (np.sum(np.where(support, sorted_desc, 0.0), axis=-1, keepdims=True) - 1.0) / support_size
    return np.maximum(x - tau, 0.0).astype(x.dtype)


def sparsemax_cumulative_threshold(x: np.ndarray) -> np.ndarray:
    """What Keras 3.15.1 computes for sparsemax on every backend (keras-team/keras#23425): the threshold sums
    the cumulative sums over the support, tau = (sum_{k<=K} cumsum_k - 1) / K, instead of the support's sum.
    Equal to sparsemax when K = 1; otherwise tau is too large and the output sums to less than 1. Not an
    activation a case can name: the alternative a known divergence is checked against."""
    _, cumulative, support, support_size = _sparsemax_support(x)
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


def hard_sigmoid_keras2(x: np.ndarray) -> np.ndarray:
    """Keras 2's (tf_keras's) hard_sigmoid, clip(0.2 x + 0.5, 0, 1); Keras 3 defines hard_sigmoid as
    relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)."""
    return np.clip(0.2 * x + 0.5, 0.0, 1.0).astype(x.dtype)


# XLA's CPU float32 tanh (xla/codegen/intrinsic/tanh.cc, EmitFastTanh with_fma=true; jaxlib 0.10.2):
# a rational approximation p(x) / q(x) on x clamped to +-_XLA_TANH_CLAMP, x itself below 0.0004 and
# +-1 from 20 on. The coefficients are float32 constants, highest power first; every step of Horner's
# rule is one fused multiply-add.
_XLA_TANH_NUMERATOR = np.array([-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
                                5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
                                4.89352455891786e-03], dtype=np.float32)
_XLA_TANH_DENOMINATOR = np.array([1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
                                  4.89352518554385e-03], dtype=np.float32)
_XLA_TANH_CLAMP = np.float32(7.99881172180175781)


def _fused_multiply_add_float32(a: np.ndarray, b: np.ndarray, c: np.float32) -> np.ndarray:
    """float32 fma(a, b, c): the product of two float32 values is exact in float64, so only the sum is
    rounded (to float64, then to float32; the two roundings differ from one only on exact float32 ties)."""
    return (a.astype(np.float64) * b.astype(np.float64) + np.float64(c)).astype(np.float32)


def tanh_xla_float32(x: np.ndarray) -> np.ndarray:
    """What keras.ops.tanh computes for a float64 input on JAX's CPU (Keras 3.15.1): the input rounded to
    float32, XLA's float32 tanh approximation, the float32 result (returned in x's dtype, exactly).
    Measured bitwise equal to jnp.tanh on float32 (jaxlib 0.10.2, x86-64 with FMA) on 240,000 inputs in
    [-25, 25]. Not an activation a case can name: the alternative a known divergence is checked against."""
    x32 = np.asarray(x).astype(np.float32)
    clamped = np.clip(x32, -_XLA_TANH_CLAMP, _XLA_TANH_CLAMP)
    squared = clamped * clamped
    numerator = np.full_like(squared, _XLA_TANH_NUMERATOR[0])
    for coefficient in _XLA_TANH_NUMERATOR[1:]:
        numerator = _fused_multiply_add_float32(squared, numerator, coefficient)
    numerator = clamped * numerator
    denominator = np.full_like(squared, _XLA_TANH_DENOMINATOR[0])
    for coefficient in _XLA_TANH_DENOMINATOR[1:]:
        denominator = _fused_multiply_add_float32(squared, denominator, coefficient)
    result = np.where(np.abs(x32) < np.float32(0.0004), x32, numerator / denominator)
    result = np.where(np.abs(x32) >= np.float32(20.0), np.copysign(np.float32(1.0), x32), result)
    return result.astype(np.asarray(x).dtype)


# Formulas a Keras version was observed to compute instead of an activation's Keras 3 definition, by name:
# the alternatives known divergences are checked against (harness.case.semantics), never case options.
ALTERNATIVE_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sparsemax_cumulative_threshold": sparsemax_cumulative_threshold,
    "hard_sigmoid_keras2": hard_sigmoid_keras2,
    "tanh_xla_float32": tanh_xla_float32,
}


def get_activation(name: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """Return the activation called ``name``; ``None`` means linear, as in keras.activations.get."""
    if name is None:
        return linear
    if name in ACTIVATIONS:
        return ACTIVATIONS[name]
    if name in ALTERNATIVE_ACTIVATIONS:
        return ALTERNATIVE_ACTIVATIONS[name]
    if name in REJECTED_ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not accepted: {REJECTED_ACTIVATIONS[name]}")
    raise ValueError(f"unknown activation {name!r}; accepted: {', '.join(sorted(ACTIVATIONS))}")


# --- Derivatives ------------------------------------------------------------------------------------
#
# ``get_activation_derivative(name)`` returns ``backward(x, grad_output) -> grad_input``: the
# vector-Jacobian product of the activation at ``x``. For the elementwise activations that is
# ``activation'(x) * grad_output``; softmax, log_softmax and sparsemax act on the last axis and
# their Jacobian mixes it.
#
# At the points where an activation is not differentiable the value is the one Keras 3.15.1 on JAX
# computes (``jax.grad`` of ``keras.activations.get(name)``, measured at every kink). TensorFlow and
# PyTorch agree on every kink except these (measured the same way):
#   leaky_relu at 0:       JAX 1,           TensorFlow and PyTorch 0.2
#   selu at 0:             JAX scale*alpha, TensorFlow scale (PyTorch: scale*alpha)
#   celu at 0:             JAX 1,           TensorFlow 2 (PyTorch: 1)
#   sparse_sigmoid at +-1: JAX 0.25,        TensorFlow and PyTorch 0
#   hard_tanh at +-1:      JAX 1,           PyTorch 0 (TensorFlow: 1)
# The others: relu 0 at 0; relu6 0 at 0 and 6; hard_sigmoid (and hard_silu through it) 0 at +-3;
# soft_shrink and hard_shrink 0 at +-0.5; elu 1 at 0; sparse_plus and softsign are differentiable.


def _d_linear(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g


def _d_tanh(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    t = np.tanh(x)
    return g * (1.0 - t * t)


def _d_sigmoid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    s = sigmoid(x)
    return g * s * (1.0 - s)


def _hard_sigmoid_slope(x: np.ndarray) -> np.ndarray:
    return np.where((x > -3.0) & (x < 3.0), 1.0 / 6.0, 0.0)


def _d_hard_sigmoid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * _hard_sigmoid_slope(x)


def _d_sparse_sigmoid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    # 0.5 inside (-1, 1); at +-1 JAX's clip splits the tie between its two branches: 0.25.
    return g * np.where((x > -1.0) & (x < 1.0), 0.5, np.where(np.abs(x) == 1.0, 0.25, 0.0))


def _d_log_sigmoid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * sigmoid(-x)


def _d_relu(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * (x > 0.0)


def _d_relu6(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * ((x > 0.0) & (x < 6.0))


def _d_leaky_relu(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * np.where(x >= 0.0, 1.0, 0.2)


def _d_elu(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * np.where(x > 0.0, 1.0, np.exp(np.minimum(x, 0.0)))


def _d_selu(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * _SELU_SCALE * np.where(x > 0.0, 1.0, _SELU_ALPHA * np.exp(np.minimum(x, 0.0)))


def _d_celu(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * np.where(x > 0.0, 1.0, np.exp(np.minimum(x, 0.0)))


def _d_gelu(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    # d/dx [x * Phi(x)] = Phi(x) + x * phi(x)
    cdf = (_vector_erf(x / math.sqrt(2.0)) + 1.0) / 2.0
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return g * (cdf + x * pdf)


def _d_softplus(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * sigmoid(x)


def _d_softsign(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g / (1.0 + np.abs(x)) ** 2


def _d_silu(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    s = sigmoid(x)
    return g * (s + x * s * (1.0 - s))


def _d_hard_silu(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * (hard_sigmoid(x) + x * _hard_sigmoid_slope(x))


def _d_mish(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    t = np.tanh(softplus(x))
    return g * (t + x * (1.0 - t * t) * sigmoid(x))


def _d_exponential(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * np.exp(x)


def _d_squareplus(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * (1.0 + x / np.sqrt(x * x + 4.0)) / 2.0


def _d_sparse_plus(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * np.where(x <= -1.0, 0.0, np.where(x < 1.0, 0.5 * (x + 1.0), 1.0))


def _d_shrink(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    # soft_shrink and hard_shrink: slope 1 outside [-0.5, 0.5], 0 inside (and at +-0.5).
    return g * (np.abs(x) > 0.5)


def _d_hard_tanh(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * (np.abs(x) <= 1.0)


def _d_tanh_shrink(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    t = np.tanh(x)
    return g * t * t


def _d_softmax(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    # J = diag(s) - s s^T on the last axis: g_x = s * (g - <g, s>)
    s = softmax(x)
    return s * (g - np.sum(g * s, axis=-1, keepdims=True))


def _d_log_softmax(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    # J = I - 1 s^T: g_x = g - s * sum(g)
    return g - softmax(x) * np.sum(g, axis=-1, keepdims=True)


def _d_sparsemax(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    # On the support A = {sparsemax(x) > 0} the output is x - tau with tau = (sum_{i in A} x_i - 1) / |A|,
    # so J = diag(1_A) - 1_A 1_A^T / |A|:  g_x = 1_A * (g - sum_{i in A} g_i / |A|).
    active = sparsemax(x) > 0.0
    size = np.sum(active, axis=-1, keepdims=True)
    return np.where(active, g - np.sum(np.where(active, g, 0.0), axis=-1, keepdims=True) / size, 0.0)


ACTIVATION_DERIVATIVES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "linear": _d_linear,
    "tanh": _d_tanh,
    "sigmoid": _d_sigmoid,
    "hard_sigmoid": _d_hard_sigmoid,
    "sparse_sigmoid": _d_sparse_sigmoid,
    "log_sigmoid": _d_log_sigmoid,
    "relu": _d_relu,
    "relu6": _d_relu6,
    "leaky_relu": _d_leaky_relu,
    "elu": _d_elu,
    "selu": _d_selu,
    "celu": _d_celu,
    "gelu": _d_gelu,
    "softplus": _d_softplus,
    "softsign": _d_softsign,
    "silu": _d_silu,
    "swish": _d_silu,
    "hard_silu": _d_hard_silu,
    "hard_swish": _d_hard_silu,
    "mish": _d_mish,
    "exponential": _d_exponential,
    "squareplus": _d_squareplus,
    "sparse_plus": _d_sparse_plus,
    "soft_shrink": _d_shrink,
    "hard_shrink": _d_shrink,
    "hard_tanh": _d_hard_tanh,
    "tanh_shrink": _d_tanh_shrink,
    "softmax": _d_softmax,
    "log_softmax": _d_log_softmax,
    "sparsemax": _d_sparsemax,
}


def get_activation_derivative(name: str | None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Return ``backward(x, grad_output) -> grad_input`` for the activation called ``name`` (the
    vector-Jacobian product at ``x``; ``None`` means linear). Same names and errors as get_activation."""
    get_activation(name)  # the same ValueError for a rejected or unknown name
    return ACTIVATION_DERIVATIVES["linear" if name is None else name]
