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

Either mask may be absent (that rate is 0). With masks of ones this is ``reference.lstm.lstm`` exactly: the
same time loop (``reference.recurrent``), with the input masks in its input projection (still one matmul per
gate over every timestep: a mask is the same at every step) and the recurrent masks in the readable LSTM step
(``reference.lstm.ReadableLstmStep``). ``reference.gru_dropout`` and ``reference.simple_rnn_dropout`` are the
same for the other layers; ``inverted_dropout_mask`` draws a mask for any of them.
Supported options: the activations, ``initial_state``, ``go_backwards``, ``return_sequences``,
``return_state``; no sequence mask (the training-mode study runs unmasked sequences).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from reference import recurrent
from reference.lstm import STATE_NAMES, ReadableLstmStep, validate_inputs

GATES = 4
GATE_NAMES = "i, f, g, o"


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
    inputs = validate_inputs(x, kernel, recurrent_kernel, bias, None, initial_state, np.dtype(np.float64))
    batch, _, features = inputs.x.shape
    x_masks = recurrent.gate_masks("input_masks", input_masks, (batch, features), GATES, GATE_NAMES)
    h_masks = recurrent.gate_masks("recurrent_masks", recurrent_masks, (batch, inputs.units), GATES, GATE_NAMES)
    projected = recurrent.project_inputs(inputs.x, inputs.kernel, inputs.bias, input_masks=x_masks)
    step = ReadableLstmStep(inputs.recurrent_kernel, activation, recurrent_activation, recurrent_masks=h_masks)
    outputs, states, last_output = recurrent.run(step, projected, inputs.states, None, go_backwards=go_backwards,
                                                 zero_output_for_mask=False)
    return recurrent.finish(outputs, states, last_output, return_sequences=return_sequences,
                            return_state=return_state)


def inverted_dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], rate: float, dtype: str | np.dtype = "float32") -> np.ndarray:
    """A seeded inverted-dropout mask: each element kept with probability 1 - rate and then worth
    1 / (1 - rate) (computed in ``dtype``, as Keras computes ``ones / keep_prob``), else 0."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate is {rate!r}; expected a number in (0, 1)")
    dtype = np.dtype(dtype)
    keep = rng.random(shape) >= rate
    scale = np.asarray(1.0, dtype) / np.asarray(1.0 - rate, dtype)
    return np.where(keep, scale, np.asarray(0.0, dtype)).astype(dtype)
