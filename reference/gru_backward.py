"""Backpropagation through time for ``reference.gru.gru`` (float64 NumPy).

The loop over time and the masks are ``reference.recurrent.backward_through_time``'s; the step's part, with
dh = dL/dh_new (``reference.gru``'s equations read backwards; a_* the pre-activations)::

    h_new = z * h + (1 - z) * hh:   dz = dh * (h - hh),   dhh = dh * (1 - z),   dh_prev = dh * z + ...
    da_h = act'(a_h)^T dhh
    reset_after=True:   a_h = x_h + r * rec_h          -> dr = da_h * rec_h,   d_rec_h = da_h * r
    reset_after=False:  a_h = x_h + (r * h) @ U_h      -> d_rh = da_h U_h^T,   dr = d_rh * h,   dh_prev += d_rh * r
    da_z = ract'(a_z)^T dz,   da_r = ract'(a_r)^T dr
    d(x_t @ kernel + input_bias) = [da_z, da_r, da_h]
    reset_after=True:   dh_prev += [da_z, da_r, d_rec_h] U^T
    reset_after=False:  dh_prev += [da_z, da_r] U_zr^T

and over all timesteps at once: reset_after=True, dU = H_prev^T [da_z, da_r, d_rec_h] and the bias gradient
[sum da, sum d_rec] (2, 3 * units); reset_after=False, dU_zr = H_prev^T [da_z, da_r], dU_h = (R * H_prev)^T da_h
and the bias gradient sum da. Activation derivatives come from ``reference.activations`` at the
pre-activations (kinks as Keras on JAX).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from reference import recurrent
from reference.activations import get_activation, get_activation_derivative
from reference.gru import GATES, STATE_NAMES, allocate_cache, gru_forward, validate_inputs
from reference.recurrent import RecurrentInputs, StepCache


def _through_recurrent_kernel(d_recurrent: np.ndarray, recurrent_kernel: np.ndarray) -> np.ndarray:
    """dL/dh_prev through rec = h_prev @ U (of the blocks ``recurrent_kernel`` holds): the term that carries the
    gradient back in time (a function of its own so that a test can drop it)."""
    return d_recurrent @ recurrent_kernel.T


class GruBackward:
    """The GRU step's backward (module docstring) on the cache ``gru_forward`` filled."""

    def __init__(self, inputs: RecurrentInputs, cache: StepCache, activation: str | None,
                 recurrent_activation: str | None, reset_after: bool) -> None:
        self.inputs = inputs
        self.cache = cache
        self.d_act = get_activation_derivative(activation)
        self.d_ract = get_activation_derivative(recurrent_activation)
        self.reset_after = reset_after
        self.units = inputs.units
        time, batch, _ = cache["gates"].shape
        # dL/d(h_prev @ U + recurrent_bias), reset_after only: [da_z, da_r, d_rec_h] at index t
        self.d_recurrent = np.empty((time, batch, GATES * self.units)) if reset_after else None

    def backward(self, t: int, d_states: list[np.ndarray], d_projected: np.ndarray) -> list[np.ndarray]:
        (dh,) = d_states
        u = self.units
        U = self.inputs.recurrent_kernel
        h_prev = self.cache["h_prev"][t]
        gates, pre = self.cache["gates"][t], self.cache["pre_activations"][t]
        z, r, hh = gates[:, :u], gates[:, u : 2 * u], gates[:, 2 * u :]
        a_z, a_r, a_h = pre[:, :u], pre[:, u : 2 * u], pre[:, 2 * u :]
        rec_h = self.cache["recurrent_h"][t]
        # h_new = z * h_prev + (1 - z) * hh
        dz = dh * (h_prev - hh)
        dhh = dh * (1 - z)
        da_h = self.d_act(a_h, dhh)
        if self.reset_after:
            # a_h = x_h + r * rec_h
            dr = da_h * rec_h
        else:
            # a_h = x_h + (r * h_prev) @ U_h
            d_rh = _through_recurrent_kernel(da_h, U[:, 2 * u :])
            dr = d_rh * h_prev
        da_z = self.d_ract(a_z, dz)
        da_r = self.d_ract(a_r, dr)
        d_projected[:, :u], d_projected[:, u : 2 * u], d_projected[:, 2 * u :] = da_z, da_r, da_h
        if self.reset_after:
            d_rec = self.d_recurrent[t]
            d_rec[:, : 2 * u] = d_projected[:, : 2 * u]
            d_rec[:, 2 * u :] = da_h * r
            return [dh * z + _through_recurrent_kernel(d_rec, U)]
        return [dh * z + _through_recurrent_kernel(d_projected[:, : 2 * u], U[:, : 2 * u]) + d_rh * r]

    def parameter_gradients(self, d_projected: np.ndarray) -> dict[str, np.ndarray | None]:
        time, batch, width = d_projected.shape
        u = self.units
        flat = d_projected.reshape(time * batch, width)
        h_prev = self.cache["h_prev"].reshape(time * batch, u)
        if self.reset_after:
            d_rec = self.d_recurrent.reshape(time * batch, width)
            return {"recurrent_kernel": h_prev.T @ d_rec,
                    "bias": None if self.inputs.bias is None else np.stack([flat.sum(axis=0), d_rec.sum(axis=0)])}
        reset_h = self.cache["recurrent_h"].reshape(time * batch, u)  # r * h_prev
        d_recurrent_kernel = np.concatenate([h_prev.T @ flat[:, : 2 * u], reset_h.T @ flat[:, 2 * u :]], axis=1)
        return {"recurrent_kernel": d_recurrent_kernel, "bias": None if self.inputs.bias is None else flat.sum(axis=0)}


def gru_backward(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    activation: str | None = "tanh",
    recurrent_activation: str | None = "sigmoid",
    reset_after: bool = True,
    mask: np.ndarray | None = None,
    initial_state: np.ndarray | Sequence[np.ndarray] | None = None,
    go_backwards: bool = False,
    return_sequences: bool = False,
    zero_output_for_mask: bool = False,
    grad_outputs: np.ndarray,
    grad_h: np.ndarray | None = None,
) -> dict[str, np.ndarray | None]:
    """Gradients of a scalar loss L through ``reference.gru.gru`` with the same arguments (the documented
    semantics). ``grad_outputs`` is dL/d(output) ((batch, time, units) in processing order with
    ``return_sequences``, else (batch, units)); ``grad_h`` dL/d(final h) (None: zero).

    Returns {"x", "kernel", "recurrent_kernel", "bias" (its shape, None without bias), "h0"}, float64."""
    get_activation(activation)
    get_activation(recurrent_activation)
    inputs = validate_inputs(x, kernel, recurrent_kernel, bias, mask, initial_state, np.dtype(np.float64), reset_after)
    grad_outputs, grad_states = recurrent.check_gradient_inputs(
        inputs, return_sequences=return_sequences, grad_outputs=grad_outputs, grad_states=[("grad_h", grad_h)])
    batch, time, _ = inputs.x.shape
    cache = allocate_cache(time, batch, inputs.units, inputs.x.dtype)
    gru_forward(inputs, activation, recurrent_activation, reset_after, go_backwards=go_backwards,
                zero_output_for_mask=zero_output_for_mask, cache=cache)
    step = GruBackward(inputs, cache, activation, recurrent_activation, reset_after)
    return recurrent.backward_through_time(step, inputs, go_backwards=go_backwards, return_sequences=return_sequences,
                                           zero_output_for_mask=zero_output_for_mask, grad_outputs=grad_outputs,
                                           grad_states=grad_states, state_names=STATE_NAMES)
