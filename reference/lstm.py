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

from typing import Sequence

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
) -> np.ndarray | list[np.ndarray]:
    """Run an LSTM over ``x`` (batch, time, features) the way ``keras.layers.LSTM`` does.

    Returns the output ((batch, time, units) with ``return_sequences``, else (batch, units)); with
    ``return_state`` a list ``[output, h, c]``. Everything is computed in ``dtype`` (float64 unless
    told otherwise). With ``matmuls_in_float32`` each step's x_t @ kernel and h @ recurrent_kernel are
    reference.dense.matmul_float32_operands (float32 operands, one float32 rounding each), their sum is
    rounded to float32 and the bias is added in ``dtype``: Keras's generic LSTMCell (implementation 2) on
    PyTorch for float64, where keras.ops.matmul computes in float32 and ops.add of the two float32 results
    stays float32. Raises ValueError naming the argument when a shape, dtype or activation is wrong.
    """
    if initial_output not in ("zeros", "h0"):
        raise ValueError(f"initial_output is {initial_output!r}; accepted: zeros, h0")
    if zero_output_mask_order not in ("processing", "input"):
        raise ValueError(f"zero_output_mask_order is {zero_output_mask_order!r}; accepted: processing, input")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating dtype; got {dtype}")
    act = get_activation(activation)
    recurrent_act = get_activation(recurrent_activation)

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
        h = np.zeros((batch, units), dtype)
        c = np.zeros((batch, units), dtype)
    else:
        if len(initial_state) != 2:
            raise ValueError(f"initial_state must be [h0, c0]; got {len(initial_state)} arrays")
        h = _as_array("initial_state[0] (h0)", initial_state[0], dtype)
        c = _as_array("initial_state[1] (c0)", initial_state[1], dtype)
        _check_shape("initial_state[0] (h0)", h, (batch, units), "batch, units")
        _check_shape("initial_state[1] (c0)", c, (batch, units), "batch, units")

    if matmuls_in_float32:
        projected = matmul_float32_operands(x.reshape(batch * time, features), kernel).reshape(batch, time, 4 * units)
    else:
        projected = (x.reshape(batch * time, features) @ kernel).reshape(batch, time, 4 * units)
        if bias is not None:
            projected = projected + bias

    step_order = range(time - 1, -1, -1) if go_backwards else range(time)
    outputs = np.zeros((batch, time, units), dtype)
    previous_output = h.copy() if initial_output == "h0" else np.zeros((batch, units), dtype)
    for position, t in enumerate(step_order):
        if matmuls_in_float32:
            z = (projected[:, t, :] + matmul_float32_operands(h, recurrent_kernel)).astype(np.float32).astype(dtype)
            z = z + bias if bias is not None else z
        else:
            z = projected[:, t, :] + h @ recurrent_kernel
        i = recurrent_act(z[:, 0 * units : 1 * units])
        f = recurrent_act(z[:, 1 * units : 2 * units])
        g = act(z[:, 2 * units : 3 * units])
        o = recurrent_act(z[:, 3 * units : 4 * units])
        c_new = f * c + i * g
        h_new = o * act(c_new)
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

    if mask is not None and zero_output_for_mask and zero_output_mask_order == "input":
        # Every output is the unmasked-style one, zeroed by the mask read in input order.
        carried = np.zeros((batch, time, units), dtype)
        for position in range(time):
            step = outputs[:, position, :]
            valid = mask[:, list(step_order)[position]][:, None]
            carried[:, position, :] = np.where(valid, step, carried[:, position - 1, :] if position else 0.0)
        outputs = np.where(mask[:, :, None], carried, 0.0)
        # The last output is still the one of the last processed step (zeroed when that step is masked).

    result = outputs if return_sequences else previous_output
    if return_state:
        return [result, h, c]
    return result
