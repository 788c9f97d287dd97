"""Build one case as a Keras model in each model-building API, all with the same weights.

Imported only after harness.backends.activate has chosen the backend.
"""

from __future__ import annotations

from typing import Any

import keras

from harness.cases import Case, LayerSpec
from harness.weights import CaseData


def _make_layer(spec: LayerSpec, dtype: str, index: int) -> keras.layers.Layer:
    options = {key: value for key, value in spec.options.items()}
    name = f"{spec.type}_{index}"
    if spec.type == "lstm":
        return keras.layers.LSTM(dtype=dtype, name=name, **options)
    if spec.type == "dense":
        return keras.layers.Dense(dtype=dtype, name=name, **options)
    raise ValueError(f"no Keras layer for layer type {spec.type!r}")


def _make_layers(case: Case) -> list[keras.layers.Layer]:
    return [_make_layer(spec, case.dtype, index) for index, spec in enumerate(case.layers)]


def _masking_layer(case: Case) -> keras.layers.Layer | None:
    # Padded steps are all-zero rows (see harness.weights), so Masking(0.0) recovers the mask exactly.
    return keras.layers.Masking(mask_value=0.0, dtype=case.dtype, name="masking") if case.mask != "none" else None


def _state_inputs(case: Case) -> list[Any]:
    units = case.layers[0].units
    return [keras.Input(shape=(units,), dtype=case.dtype, name=name) for name in ("h0", "c0")]


def build_sequential(case: Case) -> tuple[keras.Model, list[keras.layers.Layer]]:
    layers = _make_layers(case)
    masking = _masking_layer(case)
    stack = [keras.Input(shape=(case.time, case.features), dtype=case.dtype)]
    stack += [masking] if masking is not None else []
    model = keras.Sequential(stack + layers, name=f"{case.name}_sequential")
    return model, layers


def build_functional(case: Case) -> tuple[keras.Model, list[keras.layers.Layer]]:
    layers = _make_layers(case)
    masking = _masking_layer(case)
    x_input = keras.Input(shape=(case.time, case.features), dtype=case.dtype, name="x")
    inputs = [x_input]
    x = masking(x_input) if masking is not None else x_input
    initial_state = None
    if case.initial_state != "none":
        initial_state = _state_inputs(case)
        inputs += initial_state
    outputs: Any = None
    for index, layer in enumerate(layers):
        outputs = layer(x, initial_state=initial_state) if index == 0 and initial_state else layer(x)
        x = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    model = keras.Model(inputs=inputs if len(inputs) > 1 else x_input, outputs=outputs, name=f"{case.name}_functional")
    return model, layers


class _StackModel(keras.Model):
    """A subclassed model that calls its layers in order; with an initial state it takes [x, h0, c0]."""

    def __init__(self, stack: list[keras.layers.Layer], masking: keras.layers.Layer | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stack = stack
        self.masking = masking

    def call(self, inputs: Any) -> Any:
        if isinstance(inputs, (list, tuple)):
            x, initial_state = inputs[0], list(inputs[1:])
        else:
            x, initial_state = inputs, None
        if self.masking is not None:
            x = self.masking(x)
        outputs: Any = None
        for index, layer in enumerate(self.stack):
            outputs = layer(x, initial_state=initial_state) if index == 0 and initial_state else layer(x)
            x = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        return outputs


def build_subclassed(case: Case) -> tuple[keras.Model, list[keras.layers.Layer]]:
    layers = _make_layers(case)
    model = _StackModel(layers, _masking_layer(case), name=f"{case.name}_subclassed", dtype=case.dtype)
    return model, layers


BUILDERS = {"sequential": build_sequential, "functional": build_functional, "subclassed": build_subclassed}


def build_model(api: str, case: Case, data: CaseData) -> keras.Model:
    """Build ``case`` in ``api`` and load the case's weights into every layer with set_weights."""
    model, layers = BUILDERS[api](case)
    if not model.built:
        # A subclassed model creates its variables on the first call.
        model(data.model_inputs() if len(data.model_inputs()) > 1 else data.x)
    for layer, weights in zip(layers, data.layer_weights):
        layer.set_weights(list(weights))
    return model


def run_model(model: keras.Model, case: Case, data: CaseData) -> dict[str, Any]:
    """Run the model through the case's entry point; NumPy outputs keyed by the case's output names."""
    inputs = data.model_inputs()
    model_input = inputs if len(inputs) > 1 else data.x
    if case.entry_point == "predict":
        result = model.predict(model_input, batch_size=case.batch, verbose=0)
    elif case.entry_point == "call":
        result = model(model_input, training=False)
    else:
        raise ValueError(f"unknown entry point {case.entry_point!r}")
    result = keras.tree.map_structure(keras.ops.convert_to_numpy, result)
    outputs = list(result) if isinstance(result, (list, tuple)) else [result]
    if len(outputs) != len(case.output_names):
        raise ValueError(f"model returned {len(outputs)} outputs; expected {len(case.output_names)} ({case.output_names})")
    return dict(zip(case.output_names, outputs))
