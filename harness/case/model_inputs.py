"""The inputs of a user's model for ``keras-parity check``: read from a file, or drawn from a seeded spec. No Keras here.

A model's inputs are described by ``ModelInput`` (name, shape with None for a free axis, dtype, and for an input
that feeds an Embedding its vocabulary size and whether zero is its mask). The execute stage reads them from the
model; this module loads the user's arrays, checks they fit, and draws random ones:

- ``.npy``: one array, for a model with one input;
- ``.npz``: one array per input, keyed by the model's input names;
- ``--input-spec seed=N,batch=B[,time=T]``: seeded normal floats of each input's shape and dtype (free axes:
  ``batch`` for the first, ``time`` for the others, default 5), integer ids in [0, vocabulary) for an input
  feeding an Embedding, in [1, vocabulary) with ``mask_zero``, where every other row starts with zeros (left
  padding: row ``b`` of an odd index has its first ``min(b, time - 1)`` steps zero); other integer inputs in [0, 10),
  bool inputs true or false at random.

Arrays are loaded with ``allow_pickle=False``. Every problem is an ``InputProblem`` whose message is one line
naming what is wrong and what is accepted.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPEC_KEYS = ("seed", "batch", "time")
DEFAULT_TIME = 5
SPEC_FORMAT = "seed=N,batch=B[,time=T] (integers >= 0, batch and time >= 1)"


class InputProblem(ValueError):
    """The inputs cannot be used with the model: the message is one line, naming the problem and the fix."""


@dataclass(frozen=True)
class ModelInput:
    """One input of a model: its name, shape (None for a free axis, the batch first), dtype; for one that feeds
    an Embedding, the vocabulary size and whether id 0 is the mask."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    vocabulary: int | None = None
    mask_zero: bool = False

    def describe(self) -> str:
        shape = ", ".join("None" if size is None else str(size) for size in self.shape)
        return f"{self.name} ({shape}) {self.dtype}"

    @staticmethod
    def from_json(entry: dict) -> "ModelInput":
        return ModelInput(entry["name"], tuple(entry["shape"]), entry["dtype"], entry.get("vocabulary"),
                          bool(entry.get("mask_zero", False)))

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "vocabulary": self.vocabulary,
                "mask_zero": self.mask_zero}


@dataclass(frozen=True)
class InputSpec:
    seed: int
    batch: int
    time: int = DEFAULT_TIME


def parse_input_spec(text: str) -> InputSpec:
    """``seed=N,batch=B[,time=T]`` -> InputSpec; InputProblem naming the format otherwise."""
    values: dict[str, int] = {}
    for part in [piece.strip() for piece in text.split(",") if piece.strip()]:
        key, equals, value = part.partition("=")
        key = key.strip()
        if not equals or key not in SPEC_KEYS:
            raise InputProblem(f"--input-spec {text!r}: {part!r} is not one of {', '.join(SPEC_KEYS)}; expected {SPEC_FORMAT}")
        try:
            number = int(value.strip())
        except ValueError:
            raise InputProblem(f"--input-spec {text!r}: {key} must be an integer; expected {SPEC_FORMAT}") from None
        if number < (0 if key == "seed" else 1):
            raise InputProblem(f"--input-spec {text!r}: {key} = {number} is out of range; expected {SPEC_FORMAT}")
        values[key] = number
    missing = [key for key in ("seed", "batch") if key not in values]
    if missing:
        raise InputProblem(f"--input-spec {text!r} lacks {', '.join(missing)}; expected {SPEC_FORMAT}")
    return InputSpec(**values)


def load_input_file(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """One array (.npy) or arrays by name (.npz), loaded without pickle; InputProblem when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise InputProblem(f"input file {path} does not exist; give a .npy (one input) or .npz (arrays keyed by the model's input names)")
    if path.suffix not in (".npy", ".npz"):
        raise InputProblem(f"input file {path} is neither .npy nor .npz; give a .npy (one input) or .npz (arrays keyed by the model's input names)")
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            _check_numeric(path.name, array)
            return array
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputProblem(f"cannot read input file {path} as {path.suffix} without pickle: {reason}") from None
    if not arrays:
        raise InputProblem(f"input file {path} holds no array; give one array per model input, keyed by its name")
    for name, array in arrays.items():
        _check_numeric(f"{path.name}[{name!r}]", array)
    return arrays


def _check_numeric(label: str, array: np.ndarray) -> None:
    if array.dtype.kind not in "biuf":
        raise InputProblem(f"input {label} has dtype {array.dtype}; accepted: bool, integer and float arrays")


def fit_inputs(model_inputs: list[ModelInput], given: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The user's arrays by input name, checked against the model's inputs (names, rank, fixed sizes, one batch
    size, dtype kind); InputProblem naming the first misfit and what the model accepts."""
    expected = "; the model takes " + ", ".join(entry.describe() for entry in model_inputs)
    if not isinstance(given, dict):
        if len(model_inputs) != 1:
            raise InputProblem(f"a .npy holds one array but the model has {len(model_inputs)} inputs: give a .npz keyed by "
                               f"{', '.join(entry.name for entry in model_inputs)}{expected}")
        given = {model_inputs[0].name: given}
    names = [entry.name for entry in model_inputs]
    unknown = sorted(set(given) - set(names))
    missing = [name for name in names if name not in given]
    if unknown or missing:
        parts = ([f"lacks {', '.join(missing)}"] if missing else []) + ([f"has unknown {', '.join(unknown)}"] if unknown else [])
        raise InputProblem(f"the input arrays' names do not fit: {'; '.join(parts)}{expected}")
    batches = set()
    fitted = {}
    for entry in model_inputs:
        array = np.asarray(given[entry.name])
        if array.ndim != len(entry.shape) or any(size is not None and size != actual
                                                 for size, actual in zip(entry.shape, array.shape)):
            raise InputProblem(f"input {entry.name} has shape {tuple(array.shape)}{expected}")
        wants_integer = np.dtype(entry.dtype).kind in "iu"
        if wants_integer and array.dtype.kind not in "iub":
            raise InputProblem(f"input {entry.name} has dtype {array.dtype}, the model wants integers ({entry.dtype}){expected}")
        if entry.vocabulary is not None and array.size and (array.min() < 0 or array.max() >= entry.vocabulary):
            raise InputProblem(f"input {entry.name} holds ids outside [0, {entry.vocabulary}) of the Embedding it feeds{expected}")
        batches.add(array.shape[0] if array.ndim else None)
        fitted[entry.name] = array.astype(entry.dtype) if np.dtype(entry.dtype).kind in "biuf" else array
    if len(batches) > 1:
        raise InputProblem(f"the inputs have different batch sizes {sorted(batches)}; give every input the same first axis")
    return fitted


def draw_inputs(model_inputs: list[ModelInput], spec: InputSpec) -> dict[str, np.ndarray]:
    """Seeded inputs of the model's shapes and dtypes (see the module docstring); the same on every backend."""
    rng = np.random.default_rng(spec.seed)
    drawn = {}
    for entry in model_inputs:
        shape = tuple(spec.batch if axis == 0 and size is None else spec.time if size is None else size
                      for axis, size in enumerate(entry.shape))
        if entry.vocabulary is not None:
            low = 1 if entry.mask_zero and entry.vocabulary > 1 else 0
            array = rng.integers(low, entry.vocabulary, size=shape)
            if entry.mask_zero and len(shape) >= 2:
                for row in range(1, shape[0], 2):
                    array[row, :min(row, shape[1] - 1)] = 0
        elif np.dtype(entry.dtype).kind in "iu":
            array = rng.integers(0, 10, size=shape)
        elif np.dtype(entry.dtype).kind == "b":
            array = rng.random(shape) < 0.5
        else:
            array = rng.standard_normal(shape)
        drawn[entry.name] = array.astype(entry.dtype)
    return drawn
