"""A catalogue of faults injected into the Keras side at run time, to prove the tolerances catch bugs.

Each fault patches Keras (never the reference) while a run lasts, on every code path an LSTM takes on
CPU: ``LSTMCell`` (TensorFlow, JAX, and PyTorch with a mask), PyTorch's fused ``_fallback_lstm``
(PyTorch without a mask), and the ``LSTM`` layer itself for faults about sequences, masks and state.
The GRU and SimpleRNN faults patch ``call`` of the Keras cell class they name (``Fault.cell_class``:
``GRUCell``, ``SimpleRNNCell``), which computes a step inside Keras's generic loop only: an unmasked
GRU with reset_after=True runs, on JAX and PyTorch, the backend's own GRU loop (``backend.gru``)
instead, which no cell fault reaches (its call counter stays at zero: the fault is not applicable there).
Each fault names the built-in cases that exercise it. A record made with a fault says so in its
``fault`` field, so it cannot be mistaken for a real measurement.

``injected`` patches only what a fault changes and wraps every patch in a call counter, so a study
can tell a fault that was caught (a numeric mismatch) from one that never ran (the patched function
was not called, or no longer exists: ``FaultNotApplicable``) or that broke the run (it raised). A call
is not proof that the fault computed the numbers (PyTorch calls ``_fallback_lstm`` once while it infers
shapes, then cuDNN computes the outputs): every patch names the kernel steps it computes, and
``Injection.unreached_builds`` names the builds whose observed kernel path (``harness.execute.kernels``)
no called patch computes.

Gate-level faults are described twice, once per code path: as a change to the four gate
pre-activations ``(i, f, g, o)`` for LSTMCell, and as the equivalent change to the weights for the
fused PyTorch loop.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

DEFAULT_MAGNITUDE = 1e-3


@dataclass(frozen=True)
class Fault:
    description: str
    cases: tuple[str, ...]
    gates: Callable[[tuple, float], tuple] | None = None
    weights: Callable[[Any, Any, Any, int, float], tuple] | None = None
    activation: Callable[[Callable, Callable], Callable] | None = None  # (activation, keras) -> replacement
    recurrent_activation: Callable[[Callable, Any], Callable] | None = None
    layer_call: Callable[..., Any] | None = None  # wraps LSTM.call(original, self, sequences, initial_state, mask, training)
    doubles_cell_bias: bool = False  # LSTMCell reads its bias twice (the fused PyTorch loop: see ``weights``)
    # (activation, keras, the cell state the step starts from) -> replacement: an activation that needs the carried state
    stateful_activation: Callable[[Callable, Any, Any], Callable] | None = None
    # A fault of another cell kind: the Keras cell class whose ``call`` it patches (a name in keras.layers: "GRUCell"),
    # and (cell, keras, magnitude) -> the cell attributes the faulty step computes with instead of the cell's own
    # (kernel, recurrent_kernel, bias, reset_after, ...), set for the duration of one call.
    cell_class: str | None = None
    cell_attributes: Callable[[Any, Any, float], dict[str, Any]] | None = None


def _blocks(array: Any, units: int, count: int = 4) -> list:
    """The ``count`` gate blocks of a kernel, recurrent kernel or bias (4 for an LSTM: i, f, g, o; 3 for a GRU)."""
    return [array[..., n * units : (n + 1) * units] for n in range(count)]


def _swap_input_forget_weights(kernel, recurrent, bias, units, magnitude):
    import keras

    def swap(array):
        i, f, g, o = _blocks(array, units)
        return keras.ops.concatenate([f, i, g, o], axis=-1)

    return swap(kernel), swap(recurrent), None if bias is None else swap(bias)


def _offset_weights(block: int) -> Callable:
    def offset(kernel, recurrent, bias, units, magnitude):
        import keras

        # Built from the kernel itself, so that it lives where the kernel does (PyTorch infers shapes
        # on "meta" tensors, where creating a tensor from a Python number raises).
        zeros = keras.ops.zeros_like(kernel[0, :units])
        parts = [zeros] * 4
        parts[block] = zeros + magnitude
        shift = keras.ops.concatenate(parts)
        return kernel, recurrent, shift if bias is None else bias + shift

    return offset


def _offset_gate(block: int) -> Callable:
    def offset(z, magnitude):
        z = list(z)
        z[block] = z[block] + magnitude
        return tuple(z)

    return offset


def _double_bias_weights(kernel, recurrent, bias, units, magnitude):
    return kernel, recurrent, None if bias is None else bias * 2


def _candidate_only(activation: Callable, keras: Any) -> Callable:
    """Within one step the cell calls its activation twice: on the candidate, then on the new cell
    state. This replacement applies it the first time and is the identity the second time."""
    calls = {"count": 0}

    def patched(x):
        calls["count"] += 1
        return activation(x) if calls["count"] % 2 == 1 else x

    return patched


def _stale_cell_in_output(activation: Callable, keras: Any, c_tm1: Any) -> Callable:
    """h_t = o_t * tanh(c_{t-1}): the output reads the cell state the step started from, as a hand-written loop that
    computes h before it updates c does. Within one step the cell calls its activation on the candidate, then on the
    new cell state: the second call gets the previous cell state instead and keeps the new one for the next step (the
    fused PyTorch loop calls one replacement for every step; LSTMCell gets a new one per step)."""
    state = {"count": 0, "previous": c_tm1}

    def patched(x):
        state["count"] += 1
        if state["count"] % 2 == 1:
            return activation(x)
        previous, state["previous"] = state["previous"], x
        return activation(previous)

    return patched


def _half_precision(activation: Callable, keras: Any) -> Callable:
    """The activation evaluated on inputs rounded to float16 (a silent precision loss)."""

    def patched(x):
        return activation(keras.ops.cast(keras.ops.cast(x, "float16"), x.dtype))

    return patched


def _keras2_hard_sigmoid(activation: Callable, keras: Any) -> Callable:
    def patched(x):
        return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)

    return patched


def _reverse_backwards_output(original, self, sequences, initial_state, mask, training):
    import keras

    result = original(self, sequences, initial_state=initial_state, mask=mask, training=training)
    if not (self.go_backwards and self.return_sequences):
        return result
    if isinstance(result, (list, tuple)):
        return [keras.ops.flip(result[0], axis=1), *result[1:]]
    return keras.ops.flip(result, axis=1)


def _last_step_leaks(original, self, sequences, initial_state, mask, training):
    import keras

    if mask is not None:
        mask = keras.ops.concatenate([mask[:, :-1], keras.ops.ones_like(mask[:, -1:])], axis=1)
    return original(self, sequences, initial_state=initial_state, mask=mask, training=training)


def _state_not_carried(original, self, sequences, initial_state, mask, training):
    if self.stateful:
        self.reset_states()
    return original(self, sequences, initial_state=initial_state, mask=mask, training=training)


def _initial_state_ignored(original, self, sequences, initial_state, mask, training):
    return original(self, sequences, initial_state=None, mask=mask, training=training)


def _zero_output_ignored(original, self, sequences, initial_state, mask, training):
    saved = self.zero_output_for_mask
    self.zero_output_for_mask = False
    try:
        return original(self, sequences, initial_state=initial_state, mask=mask, training=training)
    finally:
        self.zero_output_for_mask = saved


# --- GRU and SimpleRNN: the attributes a faulty step computes with ---------------------------------------------
# Each takes the cell (a GRUCell: kernel (features, 3 units), recurrent_kernel (units, 3 units), bias (3 units,) or,
# with reset_after=True, (2, 3 units): row 0 the input bias, row 1 the recurrent bias; blocks z, r, h; a
# SimpleRNNCell: kernel (features, units), recurrent_kernel (units, units), bias (units,)), Keras and the magnitude.


def _tensor(keras: Any, variable: Any) -> Any:
    """A variable's value as a tensor (inside a stateless or traced call: the value that call sees). keras.ops.copy,
    not convert_to_tensor: on TensorFlow that returns the variable itself, which keras.ops.stack cannot take."""
    return keras.ops.copy(variable)


def _swap_update_reset(cell: Any, keras: Any, magnitude: float) -> dict[str, Any]:
    """The z and r blocks exchanged in the kernel, the recurrent kernel and the bias (both rows with reset_after)."""

    def swap(array: Any) -> Any:
        update, reset, candidate = _blocks(_tensor(keras, array), cell.units, 3)
        return keras.ops.concatenate([reset, update, candidate], axis=-1)

    changed = {"kernel": swap(cell.kernel), "recurrent_kernel": swap(cell.recurrent_kernel)}
    if cell.use_bias:
        changed["bias"] = swap(cell.bias)
    return changed


def _reset_gate_other_side(cell: Any, keras: Any, magnitude: float) -> dict[str, Any]:
    """reset_after flipped with the same weights. reset_after=True -> the reset gate multiplies h before the recurrent
    matmul, and the recurrent bias row is added to the input bias row (as the reset_after=False form reads one bias);
    reset_after=False -> r multiplies h @ recurrent_kernel, with a zero recurrent bias row."""
    changed: dict[str, Any] = {"reset_after": not cell.reset_after}
    if cell.use_bias:
        bias = _tensor(keras, cell.bias)
        changed["bias"] = bias[0] + bias[1] if cell.reset_after else keras.ops.stack([bias, keras.ops.zeros_like(bias)])
    return changed


def _candidate_recurrent_bias_dropped(cell: Any, keras: Any, magnitude: float) -> dict[str, Any]:
    """With reset_after=True, bias row 1's last block (the candidate's recurrent bias, inside r * (h @ R_h + b_rh))
    set to zero. A GRU without that bias (reset_after=False, or no bias) has nothing to drop: the patch raises."""
    if not (cell.reset_after and cell.use_bias):
        raise FaultNotApplicable("the candidate's recurrent bias exists only in a GRU with reset_after=True and a bias")
    bias = _tensor(keras, cell.bias)
    input_bias, recurrent_bias = bias[0], bias[1]
    kept = recurrent_bias[: 2 * cell.units]
    recurrent_bias = keras.ops.concatenate([kept, keras.ops.zeros_like(recurrent_bias[2 * cell.units :])])
    return {"bias": keras.ops.stack([input_bias, recurrent_bias])}


def _gru_gate_offset(block: int) -> Callable[[Any, Any, float], dict[str, Any]]:
    """Gate ``block`` (0: z, 1: r, 2: h)'s pre-activation shifted by the magnitude, through the input bias (row 0
    with reset_after); a GRU without a bias gets one that holds only the shift."""

    def offset(cell: Any, keras: Any, magnitude: float) -> dict[str, Any]:
        kernel = _tensor(keras, cell.kernel)
        zeros = keras.ops.zeros_like(kernel[0, : cell.units])  # built from the kernel: same dtype and device
        parts = [zeros, zeros, zeros]
        parts[block] = zeros + magnitude
        shift = keras.ops.concatenate(parts)
        if cell.reset_after:
            shift = keras.ops.stack([shift, keras.ops.zeros_like(shift)])
        if not cell.use_bias:
            return {"use_bias": True, "bias": shift}
        return {"bias": _tensor(keras, cell.bias) + shift}

    return offset


def _recurrent_kernel_transposed(cell: Any, keras: Any, magnitude: float) -> dict[str, Any]:
    return {"recurrent_kernel": keras.ops.transpose(_tensor(keras, cell.recurrent_kernel))}


def _bias_dropped(cell: Any, keras: Any, magnitude: float) -> dict[str, Any]:
    if cell.bias is None:
        raise FaultNotApplicable("the cell has no bias to drop")
    return {"bias": None}


def _simple_rnn_offset(cell: Any, keras: Any, magnitude: float) -> dict[str, Any]:
    """The pre-activation shifted by the magnitude through the bias (a bias that holds only the shift without one)."""
    zeros = keras.ops.zeros_like(_tensor(keras, cell.kernel)[0])
    return {"bias": zeros + magnitude if cell.bias is None else _tensor(keras, cell.bias) + magnitude}


GATE_CASES = ("lstm_sequences", "lstm_right_padded_mask")
FAULTS: dict[str, Fault] = {
    "swap_input_forget_gates": Fault(
        "the input and forget gate blocks are read in swapped order", GATE_CASES,
        gates=lambda z, m: (z[1], z[0], z[2], z[3]), weights=_swap_input_forget_weights,
    ),
    "forget_gate_bias_offset": Fault(
        "the forget gate's pre-activation is off by a small constant (a bias error)", GATE_CASES,
        gates=_offset_gate(1), weights=_offset_weights(1),
    ),
    "output_gate_bias_offset": Fault(
        "the output gate's pre-activation is off by a small constant", GATE_CASES,
        gates=_offset_gate(3), weights=_offset_weights(3),
    ),
    "bias_added_twice": Fault(
        "the bias is added twice (once with the input projection, once in the step)", GATE_CASES,
        weights=_double_bias_weights, doubles_cell_bias=True,
    ),
    "no_cell_activation": Fault(
        "the cell state goes to the output gate without its activation", GATE_CASES, activation=_candidate_only,
    ),
    "output_reads_previous_cell_state": Fault(
        "the hidden state is computed from the previous step's cell state (h_t = o_t * tanh(c_{t-1}))", GATE_CASES,
        stateful_activation=_stale_cell_in_output,
    ),
    "keras2_hard_sigmoid_gates": Fault(
        "the gates use Keras 2's hard sigmoid (0.2 x + 0.5) instead of the sigmoid", GATE_CASES,
        recurrent_activation=_keras2_hard_sigmoid,
    ),
    "half_precision_activations": Fault(
        "the activations see their inputs rounded to float16", GATE_CASES, activation=_half_precision,
    ),
    "go_backwards_output_not_reversed": Fault(
        "with go_backwards, the sequence output is returned in input order instead of processing order",
        ("lstm_go_backwards",), layer_call=_reverse_backwards_output,
    ),
    "last_masked_step_leaks": Fault(
        "the last timestep is always treated as valid, so a padded step leaks into the state",
        ("lstm_right_padded_mask", "stacked_rightpadded_argument"), layer_call=_last_step_leaks,
    ),
    "state_not_carried_between_calls": Fault(
        "a stateful LSTM starts every call from zeros", ("stateful_call",), layer_call=_state_not_carried,
    ),
    "initial_state_ignored": Fault(
        "the initial_state argument is dropped", ("lstm_initial_state",), layer_call=_initial_state_ignored,
    ),
    "zero_output_for_mask_ignored": Fault(
        "zero_output_for_mask=True is ignored: masked steps repeat the previous output",
        ("zero_output_rightpadded_seqon_unrolloff_backoff",), layer_call=_zero_output_ignored,
    ),
    "gru_update_reset_gates_swapped": Fault(
        "GRU: the update (z) and reset (r) gate blocks of kernel, recurrent_kernel and bias are read in swapped order",
        ("gru_layer_resetafterfalse",), cell_class="GRUCell", cell_attributes=_swap_update_reset,
    ),
    "gru_reset_gate_other_side": Fault(
        "GRU: the reset gate is applied on the other side of the recurrent matmul than reset_after says (same weights)",
        ("gru_layer_resetafterfalse",), cell_class="GRUCell", cell_attributes=_reset_gate_other_side,
    ),
    # A masked reset_after=True GRU: the one form with a candidate recurrent bias that every backend runs through GRUCell
    # on CPU (unmasked, JAX and PyTorch run their own GRU loop, where the study reports this patch as never called).
    "gru_candidate_recurrent_bias_dropped": Fault(
        "GRU (reset_after=True): the candidate's recurrent bias (bias row 1, last block) is dropped",
        ("gru_mask_rightpadded_backoff_unrolloff",), cell_class="GRUCell", cell_attributes=_candidate_recurrent_bias_dropped,
    ),
    "gru_update_gate_bias_offset": Fault(
        "GRU: the update gate's pre-activation is off by a small constant", ("gru_layer_resetafterfalse",),
        cell_class="GRUCell", cell_attributes=_gru_gate_offset(0),
    ),
    "simple_rnn_recurrent_kernel_transposed": Fault(
        "SimpleRNN: the recurrent kernel is used transposed (h @ U.T)", ("simplernn_layer",),
        cell_class="SimpleRNNCell", cell_attributes=_recurrent_kernel_transposed,
    ),
    "simple_rnn_bias_dropped": Fault(
        "SimpleRNN: the bias is not added", ("simplernn_layer",), cell_class="SimpleRNNCell", cell_attributes=_bias_dropped,
    ),
    "simple_rnn_bias_offset": Fault(
        "SimpleRNN: the pre-activation is off by a small constant", ("simplernn_layer",),
        cell_class="SimpleRNNCell", cell_attributes=_simple_rnn_offset,
    ),
}


class FaultNotApplicable(RuntimeError):
    """A fault's patch cannot be applied to this Keras: what it patches does not exist."""


# The observed kernel steps (harness.execute.kernels: the last step of a build's kernel path) whose numbers each kind of
# patched function computes: LSTMCell runs only inside Keras's generic loop, PyTorch's _fallback_lstm only as its
# fused entry point's own loop. A fused (cuDNN) path computes its outputs without either.
GENERIC_LOOP = ("generic",)
FALLBACK_LOOP = ("fallback_loop",)
EVERY_PATH = None  # the layer's own call: it wraps whichever kernel runs


@dataclass(frozen=True)
class _Patch:
    owner: Any
    attribute: str
    label: str  # what is patched, as a user would name it: "LSTMCell.call"
    replacement: Callable
    computes: tuple[str, ...] | None = EVERY_PATH  # the kernel steps whose outputs it computes (None: every path)


class Injection:
    """What happened to one injected fault: how often each patched function ran, and what raised in it.

    ``calls`` counts the calls of every patched function; a fault whose patches were never called did
    not reach the code the case ran (a renamed or bypassed Keras function), so a case that passes
    proves nothing. ``errors`` holds, one line each, the exceptions that went through a patch."""

    def __init__(self, name: str | None, labels: list[str], computes: dict[str, tuple[str, ...] | None] | None = None) -> None:
        self.name = name
        self.calls: dict[str, int] = {label: 0 for label in labels}
        # label -> the kernel steps its patch computes (None: every path); a label not named computes every path.
        self.computes: dict[str, tuple[str, ...] | None] = {label: (computes or {}).get(label, EVERY_PATH) for label in labels}
        self.errors: list[str] = []
        self._seen: set[int] = set()

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def applied(self) -> bool:
        """Whether any patch of the fault ran (always True for no fault). A call is not enough to say the fault
        computed a case's outputs: ``unreached_builds`` checks the kernel path each build ran."""
        return self.name is None or self.total_calls > 0

    def unreached_builds(self, result: dict[str, Any]) -> list[str]:
        """"api: kernel path" for every build of a case result whose outputs no called patch computed: a build whose
        observed kernel path (``result["apis"][api]["kernel_path"]``) ends, for one of its layer calls, in a step no
        patch of this fault that ran computes. A called patch of the layer itself reaches every path. Empty: every
        build ran the faulted code."""
        if self.name is None:
            return []
        called = [label for label, count in self.calls.items() if count > 0]
        if any(self.computes.get(label, EVERY_PATH) is EVERY_PATH for label in called):
            return []
        reached = {step for label in called for step in (self.computes.get(label) or ())}
        unreached = []
        for api, build in (result.get("apis") or {}).items():
            path = str(build.get("kernel_path") or "none observed") if isinstance(build, dict) else "none observed"
            last_steps = [layer_call.split("->")[-1].strip() for layer_call in path.split(",")]
            if path == "none observed" or any(step not in reached for step in last_steps):
                unreached.append(f"{api}: {path}")
        return unreached

    def _counted(self, patch: _Patch) -> Callable:
        # functools.wraps keeps the replacement's signature visible (inspect follows __wrapped__):
        # Keras inspects a layer's call signature to route arguments such as mask and training.
        @functools.wraps(patch.replacement)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.calls[patch.label] += 1
            try:
                return patch.replacement(*args, **kwargs)
            except Exception as error:  # recorded once (nested patches see it twice), then re-raised
                if id(error) not in self._seen:
                    self._seen.add(id(error))
                    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
                    self.errors.append(f"{patch.label} raised {type(error).__name__}: {lines[0] if lines else ''}".rstrip(": "))
                raise

        return wrapper


def _lookup(owner: Any, attribute: str, label: str) -> Any:
    try:
        return getattr(owner, attribute)
    except AttributeError:
        raise FaultNotApplicable(f"{label} does not exist in this Keras; the fault cannot be injected") from None


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise FaultNotApplicable(f"cannot import {module} ({error}); the fault cannot be injected") from None


def _cell_patches(fault: Fault, magnitude: float, keras: Any) -> list[_Patch]:
    """LSTMCell: the gate pre-activations (``_compute_carry_and_output_fused``) and, for activation and
    bias faults, ``call``. Only what the fault changes is patched, so that a call count means the
    fault ran."""
    lstm_module = _import("keras.src.layers.rnn.lstm")
    cell = _lookup(lstm_module, "LSTMCell", "keras.src.layers.rnn.lstm.LSTMCell")
    patches = []
    if fault.gates is not None:
        original_fused = _lookup(cell, "_compute_carry_and_output_fused", "LSTMCell._compute_carry_and_output_fused")

        def faulty_fused(self, z, c_tm1):
            return original_fused(self, fault.gates(tuple(z), magnitude), c_tm1)

        patches.append(_Patch(cell, "_compute_carry_and_output_fused", "LSTMCell._compute_carry_and_output_fused", faulty_fused, GENERIC_LOOP))

    if fault.activation is None and fault.recurrent_activation is None and fault.stateful_activation is None and not fault.doubles_cell_bias:
        return patches
    original_call = _lookup(cell, "call", "LSTMCell.call")

    def faulty_call(self, inputs, states, training=False):
        saved = (self.activation, self.recurrent_activation)
        saved_bias = getattr(self, "bias", None)
        if fault.activation is not None:
            self.activation = fault.activation(saved[0], keras)
        if fault.stateful_activation is not None:
            self.activation = fault.stateful_activation(saved[0], keras, states[1])
        if fault.recurrent_activation is not None:
            self.recurrent_activation = fault.recurrent_activation(saved[1], keras)
        if fault.doubles_cell_bias and saved_bias is not None:
            object.__setattr__(self, "bias", saved_bias * 2)
        try:
            return original_call(self, inputs, states, training=training)
        finally:
            self.activation, self.recurrent_activation = saved
            if fault.doubles_cell_bias and saved_bias is not None:
                object.__setattr__(self, "bias", saved_bias)

    patches.append(_Patch(cell, "call", "LSTMCell.call", faulty_call, GENERIC_LOOP))
    return patches


def _torch_fallback_patch(fault: Fault, magnitude: float, keras: Any) -> list[_Patch]:
    """PyTorch runs an unmasked LSTM in its own fused loop; patch it through the weights and activations it receives."""
    if keras.backend.backend() != "torch":
        return []
    if fault.weights is None and fault.activation is None and fault.recurrent_activation is None and fault.stateful_activation is None:
        return []
    # importlib, not "from ... import rnn": the package re-exports a function of that name.
    torch_rnn = _import("keras.src.backend.torch.rnn")
    original = _lookup(torch_rnn, "_fallback_lstm", "keras.src.backend.torch.rnn._fallback_lstm")

    def faulty(inputs, h, c, kernel, recurrent_kernel, bias, activation, recurrent_activation, *args, **kwargs):
        units = recurrent_kernel.shape[0]
        if fault.weights is not None:
            kernel, recurrent_kernel, bias = fault.weights(kernel, recurrent_kernel, bias, units, magnitude)
        if fault.activation is not None:
            activation = fault.activation(activation, keras)
        if fault.stateful_activation is not None:
            activation = fault.stateful_activation(activation, keras, c)
        if fault.recurrent_activation is not None:
            recurrent_activation = fault.recurrent_activation(recurrent_activation, keras)
        return original(inputs, h, c, kernel, recurrent_kernel, bias, activation, recurrent_activation, *args, **kwargs)

    return [_Patch(torch_rnn, "_fallback_lstm", "torch rnn._fallback_lstm", faulty, FALLBACK_LOOP)]


def _other_cell_patch(fault: Fault, magnitude: float, keras: Any) -> list[_Patch]:
    """``call`` of the cell class the fault names (``Fault.cell_class``), run with the attributes its
    ``cell_attributes`` gives in place of the cell's own, restored after the call. The cell computes a step only
    inside Keras's generic loop."""
    if fault.cell_class is None or fault.cell_attributes is None:
        return []
    layers = _import("keras.layers")
    cell = _lookup(layers, fault.cell_class, f"keras.layers.{fault.cell_class}")
    label = f"{fault.cell_class}.call"
    original_call = _lookup(cell, "call", label)

    def faulty_call(self, inputs, states, training=False):
        changed = fault.cell_attributes(self, keras, magnitude)
        saved = {name: getattr(self, name) for name in changed}
        # object.__setattr__: Keras's Layer.__setattr__ would track a substituted tensor as a new weight.
        for name, value in changed.items():
            object.__setattr__(self, name, value)
        try:
            return original_call(self, inputs, states, training=training)
        finally:
            for name, value in saved.items():
                object.__setattr__(self, name, value)

    return [_Patch(cell, "call", label, faulty_call, GENERIC_LOOP)]


def _layer_patch(fault: Fault) -> list[_Patch]:
    if fault.layer_call is None:
        return []
    lstm_module = _import("keras.src.layers.rnn.lstm")
    layer = _lookup(lstm_module, "LSTM", "keras.src.layers.rnn.lstm.LSTM")
    original = _lookup(layer, "call", "LSTM.call")

    def faulty(self, sequences, initial_state=None, mask=None, training=False):
        return fault.layer_call(original, self, sequences, initial_state, mask, training)

    return [_Patch(layer, "call", "LSTM.call", faulty)]


def patches_of(name: str, magnitude: float = DEFAULT_MAGNITUDE) -> list[_Patch]:
    """The patches fault ``name`` applies on the active backend; FaultNotApplicable when one cannot be."""
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; accepted: {', '.join(FAULTS)}")
    import keras

    fault = FAULTS[name]
    if fault.layer_call is not None:
        patches = _layer_patch(fault)
    elif fault.cell_class is not None:
        patches = _other_cell_patch(fault, magnitude, keras)
    else:
        patches = _cell_patches(fault, magnitude, keras) + _torch_fallback_patch(fault, magnitude, keras)
    if not patches:
        raise FaultNotApplicable(f"fault {name!r} patches nothing on the {keras.backend.backend()} backend")
    return patches


def patch(owner: Any, attribute: str, label: str, replacement: Callable, computes: tuple[str, ...] | None = EVERY_PATH) -> _Patch:
    """A patch of ``owner.attribute`` (``computes``: the kernel steps whose outputs it computes, None: every path);
    FaultNotApplicable when the attribute does not exist."""
    _lookup(owner, attribute, label)
    return _Patch(owner, attribute, label, replacement, computes)


@contextlib.contextmanager
def inject(patches: list[_Patch], name: str | None = None) -> Iterator[Injection]:
    """Apply ``patches``, each wrapped in a call counter, inside the block; restore the originals after."""
    injection = Injection(name, [item.label for item in patches], {item.label: item.computes for item in patches})
    originals = [(item.owner, item.attribute, item.owner.__dict__.get(item.attribute, _MISSING)) for item in patches]
    for item in patches:
        setattr(item.owner, item.attribute, injection._counted(item))
    try:
        yield injection
    finally:
        for owner, attribute, original in reversed(originals):
            if original is _MISSING:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)


@contextlib.contextmanager
def injected(name: str | None, magnitude: float = DEFAULT_MAGNITUDE) -> Iterator[Injection]:
    """Apply fault ``name`` (with ``magnitude`` for perturbation faults) inside the block; None: no-op.

    Yields an ``Injection`` that counts the calls of each patched function and keeps what raised in
    them. Raises FaultNotApplicable, before patching anything, when a patched attribute is missing."""
    if name is None:
        yield Injection(None, [])
        return
    with inject(patches_of(name, magnitude), name) as injection:
        yield injection


_MISSING = object()
