"""Every layer's inputs and outputs of one run of a saved Keras model, on one backend: the backend side of
``keras-parity check`` (harness.studies.check runs it once per backend, each in its own interpreter)::

    python -m harness.execute.capture --backend jax --model MODEL.keras --out DIR (--inputs X.npy|X.npz | --input-spec SPEC) [--unsafe] [--import MODULE]

It imports each ``--import`` module (where the model's custom classes are registered), loads the model (Keras
safe mode unless ``--unsafe``), wraps the ``call`` of every layer the model holds
(nested models, wrappers such as Bidirectional and the layers inside them; not a recurrent layer's cell nor the
layer inside a TimeDistributed, which run once per step), runs the model once eagerly on the inputs (``model(x, training=False)``) and writes:

- ``DIR/<backend>.npz``: per layer call its positional input tensors, initial states, mask and outputs, per layer
  its weights as the model file gave them, and the model's inputs;
- ``DIR/<backend>.json``: the manifest: per call (in the order the calls finished) the layer's path, class,
  config, compute dtype, the array keys, and the event numbers of its start and end (a call's inputs were
  produced by calls that ended before it started); the model's inputs; the versions.

Bad input (a backend this interpreter lacks, a file that is no Keras model, code safe mode refuses, inputs that do
not fit) writes ``DIR/<backend>.error.json`` with ``kind = "bad_input"`` and one line, and exits 2; the model
raising on this backend writes ``kind = "model_error"`` and exits 3. Anything else is a crash (traceback on stderr,
exit 4).

``KERAS_PARITY_CHECK_FAULT`` (tests only) injects a fault into one layer: ``PATH:weightK:DELTA`` adds DELTA to the
layer's K-th weight after the weights were recorded, so that the layer computes with weights the file does not hold
(``weight1`` of a recurrent layer: its recurrent kernel); the layers after it compute on its faulty output.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from harness.case.model_file import ModelFileProblem, custom_classes, read_config
from harness.case.model_inputs import InputProblem, ModelInput, draw_inputs, fit_inputs, load_input_file, parse_input_spec

FAULT_VARIABLE = "KERAS_PARITY_CHECK_FAULT"
EXIT_BAD_INPUT, EXIT_MODEL_ERROR, EXIT_CRASH = 2, 3, 4


class BadInput(Exception):
    """One line: what is wrong with what the user gave, and what is accepted."""


def _first_line(error: BaseException, limit: int = 300) -> str:
    """The error's message in one line: its first line, or the one after Keras's "Exception encountered when calling"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        lines = lines[1:]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def load_model(path: Path, unsafe: bool, modules: list[str] = ()) -> Any:
    """The model in ``path`` (safe mode unless ``unsafe``), after importing ``modules`` (the user's custom classes);
    BadInput saying why it cannot be loaded."""
    import keras

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # the user's module: any error it raises on import is a bad --import
            raise BadInput(f"--import {module}: cannot import it ({type(error).__name__}: {_first_line(error)}); name a module "
                           f"importable from the current folder or PYTHONPATH") from None
    try:
        return keras.saving.load_model(str(path), safe_mode=not unsafe, compile=False)
    except Exception as error:  # Keras raises ValueError, TypeError, KeyError, OSError... for a file it cannot load
        message = str(error)
        if "safe_mode" in message:
            raise BadInput(f"{path} holds Python code (a Lambda layer's function) that Keras's safe mode refuses to load; "
                           f"if you trust the file, pass --unsafe") from None
        try:
            custom = custom_classes(read_config(path))
        except ModelFileProblem:
            custom = []
        if custom:
            raise BadInput(f"{path} uses custom class {', '.join(custom)}, whose code is not loaded here, so Keras cannot "
                           f"rebuild the model; pass --import MODULE, the module that defines it with "
                           f"@keras.saving.register_keras_serializable") from None
        raise BadInput(f"cannot load {path} as a Keras model: {_first_line(error)}") from None


def _children(layer: Any) -> list[Any]:
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _per_step(model: Any) -> set[int]:
    """The ids of every layer that runs once per step inside another (and what it holds): a recurrent layer's cell,
    the layer a TimeDistributed applies to each step. The layer around it is recorded instead."""
    import keras

    ids: set[int] = set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        inner = getattr(layer, "cell", None)
        if isinstance(layer, keras.layers.TimeDistributed):
            inner = layer.layer
        if isinstance(inner, keras.layers.Layer):
            ids |= {id(held) for held in inner._flatten_layers(include_self=True, recursive=True)}
    return ids


def layer_paths(model: Any) -> list[tuple[str, Any, str | None]]:
    """(path, layer, parent path) of every layer in the model but those that run per step, parents first."""
    cells = _per_step(model)
    found: list[tuple[str, Any, str | None]] = []
    seen: set[int] = set()

    def visit(layer: Any, parent: str | None) -> None:
        for child in _children(layer):
            if id(child) in cells or id(child) in seen:
                continue
            seen.add(id(child))
            path = child.name if parent is None else f"{parent}/{child.name}"
            found.append((path, child, parent))
            visit(child, path)

    visit(model, None)
    return found


def model_inputs(model: Any) -> list[ModelInput]:
    """The model's inputs: name, shape, dtype, and the vocabulary of an Embedding each feeds directly."""
    import keras

    tensors = getattr(model, "inputs", None)
    if not tensors:
        raise BadInput("the model has no declared inputs (a subclassed model): check takes Sequential and Functional "
                       "models built with keras.Input")
    described = []
    for tensor in tensors:
        vocabulary, mask_zero = None, False
        history = getattr(tensor, "_keras_history", None)
        if history is not None:
            for node in history[0]._outbound_nodes:
                consumer = node.operation
                if isinstance(consumer, keras.layers.Embedding):
                    vocabulary, mask_zero = int(consumer.input_dim), bool(consumer.mask_zero)
        described.append(ModelInput(tensor.name, tuple(tensor.shape), keras.backend.standardize_dtype(tensor.dtype),
                                    vocabulary, mask_zero))
    return described


def _parse_fault(text: str | None) -> tuple[str, int, float] | None:
    """(layer path, weight index, delta) of ``PATH:weightK:DELTA``; None without a fault."""
    if not text:
        return None
    path, where, delta = text.rsplit(":", 2)
    if not where.startswith("weight"):
        raise ValueError(f"{FAULT_VARIABLE}={text!r}: expected PATH:weightK:DELTA")
    return path, int(where[len("weight"):]), float(delta)


class Recorder:
    """Wraps each layer's ``call`` and keeps what every call saw and returned, as NumPy arrays."""

    def __init__(self) -> None:
        self.events = itertools.count()
        self.calls: list[dict[str, Any]] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {}

    def _keep(self, key: str, tensor: Any) -> str:
        import keras

        self.arrays[key] = np.asarray(keras.ops.convert_to_numpy(tensor))
        return key

    def wrap(self, path: str, layer: Any, parent: str | None, weight_keys: list[str]) -> None:
        import keras

        original = layer.call
        recorder = self

        def recorded_call(*args: Any, **kwargs: Any) -> Any:
            start = next(recorder.events)
            outputs = original(*args, **kwargs)
            recorder.counts[path] = recorder.counts.get(path, 0) + 1
            name = path if recorder.counts[path] == 1 else f"{path}#{recorder.counts[path]}"
            base = f"call/{len(recorder.calls)}"
            tensors = [t for t in keras.tree.flatten(args) if _is_tensor(t)]
            states = [t for t in keras.tree.flatten(kwargs.get("initial_state")) if _is_tensor(t)]
            mask = kwargs.get("mask")
            recorder.calls.append({
                "name": name, "layer": path, "parent": parent, "class": type(layer).__name__,
                "container": isinstance(layer, keras.Model),
                "config": _config(layer),
                "compute_dtype": str(layer.compute_dtype),
                "start": start, "end": next(recorder.events),
                "inputs": [recorder._keep(f"{base}/in/{i}", t) for i, t in enumerate(tensors)],
                "initial_state": [recorder._keep(f"{base}/state/{i}", t) for i, t in enumerate(states)],
                "mask": recorder._keep(f"{base}/mask", mask) if _is_tensor(mask) else None,
                "outputs": [recorder._keep(f"{base}/out/{i}", t) for i, t in enumerate(keras.tree.flatten(outputs))
                            if _is_tensor(t)],
                "weights": weight_keys,
            })
            return outputs

        object.__setattr__(layer, "call", recorded_call)


def _is_tensor(value: Any) -> bool:
    return value is not None and hasattr(value, "shape") and hasattr(value, "dtype")


def _config(layer: Any) -> dict[str, Any]:
    """The layer's config as JSON; empty for a custom layer that cannot give one (it has no reference anyway)."""
    try:
        config = layer.get_config()
    except Exception:  # a custom layer's get_config may raise anything (NotImplementedError, TypeError, ...)
        return {}
    return json.loads(json.dumps(config, default=repr))


def capture(model: Any, inputs: dict[str, np.ndarray], described: list[ModelInput], fault_text: str | None = None
            ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], bool]:
    """Run ``model`` once on ``inputs`` with every layer recorded: (calls, arrays, whether the fault applied)."""
    fault = _parse_fault(fault_text)
    recorder = Recorder()
    fault_applied = False
    for path, layer, parent in layer_paths(model):
        weights = layer.get_weights()
        keys = []
        for index, weight in enumerate(weights):
            keys.append(f"weight/{path}/{index}")
            recorder.arrays[keys[-1]] = np.asarray(weight)
        if fault is not None and fault[0] == path:
            position = fault[1]
            weights[position] = weights[position] + np.asarray(fault[2], dtype=weights[position].dtype)
            layer.set_weights(weights)
            fault_applied = True
        recorder.wrap(path, layer, parent, keys)
    ordered = [inputs[entry.name] for entry in described]
    for entry, array in zip(described, ordered):
        recorder.arrays[f"input/{entry.name}"] = array
    model(ordered[0] if len(ordered) == 1 else ordered, training=False)
    return recorder.calls, recorder.arrays, fault_applied


def _write_json(path: Path, content: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content, indent=1, allow_nan=True), encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.execute.capture")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--inputs", type=Path)
    parser.add_argument("--input-spec")
    parser.add_argument("--unsafe", action="store_true")
    parser.add_argument("--import", dest="modules", action="append", default=[])
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    error_path = args.out / f"{args.backend}.error.json"
    try:
        return _run(args)
    except (BadInput, InputProblem) as error:
        _write_json(error_path, {"kind": "bad_input", "problem": str(error)})
        return EXIT_BAD_INPUT
    except ModelRaised as error:
        _write_json(error_path, {"kind": "model_error", "problem": str(error)})
        return EXIT_MODEL_ERROR
    except Exception:
        traceback.print_exc()
        return EXIT_CRASH


class ModelRaised(Exception):
    """The model raised when run on this backend."""


def _run(args: argparse.Namespace) -> int:
    from harness.execute.backends import BackendUnavailable, activate

    try:
        info = activate(args.backend)
    except (BackendUnavailable, ValueError) as error:
        raise BadInput(f"{sys.executable} cannot run backend {args.backend}: {error}") from None
    model = load_model(args.model, args.unsafe, args.modules)
    described = model_inputs(model)
    if args.inputs is not None:
        inputs = fit_inputs(described, load_input_file(args.inputs))
    else:
        inputs = draw_inputs(described, parse_input_spec(args.input_spec))
    try:
        calls, arrays, fault_applied = capture(model, inputs, described, os.environ.get(FAULT_VARIABLE))
    except Exception as error:
        traceback.print_exc()
        raise ModelRaised(f"the model raised on {args.backend}: {type(error).__name__}: {_first_line(error)}") from None
    np.savez(args.out / f"{args.backend}.npz", **arrays)
    _write_json(args.out / f"{args.backend}.json", {
        "backend": args.backend, "python": sys.executable, "versions": info.versions, "device": info.device, "device_class": info.device_class,
        "safe_mode": not args.unsafe, "inputs": [entry.to_json() for entry in described], "calls": calls,
        "fault": os.environ.get(FAULT_VARIABLE) if fault_applied else None,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
