"""Expected gradients of a case, computed by the float64 NumPy reference (reference/*_backward.py). No Keras.

The scalar loss is the sum, over the case's outputs (output, h, c, ...), of Keras's mean squared error
against seeded targets (``gradient_targets``): ``L = sum_k mean((y_k - t_k)^2)``, which is
``keras.losses.MeanSquaredError()`` per output with its default reduction (mean over the last axis, then
over everything else). Its gradient with respect to each output is ``2 (y_k - t_k) / y_k.size``
(``reference.losses``), and it is carried back through the stack the way ``harness.truth.expected``
composes the forward pass: a Bidirectional runs a forward LSTM and a go_backwards copy (its sequence
flipped back before merging); branches run one LSTM instance twice (shared: the two gradients add up in
the one set of weights) or two; Dense and TimeDistributed(Dense) act on the last axis; masks propagate
while a layer returns sequences; a Masking layer passes the gradient of the steps it keeps (it multiplies
the input by the mask).

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

import reference
from reference.losses import mean_squared_error, mean_squared_error_gradient
from harness.case.schema import Case, LayerSpec
from harness.case.semantics import DOCUMENTED, Semantics
from harness.truth.expected import _apply_layer

_LSTM_NAMES = ("kernel", "recurrent_kernel", "bias")
_DENSE_NAMES = ("kernel", "bias")
TARGET_SCALE = 0.5
# The alternative semantics whose backward pass this module models (see the module docstring).
GRADIENT_SEMANTICS = ("initial_output", "go_backwards_sequence_in_input_order")


class GradientNotSupported(ValueError):
    """The case has no reference gradient (stateful, dropout in training, ...)."""


def _lstm_names(options: dict, prefix: str = "") -> list[str]:
    return [prefix + name for name in _LSTM_NAMES[: 3 if options["use_bias"] else 2]]


def gradient_keys(case: Case) -> list[list[list[str]]]:
    """The key of every weight array, in the nesting of ``CaseData.layer_weights``: [layer][group][array]."""
    keys = []
    for index, layer in enumerate(case.layers):
        stem = f"grad/{layer.type}_{index}/"
        if layer.type == "lstm":
            groups = [_lstm_names(layer.options)]
        elif layer.type == "bidirectional":
            groups = [_lstm_names(layer.options, "forward_") + _lstm_names(layer.options, "backward_")]
        elif layer.type == "branches":
            groups = [_lstm_names(layer.inner.options, "a_")]
            if not layer.options["shared"]:
                groups.append(_lstm_names(layer.inner.options, "b_"))
        elif layer.type in ("dense", "time_distributed_dense"):
            groups = [list(_DENSE_NAMES[: 2 if layer.options["use_bias"] else 1])]
        else:
            raise GradientNotSupported(f"no reference gradient for layer type {layer.type!r}")
        keys.append([[stem + name for name in group] for group in groups])
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


def _lstm_call(options: dict, x, weights, mask, initial_state, go_backwards, grads, zero_output_for_mask=None,
               semantics: Semantics = DOCUMENTED, in_input_order_applies: bool = False):
    """lstm_backward for one LSTM with the options of a case layer; grads = [d output, d h?, d c?], under
    ``semantics`` (GRADIENT_SEMANTICS only). ``in_input_order_applies``: the layer is one whose sequence
    go_backwards_sequence_in_input_order flips (harness.truth.expected._in_input_order_if_claimed)."""
    zero_output = options["zero_output_for_mask"] if zero_output_for_mask is None else zero_output_for_mask
    grad_outputs = grads[0]
    if (in_input_order_applies and semantics.go_backwards_sequence_in_input_order and mask is None
            and options["go_backwards"] and options["return_sequences"]):
        grad_outputs = grad_outputs[:, ::-1, :]
    result = reference.lstm_backward(
        x, weights[0], weights[1], weights[2] if options["use_bias"] else None,
        activation=options["activation"], recurrent_activation=options["recurrent_activation"],
        mask=mask, initial_state=initial_state, go_backwards=go_backwards,
        return_sequences=options["return_sequences"],
        zero_output_for_mask=zero_output,
        grad_outputs=grad_outputs, grad_h=grads[1] if len(grads) > 1 else None, grad_c=grads[2] if len(grads) > 2 else None,
    )
    if semantics.initial_output == "h0" and mask is not None and not zero_output:
        result["h0"] = result["h0"] + gradient_into_initial_output(grad_outputs, mask, go_backwards, options["return_sequences"])
    return result


def _lstm_weight_grads(result: dict, options: dict) -> list[np.ndarray]:
    return [result["kernel"], result["recurrent_kernel"]] + ([result["bias"]] if options["use_bias"] else [])


def _backward_layer(layer: LayerSpec, x: np.ndarray, weights: tuple, mask, initial_state, grads: list[np.ndarray | None],
                    outputs: list[np.ndarray], semantics: Semantics = DOCUMENTED,
                    ) -> tuple[np.ndarray, list[list[np.ndarray]], list[np.ndarray] | None]:
    """(dL/dx, dL/d weights as [group][array], dL/d initial state or None) for one layer, given dL/d outputs."""
    options = layer.options
    grads = [np.zeros_like(out) if g is None else g for g, out in zip(grads, outputs)]
    if layer.type == "lstm":
        result = _lstm_call(options, x, weights[0], mask, initial_state, options["go_backwards"], grads,
                            semantics=semantics, in_input_order_applies=True)
        state = [result["h0"], result["c0"]] if initial_state is not None else None
        return result["x"], [_lstm_weight_grads(result, options)], state
    if layer.type == "bidirectional":
        options = dict(options, zero_output_for_mask=options["return_sequences"])
        half = len(weights[0]) // 2
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
        forward_state = initial_state[:2] if initial_state is not None else None
        backward_state = initial_state[2:] if initial_state is not None else None
        forward = _lstm_call(options, x, weights[0][:half], mask, forward_state, False, [d_forward] + states[:2],
                             semantics=semantics)
        backward = _lstm_call(options, x, weights[0][half:], mask, backward_state, True, [d_backward] + states[2:],
                              semantics=semantics)
        state = [forward["h0"], forward["c0"], backward["h0"], backward["c0"]] if initial_state is not None else None
        return forward["x"] + backward["x"], [_lstm_weight_grads(forward, options) + _lstm_weight_grads(backward, options)], state
    if layer.type == "branches":
        inner = layer.inner.options
        width = layer.inner.units
        g = grads[0]
        first = _lstm_call(inner, x, weights[0], mask, None, inner["go_backwards"], [g[..., :width]],
                           semantics=semantics, in_input_order_applies=True)
        second = _lstm_call(inner, x, weights[-1], mask, None, inner["go_backwards"], [g[..., width:]],
                            semantics=semantics, in_input_order_applies=True)
        first_grads, second_grads = _lstm_weight_grads(first, inner), _lstm_weight_grads(second, inner)
        if layer.options["shared"]:
            # One instance called twice: the gradients of its two calls add up in its one set of weights.
            groups = [[a + b for a, b in zip(first_grads, second_grads)]]
        else:
            groups = [first_grads, second_grads]
        return first["x"] + second["x"], groups, None
    if layer.type in ("dense", "time_distributed_dense"):
        kernel, *bias = weights[0]
        result = reference.dense_backward(x, kernel, bias[0] if bias else None, activation=options["activation"],
                                          grad_outputs=grads[0])
        return result["x"], [[result["kernel"]] + ([result["bias"]] if bias else [])], None
    raise GradientNotSupported(f"no reference gradient for layer type {layer.type!r}")


def _bidirectional_halves(layer: LayerSpec, x, weights, mask, initial_state,
                          semantics: Semantics = DOCUMENTED) -> tuple[np.ndarray, np.ndarray]:
    """The forward and (flipped back) backward sequences a Bidirectional merges, from the reference."""
    plain = LayerSpec(layer.type, dict(layer.options, merge_mode="none", return_state=False), layer.inner)
    forward, backward = _apply_layer(plain, x, weights, mask, initial_state, semantics)[:2]
    return forward, backward


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
