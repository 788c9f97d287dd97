"""Float64 NumPy reference for ``keras.layers.GRU`` in training mode with dropout (Keras 3), given the
dropout masks explicitly (drawn e.g. with ``reference.lstm_dropout.inverted_dropout_mask``).

As for the LSTM (``reference.lstm_dropout``), Keras draws ONE mask per sequence and reuses it at every
timestep (keras/src/layers/rnn/gru.py, dropout_rnn_cell.py):

- ``implementation=2`` (the default): one input mask (batch, features) shared by the three gates, no
  recurrent mask (``recurrent_dropout`` forces implementation 1); the fused path (``backend.gru``) multiplies
  the whole sequence by that same mask first: the same equation::

      x_z, x_r, x_h = split((x_t * m) @ kernel + input_bias, 3)

- ``implementation=1``: three input masks and three recurrent masks (``dropout_mask_count = 3``), one per
  gate in the order z, r, h::

      x_k = (x_t * m_k) @ kernel_k + input_bias_k
      rec_k = (h * r_k) @ recurrent_kernel_k (+ recurrent_bias_k with reset_after)   for k = z, r (and h)
      reset_after=False:  hh = activation(x_h + (r * (h * r_h)) @ recurrent_kernel_h)

  and the update ``h_new = z * h + (1 - z) * hh`` uses the unmasked h.

With masks of ones this is ``reference.gru.gru``: the same step (``reference.gru.GruStep``) and time loop.
Supported options: the activations, reset_after, ``initial_state``, ``go_backwards``, ``return_sequences``,
``return_state``; no sequence mask.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from reference import recurrent
from reference.gru import GATE_NAMES, GATES, gru_forward, validate_inputs


def gru_with_dropout(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    input_masks: np.ndarray | Sequence[np.ndarray] | None = None,
    recurrent_masks: np.ndarray | Sequence[np.ndarray] | None = None,
    activation: str | None = "tanh",
    recurrent_activation: str | None = "sigmoid",
    reset_after: bool = True,
    initial_state: np.ndarray | Sequence[np.ndarray] | None = None,
    go_backwards: bool = False,
    return_sequences: bool = False,
    return_state: bool = False,
) -> np.ndarray | list[np.ndarray]:
    """Run a GRU over ``x`` (batch, time, features) with the given dropout masks, in float64.

    ``input_masks``: one (batch, features) mask for every gate (implementation 2) or three (implementation 1,
    gates z, r, h); ``recurrent_masks``: one or three (batch, units) masks applied to h_{t-1}. Outputs as
    ``reference.gru.gru``."""
    inputs = validate_inputs(x, kernel, recurrent_kernel, bias, None, initial_state, np.dtype(np.float64), reset_after)
    batch, _, features = inputs.x.shape
    x_masks = recurrent.gate_masks("input_masks", input_masks, (batch, features), GATES, GATE_NAMES)
    h_masks = recurrent.gate_masks("recurrent_masks", recurrent_masks, (batch, inputs.units), GATES, GATE_NAMES)
    outputs, states, last_output = gru_forward(inputs, activation, recurrent_activation, reset_after,
                                               go_backwards=go_backwards, zero_output_for_mask=False,
                                               input_masks=x_masks, recurrent_masks=h_masks)
    return recurrent.finish(outputs, states, last_output, return_sequences=return_sequences, return_state=return_state)
