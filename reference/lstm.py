"""Float64 NumPy reference for ``keras.layers.LSTM`` (Keras 3).

Equations, for one step with input ``x_t``, previous hidden state ``h`` and carry ``c``::

    z = x_t @ kernel + h @ recurrent_kernel + bias      # (batch, 4 * units)
    i, f, g, o = split(z, 4)                            # Keras gate order: input, forget, cell, output
    i = recurrent_activation(i)
    f = recurrent_activation(f)
    g = activation(g)
    o = recurrent_activation(o)
    c_new = f * c + i * g
    h_new = o * activation(c_new)

The input projection ``x @ kernel + bias`` of every timestep is one matmul; the time loop does only
the recurrent part.

Two loops compute this. ``loop="readable"`` (``_readable_loop``) is the equations above written out:
each step calls ``lstm_step``, which reads like them. ``loop="fast"`` (``fast_forward``, the default) is
the same arithmetic arranged for speed: the projection is stored time-major so that each step reads one
contiguous block, the step writes into buffers allocated once (``np.matmul(..., out=)``, in-place
activations), and the logistic sigmoid is ``1 / (1 + exp(-x))`` in place (``sigmoid_in_place``) instead
of ``reference.activations.sigmoid``'s two-branch form; the two differ by at most a few ulps, and
tests/test_reference_speed_equivalence.py holds the fast loop to the readable one at float64 rounding.
Only the sigmoid changes the rounding: every other operation is the same operation on the same operands.
With ``matmuls_in_float32`` the readable loop runs. ``fast_forward`` can also keep, per timestep, what
``reference.lstm_backward`` needs (a ``ForwardCache``), so that the backward pass reuses the forward's
gates instead of recomputing them.

Weight layout: ``kernel`` is (features, 4 * units), ``recurrent_kernel`` is (units, 4 * units), ``bias``
is (4 * units,), each with the gate blocks in the order i, f, g (Keras calls it c), o.

go_backwards: the sequence (and the mask) is read from the last timestep to the first, and with
``return_sequences`` the outputs are returned in processing order, i.e. reversed in time, exactly as
Keras returns them (Keras does not flip them back; Bidirectional does that itself).

initial_state: ``[h0, c0]``, each (batch, units); zeros when not given.

Masking (``mask[b, t]`` False means "skip step t of row b"):
- the states h and c are carried unchanged through a masked step;
- the output of a masked step is the output of the previous step, or zeros with
  ``zero_output_for_mask=True``; the output "before the first step" is zeros;
- the last output (``return_sequences=False``) is the output of the last processed step, so with
  ``zero_output_for_mask=True`` and a masked last step it is zeros.

Where the backends disagree: when the *first* steps are masked and ``initial_state`` is not zero,
Keras's TensorFlow and PyTorch loops and every ``unroll=True`` loop return zeros for those steps
(the previous *output*, which starts at zero), while the JAX ``lax.scan`` loop returns ``h0`` (it uses
the previous *state* as the previous output). The reference follows the majority and the documented
meaning ("output from previous timestep"): zeros.

Alternative semantics. A known divergence is checked by computing exactly what the diverging backend
is claimed to do, so two keyword arguments select a documented alternative (the defaults are Keras's
documented behaviour):
- ``initial_output="h0"``: masked steps before the first valid step output ``h0`` instead of zeros;
- ``zero_output_mask_order="input"``: with ``zero_output_for_mask``, the outputs (in processing
  order) are zeroed where the mask *in input order* is False, i.e. with the unreversed mask when
  ``go_backwards`` reads the sequence backwards; the last output (``return_sequences=False``)
  is unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from reference.activations import get_activation
from reference.dense import matmul_float32_operands


def _as_array(name: str, value: object, dtype: np.dtype) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a numeric array; got dtype {array.dtype}")
    return array.astype(dtype, copy=False)


def _check_shape(name: str, array: np.ndarray, expected: tuple[int, ...], meaning: str) -> None:
    if array.shape != expected:
        raise ValueError(f"{name} has shape {array.shape}; expected {expected} ({meaning})")



@dataclass
class LstmInputs:
    """The validated arrays of one LSTM call, in the computing dtype (mask stays bool, or None)."""

    x: np.ndarray  # (batch, time, features)
    kernel: np.ndarray  # (features, 4 * units)
    recurrent_kernel: np.ndarray  # (units, 4 * units)
    bias: np.ndarray | None  # (4 * units,)
    mask: np.ndarray | None  # (batch, time) bool
    h0: np.ndarray  # (batch, units)
    c0: np.ndarray  # (batch, units)

    @property
    def units(self) -> int:
        return self.recurrent_kernel.shape[0]


def validate_inputs(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None,
    mask: np.ndarray | None,
    initial_state: Sequence[np.ndarray] | None,
    dtype: np.dtype,
) -> LstmInputs:
    """Every array of an ``lstm`` call checked and converted to ``dtype``; ValueError naming the argument
    when a shape or dtype is wrong."""
    x = _as_array("x", x, dtype)
    if x.ndim != 3:
        raise ValueError(f"x has shape {x.shape}; expected 3 dimensions (batch, time, features)")
    batch, time, features = x.shape
    kernel = _as_array("kernel", kernel, dtype)
    if kernel.ndim != 2 or kernel.shape[0] != features or kernel.shape[1] % 4 != 0 or kernel.shape[1] == 0:
        raise ValueError(
            f"kernel has shape {kernel.shape}; expected ({features}, 4 * units) for x with {features} features"
        )
    units = kernel.shape[1] // 4
    recurrent_kernel = _as_array("recurrent_kernel", recurrent_kernel, dtype)
    _check_shape("recurrent_kernel", recurrent_kernel, (units, 4 * units), "units, 4 * units")
    if bias is not None:
        bias = _as_array("bias", bias, dtype)
        _check_shape("bias", bias, (4 * units,), "4 * units")

    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise ValueError(f"mask must be a bool array; got dtype {mask.dtype}")
        _check_shape("mask", mask, (batch, time), "batch, time")

    if initial_state is None:
        h0 = np.zeros((batch, units), dtype)
        c0 = np.zeros((batch, units), dtype)
    else:
        if len(initial_state) != 2:
            raise ValueError(f"initial_state must be [h0, c0]; got {len(initial_state)} arrays")
        h0 = _as_array("initial_state[0] (h0)", initial_state[0], dtype)
        c0 = _as_array("initial_state[1] (c0)", initial_state[1], dtype)
        _check_shape("initial_state[0] (h0)", h0, (batch, units), "batch, units")
        _check_shape("initial_state[1] (c0)", c0, (batch, units), "batch, units")
    return LstmInputs(x, kernel, recurrent_kernel, bias, mask, h0, c0)


def step_order(time: int, go_backwards: bool) -> range:
    """The timesteps in the order the loop reads them."""
    return range(time - 1, -1, -1) if go_backwards else range(time)


# --- The readable loop ---------------------------------------------------------------------------------


def lstm_step(
    z: np.ndarray,
    c: np.ndarray,
    activation: Callable[[np.ndarray], np.ndarray],
    recurrent_activation: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM step from its pre-activations ``z = x_t @ kernel + h @ recurrent_kernel + bias``
    (batch, 4 * units) and the carry ``c``: returns (h_new, c_new)."""
    units = c.shape[1]
    i = recurrent_activation(z[:, 0 * units : 1 * units])
    f = recurrent_activation(z[:, 1 * units : 2 * units])
    g = activation(z[:, 2 * units : 3 * units])
    o = recurrent_activation(z[:, 3 * units : 4 * units])
    c_new = f * c + i * g
    h_new = o * activation(c_new)
    return h_new, c_new


def _readable_loop(
    inputs: LstmInputs,
    activation: str | None,
    recurrent_activation: str | None,
    *,
    go_backwards: bool,
    zero_output_for_mask: bool,
    initial_output: str,
    matmuls_in_float32: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The time loop as the equations read. Returns (outputs in processing order (batch, time, units),
    final h, final c, last output)."""
    act = get_activation(activation)
    recurrent_act = get_activation(recurrent_activation)
    x, kernel, recurrent_kernel, bias, mask = inputs.x, inputs.kernel, inputs.recurrent_kernel, inputs.bias, inputs.mask
    batch, time, features = x.shape
    units = inputs.units
    dtype = x.dtype
    if matmuls_in_float32:
        projected = matmul_float32_operands(x.reshape(batch * time, features), kernel).reshape(batch, time, 4 * units)
    else:
        projected = (x.reshape(batch * time, features) @ kernel).reshape(batch, time, 4 * units)
        if bias is not None:
            projected = projected + bias

    h, c = inputs.h0, inputs.c0
    outputs = np.zeros((batch, time, units), dtype)
    previous_output = h.copy() if initial_output == "h0" else np.zeros((batch, units), dtype)
    for position, t in enumerate(step_order(time, go_backwards)):
        if matmuls_in_float32:
            z = (projected[:, t, :] + matmul_float32_operands(h, recurrent_kernel)).astype(np.float32).astype(dtype)
            z = z + bias if bias is not None else z
        else:
            z = projected[:, t, :] + h @ recurrent_kernel
        h_new, c_new = lstm_step(z, c, act, recurrent_act)
        if mask is None:
            h, c, output = h_new, c_new, h_new
        else:
            keep = mask[:, t][:, None]
            h = np.where(keep, h_new, h)
            c = np.where(keep, c_new, c)
            fallback = np.zeros_like(h_new) if zero_output_for_mask else previous_output
            output = np.where(keep, h_new, fallback)
        outputs[:, position, :] = output
        previous_output = output
    return outputs, h, c, previous_output


# --- The fast loop -------------------------------------------------------------------------------------


def sigmoid_in_place(a: np.ndarray) -> None:
    """a <- 1 / (1 + exp(-a)), the logistic function (keras.activations.sigmoid): within 3 ulps of the exact
    value, as ``reference.activations.sigmoid`` (bitwise equal to it for a >= 0, where both compute this
    expression; tests/test_reference_speed_equivalence.py).
    exp(-a) overflows to inf below a = -709.78 and 1 / inf = 0: the logistic function is below 2.3e-308
    there (reference.activations.sigmoid returns a subnormal)."""
    np.negative(a, out=a)
    with np.errstate(over="ignore"):
        np.exp(a, out=a)
    np.add(a, 1.0, out=a)
    np.reciprocal(a, out=a)


def _tanh_in_place(a: np.ndarray) -> None:
    np.tanh(a, out=a)


ELEMENTWISE_IN_PLACE = ("sigmoid", "tanh")


def activation_in_place(name: str | None) -> Callable[[np.ndarray], None]:
    """The activation called ``name`` as a function that overwrites its argument (one gate block).
    sigmoid and tanh run without allocating; any other activation is ``reference.activations``' own."""
    if name == "sigmoid":
        return sigmoid_in_place
    if name == "tanh":
        return _tanh_in_place
    function = get_activation(name)

    def apply(a: np.ndarray) -> None:
        a[...] = function(a)

    return apply


# Activations whose derivative the backward pass computes from the activation's output alone; for any
# other, the fast forward also keeps the pre-activations (ForwardCache.pre_activations).
DERIVATIVE_FROM_OUTPUT = ("sigmoid", "tanh")


@dataclass
class ForwardCache:
    """What the backward pass reads from the fast forward, per timestep t in input order (index t, not
    the processing position): (time, batch, ...) float arrays."""

    h_prev: np.ndarray  # (time, batch, units): h entering the step that reads x_t
    c_prev: np.ndarray  # (time, batch, units)
    gates: np.ndarray  # (time, batch, 4 * units): i, f, g, o after their activations
    c_new: np.ndarray  # (time, batch, units): f * c_prev + i * g (before the mask)
    c_activated: np.ndarray  # (time, batch, units): activation(c_new)
    pre_activations: np.ndarray | None  # (time, batch, 4 * units), z; None when DERIVATIVE_FROM_OUTPUT covers both

    @classmethod
    def allocate(cls, time: int, batch: int, units: int, keep_pre_activations: bool, dtype: np.dtype) -> "ForwardCache":
        states = (time, batch, units)
        gates = (time, batch, 4 * units)
        return cls(np.empty(states, dtype), np.empty(states, dtype), np.empty(gates, dtype), np.empty(states, dtype),
                   np.empty(states, dtype), np.empty(gates, dtype) if keep_pre_activations else None)


def fast_forward(
    inputs: LstmInputs,
    activation: str | None,
    recurrent_activation: str | None,
    *,
    go_backwards: bool,
    zero_output_for_mask: bool,
    initial_output: str = "zeros",
    cache: ForwardCache | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``_readable_loop`` (without ``matmuls_in_float32``) arranged for speed; fills ``cache`` when given.
    Returns (outputs in processing order (batch, time, units), final h, final c, last output)."""
    act = activation_in_place(activation)
    recurrent_act = activation_in_place(recurrent_activation)
    x, kernel, recurrent_kernel, bias, mask = inputs.x, inputs.kernel, inputs.recurrent_kernel, inputs.bias, inputs.mask
    batch, time, features = x.shape
    units = inputs.units
    dtype = x.dtype
    # x_t @ kernel + bias for every t in one matmul, time-major: projected[t] is one contiguous block.
    projected = (x.transpose(1, 0, 2).reshape(time * batch, features) @ kernel).reshape(time, batch, 4 * units)
    if bias is not None:
        projected += bias
    i_block, f_block, g_block, o_block = (slice(gate * units, (gate + 1) * units) for gate in range(4))
    # An elementwise activation runs once on i and f together; softmax and the like once per gate.
    elementwise = recurrent_activation in ELEMENTWISE_IN_PLACE
    recurrent_blocks = [slice(0, 2 * units), o_block] if elementwise else [i_block, f_block, o_block]

    h, c = inputs.h0.copy(), inputs.c0.copy()
    outputs = np.zeros((batch, time, units), dtype)
    previous_output = h.copy() if initial_output == "h0" else np.zeros((batch, units), dtype)
    z = np.empty((batch, 4 * units), dtype)
    c_new = np.empty((batch, units), dtype)
    c_activated = np.empty((batch, units), dtype)
    h_new = np.empty((batch, units), dtype)
    for position, t in enumerate(step_order(time, go_backwards)):
        if cache is not None:
            cache.h_prev[t] = h
            cache.c_prev[t] = c
            z, c_new, c_activated = cache.gates[t], cache.c_new[t], cache.c_activated[t]
        # z = x_t @ kernel + bias + h @ recurrent_kernel
        np.matmul(h, recurrent_kernel, out=z)
        z += projected[t]
        if cache is not None and cache.pre_activations is not None:
            cache.pre_activations[t] = z
        # i, f, g, o = ract(z_i), ract(z_f), act(z_g), ract(z_o): z now holds the gates
        for block in recurrent_blocks:
            recurrent_act(z[:, block])
        act(z[:, g_block])
        i, f, g, o = z[:, i_block], z[:, f_block], z[:, g_block], z[:, o_block]
        # c_new = f * c + i * g
        np.multiply(f, c, out=c_new)
        np.multiply(i, g, out=h_new)
        c_new += h_new
        # h_new = o * act(c_new)
        c_activated[...] = c_new
        act(c_activated)
        np.multiply(o, c_activated, out=h_new)
        if mask is None:
            h[...] = h_new
            c[...] = c_new
        else:
            keep = mask[:, t][:, None]
            np.copyto(h, h_new, where=keep)
            np.copyto(c, c_new, where=keep)
            # a masked step outputs the previous output (or zeros)
            np.copyto(h_new, 0.0 if zero_output_for_mask else previous_output, where=~keep)
        outputs[:, position, :] = h_new
        previous_output = outputs[:, position, :]
    return outputs, h, c, previous_output.copy()


# --- The public function -------------------------------------------------------------------------------


def lstm(
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
    matmuls_in_float32: bool = False,
    loop: str = "fast",
) -> np.ndarray | list[np.ndarray]:
    """Run an LSTM over ``x`` (batch, time, features) the way ``keras.layers.LSTM`` does.

    Returns the output ((batch, time, units) with ``return_sequences``, else (batch, units)); with
    ``return_state`` a list ``[output, h, c]``. Everything is computed in ``dtype`` (float64 unless
    told otherwise). With ``matmuls_in_float32`` each step's x_t @ kernel and h @ recurrent_kernel are
    reference.dense.matmul_float32_operands (float32 operands, one float32 rounding each), their sum is
    rounded to float32 and the bias is added in ``dtype``: Keras's generic LSTMCell (implementation 2) on
    PyTorch for float64, where keras.ops.matmul computes in float32 and ops.add of the two float32 results
    stays float32. ``loop`` is "fast" (``fast_forward``) or "readable" (``_readable_loop``, which
    ``matmuls_in_float32`` always uses); see the module docstring. Raises ValueError naming the argument
    when a shape, dtype or activation is wrong.
    """
    if initial_output not in ("zeros", "h0"):
        raise ValueError(f"initial_output is {initial_output!r}; accepted: zeros, h0")
    if zero_output_mask_order not in ("processing", "input"):
        raise ValueError(f"zero_output_mask_order is {zero_output_mask_order!r}; accepted: processing, input")
    if loop not in ("fast", "readable"):
        raise ValueError(f"loop is {loop!r}; accepted: fast, readable")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating dtype; got {dtype}")
    get_activation(activation)  # ValueError for an unknown or rejected name
    get_activation(recurrent_activation)
    inputs = validate_inputs(x, kernel, recurrent_kernel, bias, mask, initial_state, dtype)
    batch, time, _ = inputs.x.shape
    options = dict(go_backwards=go_backwards, zero_output_for_mask=zero_output_for_mask, initial_output=initial_output)
    if loop == "readable" or matmuls_in_float32:
        outputs, h, c, last_output = _readable_loop(inputs, activation, recurrent_activation,
                                                    matmuls_in_float32=matmuls_in_float32, **options)
    else:
        outputs, h, c, last_output = fast_forward(inputs, activation, recurrent_activation, **options)

    mask = inputs.mask
    if mask is not None and zero_output_for_mask and zero_output_mask_order == "input":
        # Every output is the unmasked-style one, zeroed by the mask read in input order.
        order = list(step_order(time, go_backwards))
        carried = np.zeros((batch, time, inputs.units), dtype)
        for position in range(time):
            step = outputs[:, position, :]
            valid = mask[:, order[position]][:, None]
            carried[:, position, :] = np.where(valid, step, carried[:, position - 1, :] if position else 0.0)
        outputs = np.where(mask[:, :, None], carried, 0.0)
        # The last output is still the one of the last processed step (zeroed when that step is masked).

    result = outputs if return_sequences else last_output
    if return_state:
        return [result, h, c]
    return result
