"""Backpropagation through time for ``reference.simple_rnn.simple_rnn`` (float64 NumPy).

The loop over time and the masks are ``reference.recurrent.backward_through_time``'s; the step's part, with
dh = dL/dh_new and a = x_t @ kernel + bias + h_prev @ U the pre-activation::

    da = act'(a)^T dh,   d(x_t @ kernel + bias) = da,   dh_prev = da U^T

and over all timesteps at once dU = H_prev^T dA, dbias = sum dA.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from reference import recurrent
from reference.activations import get_activation, get_activation_derivative
from reference.recurrent import RecurrentInputs, StepCache
from reference.simple_rnn import STATE_NAMES, simple_rnn_forward, validate_inputs


def _through_recurrent_kernel(da: np.ndarray, recurrent_kernel: np.ndarray) -> np.ndarray:
    """dL/dh_prev through a = ... + h_prev @ U (a function of its own so that a test can drop it)."""
    return da @ recurrent_kernel.T


class SimpleRnnBackward:
    """da = act'(a)^T dh;  d(x_t @ kernel + bias) = da;  dh_prev = da U^T; over all timesteps dU = H_prev^T dA,
    dbias = sum dA."""

    def __init__(self, inputs: RecurrentInputs, cache: StepCache, activation: str | None) -> None:
        self.inputs = inputs
        self.cache = cache
        self.d_act = get_activation_derivative(activation)

    def backward(self, t: int, d_states: list[np.ndarray], d_projected: np.ndarray) -> list[np.ndarray]:
        (dh,) = d_states
        d_projected[...] = self.d_act(self.cache["pre_activations"][t], dh)
        return [_through_recurrent_kernel(d_projected, self.inputs.recurrent_kernel)]

    def parameter_gradients(self, d_projected: np.ndarray) -> dict[str, np.ndarray | None]:
        time, batch, units = d_projected.shape
        flat = d_projected.reshape(time * batch, units)
        return {"recurrent_kernel": self.cache["h_prev"].reshape(time * batch, units).T @ flat,
                "bias": None if self.inputs.bias is None else flat.sum(axis=0)}


def simple_rnn_backward(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    activation: str | None = "tanh",
    mask: np.ndarray | None = None,
    initial_state: np.ndarray | Sequence[np.ndarray] | None = None,
    go_backwards: bool = False,
    return_sequences: bool = False,
    zero_output_for_mask: bool = False,
    grad_outputs: np.ndarray,
    grad_h: np.ndarray | None = None,
) -> dict[str, np.ndarray | None]:
    """Gradients of a scalar loss L through ``simple_rnn`` with the same arguments (the documented semantics);
    ``grad_outputs`` dL/d(output), ``grad_h`` dL/d(final h) (None: zero). Returns {"x", "kernel",
    "recurrent_kernel", "bias" (None without bias), "h0"}, float64."""
    get_activation(activation)
    inputs = validate_inputs(x, kernel, recurrent_kernel, bias, mask, initial_state, np.dtype(np.float64))
    grad_outputs, grad_states = recurrent.check_gradient_inputs(
        inputs, return_sequences=return_sequences, grad_outputs=grad_outputs, grad_states=[("grad_h", grad_h)])
    batch, time, _ = inputs.x.shape
    cache = StepCache.allocate(time, batch, inputs.units, {"pre_activations": inputs.units}, inputs.x.dtype,
                               STATE_NAMES)
    simple_rnn_forward(inputs, activation, go_backwards=go_backwards, zero_output_for_mask=zero_output_for_mask,
                       cache=cache)
    return recurrent.backward_through_time(SimpleRnnBackward(inputs, cache, activation), inputs,
                                           go_backwards=go_backwards, return_sequences=return_sequences,
                                           zero_output_for_mask=zero_output_for_mask, grad_outputs=grad_outputs,
                                           grad_states=grad_states, state_names=STATE_NAMES)
