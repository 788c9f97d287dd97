"""Float64 NumPy reference for ``keras.layers.GRU`` (Keras 3, keras/src/layers/rnn/gru.py).

Equations, for one step with input ``x_t`` and previous state ``h`` (the kernels' column blocks are in the
order z (update), r (reset), h (candidate))::

    x_z, x_r, x_h = split(x_t @ kernel + input_bias, 3)
    reset_after=True (the default; bias (2, 3 * units): [input_bias, recurrent_bias]):
        rec_z, rec_r, rec_h = split(h @ recurrent_kernel + recurrent_bias, 3)
        z  = recurrent_activation(x_z + rec_z)
        r  = recurrent_activation(x_r + rec_r)
        hh = activation(x_h + r * rec_h)
    reset_after=False (bias (3 * units,): the input bias only):
        z  = recurrent_activation(x_z + h @ recurrent_kernel_z)
        r  = recurrent_activation(x_r + h @ recurrent_kernel_r)
        hh = activation(x_h + (r * h) @ recurrent_kernel_h)
    h_new = z * h + (1 - z) * hh

``implementation`` 1 and 2 are this same arithmetic in Keras 3 (2 does the matmuls of the three gates at
once; 1 gate by gate, which is also where dropout gives each gate its own mask, see
``reference.gru_dropout``). The time loop, masks, go_backwards, initial state and the alternative
semantics (``initial_output``, ``zero_output_mask_order``) are ``reference.recurrent``'s, as documented in
``reference.lstm``: the GRU's single state h is carried through a masked step.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from reference import recurrent
from reference.activations import get_activation
from reference.recurrent import RecurrentInputs, StepCache

GATES = 3
GATE_NAMES = "z, r, h"
STATE_NAMES = ("h",)


def bias_shapes(units: int, reset_after: bool) -> list[tuple[int, ...]]:
    return [(2, GATES * units)] if reset_after else [(GATES * units,)]


def split_bias(bias: np.ndarray | None, reset_after: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(input_bias, recurrent_bias): bias[0], bias[1] with reset_after, else (bias, None)."""
    if bias is None:
        return None, None
    return (bias[0], bias[1]) if reset_after else (bias, None)


def as_state_list(initial_state: np.ndarray | Sequence[np.ndarray] | None) -> Sequence[np.ndarray] | None:
    """[h0] from h0 given alone (Keras accepts the tensor or a list of one)."""
    if isinstance(initial_state, np.ndarray) and initial_state.ndim == 2:
        return [initial_state]
    return initial_state


def validate_inputs(x: np.ndarray, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray | None,
                    mask: np.ndarray | None, initial_state: np.ndarray | Sequence[np.ndarray] | None, dtype: np.dtype,
                    reset_after: bool) -> RecurrentInputs:
    """Every array of a ``gru`` call checked and converted; ValueError naming the argument."""
    return recurrent.validate_inputs(x, kernel, recurrent_kernel, bias, mask, as_state_list(initial_state), dtype,
                                     gates=GATES, state_names=("h0",),
                                     bias_shapes=lambda units: bias_shapes(units, reset_after))


def allocate_cache(time: int, batch: int, units: int, dtype: np.dtype) -> StepCache:
    """Per timestep: h_prev, the pre-activations (a_z, a_r, a_h), the gates (z, r, hh) and ``recurrent_h``
    (rec_h with reset_after, r * h without)."""
    widths = {"pre_activations": GATES * units, "gates": GATES * units, "recurrent_h": units}
    return StepCache.allocate(time, batch, units, widths, dtype, STATE_NAMES)


class GruStep:
    """One GRU step (the module docstring's equations) after the input projection. ``recurrent_masks`` (three
    (batch, units) masks, gates z, r, h) multiply h before each gate's recurrent product, as Keras's
    implementation 1 does with recurrent dropout; the update z * h uses the unmasked h."""

    def __init__(self, recurrent_kernel: np.ndarray, recurrent_bias: np.ndarray | None, activation: str | None,
                 recurrent_activation: str | None, reset_after: bool, *,
                 recurrent_masks: list[np.ndarray] | None = None, cache: StepCache | None = None) -> None:
        self.recurrent_kernel = recurrent_kernel
        self.recurrent_bias = recurrent_bias
        self.act = get_activation(activation)
        self.recurrent_act = get_activation(recurrent_activation)
        self.reset_after = reset_after
        self.masks = recurrent_masks
        self.cache = cache
        self.units = recurrent_kernel.shape[0]

    def forward(self, t: int, x_projected: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        (h,) = states
        u = self.units
        x_z, x_r, x_h = x_projected[:, :u], x_projected[:, u : 2 * u], x_projected[:, 2 * u :]
        if self.reset_after:
            rec = recurrent.masked_recurrent_product(h, self.recurrent_kernel, self.masks, range(GATES))
            if self.recurrent_bias is not None:
                rec = rec + self.recurrent_bias
            rec_z, rec_r, rec_h = rec[:, :u], rec[:, u : 2 * u], rec[:, 2 * u :]
        else:
            rec = recurrent.masked_recurrent_product(h, self.recurrent_kernel, self.masks, (0, 1))
            rec_z, rec_r = rec[:, :u], rec[:, u:]
        a_z = x_z + rec_z
        a_r = x_r + rec_r
        z = self.recurrent_act(a_z)
        r = self.recurrent_act(a_r)
        if self.reset_after:
            a_h = x_h + r * rec_h
        else:
            rec_h = r * (h if self.masks is None else h * self.masks[2])
            a_h = x_h + rec_h @ self.recurrent_kernel[:, 2 * u :]
        hh = self.act(a_h)
        h_new = z * h + (1 - z) * hh
        if self.cache is not None:
            self.cache["pre_activations"][t] = np.concatenate([a_z, a_r, a_h], axis=1)
            self.cache["gates"][t] = np.concatenate([z, r, hh], axis=1)
            self.cache["recurrent_h"][t] = rec_h
        return h_new, [h_new]


def gru_forward(
    inputs: RecurrentInputs,
    activation: str | None,
    recurrent_activation: str | None,
    reset_after: bool,
    *,
    go_backwards: bool,
    zero_output_for_mask: bool,
    initial_output: str = "zeros",
    input_masks: list[np.ndarray] | None = None,
    recurrent_masks: list[np.ndarray] | None = None,
    cache: StepCache | None = None,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The time loop with ``GruStep``: (outputs in processing order, [final h], last output)."""
    input_bias, recurrent_bias = split_bias(inputs.bias, reset_after)
    projected = recurrent.project_inputs(inputs.x, inputs.kernel, input_bias, input_masks=input_masks)
    step = GruStep(inputs.recurrent_kernel, recurrent_bias, activation, recurrent_activation, reset_after,
                   recurrent_masks=recurrent_masks, cache=cache)
    return recurrent.run(step, projected, inputs.states, inputs.mask, go_backwards=go_backwards,
                         zero_output_for_mask=zero_output_for_mask, initial_output=initial_output, cache=cache)


def gru(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent_kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    activation: str | None = "tanh",
    recurrent_activation: str | None = "sigmoid",
    reset_after: bool = True,
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
    """Run a GRU over ``x`` (batch, time, features) the way ``keras.layers.GRU`` does.

    ``kernel`` (features, 3 * units), ``recurrent_kernel`` (units, 3 * units), ``bias`` (2, 3 * units) with
    ``reset_after`` else (3 * units,), or None (use_bias=False); ``initial_state`` h0 or [h0], (batch, units).
    Returns the output ((batch, time, units) with ``return_sequences``, else (batch, units)); with
    ``return_state`` a list ``[output, h]``. Raises ValueError naming the argument when a shape, dtype or
    activation is wrong."""
    dtype = recurrent.check_options(initial_output, zero_output_mask_order, "fast", dtype)
    get_activation(activation)  # ValueError for an unknown or rejected name
    get_activation(recurrent_activation)
    inputs = validate_inputs(x, kernel, recurrent_kernel, bias, mask, initial_state, dtype, reset_after)
    outputs, states, last_output = gru_forward(inputs, activation, recurrent_activation, reset_after,
                                               go_backwards=go_backwards, zero_output_for_mask=zero_output_for_mask,
                                               initial_output=initial_output)
    if inputs.mask is not None and zero_output_for_mask and zero_output_mask_order == "input":
        outputs = recurrent.zero_outputs_in_input_order(outputs, inputs.mask, go_backwards)
    return recurrent.finish(outputs, states, last_output, return_sequences=return_sequences, return_state=return_state)
