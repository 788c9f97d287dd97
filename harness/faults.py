"""Faults injected into the Keras side at run time, to prove the tolerances catch real bugs.

Each fault patches Keras (never the reference) for the duration of a run. A record made with a fault
says so in its ``fault`` field, so it cannot be mistaken for a real measurement.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

FAULTS: dict[str, str] = {
    "swap_input_forget_gates": "the input and forget gate blocks are read in swapped order",
    "forget_gate_bias_offset": "the forget gate's pre-activation is off by 1e-3 (a small bias error)",
    "no_cell_activation": "the cell state is not passed through the activation before the output gate",
}


def _fused_patch(name: str) -> Callable:
    def swap_input_forget(self, z, c_tm1):
        z0, z1, z2, z3 = z
        i = self.recurrent_activation(z1)
        f = self.recurrent_activation(z0)
        return f * c_tm1 + i * self.activation(z2), self.recurrent_activation(z3)

    def forget_bias_offset(self, z, c_tm1):
        z0, z1, z2, z3 = z
        i = self.recurrent_activation(z0)
        f = self.recurrent_activation(z1 + 1e-3)
        return f * c_tm1 + i * self.activation(z2), self.recurrent_activation(z3)

    patches = {"swap_input_forget_gates": swap_input_forget, "forget_gate_bias_offset": forget_bias_offset}
    return patches[name]


@contextlib.contextmanager
def injected(name: str | None) -> Iterator[None]:
    """Apply fault ``name`` to Keras's LSTM cell inside the block (no-op for None)."""
    if name is None:
        yield
        return
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; accepted: {', '.join(FAULTS)}")
    from keras.src.layers.rnn.lstm import LSTMCell

    if name == "no_cell_activation":
        original = LSTMCell.call

        def call_without_cell_activation(self, inputs, states, training=False):
            saved = self.activation
            self.activation = _identity_for_cell(saved)
            try:
                return original(self, inputs, states, training=training)
            finally:
                self.activation = saved

        LSTMCell.call = call_without_cell_activation
        try:
            yield
        finally:
            LSTMCell.call = original
        return

    original_fused = LSTMCell._compute_carry_and_output_fused
    LSTMCell._compute_carry_and_output_fused = _fused_patch(name)
    try:
        yield
    finally:
        LSTMCell._compute_carry_and_output_fused = original_fused


def _identity_for_cell(activation: Callable) -> Callable:
    """An activation that behaves normally on the candidate (first use) but is the identity on the cell state."""
    calls = {"count": 0}

    def patched(x):
        calls["count"] += 1
        return activation(x) if calls["count"] % 2 == 1 else x

    return patched
