"""Float64 NumPy reference for ``keras.layers.SimpleRNN`` (Keras 3, keras/src/layers/rnn/simple_rnn.py).

Equation, for one step with input ``x_t`` and previous output ``h``::

    h_new = activation(x_t @ kernel + bias + h @ recurrent_kernel)

``kernel`` is (features, units), ``recurrent_kernel`` (units, units), ``bias`` (units,). The time loop, masks,
go_backwards, initial state and the alternative semantics are ``reference.recurrent``'s (documented in
``reference.lstm``). Backward: ``reference.simple_rnn_backward``; with dropout masks: ``reference.simple_rnn_dropout``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from reference import recurrent
from reference.activations import get_activation
from reference.recurrent import RecurrentInputs, StepCache

GATES = 1
STATE_NAMES = ("h",)


def validate_inputs(x: np.ndarray, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray | None,
                    mask: np.ndarray | None, initial_state: np.ndarray | Sequence[np.ndarray] | None,
                    dtype: np.dtype) -> RecurrentInputs:
    if isinstance(initial_state, np.ndarray) and initial_state.ndim == 2:
        initial_state = [initial_state]
    return recurrent.validate_inputs(x, kernel, recurrent_kernel, bias, mask, initial_state, dtype, gates=GATES,
                                     state_names=("h0",), bias_shapes=lambda units: [(units,)])


class SimpleRnnStep:
    """h_new = activation(x_projected + h @ recurrent_kernel), ``x_projected`` = x_t @ kernel + bias; with a
    recurrent dropout mask r: (h * r) @ recurrent_kernel. Records the pre-activation in ``cache``."""

    def __init__(self, recurrent_kernel: np.ndarray, activation: str | None, *,
                 recurrent_mask: np.ndarray | None = None, cache: StepCache | None = None) -> None:
        self.recurrent_kernel = recurrent_kernel
        self.act = get_activation(activation)
        self.recurrent_mask = recurrent_mask
        self.cache = cache

    def forward(self, t: int, x_projected: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        (h,) = states
        if self.recurrent_mask is not None:
            h = h * self.recurrent_mask
        a = x_projected + h @ self.recurrent_kernel
        h_new = self.act(a)
        if self.cache is not None:
            self.cache["pre_activations"][t] = a
        return h_new, [h_new]


def simple_rnn_forward(
    inputs: RecurrentInputs,
    activation: str | None,
    *,
    go_backwards: bool,
    zero_output_for_mask: bool,
    initial_output: str = "zeros",
    input_mask: np.ndarray | None = None,
    recurrent_mask: np.ndarray | None = None,
    cache: StepCache | None = None,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The time loop with ``SimpleRnnStep``: (outputs in processing order, [final h], last output)."""
    projected = recurrent.project_inputs(inputs.x, inputs.kernel, inputs.bias,
                                         input_masks=None if input_mask is None else [input_mask])
    step = SimpleRnnStep(inputs.recurrent_kernel, activation, recurrent_mask=recurrent_mask, cache=cache)
    return recurrent.run(step, projected, inputs.states, inputs.mask, go_backwards=go_backwards,
                         zero_output_for_mask=zero_output_for_mask, initial_output=initial_output, cache=cache)


def simple_rnn(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    activation: str | None = "tanh",
    mask: np.ndarray | None = None,
    initial_state: np.ndarray | Sequence[np.ndarray] | None = None,
    go_backwards: bool = False,
    return_sequences: bool = False,
    return_state: bool = False,
    zero_output_for_mask: bool = False,
    dtype: type | np.dtype = np.float64,
    initial_output: str = "zeros",
    zero_output_mask_order: str = "processing",
) -> np.ndarray | list[np.ndarray]:
    """Run a SimpleRNN over ``x`` (batch, time, features) the way ``keras.layers.SimpleRNN`` does. Returns the
    output ((batch, time, units) with ``return_sequences``, else (batch, units)); with ``return_state``
    ``[output, h]``. ValueError naming the argument when a shape, dtype or activation is wrong."""
    dtype = recurrent.check_options(initial_output, zero_output_mask_order, "fast", dtype)
    get_activation(activation)
    inputs = validate_inputs(x, kernel, recurrent_kernel, bias, mask, initial_state, dtype)
    outputs, states, last_output = simple_rnn_forward(inputs, activation, go_backwards=go_backwards,
                                                      zero_output_for_mask=zero_output_for_mask,
                                                      initial_output=initial_output)
    if inputs.mask is not None and zero_output_for_mask and zero_output_mask_order == "input":
        outputs = recurrent.zero_outputs_in_input_order(outputs, inputs.mask, go_backwards)
    return recurrent.finish(outputs, states, last_output, return_sequences=return_sequences, return_state=return_state)
