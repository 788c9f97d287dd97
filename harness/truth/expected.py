"""Expected outputs of a case, computed by the float64 NumPy reference. No Keras here.

Each layer type maps to the reference functions the way Keras composes its layers: a Bidirectional
runs a forward LSTM and a go_backwards copy and flips the backward sequence back before merging;
branches run an LSTM (one instance, or two) on the same input and concatenate; Dense and
TimeDistributed(Dense) act on the last axis. Masks propagate as in Keras: a layer that returns
sequences passes its input mask on, one that does not drops it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

import reference
from harness.case.schema import Case, LayerSpec
from harness.case.semantics import DOCUMENTED, Semantics


_MERGE = {
    "concat": lambda forward, backward: np.concatenate([forward, backward], axis=-1),
    "sum": lambda forward, backward: forward + backward,
    "ave": lambda forward, backward: (forward + backward) / 2.0,
    "mul": lambda forward, backward: forward * backward,
}


def _activation(name: str, semantics: Semantics) -> str:
    """The activation the reference computes for ``name`` under ``semantics``."""
    if name == "sparsemax" and semantics.sparsemax_cumulative_threshold:
        return "sparsemax_cumulative_threshold"
    if name == "hard_sigmoid" and semantics.hard_sigmoid_keras2:
        return "hard_sigmoid_keras2"
    if name == "tanh" and semantics.tanh_in_float32:
        return "tanh_xla_float32"
    return name


def _lstm(options: dict, x: np.ndarray, weights: tuple, mask, initial_state, go_backwards: bool,
          semantics: Semantics = DOCUMENTED) -> list[np.ndarray]:
    result = reference.lstm(
        x, weights[0], weights[1], weights[2] if options["use_bias"] else None,
        activation=_activation(options["activation"], semantics),
        recurrent_activation=_activation(options["recurrent_activation"], semantics),
        mask=mask, initial_state=initial_state, go_backwards=go_backwards,
        return_sequences=options["return_sequences"], return_state=True,
        zero_output_for_mask=options["zero_output_for_mask"] and not semantics.zero_output_for_mask_ignored,
        initial_output=semantics.initial_output, zero_output_mask_order=semantics.zero_output_mask_order,
        matmuls_in_float32=semantics.lstm_matmuls_in_float32,
    )
    return result


def _in_input_order_if_claimed(options: dict, output: np.ndarray, mask, semantics: Semantics) -> np.ndarray:
    """The alternative go_backwards_sequence_in_input_order: an unmasked go_backwards LSTM's sequence flipped back."""
    if semantics.go_backwards_sequence_in_input_order and mask is None and options["go_backwards"] and options["return_sequences"]:
        return output[:, ::-1, :]
    return output


def _apply_layer(layer: LayerSpec, x: np.ndarray, weights: tuple, mask, initial_state, semantics: Semantics) -> list[np.ndarray]:
    options = layer.options
    if layer.type == "lstm":
        output, h, c = _lstm(options, x, weights[0], mask, initial_state, options["go_backwards"], semantics)
        output = _in_input_order_if_claimed(options, output, mask, semantics)
        return [output, h, c] if options["return_state"] else [output]
    if layer.type == "bidirectional":
        # Keras's Bidirectional sets zero_output_for_mask = return_sequences on both directions
        # (documented in keras/src/layers/rnn/bidirectional.py).
        options = dict(options, zero_output_for_mask=options["return_sequences"])
        forward_weights, backward_weights = weights[0][:len(weights[0]) // 2], weights[0][len(weights[0]) // 2:]
        forward_state = initial_state[:2] if initial_state is not None else None
        backward_state = initial_state[2:] if initial_state is not None else None
        forward, h_f, c_f = _lstm(options, x, forward_weights, mask, forward_state, False, semantics)
        backward, h_b, c_b = _lstm(options, x, backward_weights, mask, backward_state, True, semantics)
        if options["return_sequences"]:
            backward = backward[:, ::-1, :]
        merged = [forward, backward] if options["merge_mode"] == "none" else [_MERGE[options["merge_mode"]](forward, backward)]
        return merged + ([h_f, c_f, h_b, c_b] if options["return_state"] else [])
    if layer.type == "branches":
        inner = layer.inner.options
        first = _in_input_order_if_claimed(inner, _lstm(inner, x, weights[0], mask, None, inner["go_backwards"], semantics)[0], mask, semantics)
        second = _in_input_order_if_claimed(inner, _lstm(inner, x, weights[-1], mask, None, inner["go_backwards"], semantics)[0], mask, semantics)
        return [np.concatenate([first, second], axis=-1)]
    if layer.type in ("dense", "time_distributed_dense"):
        kernel, *bias = weights[0]
        return [reference.dense(x, kernel, bias[0] if bias else None, activation=_activation(options["activation"], semantics),
                                matmul_in_float32=semantics.dense_matmul_in_float32)]
    raise ValueError(f"no reference for layer type {layer.type!r}")


def _stack(case: Case, x: np.ndarray, layer_weights, mask, initial_state, semantics: Semantics) -> dict[str, np.ndarray]:
    outputs: list[np.ndarray] = [x]
    for layer, weights in zip(case.layers, layer_weights):
        weights64 = tuple(tuple(w.astype(np.float64) for w in group) for group in weights)
        outputs = _apply_layer(layer, outputs[0], weights64, mask, initial_state, semantics)
        initial_state = None
        if not layer.returns_sequences:
            mask = None
    return dict(zip(case.output_names, outputs))


def expected_outputs(case: Case, data, semantics: Semantics = DOCUMENTED) -> dict[str, np.ndarray]:
    """The float64 reference outputs of the case, keyed by output name (output, h, c, ...), under
    ``semantics`` (Keras's documented behaviour unless an alternative is asked for).

    For a stateful case the result holds, per batch k of the sequence of batches, ``output@k``; and
    ``h@layer`` / ``c@layer`` states of every LSTM after the last batch: the reference runs each row
    over the batches joined along time, which is what carrying the state between batches means.
    """
    x = data.x.astype(np.float64)
    if semantics.inputs_rounded_to_float32:
        x = x.astype(np.float32).astype(np.float64)
    initial_state = None if data.initial_state is None else [s.astype(np.float64) for s in data.initial_state]
    mask = None if semantics.mask_ignored else data.mask
    if not case.stateful:
        return _stack(case, x, data.layer_weights, mask, initial_state, semantics)
    if semantics.stateful_state_not_carried:
        return _stateful_not_carried(case, x, data.layer_weights)
    return _stateful_expected(case, x, data.layer_weights)


def _stateful_not_carried(case: Case, x: np.ndarray, layer_weights) -> dict[str, np.ndarray]:
    """Every batch from zero states; the states read afterwards are the zeros reset_states left."""
    single = replace(case, stateful_batches=1)
    result: dict[str, np.ndarray] = {}
    for k in range(case.stateful_batches):
        one = _stateful_expected(single, x[k * case.batch:(k + 1) * case.batch], layer_weights)
        result[f"output@{k}"] = one["output@0"]
        for name, value in one.items():
            if name[0] in ("h", "c"):
                result[name] = np.zeros_like(value)
    result["after_reset@0"] = result["output@0"]
    return result


def _stateful_expected(case: Case, x: np.ndarray, layer_weights) -> dict[str, np.ndarray]:
    batches = case.stateful_batches
    rows = case.batch
    joined = np.concatenate([x[k * rows:(k + 1) * rows] for k in range(batches)], axis=1)  # (batch, N*time, f)
    result: dict[str, np.ndarray] = {}
    sequence = joined
    per_step: np.ndarray | None = None
    for index, (layer, weights) in enumerate(zip(case.layers, layer_weights)):
        weights64 = tuple(tuple(w.astype(np.float64) for w in group) for group in weights)
        if layer.type == "lstm":
            options = dict(layer.options, return_sequences=True)
            sequence, h, c = _lstm(options, sequence, weights64[0], None, None, options["go_backwards"])
            result[f"h@{index}"], result[f"c@{index}"] = h, c
            if not layer.options["return_sequences"]:
                # Only the last step of each batch is this layer's output for that batch.
                per_step = sequence[:, case.time - 1 :: case.time, :]
                sequence = None
        else:
            kernel, *bias = weights64[0]
            source = per_step if sequence is None else sequence
            transformed = reference.dense(source, kernel, bias[0] if bias else None, activation=layer.options["activation"])
            if sequence is None:
                per_step = transformed
            else:
                sequence = transformed
    for k in range(batches):
        if sequence is not None:
            result[f"output@{k}"] = sequence[:, k * case.time:(k + 1) * case.time, :]
        else:
            result[f"output@{k}"] = per_step[:, k, :]
    # After reset_states the first batch must give the first batch's output again.
    result["after_reset@0"] = result["output@0"]
    return result


def float32_matmul_scales(case: Case, data, semantics: Semantics) -> dict[str, np.ndarray]:
    """Per output, the float32 spacing (one float32 ulp) of sum_i |x_i| |w_i| for each element of the last
    float32 matmul that produced it under ``semantics``: a Dense head under dense_matmul_in_float32 (its input
    computed under ``semantics``, its operands rounded to float32). A float32 matmul summed in another order
    than reference.dense.matmul_float32_operands (which rounds once) differs from it by a few of these; the
    known divergences that model such an op state how many (a semantics claim's ulps). Zeros for an output
    no float32 matmul produced last, and for stateful cases."""
    outputs = expected_outputs(case, data, semantics)
    scales = {name: np.zeros_like(value) for name, value in outputs.items()}
    last = case.layers[-1]
    if case.stateful or not semantics.dense_matmul_in_float32 or last.type not in ("dense", "time_distributed_dense"):
        return scales
    x = data.x.astype(np.float64)
    if semantics.inputs_rounded_to_float32:
        x = x.astype(np.float32).astype(np.float64)
    initial_state = None if data.initial_state is None else [s.astype(np.float64) for s in data.initial_state]
    mask = None if semantics.mask_ignored else data.mask
    dense_input = x
    for layer, weights in zip(case.layers[:-1], data.layer_weights[:-1]):
        weights64 = tuple(tuple(w.astype(np.float64) for w in group) for group in weights)
        dense_input = _apply_layer(layer, dense_input, weights64, mask, initial_state, semantics)[0]
        initial_state = None
        if not layer.returns_sequences:
            mask = None
    kernel = data.layer_weights[-1][0][0]
    absolute = np.abs(dense_input.astype(np.float32).astype(np.float64)) @ np.abs(kernel.astype(np.float32).astype(np.float64))
    scales[case.output_names[0]] = np.spacing(absolute.astype(np.float32)).astype(np.float64)
    return scales
