"""The float64 reference of a layer of a user's saved model (``keras-parity check``): its Keras class and config ->
a layer of the case stage's kinds (harness.case.kinds), whose reference harness.truth.kinds gives. No Keras here:
the class name and the config come from the capture (harness.execute.capture).

One entry per Keras class the reference computes (``KERAS_CLASSES``); a class without an entry, or a config the
kind's option table does not accept (an activation the reference lacks, a LoRA or quantized Dense, a Bidirectional
with a backward layer of its own), has no reference, and ``layer_spec`` says why in one phrase.

The reference is fed the layer's weights as the model file holds them, rounded to the layer's compute dtype when
that is narrower than float32 (what Keras's autocast computes with), its inputs, initial states and mask as that
backend passed them, all in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from harness.case.kinds import bidirectional_options, kind_of
from harness.case.schema import LayerSpec
from harness.case.semantics import DOCUMENTED
from harness.truth.kinds import truth_kind

# Keras's merge_mode None (the two sequences apart) is the kind table's "none"
_MERGE_MODE_NONE = "none"
# a feedforward kind -> the kind of that layer wrapped in TimeDistributed
TIME_DISTRIBUTED = {"dense": "time_distributed_dense"}
# Options the kind tables hold that only shape initialization; a config's serialized initializer is not compared.
_INITIALIZATION_ONLY = ("recurrent_initializer",)


def _options(kind_name: str, config: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any] | str:
    """The kind's options from a Keras config (the table's default where the config lacks one), or why not."""
    options: dict[str, Any] = {}
    for option, (default, check) in kind_of(kind_name).options.items():
        if option in skip:
            continue
        value = default if option in _INITIALIZATION_ONLY else config.get(option, default)
        problem = check(value)
        if problem:
            return f"{option} = {value!r} ({problem})"
        options[option] = value
    return options


def _cell_spec(kind_name: str) -> Callable[[dict[str, Any]], LayerSpec | str]:
    def spec(config: dict[str, Any]) -> LayerSpec | str:
        options = _options(kind_name, config)
        return options if isinstance(options, str) else LayerSpec(kind_name, options)

    return spec


def _dense_spec(kind_name: str) -> Callable[[dict[str, Any]], LayerSpec | str]:
    def spec(config: dict[str, Any]) -> LayerSpec | str:
        if config.get("lora_rank"):
            return "a LoRA Dense"
        if config.get("quantization_config") or config.get("quantization_mode"):
            return "a quantized Dense"
        options = _options(kind_name, config)
        return options if isinstance(options, str) else LayerSpec(kind_name, options)

    return spec


def _inner(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    inner = config.get("layer") or {}
    return str(inner.get("class_name")), dict(inner.get("config") or {})


def _same_but_direction(first: dict[str, Any], second: dict[str, Any]) -> bool:
    ignored = {"name", "go_backwards"}
    return {k: v for k, v in first.items() if k not in ignored} == {k: v for k, v in second.items() if k not in ignored}


def _bidirectional_spec(config: dict[str, Any]) -> LayerSpec | str:
    class_name, inner = _inner(config)
    entry = KERAS_CLASSES.get(class_name)
    if entry is None or entry.kind not in kind_of("bidirectional").wraps:
        return f"a Bidirectional of {class_name}"
    if inner.get("go_backwards"):
        return "a Bidirectional whose forward layer reads backwards"
    backward = (config.get("backward_layer") or {}).get("config")
    if backward is not None and not _same_but_direction(inner, backward):
        return "a Bidirectional with a backward layer of its own"
    options = _options(entry.kind, inner, skip=("go_backwards",))
    if isinstance(options, str):
        return options
    merge_mode = config.get("merge_mode", "concat")
    merge_mode = _MERGE_MODE_NONE if merge_mode is None else merge_mode
    problem = bidirectional_options(kind_of(entry.kind).options)["merge_mode"][1](merge_mode)
    if problem:
        return f"merge_mode = {merge_mode!r} ({problem})"
    return LayerSpec("bidirectional", {**options, "merge_mode": merge_mode}, wrapped=entry.kind)


def _time_distributed_spec(config: dict[str, Any]) -> LayerSpec | str:
    class_name, inner = _inner(config)
    entry = KERAS_CLASSES.get(class_name)
    if entry is None or entry.kind not in TIME_DISTRIBUTED:
        return f"a TimeDistributed of {class_name}"
    spec = entry.spec(inner)
    return spec if isinstance(spec, str) else LayerSpec(TIME_DISTRIBUTED[entry.kind], spec.options)


@dataclass(frozen=True)
class KerasClass:
    """A Keras layer class the reference computes: its kind (harness.case.kinds) and its config -> LayerSpec."""

    kind: str
    spec: Callable[[dict[str, Any]], LayerSpec | str]


KERAS_CLASSES: dict[str, KerasClass] = {
    "LSTM": KerasClass("lstm", _cell_spec("lstm")),
    "GRU": KerasClass("gru", _cell_spec("gru")),
    "SimpleRNN": KerasClass("simple_rnn", _cell_spec("simple_rnn")),
    "Dense": KerasClass("dense", _dense_spec("dense")),
    "Bidirectional": KerasClass("bidirectional", _bidirectional_spec),
    "TimeDistributed": KerasClass("time_distributed_dense", _time_distributed_spec),
}


def layer_spec(class_name: str, config: dict[str, Any]) -> LayerSpec | str:
    """The layer as a kind the reference computes, or why it has no reference (one phrase)."""
    entry = KERAS_CLASSES.get(class_name)
    if entry is None:
        return f"the reference has no {class_name}"
    return entry.spec(config)


def _as_compute(array: np.ndarray, compute_dtype: str) -> np.ndarray:
    """float64 of ``array`` as the backend computes with it: rounded to a compute dtype narrower than float32."""
    array = np.asarray(array)
    if np.dtype(compute_dtype).itemsize < 4 and array.dtype.itemsize >= 4:
        array = array.astype(compute_dtype)
    return array.astype(np.float64)


def reference_outputs(spec: LayerSpec, inputs: list[np.ndarray], initial_state: list[np.ndarray], mask: np.ndarray | None,
                      weights: list[np.ndarray], compute_dtype: str) -> list[np.ndarray]:
    """The float64 reference outputs of one call of the layer, in Keras's order."""
    if len(inputs) != 1:
        raise ValueError(f"the reference of {spec.type} takes one input tensor, the call had {len(inputs)}")
    weights64 = (tuple(_as_compute(w, compute_dtype) for w in weights),)
    states = [np.asarray(s, dtype=np.float64) for s in initial_state] or None
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    if mask is not None and mask.ndim != 2:
        mask = None
    return truth_kind(spec).forward(spec, np.asarray(inputs[0], dtype=np.float64), weights64, mask, states, DOCUMENTED)
