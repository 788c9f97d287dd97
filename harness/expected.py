"""Expected outputs of a case, computed by the float64 NumPy reference. No Keras here."""

from __future__ import annotations

import numpy as np

import reference
from harness.cases import Case, LayerSpec
from harness.weights import CaseData


def _apply_layer(
    layer: LayerSpec,
    x: np.ndarray,
    weights: tuple[np.ndarray, ...],
    mask: np.ndarray | None,
    initial_state: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """One layer: returns (its outputs, the mask it passes on), mirroring Keras's mask propagation."""
    options = layer.options
    if layer.type == "lstm":
        bias = weights[2] if options["use_bias"] else None
        result = reference.lstm(
            x,
            weights[0],
            weights[1],
            bias,
            activation=options["activation"],
            recurrent_activation=options["recurrent_activation"],
            mask=mask,
            initial_state=initial_state,
            go_backwards=options["go_backwards"],
            return_sequences=options["return_sequences"],
            return_state=options["return_state"],
            zero_output_for_mask=options["zero_output_for_mask"],
        )
        outputs = result if isinstance(result, list) else [result]
        # Keras passes the input mask on unchanged when the layer returns sequences, else drops it.
        return outputs, mask if options["return_sequences"] else None
    if layer.type == "dense":
        bias = weights[1] if options["use_bias"] else None
        return [reference.dense(x, weights[0], bias, activation=options["activation"])], mask
    raise ValueError(f"no reference for layer type {layer.type!r}")


def expected_outputs(case: Case, data: CaseData) -> dict[str, np.ndarray]:
    """The float64 reference outputs of the case, keyed by output name (output, h, c)."""
    x = data.x.astype(np.float64)
    mask = data.mask
    initial_state = data.initial_state
    outputs: list[np.ndarray] = []
    for layer, weights in zip(case.layers, data.layer_weights):
        weights64 = tuple(w.astype(np.float64) for w in weights)
        outputs, mask = _apply_layer(layer, x, weights64, mask, initial_state)
        initial_state = None
        x = outputs[0]
    return dict(zip(case.output_names, outputs))
