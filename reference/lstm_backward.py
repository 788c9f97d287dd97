"""Backpropagation through time for ``reference.lstm.lstm`` (float64 NumPy).

Forward, at processing position p (timestep t = p, or time - 1 - p with ``go_backwards``), with the
pre-activations z = x_t @ W + h @ U + b split into the gate blocks (z_i, z_f, z_g, z_o)::

    i = ract(z_i)   f = ract(z_f)   g = act(z_g)   o = ract(z_o)
    c_new = f * c + i * g
    h_new = o * act(c_new)
    with a mask (m = mask[:, t]):  h <- m ? h_new : h,   c <- m ? c_new : c,
                                   out_p = m ? h_new : (0 if zero_output_for_mask else out_{p-1}),
    out_{-1} = 0 (not h0: the documented semantics, see reference/lstm.py).

Backward, from the last processed step to the first, carrying dh = dL/dh, dc = dL/dc and
dout = dL/d out_p that flows into out_{p-1} through a masked step::

    d_out   = dout + grad_outputs[:, p]               (return_sequences; else dout starts at grad_outputs)
    dh_new  = m * (dh + d_out)                          (m = 1 without a mask)
    dc_new  = m * dc
    dc_tot  = dc_new + act'(c_new)^T (dh_new * o)       (a vector-Jacobian product: softmax mixes units)
    dz_o    = ract'(z_o)^T (dh_new * act(c_new))
    dz_i    = ract'(z_i)^T (dc_tot * g)
    dz_f    = ract'(z_f)^T (dc_tot * c)
    dz_g    = act'(z_g)^T  (dc_tot * i)
    dW += x_t^T dz,  dU += h^T dz,  db += sum_batch dz,  dx_t = dz W^T
    dh     <- dz U^T + (1 - m) * dh
    dc     <- dc_tot * f + (1 - m) * dc
    dout   <- (1 - m) * d_out   (0 with zero_output_for_mask or without a mask)

after the loop dh and dc are the gradients of h0 and c0 (zeros are still differentiated against when
no initial state is given: the result is what the gradient of a zero initial state would be).

Two implementations, as in ``reference.lstm``: ``loop="readable"`` (``_readable_backward``) runs
``lstm_forward_with_cache`` and then the loop above as written, one step at a time, accumulating dU per
step. ``loop="fast"`` (``_fast_backward``, the default) runs ``reference.lstm.fast_forward`` once, keeping
its gates (``ForwardCache``), takes the activation derivatives from the gates where that is exact
(sigmoid'(z) = s (1 - s), tanh'(z) = 1 - t^2) instead of recomputing the activations, stores every step's
dz, and after the loop computes dW = X^T dZ, dU = H_prev^T dZ, db and dx with one matmul each over all
timesteps. The two agree to float64 rounding (tests/test_reference_speed_equivalence.py).

Activation derivatives at non-differentiable points follow Keras on JAX; see
``reference/activations.py``. The alternative semantics of ``reference.lstm`` (``initial_output="h0"``,
``zero_output_mask_order="input"``) are not supported here and raise ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from reference.activations import get_activation, get_activation_derivative
from reference.lstm import DERIVATIVE_FROM_OUTPUT, ForwardCache, LstmInputs, fast_forward, step_order, validate_inputs


@dataclass
class LstmStep:
    """What the backward pass needs from one forward step (all (batch, ...) arrays)."""

    t: int  # timestep read (input order)
    h_prev: np.ndarray
    c_prev: np.ndarray
    z: np.ndarray  # pre-activations, (batch, 4 * units), gate order i, f, g, o
    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray
    c_new: np.ndarray


def lstm_forward_with_cache(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None,
    *,
    activation: str | None = "tanh",
    recurrent_activation: str | None = "sigmoid",
    mask: np.ndarray | None = None,
    initial_state: Sequence[np.ndarray] | None = None,
    go_backwards: bool = False,
    zero_output_for_mask: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[LstmStep]]:
    """The forward pass of ``reference.lstm`` (float64), keeping every step's gates.

    Returns (outputs in processing order (batch, time, units), final h, final c, steps)."""
    act = get_activation(activation)
    ract = get_activation(recurrent_activation)
    batch, time, features = x.shape
    units = recurrent_kernel.shape[0]
    if initial_state is None:
        h = np.zeros((batch, units))
        c = np.zeros((batch, units))
    else:
        h = np.asarray(initial_state[0], np.float64)
        c = np.asarray(initial_state[1], np.float64)
    projected = (x.reshape(batch * time, features) @ kernel).reshape(batch, time, 4 * units)
    if bias is not None:
        projected = projected + bias
    outputs = np.zeros((batch, time, units))
    previous_output = np.zeros((batch, units))
    steps: list[LstmStep] = []
    for position, t in enumerate(step_order(time, go_backwards)):
        z = projected[:, t, :] + h @ recurrent_kernel
        i = ract(z[:, 0 * units : 1 * units])
        f = ract(z[:, 1 * units : 2 * units])
        g = act(z[:, 2 * units : 3 * units])
        o = ract(z[:, 3 * units : 4 * units])
        c_new = f * c + i * g
        h_new = o * act(c_new)
        steps.append(LstmStep(t, h, c, z, i, f, g, o, c_new))
        if mask is None:
            h, c, output = h_new, c_new, h_new
        else:
            keep = mask[:, t][:, None]
            h = np.where(keep, h_new, h)
            c = np.where(keep, c_new, c)
            output = np.where(keep, h_new, 0.0 if zero_output_for_mask else previous_output)
        outputs[:, position, :] = output
        previous_output = output
    return outputs, h, c, steps


def _through_recurrent_kernel(dz: np.ndarray, recurrent_kernel: np.ndarray) -> np.ndarray:
    """dL/dh_prev through z = ... + h_prev @ U: the term that carries the gradient back in time.
    (A function of its own so that tests/test_reference_gradients.py can drop it and show that the
    finite-difference check catches the bug.)"""
    return dz @ recurrent_kernel.T


def _readable_backward(
    inputs: LstmInputs,
    activation: str | None,
    recurrent_activation: str | None,
    *,
    go_backwards: bool,
    return_sequences: bool,
    zero_output_for_mask: bool,
    grad_outputs: np.ndarray,
    dh: np.ndarray,
    dc: np.ndarray,
) -> dict[str, np.ndarray | None]:
    """The backward loop of the module docstring, one step at a time, after ``lstm_forward_with_cache``."""
    x, kernel, recurrent_kernel, bias, mask = inputs.x, inputs.kernel, inputs.recurrent_kernel, inputs.bias, inputs.mask
    batch, time, features = x.shape
    units = inputs.units
    d_act = get_activation_derivative(activation)
    d_ract = get_activation_derivative(recurrent_activation)
    act = get_activation(activation)
    _, _, _, steps = lstm_forward_with_cache(
        x, kernel, recurrent_kernel, bias, activation=activation, recurrent_activation=recurrent_activation,
        mask=mask, initial_state=[inputs.h0, inputs.c0], go_backwards=go_backwards,
        zero_output_for_mask=zero_output_for_mask,
    )

    d_projected = np.zeros((batch, time, 4 * units))
    d_recurrent = np.zeros_like(recurrent_kernel)
    d_out = np.zeros((batch, units)) if return_sequences else grad_outputs.copy()
    for position in range(time - 1, -1, -1):
        step = steps[position]
        if return_sequences:
            d_out = d_out + grad_outputs[:, position, :]
        if mask is None:
            keep = np.ones((batch, 1), dtype=bool)
        else:
            keep = mask[:, step.t][:, None]
        dh_new = np.where(keep, dh + d_out, 0.0)
        dc_new = np.where(keep, dc, 0.0)

        a_c = act(step.c_new)
        dc_total = dc_new + d_act(step.c_new, dh_new * step.o)
        dz = np.concatenate(
            [
                d_ract(step.z[:, 0 * units : 1 * units], dc_total * step.g),
                d_ract(step.z[:, 1 * units : 2 * units], dc_total * step.c_prev),
                d_act(step.z[:, 2 * units : 3 * units], dc_total * step.i),
                d_ract(step.z[:, 3 * units : 4 * units], dh_new * a_c),
            ],
            axis=1,
        )
        d_projected[:, step.t, :] = dz
        d_recurrent += step.h_prev.T @ dz
        dh = _through_recurrent_kernel(dz, recurrent_kernel) + np.where(keep, 0.0, dh)
        dc = dc_total * step.f + np.where(keep, 0.0, dc)
        d_out = np.zeros_like(d_out) if zero_output_for_mask else np.where(keep, 0.0, d_out)

    flat = d_projected.reshape(batch * time, 4 * units)
    return {
        "x": (flat @ kernel.T).reshape(batch, time, features),
        "kernel": x.reshape(batch * time, features).T @ flat,
        "recurrent_kernel": d_recurrent,
        "bias": None if bias is None else flat.sum(axis=0),
        "h0": dh,
        "c0": dc,
    }


GateDerivative = Callable[[np.ndarray, "np.ndarray | None", np.ndarray], np.ndarray]


def _sigmoid_from_output(s: np.ndarray, z: np.ndarray | None, grad: np.ndarray) -> np.ndarray:
    return grad * s * (1.0 - s)  # reference.activations._d_sigmoid with s = sigmoid(z)


def _tanh_from_output(t: np.ndarray, z: np.ndarray | None, grad: np.ndarray) -> np.ndarray:
    return grad * (1.0 - t * t)  # reference.activations._d_tanh with t = tanh(z)


def gate_derivative(name: str | None) -> GateDerivative:
    """``backward(y, z, grad) -> grad_z`` for y = activation(z): from the output y alone for the names in
    DERIVATIVE_FROM_OUTPUT (z may then be None), else ``get_activation_derivative(name)(z, grad)``."""
    if name == "sigmoid":
        return _sigmoid_from_output
    if name == "tanh":
        return _tanh_from_output
    derivative = get_activation_derivative(name)

    def from_input(y: np.ndarray, z: np.ndarray | None, grad: np.ndarray) -> np.ndarray:
        return derivative(z, grad)

    return from_input


def _fast_backward(
    inputs: LstmInputs,
    activation: str | None,
    recurrent_activation: str | None,
    *,
    go_backwards: bool,
    return_sequences: bool,
    zero_output_for_mask: bool,
    grad_outputs: np.ndarray,
    dh: np.ndarray,
    dc: np.ndarray,
) -> dict[str, np.ndarray | None]:
    """The backward loop of the module docstring on ``fast_forward``'s cache, with the weight gradients
    computed after the loop from every step's dz (one matmul each)."""
    x, kernel, recurrent_kernel, bias, mask = inputs.x, inputs.kernel, inputs.recurrent_kernel, inputs.bias, inputs.mask
    batch, time, features = x.shape
    units = inputs.units
    keep_pre_activations = activation not in DERIVATIVE_FROM_OUTPUT or recurrent_activation not in DERIVATIVE_FROM_OUTPUT
    cache = ForwardCache.allocate(time, batch, units, keep_pre_activations, x.dtype)
    fast_forward(inputs, activation, recurrent_activation, go_backwards=go_backwards,
                 zero_output_for_mask=zero_output_for_mask, cache=cache)
    d_act = gate_derivative(activation)
    d_ract = gate_derivative(recurrent_activation)
    blocks = [slice(gate * units, (gate + 1) * units) for gate in range(4)]
    i_block, f_block, g_block, o_block = blocks

    d_z = np.empty((time, batch, 4 * units))  # dL/dz of the step that read x_t, at index t
    d_out = np.zeros((batch, units)) if return_sequences else grad_outputs.copy()
    order = step_order(time, go_backwards)
    for position in range(time - 1, -1, -1):
        t = order[position]
        if return_sequences:
            d_out = d_out + grad_outputs[:, position, :]
        i, f, g, o = (cache.gates[t][:, block] for block in blocks)
        z_i, z_f, z_g, z_o = [None] * 4 if cache.pre_activations is None else [cache.pre_activations[t][:, block] for block in blocks]
        c_prev, c_new, c_activated = cache.c_prev[t], cache.c_new[t], cache.c_activated[t]
        if mask is None:
            dh_new, dc_new = dh + d_out, dc
        else:
            keep = mask[:, t][:, None]
            dh_new = np.where(keep, dh + d_out, 0.0)
            dc_new = np.where(keep, dc, 0.0)

        dc_total = dc_new + d_act(c_activated, c_new, dh_new * o)
        dz = d_z[t]
        dz[:, i_block] = d_ract(i, z_i, dc_total * g)
        dz[:, f_block] = d_ract(f, z_f, dc_total * c_prev)
        dz[:, g_block] = d_act(g, z_g, dc_total * i)
        dz[:, o_block] = d_ract(o, z_o, dh_new * c_activated)
        if mask is None:
            dh = _through_recurrent_kernel(dz, recurrent_kernel)
            dc = dc_total * f
            d_out = np.zeros_like(d_out)
        else:
            dh = _through_recurrent_kernel(dz, recurrent_kernel) + np.where(keep, 0.0, dh)
            dc = dc_total * f + np.where(keep, 0.0, dc)
            d_out = np.zeros_like(d_out) if zero_output_for_mask else np.where(keep, 0.0, d_out)

    # dW = sum_t x_t^T dz_t, dU = sum_t h_prev_t^T dz_t, dx_t = dz_t W^T, each over every t at once
    flat = d_z.reshape(time * batch, 4 * units)
    x_time_major = x.transpose(1, 0, 2).reshape(time * batch, features)
    return {
        "x": np.ascontiguousarray((flat @ kernel.T).reshape(time, batch, features).transpose(1, 0, 2)),
        "kernel": x_time_major.T @ flat,
        "recurrent_kernel": cache.h_prev.reshape(time * batch, units).T @ flat,
        "bias": None if bias is None else flat.sum(axis=0),
        "h0": dh,
        "c0": dc,
    }


def lstm_backward(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    activation: str | None = "tanh",
    recurrent_activation: str | None = "sigmoid",
    mask: np.ndarray | None = None,
    initial_state: Sequence[np.ndarray] | None = None,
    go_backwards: bool = False,
    return_sequences: bool = False,
    return_state: bool = False,
    zero_output_for_mask: bool = False,
    dtype: type | np.dtype = np.float64,
    initial_output: str = "zeros",
    zero_output_mask_order: str = "processing",
    grad_outputs: np.ndarray,
    grad_h: np.ndarray | None = None,
    grad_c: np.ndarray | None = None,
    loop: str = "fast",
) -> dict[str, np.ndarray | None]:
    """Gradients of a scalar loss L through ``reference.lstm`` with the same arguments.

    ``grad_outputs`` is dL/d(output): (batch, time, units) in processing order with
    ``return_sequences`` (the order ``lstm`` returns), else (batch, units) for the last output.
    ``grad_h`` and ``grad_c`` are dL/d(final h) and dL/d(final c) (the states ``return_state`` adds);
    None means zero. ``return_state`` itself changes nothing here: it only adds those outputs.

    ``loop`` is "fast" (``_fast_backward``) or "readable" (``_readable_backward``).

    Returns {"x", "kernel", "recurrent_kernel", "bias" (None without bias), "h0", "c0"}, float64.
    """
    if initial_output != "zeros":
        raise ValueError(f"initial_output={initial_output!r} is not supported by lstm_backward (only 'zeros')")
    if zero_output_mask_order != "processing":
        raise ValueError(
            f"zero_output_mask_order={zero_output_mask_order!r} is not supported by lstm_backward (only 'processing')"
        )
    if np.dtype(dtype) != np.float64:
        raise ValueError(f"lstm_backward computes in float64 only; got dtype {np.dtype(dtype)}")
    if loop not in ("fast", "readable"):
        raise ValueError(f"loop is {loop!r}; accepted: fast, readable")
    get_activation(activation)  # ValueError for an unknown or rejected name
    get_activation(recurrent_activation)
    inputs = validate_inputs(x, kernel, recurrent_kernel, bias, mask, initial_state, np.dtype(np.float64))
    batch, time, _ = inputs.x.shape
    units = inputs.units
    expected = (batch, time, units) if return_sequences else (batch, units)
    grad_outputs = np.asarray(grad_outputs, np.float64)
    if grad_outputs.shape != expected:
        raise ValueError(f"grad_outputs has shape {grad_outputs.shape}; expected {expected} (the output's shape)")
    dh = np.zeros((batch, units)) if grad_h is None else np.array(grad_h, np.float64)
    dc = np.zeros((batch, units)) if grad_c is None else np.array(grad_c, np.float64)
    for name, array in (("grad_h", dh), ("grad_c", dc)):
        if array.shape != (batch, units):
            raise ValueError(f"{name} has shape {array.shape}; expected {(batch, units)} (batch, units)")

    backward = _fast_backward if loop == "fast" else _readable_backward
    return backward(inputs, activation, recurrent_activation, go_backwards=go_backwards,
                    return_sequences=return_sequences, zero_output_for_mask=zero_output_for_mask,
                    grad_outputs=grad_outputs, dh=dh, dc=dc)
