"""Build one case as a Keras model in each model-building API, all with the same weights, and run it.

Imported only after harness.execute.backends.activate has chosen the backend and the Keras API: ``keras`` is
the Keras 3 package, or tf_keras in Keras-2 mode (harness.execute.keras_api, which holds the few shims).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.case.schema import Case, LayerSpec
from harness.case.weights import CaseData
from harness.execute import keras_api
from harness.execute.keras_api import keras
from harness.execute.kinds import execute_kind, stacked_cell, wrapper_kwargs


@dataclass
class Block:
    """One layer of the case (or, for stacked_cells, the stack of cells one RNN wraps): the Keras layers
    that own its weights, and how to call it (harness.execute.kinds)."""

    spec: LayerSpec
    owners: list[keras.layers.Layer]  # in the order of CaseData.layer_weights[i]
    layer: keras.layers.Layer | None  # the single layer a Sequential model can hold (None for branches)
    weight_layers: tuple[int, ...] = ()  # the indices of case.layers whose weights the owners hold

    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        kwargs: dict[str, Any] = {}
        if mask is not None:
            kwargs["mask"] = mask
        if initial_state is not None:
            kwargs["initial_state"] = initial_state
        return execute_kind(self.spec).call(self.owners, self.layer, x, kwargs)

    def lstm_layers(self) -> list[keras.layers.Layer]:
        """The recurrent layers that hold states (LSTM, or RNN over an LSTMCell: every keras.layers.RNN)."""
        return [owner for owner in self.owners if isinstance(owner, keras.layers.RNN)]

    def weight_pairs(self, data: CaseData) -> list[tuple[keras.layers.Layer, list[np.ndarray]]]:
        """(owner, arrays) for set_weights: one RNN over stacked cells takes every cell's arrays in order."""
        groups = [data.layer_weights[index] for index in self.weight_layers]
        if len(groups) == 1:
            return [(owner, list(arrays)) for owner, arrays in zip(self.owners, groups[0])]
        return [(self.owners[0], [array for group in groups for arrays in group for array in arrays])]


def _make_block(spec: LayerSpec, case: Case, index: int) -> Block:
    owners, layer = execute_kind(spec).build(spec, case, f"{spec.type}_{index}")
    return Block(spec, owners, layer, (index,))


def _stacked_cells_block(case: Case, indices: list[int]) -> Block:
    """The case's leading recurrent layers as one keras.layers.RNN(keras.layers.StackedRNNCells([...])): the top
    layer's wrapper options (return_sequences, unroll, ...) are the RNN's (the schema checked they agree)."""
    cells = [stacked_cell(case.layers[index], case, index) for index in indices]
    top = case.layers[indices[-1]]
    stacked = keras.layers.StackedRNNCells(cells, dtype=case.dtype, name="stacked_cells")
    layer = keras.layers.RNN(stacked, dtype=case.dtype, name="stacked_rnn", **wrapper_kwargs(top.options))
    return Block(top, [layer], layer, tuple(indices))


def _make_blocks(case: Case) -> list[Block]:
    if case.layer_form == "stacked_cells":
        stacked = [index for index, spec in enumerate(case.layers) if spec.kind.recurrent]
        rest = [_make_block(spec, case, index) for index, spec in enumerate(case.layers) if index not in stacked]
        return [_stacked_cells_block(case, stacked)] + rest
    return [_make_block(spec, case, index) for index, spec in enumerate(case.layers)]


def _input_dtype(case: Case) -> str:
    return case.variable_dtype


def _masking_layer(case: Case) -> keras.layers.Layer | None:
    # Masked steps are all-zero rows (see harness.case.weights), so Masking(0.0) recovers the mask exactly.
    if case.mask == "none" or case.mask_source != "masking_layer":
        return None
    return keras.layers.Masking(mask_value=0.0, dtype=case.dtype, name="masking")


def _x_input(case: Case) -> Any:
    batch_size = case.batch if case.stateful else None
    return keras.Input(shape=(case.time, case.features), batch_size=batch_size, dtype=_input_dtype(case), name="x")


def _apply_blocks(blocks: list[Block], x: Any, mask: Any, initial_state: Any) -> Any:
    outputs: Any = None
    for index, block in enumerate(blocks):
        outputs = block(x, mask=mask if index == 0 else None, initial_state=initial_state if index == 0 else None)
        x = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    return outputs


def build_sequential(case: Case) -> tuple[keras.Model, list[Block]]:
    blocks = _make_blocks(case)
    masking = _masking_layer(case)
    stack = [_x_input(case)] + ([masking] if masking is not None else []) + [block.layer for block in blocks]
    return keras.Sequential(stack, name=f"{case.name}_sequential"), blocks


def build_functional(case: Case) -> tuple[keras.Model, list[Block]]:
    blocks = _make_blocks(case)
    masking = _masking_layer(case)
    x_input = _x_input(case)
    inputs = [x_input]
    x = masking(x_input) if masking is not None else x_input
    mask = None
    if case.mask != "none" and case.mask_source == "argument":
        mask = keras.Input(shape=(case.time,), dtype="bool", name="mask")
        inputs.append(mask)
    initial_state = None
    if case.initial_state != "none":
        units = case.layers[0].units
        initial_state = [keras.Input(shape=(units,), dtype=_input_dtype(case), name=f"state_{i}") for i in range(case.initial_state_count)]
        inputs += initial_state
    outputs = _apply_blocks(blocks, x, mask, initial_state)
    model = keras.Model(inputs=inputs if len(inputs) > 1 else x_input, outputs=outputs, name=f"{case.name}_functional")
    return model, blocks


class _StackModel(keras.Model):
    """A subclassed model calling its blocks in order; extra inputs: [x, mask?, states...]."""

    def __init__(self, blocks: list[Block], masking: Any, takes_mask: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blocks = blocks
        self.owned = [owner for block in blocks for owner in block.owners]  # tracked for weights and saving
        self.masking = masking
        self.takes_mask = takes_mask

    def call(self, inputs: Any) -> Any:
        if isinstance(inputs, (list, tuple)):
            x, rest = inputs[0], list(inputs[1:])
        else:
            x, rest = inputs, []
        mask = rest.pop(0) if self.takes_mask else None
        initial_state = rest or None
        if self.masking is not None:
            x = self.masking(x)
        return _apply_blocks(self.blocks, x, mask, initial_state)


def build_subclassed(case: Case) -> tuple[keras.Model, list[Block]]:
    blocks = _make_blocks(case)
    takes_mask = case.mask != "none" and case.mask_source == "argument"
    model = _StackModel(blocks, _masking_layer(case), takes_mask, name=f"{case.name}_subclassed", dtype=case.dtype)
    return model, blocks


BUILDERS = {"sequential": build_sequential, "functional": build_functional, "subclassed": build_subclassed}


def _first_batch(case: Case, data: CaseData) -> Any:
    inputs = data.model_inputs(case)
    if case.stateful:
        inputs = [inputs[0][: case.batch]]
    return inputs if len(inputs) > 1 else inputs[0]


def build_model(api: str, case: Case, data: CaseData) -> tuple[keras.Model, list[Block]]:
    """Build ``case`` in ``api`` and load the case's weights into every layer with set_weights."""
    keras_api.check_expressible(case)  # a case Keras 2 cannot express is refused, with why
    model, blocks = BUILDERS[api](case)
    if not model.built or api == "subclassed":
        # A subclassed model creates its variables on the first call.
        model(_first_batch(case, data))
    for block in blocks:
        for owner, arrays in block.weight_pairs(data):
            owner.set_weights(arrays)
    if case.stateful:
        reset_states(blocks)
    if case.jit_compile != "auto" or case.entry_point in ("evaluate", "train_on_batch", "fit"):
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.0),  # states move, weights do not
            loss="mse",
            jit_compile=keras_api.jit_compile({"auto": "auto", "on": True, "off": False}[case.jit_compile]),
        )
    return model, blocks


def _to_numpy_list(result: Any) -> list[np.ndarray]:
    result = keras_api.map_structure(keras_api.convert_to_numpy, result)
    return list(result) if isinstance(result, (list, tuple)) else [result]


def run_model(model: keras.Model, blocks: list[Block], case: Case, data: CaseData) -> dict[str, np.ndarray]:
    """Run the model through the case's entry point; NumPy outputs keyed like expected_outputs."""
    if case.stateful:
        return _run_stateful(model, blocks, case, data)
    inputs = data.model_inputs(case)
    model_input = inputs if len(inputs) > 1 else inputs[0]
    if case.entry_point == "predict":
        result = model.predict(model_input, batch_size=case.predict_batch_size or case.batch, verbose=0)
    elif case.entry_point == "predict_on_batch":
        result = model.predict_on_batch(model_input)
    elif case.entry_point == "call":
        result = model(model_input, training=False)
    else:
        raise ValueError(f"unknown entry point {case.entry_point!r}")
    outputs = _to_numpy_list(result)
    if len(outputs) != len(case.output_names):
        raise ValueError(f"model returned {len(outputs)} outputs; expected {len(case.output_names)} ({case.output_names})")
    return dict(zip(case.output_names, outputs))


def reset_states(blocks: list[Block]) -> None:
    for block in blocks:
        for layer in block.lstm_layers():
            layer.reset_states()


def _run_stateful(model: keras.Model, blocks: list[Block], case: Case, data: CaseData) -> dict[str, np.ndarray]:
    """Feed the successive batches through the entry point, then read every recurrent layer's states (named by its
    kind's state names: h@i and c@i for an LSTM)."""
    rows, count = case.batch, case.stateful_batches
    chunks = [data.x[k * rows:(k + 1) * rows] for k in range(count)]
    outputs: dict[str, np.ndarray] = {}
    entry = case.entry_point
    if entry in ("call", "predict_on_batch"):
        for k, chunk in enumerate(chunks):
            result = model(chunk, training=False) if entry == "call" else model.predict_on_batch(chunk)
            outputs[f"output@{k}"] = _to_numpy_list(result)[0]
    elif entry == "predict":
        joined = model.predict(data.x, batch_size=rows, verbose=0)
        for k in range(count):
            outputs[f"output@{k}"] = np.asarray(joined[k * rows:(k + 1) * rows])
    else:
        probe = _to_numpy_list(model(chunks[0], training=False))[0]
        reset_states(blocks)
        targets = np.zeros((rows * count, *probe.shape[1:]), dtype="float32")
        if entry == "evaluate":
            model.evaluate(data.x, targets, batch_size=rows, verbose=0)
        elif entry == "fit":
            model.fit(data.x, targets, batch_size=rows, epochs=1, shuffle=False, verbose=0)
        elif entry == "train_on_batch":
            for k, chunk in enumerate(chunks):
                model.train_on_batch(chunk, targets[k * rows:(k + 1) * rows])
    lstm_index = {id(layer): i for i, block in enumerate(blocks) for layer in block.lstm_layers()}
    for block in blocks:
        for layer in block.lstm_layers():
            states = [keras_api.convert_to_numpy(state) for state in layer.states]
            for name, value in zip(block.spec.kind.state_names, states, strict=True):
                outputs[f"{name}@{lstm_index[id(layer)]}"] = value
    # reset_states must bring the model back to its first-batch behaviour.
    reset_states(blocks)
    outputs["after_reset@0"] = _to_numpy_list(model(chunks[0], training=False))[0]
    return outputs
