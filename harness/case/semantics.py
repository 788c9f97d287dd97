"""The semantics the reference computes: Keras's documented behaviour, or a named alternative.

A known divergence of kind "semantics" names the alternative a backend was observed to compute, and
the verdicts stage checks the backend's outputs against exactly that alternative, computed by the
reference. Pure data: nothing here computes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Semantics:
    """Which behaviour the reference computes. The defaults are Keras's documented behaviour; every
    other value is an alternative a backend was observed to compute (a known divergence of kind
    "semantics" names one), so that a claim is checked against exactly what it says happens.

    mask_ignored: the mask is dropped (a Masking layer's mask lost when initial_state is passed).
    initial_output: "h0" makes masked steps before the first valid step output h0 instead of zeros.
    zero_output_for_mask_ignored: masked steps repeat the previous output even with zero_output_for_mask.
    zero_output_mask_order: "input" zeroes outputs (processing order) with the mask in input order.
    inputs_rounded_to_float32: the inputs are rounded to float32 before the model sees them.
    stateful_state_not_carried: every batch of a stateful case starts from zero states, and the
        states read afterwards are still the zeros of reset_states.
    sparsemax_cumulative_threshold: the "sparsemax" activation computes Keras 3.15.1's formula, whose
        threshold sums the cumulative sums over the support (reference.activations.sparsemax_cumulative_threshold).
    hard_sigmoid_keras2: "hard_sigmoid" is Keras 2's clip(0.2 x + 0.5, 0, 1), not Keras 3's relu6(x + 3) / 6.
    tanh_in_float32: every "tanh" activation (LSTM cell, LSTM output, Dense) rounds its float64 input to
        float32 and computes XLA's CPU float32 tanh (reference.activations.tanh_xla_float32); the float32
        result joins the float64 computation around it exactly.
    dense_matmul_in_float32: every Dense (and TimeDistributed(Dense)) computes x @ kernel with float32
        operands and a float32 result (reference.dense.matmul_float32_operands); the bias and the
        activation stay in float64.
    lstm_matmuls_in_float32: every LSTM computes its two matmuls per step (x_t @ kernel, h @ recurrent_kernel)
        that way and adds them in float32, then adds the bias in float64 (reference.lstm's matmuls_in_float32).
    go_backwards_sequence_in_input_order: an unmasked LSTM (not a Bidirectional's) with go_backwards
        and return_sequences returns its output sequence flipped back to input order, instead of the
        documented processing order (the last input step first).
    """

    mask_ignored: bool = False
    initial_output: str = "zeros"
    zero_output_for_mask_ignored: bool = False
    zero_output_mask_order: str = "processing"
    inputs_rounded_to_float32: bool = False
    stateful_state_not_carried: bool = False
    go_backwards_sequence_in_input_order: bool = False
    sparsemax_cumulative_threshold: bool = False
    hard_sigmoid_keras2: bool = False
    tanh_in_float32: bool = False
    dense_matmul_in_float32: bool = False
    lstm_matmuls_in_float32: bool = False

    def __post_init__(self) -> None:
        if self.initial_output not in ("zeros", "h0"):
            raise ValueError(f"initial_output is {self.initial_output!r}; accepted: zeros, h0")
        if self.zero_output_mask_order not in ("processing", "input"):
            raise ValueError(f"zero_output_mask_order is {self.zero_output_mask_order!r}; accepted: processing, input")
        for f in fields(self):
            if f.type == "bool" and not isinstance(getattr(self, f.name), bool):
                raise ValueError(f"{f.name} is {getattr(self, f.name)!r}; accepted: true, false")

    def changes(self) -> dict[str, Any]:
        """The fields that differ from Keras's documented behaviour."""
        default = Semantics()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)}

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> "Semantics":
        known = {f.name for f in fields(cls)}
        unknown = set(table) - known
        if unknown:
            raise ValueError(f"unknown semantics {sorted(unknown)}; accepted: {', '.join(sorted(known))}")
        return replace(cls(), **table)

    def merged(self, other: "Semantics") -> "Semantics":
        """These semantics with every field ``other`` changes from the default changed too."""
        return replace(self, **other.changes())


DOCUMENTED = Semantics()

# The alternatives that say an op of a float64 computation runs in float32: a claim naming one says the backend
# does not compute the case in float64 end to end.
FLOAT32_OP_FIELDS = ("tanh_in_float32", "dense_matmul_in_float32", "lstm_matmuls_in_float32")
