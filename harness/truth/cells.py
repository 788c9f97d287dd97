"""The float64 reference of each recurrent cell kind: forward and backward over a whole sequence, with the
options of a case layer, under the semantics the reference computes. No Keras here.

A cell kind (harness.case.kinds: role "cell") maps to its reference functions (reference/lstm.py,
reference/lstm_backward.py and reference/lstm_dropout.py, on the shared time loop of reference/recurrent.py). The wrappers
(Bidirectional, branches; harness.truth.layers) run copies of a cell through this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import reference
from harness.case.semantics import DOCUMENTED, Semantics
from reference.lstm_dropout import lstm_with_dropout


def activation_under(name: str, semantics: Semantics) -> str:
    """The activation the reference computes for ``name`` under ``semantics``."""
    if name == "sparsemax" and semantics.sparsemax_cumulative_threshold:
        return "sparsemax_cumulative_threshold"
    if name == "hard_sigmoid" and semantics.hard_sigmoid_keras2:
        return "hard_sigmoid_keras2"
    if name == "tanh" and semantics.tanh_in_float32:
        return "tanh_xla_float32"
    return name


# forward(options, x, weights, mask, initial_state, go_backwards, semantics) -> [output, *final states]
CellForward = Callable[[dict, np.ndarray, tuple, Any, Any, bool, Semantics], list[np.ndarray]]
# backward(options, x, weights, mask, initial_state, go_backwards, grad_outputs, grad_states, zero_output_for_mask)
#   -> {"x", "kernel", "recurrent_kernel", "bias", and "<state>0" per state}
CellBackward = Callable[[dict, np.ndarray, tuple, Any, Any, bool, np.ndarray, list, bool], dict[str, Any]]


def _bias(options: dict, weights: tuple) -> np.ndarray | None:
    return weights[2] if options["use_bias"] else None


def _loop_forward(options: dict, mask, initial_state, go_backwards: bool, semantics: Semantics) -> dict[str, Any]:
    """What the shared time loop (reference/recurrent.py) takes from a case layer, the same for every cell kind."""
    return dict(mask=mask, initial_state=initial_state, go_backwards=go_backwards,
                return_sequences=options["return_sequences"], return_state=True,
                zero_output_for_mask=options["zero_output_for_mask"] and not semantics.zero_output_for_mask_ignored,
                initial_output=semantics.initial_output, zero_output_mask_order=semantics.zero_output_mask_order)


def _loop_backward(options: dict, mask, initial_state, go_backwards: bool, grad_outputs: np.ndarray,
                   zero_output_for_mask: bool) -> dict[str, Any]:
    return dict(mask=mask, initial_state=initial_state, go_backwards=go_backwards,
                return_sequences=options["return_sequences"], zero_output_for_mask=zero_output_for_mask,
                grad_outputs=grad_outputs)


def _lstm_forward(options: dict, x: np.ndarray, weights: tuple, mask, initial_state, go_backwards: bool,
                  semantics: Semantics = DOCUMENTED) -> list[np.ndarray]:
    return reference.lstm(
        x, weights[0], weights[1], _bias(options, weights),
        activation=activation_under(options["activation"], semantics),
        recurrent_activation=activation_under(options["recurrent_activation"], semantics),
        matmuls_in_float32=semantics.lstm_matmuls_in_float32,
        **_loop_forward(options, mask, initial_state, go_backwards, semantics),
    )


def _lstm_backward(options: dict, x: np.ndarray, weights: tuple, mask, initial_state, go_backwards: bool,
                   grad_outputs: np.ndarray, grad_states: list, zero_output_for_mask: bool) -> dict[str, Any]:
    return reference.lstm_backward(
        x, weights[0], weights[1], _bias(options, weights),
        activation=options["activation"], recurrent_activation=options["recurrent_activation"],
        grad_h=grad_states[0], grad_c=grad_states[1],
        **_loop_backward(options, mask, initial_state, go_backwards, grad_outputs, zero_output_for_mask),
    )


def _gru_forward(options: dict, x: np.ndarray, weights: tuple, mask, initial_state, go_backwards: bool,
                 semantics: Semantics = DOCUMENTED) -> list[np.ndarray]:
    return reference.gru(
        x, weights[0], weights[1], _bias(options, weights),
        activation=activation_under(options["activation"], semantics),
        recurrent_activation=activation_under(options["recurrent_activation"], semantics),
        reset_after=options["reset_after"],
        **_loop_forward(options, mask, initial_state, go_backwards, semantics),
    )


def _gru_backward(options: dict, x: np.ndarray, weights: tuple, mask, initial_state, go_backwards: bool,
                  grad_outputs: np.ndarray, grad_states: list, zero_output_for_mask: bool) -> dict[str, Any]:
    return reference.gru_backward(
        x, weights[0], weights[1], _bias(options, weights),
        activation=options["activation"], recurrent_activation=options["recurrent_activation"],
        reset_after=options["reset_after"], grad_h=grad_states[0],
        **_loop_backward(options, mask, initial_state, go_backwards, grad_outputs, zero_output_for_mask),
    )


def _simple_rnn_forward(options: dict, x: np.ndarray, weights: tuple, mask, initial_state, go_backwards: bool,
                        semantics: Semantics = DOCUMENTED) -> list[np.ndarray]:
    return reference.simple_rnn(
        x, weights[0], weights[1], _bias(options, weights),
        activation=activation_under(options["activation"], semantics),
        **_loop_forward(options, mask, initial_state, go_backwards, semantics),
    )


def _simple_rnn_backward(options: dict, x: np.ndarray, weights: tuple, mask, initial_state, go_backwards: bool,
                         grad_outputs: np.ndarray, grad_states: list, zero_output_for_mask: bool) -> dict[str, Any]:
    return reference.simple_rnn_backward(
        x, weights[0], weights[1], _bias(options, weights),
        activation=options["activation"], grad_h=grad_states[0],
        **_loop_backward(options, mask, initial_state, go_backwards, grad_outputs, zero_output_for_mask),
    )


@dataclass(frozen=True)
class CellReference:
    """The reference of one cell kind: its forward and backward pass, and the gradient key of each initial state
    (in the order of the kind's state names)."""

    forward: CellForward
    backward: CellBackward | None
    state_gradient_keys: tuple[str, ...]
    # the training-mode forward with given dropout masks (reference/*_dropout.py), None where there is none
    with_dropout: Callable[..., np.ndarray] | None = None

    def weight_gradients(self, result: dict[str, Any], options: dict) -> list[np.ndarray]:
        """The weight gradients of a backward ``result`` in get_weights order."""
        return [result["kernel"], result["recurrent_kernel"]] + ([result["bias"]] if options["use_bias"] else [])


CELLS: dict[str, CellReference] = {
    "lstm": CellReference(_lstm_forward, _lstm_backward, ("h0", "c0"), lstm_with_dropout),
    # (their dropout references, reference/gru_dropout.py and simple_rnn_dropout.py, are not wired to the
    # training-mode study, whose masks are the LSTM's four per gate)
    "gru": CellReference(_gru_forward, _gru_backward, ("h0",)),
    "simple_rnn": CellReference(_simple_rnn_forward, _simple_rnn_backward, ("h0",)),
}


def cell_reference(name: str) -> CellReference:
    """The reference of cell kind ``name``; ValueError when the reference has none."""
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError(f"no reference for cell kind {name!r}; accepted: {', '.join(CELLS)}") from None
