"""What a saved ``.keras`` file declares, read from its ``config.json`` without Keras: its inputs, the layers that
hold Python code, the classes from outside Keras. ``keras-parity check`` reads these before it starts a backend, to
refuse bad input at once; the backends' captures (harness.execute.capture) remain the authority, with Keras.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Iterator

from harness.case.model_inputs import ModelInput


class ModelFileProblem(ValueError):
    """The file is no Keras model file: one line saying what it is and what is accepted."""


def read_config(path: Path) -> dict[str, Any]:
    """The model's config.json; ModelFileProblem when ``path`` is missing or not a .keras archive."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileProblem(f"model file {path} does not exist; give a model saved with model.save('NAME.keras')")
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise ModelFileProblem(f"{path} is a zip archive without config.json, not a Keras model file; give a "
                                       f".keras file written by model.save")
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, OSError):
        raise ModelFileProblem(f"{path} is not a Keras model file (a .keras zip archive, as model.save('NAME.keras') "
                               f"writes)") from None
    except ValueError as error:
        if isinstance(error, ModelFileProblem):
            raise
        raise ModelFileProblem(f"{path}: its config.json is not valid JSON ({error}); not a Keras model file") from None
    if not isinstance(config, dict):
        raise ModelFileProblem(f"{path}: its config.json holds no model configuration; not a Keras model file")
    return config


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every serialized object (a dict with class_name and config) in the configuration, depth first."""
    if isinstance(value, dict):
        if "class_name" in value and "config" in value:
            yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def custom_classes(config: dict[str, Any]) -> list[str]:
    """The classes from outside Keras the model names (registered name, else module.class), each once."""
    found: list[str] = []
    for entry in _objects(config):
        registered, module = entry.get("registered_name"), entry.get("module")
        if (isinstance(registered, str) and ">" in registered) or (isinstance(module, str) and not module.startswith("keras")):
            name = registered if isinstance(registered, str) and ">" in registered else f"{module}.{entry['class_name']}"
            if name not in found:
                found.append(name)
    return found


def python_code_layers(config: dict[str, Any]) -> list[str]:
    """The names of the layers whose config holds Python bytecode (a Lambda's lambda): what safe mode refuses."""
    names = []
    for entry in _objects(config):
        held = entry["config"] if isinstance(entry["config"], dict) else {}
        if any(isinstance(value, dict) and value.get("class_name") == "__lambda__" for value in held.values()):
            names.append(str(held.get("name", entry["class_name"])))
    return names


def declared_inputs(config: dict[str, Any]) -> list[ModelInput] | None:
    """The inputs of a Sequential or Functional model from its InputLayers (name, batch_shape, dtype), in order;
    None where the configuration does not say (a subclassed model, a Sequential built without an Input)."""
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    layers = {}
    for layer in inner.get("layers") or []:
        if isinstance(layer, dict) and layer.get("class_name") == "InputLayer" and isinstance(layer.get("config"), dict):
            layers[layer["config"].get("name")] = layer["config"]
    if config.get("class_name") == "Sequential":
        names = list(layers)[:1]
    else:
        order = inner.get("input_layers")
        if not isinstance(order, list) or not order:
            return None
        names = [order[0]] if isinstance(order[0], str) else [entry[0] for entry in order if isinstance(entry, list) and entry]
    if not names or any(name not in layers for name in names):
        return None
    declared = []
    for name in names:
        shape, dtype = layers[name].get("batch_shape"), layers[name].get("dtype")
        if not isinstance(shape, list) or not isinstance(dtype, str):
            return None
        declared.append(ModelInput(str(name), tuple(shape), dtype))
    return declared
