"""Float64 NumPy reference for ``keras.layers.SimpleRNN`` in training mode with dropout (Keras 3), given the
dropout masks explicitly (drawn e.g. with ``reference.lstm_dropout.inverted_dropout_mask``).

Keras draws one input mask (batch, features) and one recurrent mask (batch, units) per sequence and reuses
them at every timestep (keras/src/layers/rnn/simple_rnn.py, dropout_rnn_cell.py)::

    h_new = activation((x_t * m) @ kernel + bias + (h * r) @ recurrent_kernel)

With masks of ones this is ``reference.simple_rnn.simple_rnn``: the same step and time loop. Supported
options: the activation, ``initial_state``, ``go_backwards``, ``return_sequences``, ``return_state``; no
sequence mask.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from reference import recurrent
from reference.simple_rnn import simple_rnn_forward, validate_inputs


def simple_rnn_with_dropout(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    input_mask: np.ndarray | None = None,
    recurrent_mask: np.ndarray | None = None,
    activation: str | None = "tanh",
    initial_state: np.ndarray | Sequence[np.ndarray] | None = None,
    go_backwards: bool = False,
    return_sequences: bool = False,
    return_state: bool = False,
) -> np.ndarray | list[np.ndarray]:
    """Run a SimpleRNN over ``x`` (batch, time, features) with the given dropout masks (each optional), in
    float64. Outputs as ``reference.simple_rnn.simple_rnn``."""
    inputs = validate_inputs(x, kernel, recurrent_kernel, bias, None, initial_state, np.dtype(np.float64))
    batch, _, features = inputs.x.shape
    x_masks = recurrent.gate_masks("input_mask", input_mask, (batch, features), 1, "h")
    h_masks = recurrent.gate_masks("recurrent_mask", recurrent_mask, (batch, inputs.units), 1, "h")
    outputs, states, last_output = simple_rnn_forward(
        inputs, activation, go_backwards=go_backwards, zero_output_for_mask=False,
        input_mask=None if x_masks is None else x_masks[0], recurrent_mask=None if h_masks is None else h_masks[0])
    return recurrent.finish(outputs, states, last_output, return_sequences=return_sequences, return_state=return_state)
