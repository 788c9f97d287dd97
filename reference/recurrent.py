"""The time loop shared by the recurrent layers of the reference (LSTM, GRU, SimpleRNN), float64 NumPy.

Everything here is what ``keras.layers.RNN`` (keras/src/layers/rnn/rnn.py and the backends' ``rnn``) does
around a cell, whatever the cell computes; a layer kind (``reference.lstm``, ``reference.gru``,
``reference.simple_rnn``) plugs in one *step*, written like that layer's equations:

- the input projection ``x_t @ kernel + input_bias`` of every timestep in one matmul (``project_inputs``),
  stored time-major so that step t reads one contiguous block, with dropout masks on the inputs applied per
  gate block (``input_masks``: the mask is the same at every timestep, so the projection stays one matmul
  per mask);
- the order the steps run in (``step_order``: ``go_backwards`` reads the last timestep first, and the
  outputs are returned in processing order, as Keras returns them);
- the initial states (zeros when not given) and the checks of every array (``validate_inputs``);
- the sequence mask: a masked step carries every state unchanged, and outputs the previous output, zeros
  before the first step (``initial_output="h0"``: h0 instead, the JAX ``lax.scan`` behaviour), or zeros with
  ``zero_output_for_mask`` (``zero_output_mask_order="input"``: zeroed where the mask read in input order is
  False, see ``reference.lstm``);
- return_sequences / return_state (``finish``);
- per timestep, what a step's backward pass reads (a ``StepCache``: the states entering the step, and
  whatever the step records), and backpropagation through time around a step's backward
  (``backward_through_time``), with the gradients of the kernel, the inputs and the initial states.

A forward step is an object with ``forward(t, x_projected, states) -> (output, new_states)``:
``x_projected`` is (batch, gates * units), the states a list of (batch, units) arrays whose first is h, the
layer's output; the step computes the recurrent product itself (a GRU with ``reset_after=False`` multiplies
``r * h``, not ``h``, by part of the recurrent kernel). It may return buffers it overwrites at the next step:
the loop copies what it keeps. A backward step is an object with
``backward(t, d_states, d_x_projected) -> d_states_prev`` (dL/d(new states) in, dL/d(x_projected) written into
``d_x_projected``, dL/d(states entering the step) out, the path through the recurrent kernel included) and
``parameter_gradients(d_x_projected) -> {"recurrent_kernel", "bias"}`` over all timesteps at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

STATE_MEANING = "batch, units"


def _as_array(name: str, value: object, dtype: np.dtype) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a numeric array; got dtype {array.dtype}")
    return array.astype(dtype, copy=False)


def _check_shape(name: str, array: np.ndarray, expected: tuple[int, ...], meaning: str) -> None:
    if array.shape != expected:
        raise ValueError(f"{name} has shape {array.shape}; expected {expected} ({meaning})")


@dataclass
class RecurrentInputs:
    """The validated arrays of one call, in the computing dtype (mask stays bool, or None)."""

    x: np.ndarray  # (batch, time, features)
    kernel: np.ndarray  # (features, gates * units)
    recurrent_kernel: np.ndarray  # (units, gates * units)
    bias: np.ndarray | None  # the layer's own shape
    mask: np.ndarray | None  # (batch, time) bool
    states: list[np.ndarray]  # the initial states, each (batch, units); states[0] is h0

    @property
    def units(self) -> int:
        return self.recurrent_kernel.shape[0]

    @property
    def h0(self) -> np.ndarray:
        return self.states[0]

    @property
    def c0(self) -> np.ndarray:
        return self.states[1]


def validate_inputs(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None,
    mask: np.ndarray | None,
    initial_state: Sequence[np.ndarray] | None,
    dtype: np.dtype,
    *,
    gates: int,
    state_names: Sequence[str],
    bias_shapes: Callable[[int], Sequence[tuple[int, ...]]],
) -> RecurrentInputs:
    """Every array of one call checked and converted to ``dtype``; ValueError naming the argument when a shape
    or dtype is wrong. ``gates`` is the number of column blocks of the kernels, ``state_names`` names the
    states (h first), ``bias_shapes(units)`` the accepted bias shapes (the first is named in the message)."""
    x = _as_array("x", x, dtype)
    if x.ndim != 3:
        raise ValueError(f"x has shape {x.shape}; expected 3 dimensions (batch, time, features)")
    batch, time, features = x.shape
    kernel = _as_array("kernel", kernel, dtype)
    if kernel.ndim != 2 or kernel.shape[0] != features or kernel.shape[1] % gates != 0 or kernel.shape[1] == 0:
        raise ValueError(
            f"kernel has shape {kernel.shape}; expected ({features}, {gates} * units) for x with {features} features"
        )
    units = kernel.shape[1] // gates
    recurrent_kernel = _as_array("recurrent_kernel", recurrent_kernel, dtype)
    _check_shape("recurrent_kernel", recurrent_kernel, (units, gates * units), f"units, {gates} * units")
    if bias is not None:
        bias = _as_array("bias", bias, dtype)
        accepted = list(bias_shapes(units))
        if bias.shape not in accepted:
            meaning = f"{gates} * units" if accepted[0] == (gates * units,) else f"2, {gates} * units"
            raise ValueError(f"bias has shape {bias.shape}; expected {accepted[0]} ({meaning})")

    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise ValueError(f"mask must be a bool array; got dtype {mask.dtype}")
        _check_shape("mask", mask, (batch, time), "batch, time")

    if initial_state is None:
        states = [np.zeros((batch, units), dtype) for _ in state_names]
    else:
        if len(initial_state) != len(state_names):
            listed = ", ".join(state_names)
            raise ValueError(f"initial_state must be [{listed}]; got {len(initial_state)} arrays")
        states = []
        for index, (name, state) in enumerate(zip(state_names, initial_state)):
            label = f"initial_state[{index}] ({name})"
            array = _as_array(label, state, dtype)
            _check_shape(label, array, (batch, units), STATE_MEANING)
            states.append(array)
    return RecurrentInputs(x, kernel, recurrent_kernel, bias, mask, states)


def check_options(initial_output: str, zero_output_mask_order: str, loop: str, dtype: object) -> np.dtype:
    """ValueError for an unknown semantics, loop or a non-floating dtype; returns the dtype."""
    if initial_output not in ("zeros", "h0"):
        raise ValueError(f"initial_output is {initial_output!r}; accepted: zeros, h0")
    if zero_output_mask_order not in ("processing", "input"):
        raise ValueError(f"zero_output_mask_order is {zero_output_mask_order!r}; accepted: processing, input")
    if loop not in ("fast", "readable"):
        raise ValueError(f"loop is {loop!r}; accepted: fast, readable")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating dtype; got {dtype}")
    return dtype


def step_order(time: int, go_backwards: bool) -> range:
    """The timesteps in the order the loop reads them."""
    return range(time - 1, -1, -1) if go_backwards else range(time)


# --- Dropout masks ---------------------------------------------------------------------------------------


def gate_masks(name: str, masks: np.ndarray | Sequence[np.ndarray] | None, shape: tuple[int, int], gates: int,
               gate_names: str) -> list[np.ndarray] | None:
    """``gates`` (batch, width) float64 masks, one per gate, or None when absent; one (batch, width) mask given
    alone is used for every gate. ValueError for a wrong count, shape, or a NaN / Inf."""
    if masks is None:
        return None
    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        masks = [masks] * gates
    masks = [np.asarray(mask, np.float64) for mask in masks]
    if len(masks) != gates:
        raise ValueError(f"{name} must be one (batch, width) mask or {gates} of them (gates {gate_names}); got {len(masks)}")
    for index, mask in enumerate(masks):
        if mask.shape != shape:
            raise ValueError(f"{name}[{index}] has shape {mask.shape}; expected {shape}")
        if not np.all(np.isfinite(mask)):
            raise ValueError(f"{name}[{index}] holds NaN or Inf")
    return masks


def masked_recurrent_product(h: np.ndarray, recurrent_kernel: np.ndarray, masks: list[np.ndarray] | None,
                             gates: Sequence[int]) -> np.ndarray:
    """The recurrent product of the gate blocks ``gates`` (column blocks of width units): ``h @ U_k`` for each,
    or ``(h * r_k) @ U_k`` with recurrent dropout masks (one per gate of the layer, indexed by gate)."""
    units = recurrent_kernel.shape[0]
    if masks is None:
        first, last = gates[0], gates[-1]
        if list(gates) == list(range(first, last + 1)):
            return h @ recurrent_kernel[:, first * units : (last + 1) * units]
    blocks = [(h if masks is None else h * masks[k]) @ recurrent_kernel[:, k * units : (k + 1) * units] for k in gates]
    return np.concatenate(blocks, axis=1)


# --- The forward loop ------------------------------------------------------------------------------------


def project_inputs(
    x: np.ndarray,
    kernel: np.ndarray,
    input_bias: np.ndarray | None,
    *,
    input_masks: list[np.ndarray] | None = None,
    matmul: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """``x_t @ kernel + input_bias`` for every t, time-major: (time, batch, gates * units), one matmul (one per
    distinct mask with ``input_masks``, one (batch, features) dropout mask per gate block). ``matmul`` replaces
    ``@`` (reference.dense.matmul_float32_operands)."""
    batch, time, features = x.shape
    width = kernel.shape[1]
    if input_masks is not None and all(mask is input_masks[0] for mask in input_masks):
        x, input_masks = x * input_masks[0][:, None, :], None  # one mask for every gate: one matmul
    x_time_major = x.transpose(1, 0, 2).reshape(time * batch, features)
    if input_masks is None:
        flat = x_time_major @ kernel if matmul is None else matmul(x_time_major, kernel)
        projected = flat.reshape(time, batch, width)
    else:
        units = width // len(input_masks)
        projected = np.empty((time, batch, width), np.result_type(x, kernel))
        for k, mask in enumerate(input_masks):
            block = slice(k * units, (k + 1) * units)
            masked = (x * mask[:, None, :]).transpose(1, 0, 2).reshape(time * batch, features)
            projected[:, :, block] = (masked @ kernel[:, block]).reshape(time, batch, units)
    if input_bias is not None:
        projected += input_bias
    return projected


class ForwardStep(Protocol):
    def forward(self, t: int, x_projected: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        ...


class StepCache(dict):
    """Per timestep t in input order (index t, not the processing position), what a backward step reads:
    named (time, batch, width) arrays. ``run`` records the states entering each step under
    ``<state name>_prev``; a step records its own entries."""

    state_names: tuple[str, ...] = ()

    @classmethod
    def allocate(cls, time: int, batch: int, units: int, widths: dict[str, int], dtype: np.dtype,
                 state_names: Sequence[str]) -> "StepCache":
        """(time, batch, units) for each ``<state name>_prev``, (time, batch, width) for each of ``widths``."""
        arrays = {f"{name}_prev": np.empty((time, batch, units), dtype) for name in state_names}
        arrays.update({name: np.empty((time, batch, width), dtype) for name, width in widths.items()})
        cache = cls(arrays)
        cache.state_names = tuple(state_names)
        return cache


def run(
    step: ForwardStep,
    projected: np.ndarray,
    initial_states: list[np.ndarray],
    mask: np.ndarray | None,
    *,
    go_backwards: bool,
    zero_output_for_mask: bool,
    initial_output: str = "zeros",
    cache: StepCache | None = None,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The time loop: ``step`` over ``projected`` (time, batch, gates * units) from ``initial_states``, with the
    sequence mask. Returns (outputs in processing order (batch, time, units), final states, last output)."""
    time, batch, _ = projected.shape
    states = [state.copy() for state in initial_states]
    dtype = states[0].dtype
    units = states[0].shape[1]
    outputs = np.zeros((batch, time, units), dtype)
    previous_output = states[0].copy() if initial_output == "h0" else np.zeros((batch, units), dtype)
    for position, t in enumerate(step_order(time, go_backwards)):
        if cache is not None:
            for name, state in zip(cache.state_names, states):
                cache[f"{name}_prev"][t] = state
        output, new_states = step.forward(t, projected[t], states)
        out = outputs[:, position, :]
        if mask is None:
            for state, new in zip(states, new_states):
                state[...] = new
            out[...] = output
        else:
            keep = mask[:, t][:, None]
            for state, new in zip(states, new_states):
                np.copyto(state, new, where=keep)
            # a masked step outputs the previous output (or zeros)
            out[...] = output
            np.copyto(out, 0.0 if zero_output_for_mask else previous_output, where=~keep)
        previous_output = out
    return outputs, states, previous_output.copy()


def zero_outputs_in_input_order(outputs: np.ndarray, mask: np.ndarray, go_backwards: bool) -> np.ndarray:
    """``zero_output_mask_order="input"``: every output is the unmasked-style one (carried through masked steps),
    zeroed where the mask *in input order* is False. ``outputs`` are the run's, with zero_output_for_mask."""
    batch, time, units = outputs.shape
    order = list(step_order(time, go_backwards))
    carried = np.zeros((batch, time, units), outputs.dtype)
    for position in range(time):
        step = outputs[:, position, :]
        valid = mask[:, order[position]][:, None]
        carried[:, position, :] = np.where(valid, step, carried[:, position - 1, :] if position else 0.0)
    return np.where(mask[:, :, None], carried, 0.0)


def finish(outputs: np.ndarray, states: list[np.ndarray], last_output: np.ndarray, *, return_sequences: bool,
           return_state: bool) -> np.ndarray | list[np.ndarray]:
    """What the layer returns: the sequence or the last output, then the final states with ``return_state``."""
    result = outputs if return_sequences else last_output
    if return_state:
        return [result, *states]
    return result


# --- Backpropagation through time --------------------------------------------------------------------------


class BackwardStep(Protocol):
    def backward(self, t: int, d_states: list[np.ndarray], d_x_projected: np.ndarray) -> list[np.ndarray]:
        ...

    def parameter_gradients(self, d_x_projected: np.ndarray) -> dict[str, np.ndarray | None]:
        ...


def check_gradient_inputs(
    inputs: RecurrentInputs,
    *,
    return_sequences: bool,
    grad_outputs: np.ndarray,
    grad_states: Sequence[tuple[str, np.ndarray | None]],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """grad_outputs and the gradients of the final states as float64 arrays (None -> zeros); ValueError naming
    the argument when a shape is wrong."""
    batch, time, _ = inputs.x.shape
    units = inputs.units
    expected = (batch, time, units) if return_sequences else (batch, units)
    grad_outputs = np.asarray(grad_outputs, np.float64)
    if grad_outputs.shape != expected:
        raise ValueError(f"grad_outputs has shape {grad_outputs.shape}; expected {expected} (the output's shape)")
    arrays = []
    for name, value in grad_states:
        array = np.zeros((batch, units)) if value is None else np.array(value, np.float64)
        if array.shape != (batch, units):
            raise ValueError(f"{name} has shape {array.shape}; expected {(batch, units)} (batch, units)")
        arrays.append(array)
    return grad_outputs, arrays


def backward_through_time(
    step: BackwardStep,
    inputs: RecurrentInputs,
    *,
    go_backwards: bool,
    return_sequences: bool,
    zero_output_for_mask: bool,
    grad_outputs: np.ndarray,
    grad_states: list[np.ndarray],
    state_names: Sequence[str],
) -> dict[str, np.ndarray | None]:
    """Gradients of a scalar loss through ``run`` (after a forward that filled the step's cache), from the last
    processed step to the first, carrying dL/d(states) and dL/d(output) through masked steps::

        d_out  = dout + grad_outputs[:, p]     (return_sequences; else dout starts at grad_outputs)
        d_new  = [m * (dh + d_out), m * dc, ...]         (m = mask[:, t], 1 without a mask)
        d_prev = step.backward(t, d_new, dz_t)           (dz_t = dL/d(x_t @ kernel + input_bias))
        dh <- d_prev[0] + (1 - m) * dh, dc <- d_prev[1] + (1 - m) * dc, ...
        dout <- (1 - m) * d_out   (0 with zero_output_for_mask or without a mask)

    then dx = dZ kernel^T, dkernel = X^T dZ (one matmul each over every timestep) and the step's
    ``parameter_gradients``. The final dL/d(states) are the gradients of the initial states (zeros are still
    differentiated against when no initial state is given). Returns {"x", "kernel", "recurrent_kernel",
    "bias", <state name>0 ...}."""
    x, kernel, mask = inputs.x, inputs.kernel, inputs.mask
    batch, time, features = x.shape
    units = inputs.units
    width = kernel.shape[1]
    d_states = list(grad_states)
    d_projected = np.empty((time, batch, width))  # dL/d(x_t @ kernel + input_bias), at index t
    d_out = np.zeros((batch, units)) if return_sequences else grad_outputs.copy()
    order = step_order(time, go_backwards)
    for position in range(time - 1, -1, -1):
        t = order[position]
        if return_sequences:
            d_out = d_out + grad_outputs[:, position, :]
        if mask is None:
            d_new = [d_states[0] + d_out, *d_states[1:]]
        else:
            keep = mask[:, t][:, None]
            d_new = [np.where(keep, d_states[0] + d_out, 0.0), *(np.where(keep, d, 0.0) for d in d_states[1:])]
        d_prev = step.backward(t, d_new, d_projected[t])
        if mask is None:
            d_states = d_prev
            d_out = np.zeros_like(d_out)
        else:
            d_states = [prev + np.where(keep, 0.0, d) for prev, d in zip(d_prev, d_states)]
            d_out = np.zeros_like(d_out) if zero_output_for_mask else np.where(keep, 0.0, d_out)

    # dkernel = sum_t x_t^T dz_t, dx_t = dz_t kernel^T, each over every t at once
    flat = d_projected.reshape(time * batch, width)
    x_time_major = x.transpose(1, 0, 2).reshape(time * batch, features)
    gradients: dict[str, np.ndarray | None] = {
        "x": np.ascontiguousarray((flat @ kernel.T).reshape(time, batch, features).transpose(1, 0, 2)),
        "kernel": x_time_major.T @ flat,
    }
    gradients.update(step.parameter_gradients(d_projected))
    for name, d_state in zip(state_names, d_states):
        gradients[f"{name}0"] = d_state
    return gradients
