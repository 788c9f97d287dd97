"""Expected gradients of a case, computed by the float64 NumPy reference (reference/*_backward.py). No Keras.

The scalar loss is the sum, over the case's outputs (output, h, c, ...), of Keras's mean squared error
against seeded targets (``gradient_targets``): ``L = sum_k mean((y_k - t_k)^2)``, which is
``keras.losses.MeanSquaredError()`` per output with its default reduction (mean over the last axis, then
over everything else). Its gradient with respect to each output is ``2 (y_k - t_k) / y_k.size``
(``reference.losses``), and it is carried back through the stack the way ``harness.truth.expected``
composes the forward pass, by each layer kind's backward function (harness.truth.kinds, harness.truth.layers):
a Bidirectional runs a forward LSTM and a go_backwards copy (its sequence flipped back before merging);
branches run one LSTM instance twice (shared: the two gradients add up in the one set of weights) or two;
Dense and TimeDistributed(Dense) act on the last axis; masks propagate while a layer returns sequences; a
Masking layer passes the gradient of the steps it keeps (it multiplies the input by the mask).

Gradients are keyed ``grad/<layer type>_<index>/<weight>`` (``gradient_keys``): ``kernel``,
``recurrent_kernel`` and ``bias`` for an LSTM or Dense; ``forward_*`` and ``backward_*`` for a
Bidirectional; ``a_*`` (and ``b_*`` for separate branches) for branches; plus ``grad/input/x`` and, with
an initial state, ``grad/input/state_<k>``. Stateful cases are not supported (their gradient crosses batches).

Besides the documented semantics (``harness.case.semantics``), the backward pass is modelled under the
alternatives whose gradient follows from the documented one (``GRADIENT_SEMANTICS``), so that a known
forward divergence of kind semantics explains a gradient only when the gradient is that alternative's:

- ``initial_output = "h0"``: masked steps before a row's first valid step output h0 (not zeros); their
  output gradients flow into dL/dh0, nothing else changes (those outputs hold no weight);
- ``go_backwards_sequence_in_input_order``: the (unmasked, go_backwards, return_sequences) output sequence
  is flipped back to input order, so its gradient is flipped back before the documented backward pass.

Any other alternative raises GradientNotSupported ("no backward pass for semantics ...").
"""

from __future__ import annotations

import zlib

import numpy as np

from reference.losses import mean_squared_error, mean_squared_error_gradient
from harness.case.schema import Case, LayerSpec
from harness.case.semantics import DOCUMENTED, Semantics
from harness.truth.expected import _apply_layer
from harness.truth.kinds import truth_kind
from harness.truth.layers import gradient_into_initial_output  # noqa: F401  (public here since before the kind tables)

TARGET_SCALE = 0.5
# The alternative semantics whose backward pass this module models (see the module docstring).
GRADIENT_SEMANTICS = ("initial_output", "go_backwards_sequence_in_input_order")


class GradientNotSupported(ValueError):
    """The case has no reference gradient (stateful, dropout in training, ...)."""


def gradient_keys(case: Case) -> list[list[list[str]]]:
    """The key of every weight array, in the nesting of ``CaseData.layer_weights``: [layer][group][array]
    (the names of harness.case.kinds' weight arrays)."""
    keys = []
    fan_in = case.features
    for index, layer in enumerate(case.layers):
        stem = f"grad/{layer.type}_{index}/"
        entry = truth_kind(layer)
        if entry is None or entry.backward is None:
            raise GradientNotSupported(f"no reference gradient for layer type {layer.type!r}")
        groups = [[array.name for array in group] for group in layer.kind.weight_groups(layer, fan_in)]
        keys.append([[stem + name for name in group] for group in groups])
        fan_in = layer.output_width
    return keys


def input_keys(case: Case) -> list[str]:
    """The keys of the gradients with respect to the model's float inputs: x, then the initial states."""
    states = [f"grad/input/state_{k}" for k in range(case.initial_state_count)] if case.initial_state != "none" else []
    return ["grad/input/x"] + states


def check_supported(case: Case) -> None:
    """Raise GradientNotSupported for a case without a reference gradient. (Dropout is no obstacle: gradients are
    taken with training off, where dropout does nothing.)"""
    if case.stateful:
        raise GradientNotSupported(f"{case.name}: stateful cases have no reference gradient (the state crosses batches)")
    gradient_keys(case)


def check_semantics(semantics: Semantics) -> None:
    """Raise GradientNotSupported naming the first alternative of ``semantics`` without a modelled backward pass."""
    for name, value in semantics.changes().items():
        if name not in GRADIENT_SEMANTICS:
            raise GradientNotSupported(f"no backward pass for semantics {name}={value!r} "
                                       f"(modelled: {', '.join(GRADIENT_SEMANTICS)})")


def gradient_targets(case: Case, output_shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Seeded targets, one per output, from a generator of its own (the case's data generator is untouched)."""
    rng = np.random.default_rng([seed, zlib.crc32(case.name.encode("utf-8")), 0x6752])
    return {name: rng.normal(0.0, TARGET_SCALE, size=output_shapes[name]) for name in case.output_names}


def loss_of(outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> float:
    """sum over outputs of Keras's MSE (sum_over_batch_size reduction)."""
    return float(sum(mean_squared_error(targets[name], outputs[name]) for name in targets))


def _backward_layer(layer: LayerSpec, x: np.ndarray, weights: tuple, mask, initial_state, grads: list[np.ndarray | None],
                    outputs: list[np.ndarray], semantics: Semantics = DOCUMENTED,
                    ) -> tuple[np.ndarray, list[list[np.ndarray]], list[np.ndarray] | None]:
    """(dL/dx, dL/d weights as [group][array], dL/d initial state or None) for one layer, given dL/d outputs."""
    grads = [np.zeros_like(out) if g is None else g for g, out in zip(grads, outputs)]
    entry = truth_kind(layer)
    if entry is None or entry.backward is None:
        raise GradientNotSupported(f"no reference gradient for layer type {layer.type!r}")
    return entry.backward(layer, x, weights, mask, initial_state, grads, outputs, semantics)


def expected_gradients(case: Case, data, targets: dict[str, np.ndarray] | None = None,
                       seed: int | None = None, semantics: Semantics = DOCUMENTED,
                       ) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(loss, gradients by key, forward outputs, targets) of the case, float64, under ``semantics`` (Keras's
    documented behaviour unless an alternative of GRADIENT_SEMANTICS is asked for).

    ``targets`` defaults to ``gradient_targets(case, ..., seed)``."""
    check_supported(case)
    check_semantics(semantics)
    x = data.x.astype(np.float64)
    initial_state = None if data.initial_state is None else [s.astype(np.float64) for s in data.initial_state]
    mask = data.mask
    weights64 = [tuple(tuple(w.astype(np.float64) for w in group) for group in weights) for weights in data.layer_weights]

    # Forward, keeping each layer's input, mask and initial state.
    inputs, masks, states, layer_outputs = [], [], [], []
    current, current_mask, current_state = x, mask, initial_state
    for layer, weights in zip(case.layers, weights64):
        inputs.append(current)
        masks.append(current_mask)
        states.append(current_state)
        outs = _apply_layer(layer, current, weights, current_mask, current_state, semantics)
        layer_outputs.append(outs)
        current, current_state = outs[0], None
        if not layer.returns_sequences:
            current_mask = None
    outputs = dict(zip(case.output_names, layer_outputs[-1]))
    if targets is None:
        if seed is None:
            raise ValueError("expected_gradients needs targets or a seed")
        targets = gradient_targets(case, {name: value.shape for name, value in outputs.items()}, seed)
    loss = loss_of(outputs, targets)

    # Backward, from the last layer's outputs.
    keys = gradient_keys(case)
    result: dict[str, np.ndarray] = {}
    grads: list[np.ndarray | None] = [mean_squared_error_gradient(targets[name], outputs[name]) for name in case.output_names]
    for index in range(len(case.layers) - 1, -1, -1):
        layer = case.layers[index]
        d_x, weight_grads, d_state = _backward_layer(layer, inputs[index], weights64[index], masks[index], states[index],
                                                     grads, layer_outputs[index], semantics)
        for group_keys, group in zip(keys[index], weight_grads):
            for key, value in zip(group_keys, group):
                result[key] = value
        if index == 0 and d_state is not None:
            for k, value in enumerate(d_state):
                result[f"grad/input/state_{k}"] = value
        grads = [d_x] + [None] * (len(layer_outputs[index - 1]) - 1 if index > 0 else 0)
    d_x = grads[0]
    if mask is not None and case.mask_source == "masking_layer":
        d_x = d_x * mask[:, :, None]  # Masking multiplies its input by the mask
    result["grad/input/x"] = d_x
    return loss, result, outputs, targets


def rounded_gradient_targets(case: Case, data, seed: int) -> dict[str, np.ndarray]:
    """The seeded targets rounded to the case's compute dtype (what the measure step gives the backend and the
    reference: harness.execute.gradients.rounded_targets)."""
    from harness.case.weights import numpy_dtype

    _, _, _, targets = expected_gradients(case, data, seed=seed)
    dtype = numpy_dtype(case.compute_dtype)
    return {name: value.astype(dtype).astype(np.float64) for name, value in targets.items()}


def alternative_gradients(case: Case, data, seed: int, semantics: Semantics, loss_key: str = "loss") -> dict[str, np.ndarray]:
    """The gradients (and the loss, under ``loss_key``) a backend computing ``semantics`` gives, with the measure step's
    rounded targets; GradientNotSupported when the backward pass under ``semantics`` is not modelled."""
    check_semantics(semantics)
    targets = rounded_gradient_targets(case, data, seed)
    loss, grads, _, _ = expected_gradients(case, data, targets=targets, semantics=semantics)
    return dict(grads, **{loss_key: np.asarray(loss)})
