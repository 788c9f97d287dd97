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

The time loop, the masks, go_backwards, the initial states and what is returned are
``reference.recurrent``'s, shared with ``reference.gru`` and ``reference.simple_rnn``: its input projection
``x @ kernel + bias`` of every timestep is one matmul, and a step here does only the recurrent part.

Two steps compute this. ``loop="readable"`` (``ReadableLstmStep``, ``_readable_loop``) is the equations
above written out: it calls ``lstm_step``, which reads like them. ``loop="fast"`` (``FastLstmStep``,
``fast_forward``, the default) is the same arithmetic arranged for speed: the step writes into buffers
allocated once (``np.matmul(..., out=)``, in-place activations), and the logistic sigmoid is ``1 / (1 + exp(-x))`` in place (``sigmoid_in_place``) instead
of ``reference.activations.sigmoid``'s two-branch form; the two differ by at most a few ulps, and
tests/test_reference_speed_equivalence.py holds the fast loop to the readable one at float64 rounding.
Only the sigmoid changes the rounding: every other operation is the same operation on the same operands.
With ``matmuls_in_float32`` the readable loop runs. ``fast_forward`` can also keep, per timestep, what
``reference.lstm_backward`` needs (a ``reference.recurrent.StepCache``, ``allocate_cache``), so that the backward pass reuses the forward's
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

from typing import Callable, Sequence

import numpy as np

from reference import recurrent
from reference.activations import get_activation
from reference.dense import matmul_float32_operands
from reference.recurrent import RecurrentInputs, StepCache, step_order

GATES = 4
STATE_NAMES = ("h", "c")

# The validated arrays of one LSTM call (states [h0, c0]; .h0 and .c0 name them).
LstmInputs = RecurrentInputs

__all__ = ["FastLstmStep", "LstmInputs", "ReadableLstmStep", "allocate_cache", "fast_forward", "lstm", "lstm_step",
           "sigmoid_in_place", "step_order", "validate_inputs"]


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
    return recurrent.validate_inputs(x, kernel, recurrent_kernel, bias, mask, initial_state, dtype, gates=GATES,
                                     state_names=("h0", "c0"), bias_shapes=lambda units: [(GATES * units,)])


# --- The readable step ---------------------------------------------------------------------------------


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


class ReadableLstmStep:
    """``lstm_step`` after the recurrent product: z = x_projected + h @ recurrent_kernel, or with recurrent
    dropout masks z_k = x_projected_k + (h * r_k) @ recurrent_kernel_k per gate k (reference.lstm_dropout).
    With ``bias_after_float32`` (matmuls_in_float32) the projection holds no bias: z is the float32 rounding of
    x_t @ kernel + h @ recurrent_kernel (each a float32 matmul) plus the bias. Records z (``pre_activations``)
    and c_new in ``cache`` when given."""

    def __init__(self, recurrent_kernel: np.ndarray, activation: str | None, recurrent_activation: str | None, *,
                 recurrent_masks: list[np.ndarray] | None = None, matmuls_in_float32: bool = False,
                 bias: np.ndarray | None = None, cache: StepCache | None = None) -> None:
        self.recurrent_kernel = recurrent_kernel
        self.act = get_activation(activation)
        self.recurrent_act = get_activation(recurrent_activation)
        self.recurrent_masks = recurrent_masks
        self.matmuls_in_float32 = matmuls_in_float32
        self.bias = bias
        self.cache = cache

    def forward(self, t: int, x_projected: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        h, c = states
        if self.matmuls_in_float32:
            z = (x_projected + matmul_float32_operands(h, self.recurrent_kernel)).astype(np.float32).astype(h.dtype)
            z = z + self.bias if self.bias is not None else z
        else:
            z = x_projected + recurrent.masked_recurrent_product(h, self.recurrent_kernel, self.recurrent_masks,
                                                                 range(GATES))
        h_new, c_new = lstm_step(z, c, self.act, self.recurrent_act)
        if self.cache is not None:
            self.cache["pre_activations"][t] = z
            self.cache["c_new"][t] = c_new
        return h_new, [h_new, c_new]


def _readable_loop(
    inputs: LstmInputs,
    activation: str | None,
    recurrent_activation: str | None,
    *,
    go_backwards: bool,
    zero_output_for_mask: bool,
    initial_output: str,
    matmuls_in_float32: bool,
    cache: StepCache | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The time loop with ``ReadableLstmStep``. Returns (outputs in processing order (batch, time, units),
    final h, final c, last output)."""
    if matmuls_in_float32:
        projected = recurrent.project_inputs(inputs.x, inputs.kernel, None, matmul=matmul_float32_operands)
    else:
        projected = recurrent.project_inputs(inputs.x, inputs.kernel, inputs.bias)
    step = ReadableLstmStep(inputs.recurrent_kernel, activation, recurrent_activation,
                            matmuls_in_float32=matmuls_in_float32, bias=inputs.bias, cache=cache)
    outputs, (h, c), last_output = recurrent.run(step, projected, inputs.states, inputs.mask, go_backwards=go_backwards,
                                                 zero_output_for_mask=zero_output_for_mask,
                                                 initial_output=initial_output, cache=cache)
    return outputs, h, c, last_output


# --- The fast step -------------------------------------------------------------------------------------


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
# other, the fast forward also keeps the pre-activations (cache["pre_activations"]).
DERIVATIVE_FROM_OUTPUT = ("sigmoid", "tanh")


def allocate_cache(time: int, batch: int, units: int, keep_pre_activations: bool, dtype: np.dtype) -> StepCache:
    """What ``reference.lstm_backward`` reads from the fast forward, per timestep t in input order: h_prev,
    c_prev (the states entering the step), gates (i, f, g, o after their activations, (time, batch, 4 * units)),
    c_new (f * c_prev + i * g, before the mask), c_activated (activation(c_new)), and the pre-activations z
    unless DERIVATIVE_FROM_OUTPUT covers both activations."""
    widths = {"gates": GATES * units, "c_new": units, "c_activated": units}
    if keep_pre_activations:
        widths["pre_activations"] = GATES * units
    return StepCache.allocate(time, batch, units, widths, dtype, STATE_NAMES)


class FastLstmStep:
    """``ReadableLstmStep`` arranged for speed: buffers allocated once (the cache's slots when a cache is kept),
    np.matmul(..., out=), in-place activations, sigmoid_in_place."""

    def __init__(self, recurrent_kernel: np.ndarray, activation: str | None, recurrent_activation: str | None,
                 batch: int, dtype: np.dtype, cache: StepCache | None = None) -> None:
        units = recurrent_kernel.shape[0]
        self.recurrent_kernel = recurrent_kernel
        self.act = activation_in_place(activation)
        self.recurrent_act = activation_in_place(recurrent_activation)
        self.cache = cache
        self.blocks = [slice(gate * units, (gate + 1) * units) for gate in range(GATES)]
        i_block, f_block, _, o_block = self.blocks
        # An elementwise activation runs once on i and f together; softmax and the like once per gate.
        elementwise = recurrent_activation in ELEMENTWISE_IN_PLACE
        self.recurrent_blocks = [slice(0, 2 * units), o_block] if elementwise else [i_block, f_block, o_block]
        self.z = np.empty((batch, GATES * units), dtype)
        self.c_new = np.empty((batch, units), dtype)
        self.c_activated = np.empty((batch, units), dtype)
        self.h_new = np.empty((batch, units), dtype)

    def forward(self, t: int, x_projected: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        h, c = states
        cache = self.cache
        if cache is None:
            z, c_new, c_activated = self.z, self.c_new, self.c_activated
        else:
            z, c_new, c_activated = cache["gates"][t], cache["c_new"][t], cache["c_activated"][t]
        h_new = self.h_new
        # z = x_t @ kernel + bias + h @ recurrent_kernel
        np.matmul(h, self.recurrent_kernel, out=z)
        z += x_projected
        if cache is not None and "pre_activations" in cache:
            cache["pre_activations"][t] = z
        # i, f, g, o = ract(z_i), ract(z_f), act(z_g), ract(z_o): z now holds the gates
        for block in self.recurrent_blocks:
            self.recurrent_act(z[:, block])
        i_block, f_block, g_block, o_block = self.blocks
        self.act(z[:, g_block])
        i, f, g, o = z[:, i_block], z[:, f_block], z[:, g_block], z[:, o_block]
        # c_new = f * c + i * g
        np.multiply(f, c, out=c_new)
        np.multiply(i, g, out=h_new)
        c_new += h_new
        # h_new = o * act(c_new)
        c_activated[...] = c_new
        self.act(c_activated)
        np.multiply(o, c_activated, out=h_new)
        return h_new, [h_new, c_new]


def fast_forward(
    inputs: LstmInputs,
    activation: str | None,
    recurrent_activation: str | None,
    *,
    go_backwards: bool,
    zero_output_for_mask: bool,
    initial_output: str = "zeros",
    cache: StepCache | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The time loop with ``FastLstmStep`` (no ``matmuls_in_float32``); fills ``cache`` (``allocate_cache``)
    when given. Returns (outputs in processing order (batch, time, units), final h, final c, last output)."""
    batch = inputs.x.shape[0]
    projected = recurrent.project_inputs(inputs.x, inputs.kernel, inputs.bias)
    step = FastLstmStep(inputs.recurrent_kernel, activation, recurrent_activation, batch, inputs.x.dtype, cache)
    outputs, (h, c), last_output = recurrent.run(step, projected, inputs.states, inputs.mask, go_backwards=go_backwards,
                                                 zero_output_for_mask=zero_output_for_mask,
                                                 initial_output=initial_output, cache=cache)
    return outputs, h, c, last_output


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
    dtype = recurrent.check_options(initial_output, zero_output_mask_order, loop, dtype)
    get_activation(activation)  # ValueError for an unknown or rejected name
    get_activation(recurrent_activation)
    inputs = validate_inputs(x, kernel, recurrent_kernel, bias, mask, initial_state, dtype)
    options = dict(go_backwards=go_backwards, zero_output_for_mask=zero_output_for_mask, initial_output=initial_output)
    if loop == "readable" or matmuls_in_float32:
        outputs, h, c, last_output = _readable_loop(inputs, activation, recurrent_activation,
                                                    matmuls_in_float32=matmuls_in_float32, **options)
    else:
        outputs, h, c, last_output = fast_forward(inputs, activation, recurrent_activation, **options)
    if inputs.mask is not None and zero_output_for_mask and zero_output_mask_order == "input":
        # The last output is still the one of the last processed step (zeroed when that step is masked).
        outputs = recurrent.zero_outputs_in_input_order(outputs, inputs.mask, go_backwards)
    return recurrent.finish(outputs, [h, c], last_output, return_sequences=return_sequences,
                            return_state=return_state)
