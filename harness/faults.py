"""Faults injected into the Keras side at run time, to prove the tolerances catch real bugs.

Each fault patches Keras (never the reference) for the duration of a run, on every code path an LSTM
can take on CPU: ``LSTMCell`` (TensorFlow, JAX, and PyTorch with a mask) and PyTorch's fused
``_fallback_lstm`` (PyTorch without a mask). A record made with a fault says so in its ``fault``
field, so it cannot be mistaken for a real measurement.

A fault is described by what it does to the four gate pre-activations ``(i, f, g, o)`` and, for the
weight-based PyTorch path, the equivalent change to the weights; plus whether the cell state skips
its activation.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

BIAS_OFFSET = 1e-3


@dataclass(frozen=True)
class Fault:
    description: str
    gates: Callable[[tuple], tuple] = lambda z: z
    weights: Callable[[Any, Any, Any, int], tuple] = lambda k, r, b, units: (k, r, b)
    skip_cell_activation: bool = False


def _swap_blocks(array: Any, units: int) -> Any:
    """Swap the input and forget blocks along the last axis of a kernel or bias."""
    import keras

    i, f, g, o = (array[..., n * units : (n + 1) * units] for n in range(4))
    return keras.ops.concatenate([f, i, g, o], axis=-1)


def _offset_forget_bias(kernel: Any, recurrent: Any, bias: Any, units: int) -> tuple:
    import keras

    offset = keras.ops.concatenate(
        [keras.ops.zeros((units,)), keras.ops.full((units,), BIAS_OFFSET), keras.ops.zeros((2 * units,))]
    )
    offset = keras.ops.cast(offset, kernel.dtype)
    return kernel, recurrent, offset if bias is None else bias + offset


FAULTS: dict[str, Fault] = {
    "swap_input_forget_gates": Fault(
        "the input and forget gate blocks are read in swapped order",
        gates=lambda z: (z[1], z[0], z[2], z[3]),
        weights=lambda k, r, b, units: (_swap_blocks(k, units), _swap_blocks(r, units), None if b is None else _swap_blocks(b, units)),
    ),
    "forget_gate_bias_offset": Fault(
        f"the forget gate's pre-activation is off by {BIAS_OFFSET:g} (a small bias error)",
        gates=lambda z: (z[0], z[1] + BIAS_OFFSET, z[2], z[3]),
        weights=_offset_forget_bias,
    ),
    "no_cell_activation": Fault(
        "the cell state goes to the output gate without its activation", skip_cell_activation=True
    ),
}


def _candidate_only(activation: Callable) -> Callable:
    """Within one step the cell calls its activation twice: on the candidate, then on the new cell
    state. This wrapper applies it the first time and is the identity the second time."""
    calls = {"count": 0}

    def patched(x):
        calls["count"] += 1
        return activation(x) if calls["count"] % 2 == 1 else x

    return patched


@contextlib.contextmanager
def injected(name: str | None) -> Iterator[None]:
    """Apply fault ``name`` to Keras's LSTM inside the block (no-op for None)."""
    if name is None:
        yield
        return
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; accepted: {', '.join(FAULTS)}")
    fault = FAULTS[name]
    from keras.src.layers.rnn.lstm import LSTMCell

    original_fused = LSTMCell._compute_carry_and_output_fused
    original_call = LSTMCell.call

    def faulty_fused(self, z, c_tm1):
        return original_fused(self, fault.gates(tuple(z)), c_tm1)

    def faulty_call(self, inputs, states, training=False):
        saved = self.activation
        if fault.skip_cell_activation:
            self.activation = _candidate_only(saved)
        try:
            return original_call(self, inputs, states, training=training)
        finally:
            self.activation = saved

    patches = [(LSTMCell, "_compute_carry_and_output_fused", original_fused, faulty_fused),
               (LSTMCell, "call", original_call, faulty_call)]
    torch_patch = _torch_fallback_patch(fault)
    if torch_patch is not None:
        patches.append(torch_patch)
    for owner, attribute, _, replacement in patches:
        setattr(owner, attribute, replacement)
    try:
        yield
    finally:
        for owner, attribute, original, _ in patches:
            setattr(owner, attribute, original)


def _torch_fallback_patch(fault: Fault) -> tuple | None:
    """PyTorch runs an unmasked LSTM in its own fused loop; patch it through the weights it receives."""
    import keras

    if keras.backend.backend() != "torch":
        return None
    # importlib, not "from ... import rnn": the package re-exports a function of that name.
    torch_rnn = importlib.import_module("keras.src.backend.torch.rnn")

    original = torch_rnn._fallback_lstm

    def faulty(inputs, h, c, kernel, recurrent_kernel, bias, activation, recurrent_activation, *args, **kwargs):
        units = recurrent_kernel.shape[0]
        kernel, recurrent_kernel, bias = fault.weights(kernel, recurrent_kernel, bias, units)
        if fault.skip_cell_activation:
            activation = _candidate_only(activation)
        return original(inputs, h, c, kernel, recurrent_kernel, bias, activation, recurrent_activation, *args, **kwargs)

    return (torch_rnn, "_fallback_lstm", original, faulty)

