"""Expected outputs of a case, computed by the float64 NumPy reference. No Keras here.

Each layer kind maps to its reference functions (harness.truth.kinds, harness.truth.layers) the way
Keras composes its layers. Masks propagate as in Keras: a layer that returns sequences passes its
input mask on, one that does not drops it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from harness.case.schema import Case, LayerSpec
from harness.case.semantics import DOCUMENTED, Semantics
from harness.truth.kinds import truth_kind


def _apply_layer(layer: LayerSpec, x: np.ndarray, weights: tuple, mask, initial_state, semantics: Semantics) -> list[np.ndarray]:
    """The layer's outputs from its kind's reference (harness.truth.kinds)."""
    entry = truth_kind(layer)
    if entry is None:
        raise ValueError(f"no reference for layer type {layer.type!r}")
    return entry.forward(layer, x, weights, mask, initial_state, semantics)


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
    ``<state>@layer`` states (``h@0``, ``c@0`` for an LSTM) of every recurrent layer after the last batch: the reference runs each row
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
            if not name.startswith(("output@", "after_reset@")):  # a state: <state name>@<layer>
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
        entry = truth_kind(layer)
        if entry is not None and entry.carry is not None:
            sequence, states = entry.carry(layer, sequence, weights64)
            for state, value in zip(layer.kind.state_names, states):
                result[f"{state}@{index}"] = value
            if not layer.returns_sequences:
                # Only the last step of each batch is this layer's output for that batch.
                per_step = sequence[:, case.time - 1 :: case.time, :]
                sequence = None
        else:
            source = per_step if sequence is None else sequence
            transformed = entry.pointwise(layer, source, weights64)
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
    last_kind = truth_kind(last)
    if case.stateful or not semantics.dense_matmul_in_float32 or last_kind is None or not last_kind.last_matmul_float32:
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
