"""Float64 NumPy reference for ``keras.layers.LSTM`` in training mode with dropout (Keras 3), given the
dropout masks explicitly.

Keras 3 (keras/src/layers/rnn/lstm.py, dropout_rnn_cell.py, rnn.py) draws ONE mask per sequence: the RNN
layer creates the masks before the time loop from the first step's shapes, the cell reuses them at every
timestep, and the layer forgets them after the call (a new batch gets new masks). A mask holds 0 or
1 / (1 - rate) (inverted dropout: the kept values are scaled up during training, nothing happens at
inference).

- ``implementation=2``: one input mask (batch, features), shared by the four gates::

      z = (x_t * m) @ kernel + h @ recurrent_kernel + bias

  ``recurrent_dropout`` forces ``implementation=1`` in the cell, so implementation 2 has no recurrent mask.
  The fused path (``use_cudnn`` "auto" or True, no recurrent dropout) multiplies the whole sequence by the
  same mask before the fused kernel: the same equation.
- ``implementation=1``: four input masks and four recurrent masks, one per gate (order i, f, g, o), each
  drawn independently::

      z_k = (x_t * m_k) @ kernel_k + bias_k + (h * r_k) @ recurrent_kernel_k

Either mask may be absent (that rate is 0). With masks of ones this is ``reference.lstm.lstm`` exactly.
Supported options: the activations, ``initial_state``, ``go_backwards``, ``return_sequences``,
``return_state``; no sequence mask (the training-mode study runs unmasked sequences).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from reference.activations import get_activation

GATES = 4


def _gate_masks(name: str, masks: np.ndarray | Sequence[np.ndarray] | None, shape: tuple[int, int]) -> list[np.ndarray]:
    """Four (batch, width) float64 masks, one per gate: ones when absent, the same array four times when one
    mask is given for all gates."""
    if masks is None:
        return [np.ones(shape)] * GATES
    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        masks = [masks] * GATES
    masks = [np.asarray(mask, np.float64) for mask in masks]
    if len(masks) != GATES:
        raise ValueError(f"{name} must be one (batch, width) mask or {GATES} of them (gates i, f, g, o); got {len(masks)}")
    for index, mask in enumerate(masks):
        if mask.shape != shape:
            raise ValueError(f"{name}[{index}] has shape {mask.shape}; expected {shape}")
        if not np.all(np.isfinite(mask)):
            raise ValueError(f"{name}[{index}] holds NaN or Inf")
    return masks


def lstm_with_dropout(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    input_masks: np.ndarray | Sequence[np.ndarray] | None = None,
    recurrent_masks: np.ndarray | Sequence[np.ndarray] | None = None,
    activation: str | None = "tanh",
    recurrent_activation: str | None = "sigmoid",
    initial_state: Sequence[np.ndarray] | None = None,
    go_backwards: bool = False,
    return_sequences: bool = False,
    return_state: bool = False,
) -> np.ndarray | list[np.ndarray]:
    """Run an LSTM over ``x`` (batch, time, features) with the given dropout masks, in float64.

    ``input_masks``: one (batch, features) mask for every gate (implementation 2 and the fused path) or four
    (implementation 1); ``recurrent_masks``: one or four (batch, units) masks applied to h_{t-1}. Outputs as
    ``reference.lstm.lstm`` (go_backwards returns the outputs in processing order)."""
    act = get_activation(activation)
    recurrent_act = get_activation(recurrent_activation)
    x = np.asarray(x, np.float64)
    if x.ndim != 3:
        raise ValueError(f"x has shape {x.shape}; expected 3 dimensions (batch, time, features)")
    batch, time, features = x.shape
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != features or kernel.shape[1] % GATES or not kernel.shape[1]:
        raise ValueError(f"kernel has shape {kernel.shape}; expected ({features}, 4 * units)")
    units = kernel.shape[1] // GATES
    recurrent_kernel = np.asarray(recurrent_kernel, np.float64)
    if recurrent_kernel.shape != (units, GATES * units):
        raise ValueError(f"recurrent_kernel has shape {recurrent_kernel.shape}; expected {(units, GATES * units)}")
    bias = np.zeros(GATES * units) if bias is None else np.asarray(bias, np.float64)
    if bias.shape != (GATES * units,):
        raise ValueError(f"bias has shape {bias.shape}; expected {(GATES * units,)}")
    x_masks = _gate_masks("input_masks", input_masks, (batch, features))
    h_masks = _gate_masks("recurrent_masks", recurrent_masks, (batch, units))

    if initial_state is None:
        h, c = np.zeros((batch, units)), np.zeros((batch, units))
    else:
        h, c = (np.asarray(state, np.float64) for state in initial_state)
        if h.shape != (batch, units) or c.shape != (batch, units):
            raise ValueError(f"initial_state has shapes {h.shape}, {c.shape}; expected {(batch, units)} each")

    blocks = [slice(gate * units, (gate + 1) * units) for gate in range(GATES)]
    step_order = range(time - 1, -1, -1) if go_backwards else range(time)
    outputs = np.zeros((batch, time, units))
    for position, t in enumerate(step_order):
        z = [(x[:, t, :] * x_masks[gate]) @ kernel[:, blocks[gate]] + bias[blocks[gate]]
             + (h * h_masks[gate]) @ recurrent_kernel[:, blocks[gate]] for gate in range(GATES)]
        i, f, g, o = recurrent_act(z[0]), recurrent_act(z[1]), act(z[2]), recurrent_act(z[3])
        c = f * c + i * g
        h = o * act(c)
        outputs[:, position, :] = h

    result = outputs if return_sequences else h
    if return_state:
        return [result, h, c]
    return result


def inverted_dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], rate: float, dtype: str | np.dtype = "float32") -> np.ndarray:
    """A seeded inverted-dropout mask: each element kept with probability 1 - rate and then worth
    1 / (1 - rate) (computed in ``dtype``, as Keras computes ``ones / keep_prob``), else 0."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate is {rate!r}; expected a number in (0, 1)")
    dtype = np.dtype(dtype)
    keep = rng.random(shape) >= rate
    scale = np.asarray(1.0, dtype) / np.asarray(1.0 - rate, dtype)
    return np.where(keep, scale, np.asarray(0.0, dtype)).astype(dtype)
