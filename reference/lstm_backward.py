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

The loop over time, the masks and dW, dx are ``reference.recurrent.backward_through_time``'s (shared with
the GRU and SimpleRNN); a backward step here is the step's part above (dz, dh through the recurrent kernel,
dc), and ``parameter_gradients`` gives dU = H_prev^T dZ and db with one matmul / sum over all timesteps.

Two steps, as in ``reference.lstm``: ``loop="readable"`` (``ReadableLstmBackward``) runs the readable
forward (``lstm_forward_with_cache``), recomputes the gates from the cached pre-activations and takes every
derivative from ``reference.activations``' derivative of the pre-activation. ``loop="fast"``
(``FastLstmBackward``, the default) runs ``reference.lstm.fast_forward`` once, keeping its gates
(``reference.lstm.allocate_cache``), and takes the activation derivatives from the gates where that is exact
(sigmoid'(z) = s (1 - s), tanh'(z) = 1 - t^2) instead of recomputing the activations. The two agree to
float64 rounding (tests/test_reference_speed_equivalence.py).

Activation derivatives at non-differentiable points follow Keras on JAX; see
``reference/activations.py``. The alternative semantics of ``reference.lstm`` (``initial_output="h0"``,
``zero_output_mask_order="input"``) are not supported here and raise ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from reference import recurrent
from reference.activations import get_activation, get_activation_derivative
from reference.lstm import (DERIVATIVE_FROM_OUTPUT, GATES, STATE_NAMES, LstmInputs, _readable_loop, allocate_cache,
                            fast_forward, step_order, validate_inputs)
from reference.recurrent import StepCache


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


def _readable_cache(inputs: LstmInputs) -> StepCache:
    batch, time, _ = inputs.x.shape
    units = inputs.units
    return StepCache.allocate(time, batch, units, {"pre_activations": GATES * units, "c_new": units},
                              inputs.x.dtype, STATE_NAMES)


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
    """The readable forward pass of ``reference.lstm`` (float64), keeping every step's gates.

    Returns (outputs in processing order (batch, time, units), final h, final c, steps in processing order)."""
    inputs = validate_inputs(x, kernel, recurrent_kernel, bias, mask, initial_state, np.dtype(np.float64))
    cache = _readable_cache(inputs)
    outputs, h, c, _ = _readable_loop(inputs, activation, recurrent_activation, go_backwards=go_backwards,
                                      zero_output_for_mask=zero_output_for_mask, initial_output="zeros",
                                      matmuls_in_float32=False, cache=cache)
    act, ract = get_activation(activation), get_activation(recurrent_activation)
    units = inputs.units
    steps = []
    for t in step_order(inputs.x.shape[1], go_backwards):
        z = cache["pre_activations"][t]
        i, f, o = (ract(z[:, gate * units : (gate + 1) * units]) for gate in (0, 1, 3))
        g = act(z[:, 2 * units : 3 * units])
        steps.append(LstmStep(t, cache["h_prev"][t], cache["c_prev"][t], z, i, f, g, o, cache["c_new"][t]))
    return outputs, h, c, steps


def _through_recurrent_kernel(dz: np.ndarray, recurrent_kernel: np.ndarray) -> np.ndarray:
    """dL/dh_prev through z = ... + h_prev @ U: the term that carries the gradient back in time.
    (A function of its own so that tests/test_reference_gradients.py can drop it and show that the
    finite-difference check catches the bug.)"""
    return dz @ recurrent_kernel.T


GateDerivative = Callable[[np.ndarray, "np.ndarray | None", np.ndarray], np.ndarray]


def _sigmoid_from_output(s: np.ndarray, z: np.ndarray | None, grad: np.ndarray) -> np.ndarray:
    return grad * s * (1.0 - s)  # reference.activations._d_sigmoid with s = sigmoid(z)


def _tanh_from_output(t: np.ndarray, z: np.ndarray | None, grad: np.ndarray) -> np.ndarray:
    return grad * (1.0 - t * t)  # reference.activations._d_tanh with t = tanh(z)


def _from_input(name: str | None) -> GateDerivative:
    derivative = get_activation_derivative(name)

    def from_input(y: np.ndarray, z: np.ndarray | None, grad: np.ndarray) -> np.ndarray:
        return derivative(z, grad)

    return from_input


def gate_derivative(name: str | None) -> GateDerivative:
    """``backward(y, z, grad) -> grad_z`` for y = activation(z): from the output y alone for the names in
    DERIVATIVE_FROM_OUTPUT (z may then be None), else ``get_activation_derivative(name)(z, grad)``."""
    if name == "sigmoid":
        return _sigmoid_from_output
    if name == "tanh":
        return _tanh_from_output
    return _from_input(name)


class LstmBackward:
    """The step's backward, with dh_new = dL/dh_new and dc_new = dL/dc_new (masked by the loop)::

        dc_tot = dc_new + act'(c_new)^T (dh_new * o)
        dz_i = ract'(z_i)^T (dc_tot * g)      dz_f = ract'(z_f)^T (dc_tot * c_prev)
        dz_g = act'(z_g)^T (dc_tot * i)       dz_o = ract'(z_o)^T (dh_new * act(c_new))
        dh_prev = dz U^T,   dc_prev = dc_tot * f

    ``gates(t)`` gives (i, f, g, o, z blocks or Nones, c_new, act(c_new)) from the forward's cache."""

    def __init__(self, inputs: LstmInputs, cache: StepCache, d_act: GateDerivative, d_ract: GateDerivative) -> None:
        self.inputs = inputs
        self.cache = cache
        self.d_act = d_act
        self.d_ract = d_ract
        units = inputs.units
        self.blocks = [slice(gate * units, (gate + 1) * units) for gate in range(GATES)]

    def gates(self, t: int) -> tuple:
        raise NotImplementedError

    def backward(self, t: int, d_states: list[np.ndarray], dz: np.ndarray) -> list[np.ndarray]:
        dh_new, dc_new = d_states
        (i, f, g, o), (z_i, z_f, z_g, z_o), c_new, c_activated = self.gates(t)
        c_prev = self.cache["c_prev"][t]
        d_act, d_ract = self.d_act, self.d_ract
        i_block, f_block, g_block, o_block = self.blocks
        dc_total = dc_new + d_act(c_activated, c_new, dh_new * o)
        dz[:, i_block] = d_ract(i, z_i, dc_total * g)
        dz[:, f_block] = d_ract(f, z_f, dc_total * c_prev)
        dz[:, g_block] = d_act(g, z_g, dc_total * i)
        dz[:, o_block] = d_ract(o, z_o, dh_new * c_activated)
        return [_through_recurrent_kernel(dz, self.inputs.recurrent_kernel), dc_total * f]

    def parameter_gradients(self, d_projected: np.ndarray) -> dict[str, np.ndarray | None]:
        # dU = sum_t h_prev_t^T dz_t, db = sum_t sum_batch dz_t
        time, batch, width = d_projected.shape
        flat = d_projected.reshape(time * batch, width)
        return {
            "recurrent_kernel": self.cache["h_prev"].reshape(time * batch, -1).T @ flat,
            "bias": None if self.inputs.bias is None else flat.sum(axis=0),
        }


class FastLstmBackward(LstmBackward):
    """Reads the gates ``fast_forward`` kept; derivatives from the gates where exact (``gate_derivative``)."""

    def __init__(self, inputs: LstmInputs, cache: StepCache, activation: str | None,
                 recurrent_activation: str | None) -> None:
        super().__init__(inputs, cache, gate_derivative(activation), gate_derivative(recurrent_activation))

    def gates(self, t: int) -> tuple:
        gates = self.cache["gates"][t]
        pre = self.cache.get("pre_activations")
        z = [None] * GATES if pre is None else [pre[t][:, block] for block in self.blocks]
        return [gates[:, block] for block in self.blocks], z, self.cache["c_new"][t], self.cache["c_activated"][t]


class ReadableLstmBackward(LstmBackward):
    """Recomputes the gates from the cached pre-activations with ``reference.activations``; every derivative
    from the pre-activation (``get_activation_derivative``)."""

    def __init__(self, inputs: LstmInputs, cache: StepCache, activation: str | None,
                 recurrent_activation: str | None) -> None:
        super().__init__(inputs, cache, _from_input(activation), _from_input(recurrent_activation))
        self.act = get_activation(activation)
        self.ract = get_activation(recurrent_activation)

    def gates(self, t: int) -> tuple:
        z = [self.cache["pre_activations"][t][:, block] for block in self.blocks]
        gates = [self.ract(z[0]), self.ract(z[1]), self.act(z[2]), self.ract(z[3])]
        c_new = self.cache["c_new"][t]
        return gates, z, c_new, self.act(c_new)


def _readable_backward(inputs: LstmInputs, activation: str | None, recurrent_activation: str | None, *,
                       go_backwards: bool, zero_output_for_mask: bool, **gradients) -> dict[str, np.ndarray | None]:
    """The readable forward (``lstm_forward_with_cache``'s loop), then the backward loop with
    ``ReadableLstmBackward``."""
    cache = _readable_cache(inputs)
    _readable_loop(inputs, activation, recurrent_activation, go_backwards=go_backwards,
                   zero_output_for_mask=zero_output_for_mask, initial_output="zeros", matmuls_in_float32=False,
                   cache=cache)
    step = ReadableLstmBackward(inputs, cache, activation, recurrent_activation)
    return recurrent.backward_through_time(step, inputs, go_backwards=go_backwards,
                                           zero_output_for_mask=zero_output_for_mask, state_names=STATE_NAMES,
                                           **gradients)


def _fast_backward(inputs: LstmInputs, activation: str | None, recurrent_activation: str | None, *,
                   go_backwards: bool, zero_output_for_mask: bool, **gradients) -> dict[str, np.ndarray | None]:
    """``fast_forward`` once, keeping its gates, then the backward loop with ``FastLstmBackward``."""
    batch, time, _ = inputs.x.shape
    keep_pre_activations = activation not in DERIVATIVE_FROM_OUTPUT or recurrent_activation not in DERIVATIVE_FROM_OUTPUT
    cache = allocate_cache(time, batch, inputs.units, keep_pre_activations, inputs.x.dtype)
    fast_forward(inputs, activation, recurrent_activation, go_backwards=go_backwards,
                 zero_output_for_mask=zero_output_for_mask, cache=cache)
    step = FastLstmBackward(inputs, cache, activation, recurrent_activation)
    return recurrent.backward_through_time(step, inputs, go_backwards=go_backwards,
                                           zero_output_for_mask=zero_output_for_mask, state_names=STATE_NAMES,
                                           **gradients)


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
    grad_outputs, grad_states = recurrent.check_gradient_inputs(
        inputs, return_sequences=return_sequences, grad_outputs=grad_outputs,
        grad_states=[("grad_h", grad_h), ("grad_c", grad_c)])
    backward = _fast_backward if loop == "fast" else _readable_backward
    return backward(inputs, activation, recurrent_activation, go_backwards=go_backwards,
                    zero_output_for_mask=zero_output_for_mask, return_sequences=return_sequences,
                    grad_outputs=grad_outputs, grad_states=grad_states)
