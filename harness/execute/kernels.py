"""Which path a recurrent layer (an LSTM, a GRU) actually ran: the fused kernel, the generic loop, or a fused attempt that fell back.

Observed, never inferred from Keras's rules: ``observe()`` wraps, while a build runs, the functions
Keras calls (where Keras looks them up) and records every call that reached them and how it ended.

- The entry points, in ``keras.src.backend`` (where ``LSTM.inner_loop``, ``RNN.inner_loop`` and
  ``Bidirectional`` look them up as ``backend.lstm``, ``backend.rnn``, ``backend.bidirectional_lstm``)
  and their aliases in ``keras.src.backend.<b>`` and ``keras.src.backend.<b>.rnn``: ``lstm`` (the fused
  entry point), ``bidirectional_lstm`` (the fused bidirectional one) and ``rnn`` (the generic loop).
- Inside the fused entry points, the backend's own functions named by its module's ``kernel_hooks()``
  (``harness.execute.backends``): ``cudnn``, the cuDNN kernel (TensorFlow's and PyTorch's
  ``_cudnn_lstm``, ``jax.experimental.rnn.lstm``), and ``fallback_loop``, a backend's own non-cuDNN loop
  inside its fused entry point (PyTorch's ``_fallback_lstm``, which runs whenever cuDNN cannot).

A call that returned is a path that ran. A fused entry point that raised ``NotImplementedError`` made
Keras fall back: it *declined* when it raised before any kernel ran (no cuDNN kernel call observed,
nothing chained to the exception), it *failed* when a kernel was called and raised, or when the
exception was raised while handling another one (TensorFlow and JAX turn a kernel's error into
``NotImplementedError``; PyTorch's ``lstm`` swallows any exception from cuDNN and runs its fallback
loop, which the ``cudnn`` hook still sees). Steps, in call order:

    generic                    backend.rnn returned (Keras's generic loop over the cell)
    fused                      a fused entry point returned after its cuDNN kernel returned
    fallback_loop              the fused entry point returned through the backend's own loop (no cuDNN)
    fused_declined             the fused entry point raised NotImplementedError before any kernel ran
    fused_failed               a cuDNN kernel was called and raised
    bidirectional_...          the same for backend.bidirectional_lstm

Declined and failed steps chain onto the step that followed them, so one layer call reads as one
path: ``fused_declined->generic`` (TensorFlow and JAX on CPU), ``fallback_loop`` (PyTorch without a
mask), ``fused_failed->fallback_loop``. A build's ``kernel_path`` is its distinct paths, in the order
they first ran.

Calls are Python-level: under ``tf.function`` or ``jax.jit`` a wrapped function runs when the step is
traced (and again on a retrace), which is an observation of what was traced into the program; calls
made while Keras infers shapes (``SymbolicScope``: Functional construction, ``compute_output_spec``,
PyTorch on "meta" tensors where cuDNN never runs) say nothing about the device run, so they are only
counted, as ``shape_inference``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from harness.execute.kinds import entry_points

ENTRY_POINTS = entry_points()  # ("lstm", "bidirectional_lstm", "gru", "bidirectional_gru", "rnn"): harness.execute.kinds
KERNEL_ROLES = ("cudnn", "fallback_loop")
TERMINAL_STEPS = ("generic", "fused", "fallback_loop", "bidirectional_fused")
SHAPE_INFERENCE = "shape_inference"


@dataclass
class _Frame:
    role: str
    symbolic: bool
    nested: bool
    inner: list[tuple[str, str]] = field(default_factory=list)  # (role, outcome) of the wrapped calls made inside


def _in_symbolic_scope() -> bool:
    try:
        from keras.src.backend.common.symbolic_scope import in_symbolic_scope
    except ImportError:  # pragma: no cover - a Keras without symbolic scopes
        return False
    return bool(in_symbolic_scope())


class KernelObservation:
    """What the wrapped functions saw during one ``observe()`` block."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        # (role, outcome) per wrapped call, in call order. A list, not a dict of counts: under torch.compile
        # (jit_compile=True on PyTorch) the recording is traced, and a pre-existing dict mutated in the traced
        # region makes dynamo graph-break at the next mappingproxy access (Keras's CallSpec binds each layer
        # call's inspect.Signature), inside Keras's name_scope, so whole frames fall back to eager and get
        # recompiled one by one. Appending to a list is traced without a break.
        self._events: list[tuple[str, str]] = []
        self._stack: list[_Frame] = []

    @property
    def calls(self) -> dict[str, dict[str, int]]:
        """Every wrapped function's calls by outcome: {role: {outcome: count}}, in first-seen order."""
        counts: dict[str, dict[str, int]] = {}
        for role, outcome in self._events:
            per_role = counts.setdefault(role, {})
            per_role[outcome] = per_role.get(outcome, 0) + 1
        return counts

    # ------------------------------------------------------------------ recording

    def _count(self, role: str, outcome: str) -> None:
        self._events.append((role, outcome))

    def wrap(self, role: str, original: Callable) -> Callable:
        observation = self

        @functools.wraps(original)
        def observed(*args: Any, **kwargs: Any) -> Any:
            frame = _Frame(role, _in_symbolic_scope(), nested=bool(observation._stack))
            observation._stack.append(frame)
            try:
                value = original(*args, **kwargs)
            except BaseException as error:
                observation._stack.pop()
                observation._finish(frame, error)
                raise
            observation._stack.pop()
            observation._finish(frame, None)
            return value

        observed.__kernel_observed__ = role  # type: ignore[attr-defined]
        return observed

    def _outcome(self, frame: _Frame, error: BaseException | None) -> str:
        if error is None:
            return "returned"
        if frame.role in KERNEL_ROLES or frame.role == "rnn":
            return "raised"
        if isinstance(error, NotImplementedError):
            kernel_raised = any(role in KERNEL_ROLES and outcome != "returned" for role, outcome in frame.inner)
            chained = error.__cause__ is not None or error.__context__ is not None
            return "failed" if kernel_raised or chained else "declined"
        return "raised"

    def _finish(self, frame: _Frame, error: BaseException | None) -> None:
        outcome = self._outcome(frame, error)
        if frame.symbolic:
            self._count(frame.role, SHAPE_INFERENCE)
            return
        self._count(frame.role, outcome)
        if frame.nested:
            self._stack[-1].inner.append((frame.role, outcome))
            return
        self.steps += _steps(frame, outcome)

    # ------------------------------------------------------------------ summary

    def paths(self) -> list[str]:
        """One path per layer call: declined and failed steps chained onto the step that followed them."""
        paths, pending = [], []
        for step in self.steps:
            pending.append(step)
            if step in TERMINAL_STEPS or step.endswith("_raised"):
                paths.append("->".join(pending))
                pending = []
        if pending:  # an attempt nothing followed (the build raised): kept as it is
            paths.append("->".join(pending))
        return paths

    def record(self) -> dict[str, Any]:
        """What a run record keeps for one build: ``kernel_path`` (its distinct paths, in the order they first
        ran; "none observed" when no wrapped function ran outside shape inference) and ``kernel`` (calls per
        path, and every wrapped function's calls by outcome)."""
        counts: dict[str, int] = {}
        for path in self.paths():
            counts[path] = counts.get(path, 0) + 1
        return {
            "kernel_path": ", ".join(counts) if counts else "none observed",
            "kernel": {"paths": counts, "calls": {role: dict(outcomes) for role, outcomes in self.calls.items()}},
        }


def _steps(frame: _Frame, outcome: str) -> list[str]:
    """The steps one outermost wrapped call stands for."""
    inner = frame.inner
    if frame.role == "rnn":
        return ["generic" if outcome == "returned" else "generic_raised"]
    if frame.role == "cudnn":  # called outside any entry point (directly)
        return ["fused" if outcome == "returned" else "fused_failed"]
    if frame.role == "fallback_loop":
        return ["fallback_loop" if outcome == "returned" else "fallback_loop_raised"]
    prefix = "bidirectional_" if frame.role.startswith("bidirectional_") else ""
    cudnn_failed = any(role == "cudnn" and result != "returned" for role, result in inner)
    if outcome == "returned":
        if ("cudnn", "returned") in inner:
            return [f"{prefix}fused"]
        before = [f"{prefix}fused_failed"] if cudnn_failed else []
        if ("fallback_loop", "returned") in inner:
            return before + ["fallback_loop"]
        if ("rnn", "returned") in inner:
            return before + ["generic"]
        # Returned with no hooked kernel inside: the fused entry point computed the output itself (PyTorch's
        # bidirectional_lstm calls torch._VF.lstm directly and returns only when it succeeded on CUDA).
        return [f"{prefix}fused"]
    if outcome in ("declined", "failed"):
        return [f"{prefix}fused_{outcome}"]
    return [f"{prefix}fused_raised"]


def _hook_targets(backend: str) -> list[tuple[str, str, str]]:
    """(module, attribute, role) of every function wrapped on ``backend``: the entry points where Keras looks
    them up and their aliases, then the backend's kernel hooks."""
    from harness.execute.backends import backend_module, keras_rnn_modules

    targets = [(module, name, name) for name in ENTRY_POINTS for module in keras_rnn_modules(backend)]
    return targets + list(backend_module(backend).kernel_hooks())


@contextlib.contextmanager
def observe(api: str | None = None, result: dict[str, Any] | None = None) -> Iterator[KernelObservation]:
    """Record which kernel path every LSTM call inside the block took (see the module docstring).

    On an exception the block's observation is kept in ``result["kernel_at_error"]`` (with ``api``) before
    the exception goes on, so that a refused or failed build still says what it tried."""
    import keras

    observation = KernelObservation()
    patched: list[tuple[Any, str, Any]] = []
    try:
        for module_name, attribute, role in _hook_targets(keras.backend.backend()):
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue  # e.g. jax.experimental.rnn missing: the entry point's own exception still tells
            current = module.__dict__.get(attribute)
            if current is None or not callable(current):
                continue
            patched.append((module, attribute, current))
            setattr(module, attribute, observation.wrap(role, current))
        yield observation
    except BaseException:
        if result is not None:
            result["kernel_at_error"] = {"api": api, **observation.record()}
        raise
    finally:
        for module, attribute, original in reversed(patched):
            setattr(module, attribute, original)
