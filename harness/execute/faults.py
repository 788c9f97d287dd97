"""A catalogue of faults injected into the Keras side at run time, to prove the tolerances catch bugs.

Each fault patches Keras (never the reference) while a run lasts, on every code path an LSTM takes on
CPU: ``LSTMCell`` (TensorFlow, JAX, and PyTorch with a mask), PyTorch's fused ``_fallback_lstm``
(PyTorch without a mask), and the ``LSTM`` layer itself for faults about sequences, masks and state.
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


def _blocks(array: Any, units: int) -> list:
    return [array[..., n * units : (n + 1) * units] for n in range(4)]


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
    patches = _layer_patch(fault) if fault.layer_call is not None else (
        _cell_patches(fault, magnitude, keras) + _torch_fallback_patch(fault, magnitude, keras)
    )
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
