"""The float64 reference of each layer kind, composed the way Keras composes its layers. No Keras here.

A cell layer (an LSTM, a GRU, a SimpleRNN) runs its cell's reference (harness.truth.cells); a Bidirectional runs a
forward copy and a go_backwards copy of the cell kind it wraps and flips the backward sequence back before merging; branches run their
cell (one instance, or two) on the same input and concatenate; Dense and TimeDistributed(Dense) act on the
last axis. Every forward function takes (layer, x, weights, mask, initial_state, semantics) and returns the
layer's outputs in Keras's order; every backward function takes the same and (grads, outputs) and returns
(dL/dx, dL/d weights as [group][array], dL/d initial states or None). harness.truth.kinds maps the kinds to them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

import reference
from harness.case.schema import LayerSpec
from harness.case.semantics import DOCUMENTED, Semantics
from harness.truth.cells import CellReference, activation_under, cell_reference

_MERGE = {
    "concat": lambda forward, backward: np.concatenate([forward, backward], axis=-1),
    "sum": lambda forward, backward: forward + backward,
    "ave": lambda forward, backward: (forward + backward) / 2.0,
    "mul": lambda forward, backward: forward * backward,
}


def _cell(layer: LayerSpec) -> CellReference:
    return cell_reference(layer.kind.cell_kind(layer).name)


def in_input_order_if_claimed(options: dict, output: np.ndarray, mask, semantics: Semantics) -> np.ndarray:
    """The alternative go_backwards_sequence_in_input_order: an unmasked go_backwards cell's sequence flipped back."""
    if semantics.go_backwards_sequence_in_input_order and mask is None and options["go_backwards"] and options["return_sequences"]:
        return output[:, ::-1, :]
    return output


# --- forward -----------------------------------------------------------------------------------------


def cell_layer_forward(layer: LayerSpec, x: np.ndarray, weights: tuple, mask, initial_state,
                       semantics: Semantics) -> list[np.ndarray]:
    options = layer.options
    output, *states = _cell(layer).forward(options, x, weights[0], mask, initial_state, options["go_backwards"], semantics)
    output = in_input_order_if_claimed(options, output, mask, semantics)
    return [output, *states] if options["return_state"] else [output]


def _copy_slices(layer: LayerSpec, weights: tuple, initial_state) -> list[tuple[dict, tuple, list | None]]:
    """(effective options, weights, initial states) of each copy a flat wrapper (Bidirectional) runs."""
    copies = layer.kind.copy_options(layer)
    size = len(weights[0]) // len(copies)
    states = len(layer.kind.cell_kind(layer).state_names)
    return [(options, weights[0][index * size:(index + 1) * size],
             initial_state[index * states:(index + 1) * states] if initial_state is not None else None)
            for index, options in enumerate(copies)]


def bidirectional_forward(layer: LayerSpec, x: np.ndarray, weights: tuple, mask, initial_state,
                          semantics: Semantics) -> list[np.ndarray]:
    cell = _cell(layer)
    options = layer.options
    sequences, states = [], []
    for copy_options, copy_weights, copy_state in _copy_slices(layer, weights, initial_state):
        output, *final = cell.forward(copy_options, x, copy_weights, mask, copy_state, copy_options["go_backwards"], semantics)
        if copy_options["go_backwards"] and options["return_sequences"]:
            output = output[:, ::-1, :]
        sequences.append(output)
        states += final
    forward, backward = sequences
    merged = [forward, backward] if options["merge_mode"] == "none" else [_MERGE[options["merge_mode"]](forward, backward)]
    return merged + (states if options["return_state"] else [])


def branches_forward(layer: LayerSpec, x: np.ndarray, weights: tuple, mask, initial_state,
                     semantics: Semantics) -> list[np.ndarray]:
    cell = _cell(layer)
    inner = layer.inner.options
    outputs = [in_input_order_if_claimed(inner, cell.forward(inner, x, weights[index if index < len(weights) else -1], mask, None,
                                                             inner["go_backwards"], semantics)[0], mask, semantics)
               for index in range(len(layer.kind.copies))]
    return [np.concatenate(outputs, axis=-1)]


def dense_forward(layer: LayerSpec, x: np.ndarray, weights: tuple, mask, initial_state,
                  semantics: Semantics) -> list[np.ndarray]:
    kernel, *bias = weights[0]
    return [reference.dense(x, kernel, bias[0] if bias else None, activation=activation_under(layer.options["activation"], semantics),
                            matmul_in_float32=semantics.dense_matmul_in_float32)]


# --- a stateful stack: the sequence of batches joined along time --------------------------------------


def cell_layer_carry(layer: LayerSpec, sequence: np.ndarray, weights: tuple) -> tuple[np.ndarray, list[np.ndarray]]:
    """(the whole output sequence, the final states) of a cell layer over ``sequence`` from zero states."""
    options = dict(layer.options, return_sequences=True)
    output, *states = _cell(layer).forward(options, sequence, weights[0], None, None, options["go_backwards"], DOCUMENTED)
    return output, states


def dense_pointwise(layer: LayerSpec, x: np.ndarray, weights: tuple) -> np.ndarray:
    kernel, *bias = weights[0]
    return reference.dense(x, kernel, bias[0] if bias else None, activation=layer.options["activation"])


# --- backward ----------------------------------------------------------------------------------------


def gradient_into_initial_output(grad_outputs: np.ndarray, mask: np.ndarray, go_backwards: bool,
                                  return_sequences: bool) -> np.ndarray:
    """dL/d(the output "before the first step"), (batch, units): what the masked steps before a row's first valid
    step (in processing order) carry back to it. With return_sequences False only a row without a valid step
    outputs it. Under the documented semantics that output is the constant zeros; under initial_output="h0" it is h0."""
    time = mask.shape[1]
    order = list(range(time - 1, -1, -1)) if go_backwards else list(range(time))
    before_first_valid = np.cumsum(mask[:, order], axis=1) == 0  # (batch, time), processing order
    if return_sequences:
        return (grad_outputs * before_first_valid[:, :, None]).sum(axis=1)
    return np.where(before_first_valid[:, -1:], grad_outputs, 0.0)


def cell_call(cell: CellReference, options: dict, x, weights, mask, initial_state, go_backwards, grads,
              zero_output_for_mask=None, semantics: Semantics = DOCUMENTED, in_input_order_applies: bool = False):
    """The cell's backward pass with the options of a case layer; grads = [d output, d state...], under
    ``semantics`` (GRADIENT_SEMANTICS only). ``in_input_order_applies``: the layer is one whose sequence
    go_backwards_sequence_in_input_order flips (in_input_order_if_claimed)."""
    zero_output = options["zero_output_for_mask"] if zero_output_for_mask is None else zero_output_for_mask
    grad_outputs = in_input_order_if_claimed(options, grads[0], mask, semantics) if in_input_order_applies else grads[0]
    grad_states = [grads[1 + k] if len(grads) > 1 + k else None for k in range(len(cell.state_gradient_keys))]
    result = cell.backward(options, x, weights, mask, initial_state, go_backwards, grad_outputs, grad_states, zero_output)
    if semantics.initial_output == "h0" and mask is not None and not zero_output:
        first = cell.state_gradient_keys[0]
        result[first] = result[first] + gradient_into_initial_output(grad_outputs, mask, go_backwards, options["return_sequences"])
    return result


def _states_of(cell: CellReference, result: dict) -> list[np.ndarray]:
    return [result[key] for key in cell.state_gradient_keys]


def cell_layer_backward(layer: LayerSpec, x: np.ndarray, weights: tuple, mask, initial_state, grads: list[np.ndarray],
                        outputs: list[np.ndarray], semantics: Semantics):
    cell = _cell(layer)
    options = layer.options
    result = cell_call(cell, options, x, weights[0], mask, initial_state, options["go_backwards"], grads,
                       semantics=semantics, in_input_order_applies=True)
    state = _states_of(cell, result) if initial_state is not None else None
    return result["x"], [cell.weight_gradients(result, options)], state


def _bidirectional_halves(layer: LayerSpec, x, weights, mask, initial_state,
                          semantics: Semantics = DOCUMENTED) -> tuple[np.ndarray, np.ndarray]:
    """The forward and (flipped back) backward sequences a Bidirectional merges, from the reference."""
    plain = replace(layer, options=dict(layer.options, merge_mode="none", return_state=False))
    forward, backward = bidirectional_forward(plain, x, weights, mask, initial_state, semantics)[:2]
    return forward, backward


def bidirectional_backward(layer: LayerSpec, x: np.ndarray, weights: tuple, mask, initial_state, grads: list[np.ndarray],
                           outputs: list[np.ndarray], semantics: Semantics):
    cell = _cell(layer)
    options = layer.options
    merge = options["merge_mode"]
    main = 2 if merge == "none" else 1
    if merge == "none":
        d_forward, d_backward = grads[0], grads[1]
    else:
        forward_out, backward_out = _bidirectional_halves(layer, x, weights, mask, initial_state, semantics)
        g = grads[0]
        width = layer.units
        if merge == "concat":
            d_forward, d_backward = g[..., :width], g[..., width:]
        elif merge == "sum":
            d_forward, d_backward = g, g
        elif merge == "ave":
            d_forward, d_backward = g / 2.0, g / 2.0
        else:  # mul
            d_forward, d_backward = g * backward_out, g * forward_out
    if options["return_sequences"]:
        d_backward = d_backward[:, ::-1, :]
    states = grads[main:]
    count = len(cell.state_gradient_keys)
    results = []
    for index, (d_main, (copy_options, copy_weights, copy_state)) in enumerate(
            zip((d_forward, d_backward), _copy_slices(layer, weights, initial_state))):
        results.append(cell_call(cell, copy_options, x, copy_weights, mask, copy_state, copy_options["go_backwards"],
                                 [d_main] + states[index * count:(index + 1) * count], semantics=semantics))
    forward, backward = results
    state = _states_of(cell, forward) + _states_of(cell, backward) if initial_state is not None else None
    return (forward["x"] + backward["x"],
            [cell.weight_gradients(forward, options) + cell.weight_gradients(backward, options)], state)


def branches_backward(layer: LayerSpec, x: np.ndarray, weights: tuple, mask, initial_state, grads: list[np.ndarray],
                      outputs: list[np.ndarray], semantics: Semantics):
    cell = _cell(layer)
    inner = layer.inner.options
    width = layer.inner.units
    g = grads[0]
    first = cell_call(cell, inner, x, weights[0], mask, None, inner["go_backwards"], [g[..., :width]],
                      semantics=semantics, in_input_order_applies=True)
    second = cell_call(cell, inner, x, weights[-1], mask, None, inner["go_backwards"], [g[..., width:]],
                       semantics=semantics, in_input_order_applies=True)
    first_grads, second_grads = cell.weight_gradients(first, inner), cell.weight_gradients(second, inner)
    if layer.options["shared"]:
        # One instance called twice: the gradients of its two calls add up in its one set of weights.
        groups = [[a + b for a, b in zip(first_grads, second_grads)]]
    else:
        groups = [first_grads, second_grads]
    return first["x"] + second["x"], groups, None


def dense_backward(layer: LayerSpec, x: np.ndarray, weights: tuple, mask, initial_state, grads: list[np.ndarray],
                   outputs: list[np.ndarray], semantics: Semantics):
    kernel, *bias = weights[0]
    result = reference.dense_backward(x, kernel, bias[0] if bias else None, activation=layer.options["activation"],
                                      grad_outputs=grads[0])
    return result["x"], [[result["kernel"]] + ([result["bias"]] if bias else [])], None
