"""Cases: an architecture, its options, an input spec and a dtype, described as data.

Cases are read from TOML (the built-in ``cases.toml`` beside this file, or a user's ``--case-file``)
and validated here, so that a bad entry fails with one line naming the entry, the field and what is
accepted. Nothing in this module imports Keras.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference.activations import ACTIVATIONS

BUILTIN_CASE_FILE = Path(__file__).with_name("cases.toml")

DTYPES = ("float32", "float64")
MASKS = ("none", "right_padded")
INITIAL_STATES = ("none", "random")
APIS = ("sequential", "functional", "subclassed")
ENTRY_POINTS = ("predict", "call")

# Per layer type: the options a case may set, with their default values (Keras's defaults).
LAYER_OPTIONS: dict[str, dict[str, Any]] = {
    "lstm": {
        "units": None,
        "activation": "tanh",
        "recurrent_activation": "sigmoid",
        "use_bias": True,
        "return_sequences": False,
        "return_state": False,
        "go_backwards": False,
        "zero_output_for_mask": False,
    },
    "dense": {"units": None, "activation": None, "use_bias": True},
}
_BOOL_OPTIONS = {"use_bias", "return_sequences", "return_state", "go_backwards", "zero_output_for_mask"}
_ACTIVATION_OPTIONS = {"activation", "recurrent_activation"}
_NAME_PATTERN = re.compile(r"^[a-z0-9_]+$")


class CaseError(ValueError):
    """A case entry is malformed; the message names the entry, the field and what is accepted."""


@dataclass(frozen=True)
class LayerSpec:
    type: str
    options: dict[str, Any]

    @property
    def units(self) -> int:
        return int(self.options["units"])


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    dtype: str
    batch: int
    time: int
    features: int
    layers: tuple[LayerSpec, ...]
    mask: str = "none"
    initial_state: str = "none"
    apis: tuple[str, ...] = APIS
    entry_point: str = "predict"
    source: str = field(default="builtin", compare=False)

    @property
    def returns_state(self) -> bool:
        last = self.layers[-1]
        return last.type == "lstm" and bool(last.options["return_state"])

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the model's outputs, in order: 'output', then 'h' and 'c' with return_state."""
        return ("output", "h", "c") if self.returns_state else ("output",)


def _fail(where: str, field_name: str, problem: str) -> CaseError:
    return CaseError(f"{where}: field {field_name!r} {problem}")


def _require_int(entry: dict[str, Any], where: str, key: str) -> int:
    if key not in entry:
        raise _fail(where, key, "is missing; expected a positive integer")
    value = entry[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _fail(where, key, f"is {value!r}; expected a positive integer")
    return value


def _require_choice(entry: dict[str, Any], where: str, key: str, accepted: tuple[str, ...], default: str | None) -> str:
    value = entry.get(key, default)
    if value is None:
        raise _fail(where, key, f"is missing; accepted: {', '.join(accepted)}")
    if value not in accepted:
        raise _fail(where, key, f"is {value!r}; accepted: {', '.join(accepted)}")
    return value


def _parse_layer(raw: Any, where: str) -> LayerSpec:
    if not isinstance(raw, dict):
        raise _fail(where, "layers", f"holds {raw!r}; expected a table like {{type = \"lstm\", units = 4}}")
    layer_type = raw.get("type")
    if layer_type not in LAYER_OPTIONS:
        raise _fail(where, "type", f"is {layer_type!r}; accepted: {', '.join(LAYER_OPTIONS)}")
    allowed = LAYER_OPTIONS[layer_type]
    options = dict(allowed)
    for key, value in raw.items():
        if key == "type":
            continue
        if key not in allowed:
            raise _fail(where, key, f"is not an option of a {layer_type} layer; accepted: {', '.join(allowed)}")
        if key in _BOOL_OPTIONS and not isinstance(value, bool):
            raise _fail(where, key, f"is {value!r}; expected true or false")
        if key in _ACTIVATION_OPTIONS and value not in ACTIVATIONS:
            raise _fail(where, key, f"is {value!r}; accepted: {', '.join(sorted(ACTIVATIONS))}")
        options[key] = value
    options["units"] = _require_int(raw, where, "units")
    return LayerSpec(type=layer_type, options=options)


def parse_case(entry: dict[str, Any], source: str) -> Case:
    """Validate one TOML entry and turn it into a Case; raise CaseError naming what is wrong."""
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise CaseError(f"{source}: a case has name {name!r}; expected lower-case letters, digits and _")
    where = f"{source}: case {name!r}"
    known = {
        "name", "description", "dtype", "batch", "time", "features", "mask", "initial_state", "apis", "entry_point",
        "layers",
    }
    for key in entry:
        if key not in known:
            raise _fail(where, key, f"is not a case field; accepted: {', '.join(sorted(known))}")

    raw_layers = entry.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise _fail(where, "layers", "is missing or empty; expected a list of layer tables")
    layers = tuple(_parse_layer(raw, f"{where}, layer {index}") for index, raw in enumerate(raw_layers))
    if layers[0].type != "lstm":
        raise _fail(where, "layers", "must start with an lstm layer")
    for index, layer in enumerate(layers[:-1]):
        if layer.type == "lstm" and layer.options["return_state"]:
            raise _fail(f"{where}, layer {index}", "return_state", "is only accepted on the last layer")

    case = Case(
        name=name,
        description=str(entry.get("description", "")),
        dtype=_require_choice(entry, where, "dtype", DTYPES, None),
        batch=_require_int(entry, where, "batch"),
        time=_require_int(entry, where, "time"),
        features=_require_int(entry, where, "features"),
        layers=layers,
        mask=_require_choice(entry, where, "mask", MASKS, "none"),
        initial_state=_require_choice(entry, where, "initial_state", INITIAL_STATES, "none"),
        entry_point=_require_choice(entry, where, "entry_point", ENTRY_POINTS, "predict"),
        source=source,
    )
    possible = possible_apis(case)
    requested = entry.get("apis")
    if requested is None:
        apis = possible
    else:
        if not isinstance(requested, list) or not requested or any(api not in APIS for api in requested):
            raise _fail(where, "apis", f"is {requested!r}; expected a non-empty list from: {', '.join(APIS)}")
        for api in requested:
            if api not in possible:
                raise _fail(where, "apis", f"asks for {api!r}, which cannot express this case ({why_not(case, api)})")
        apis = tuple(requested)
    return Case(**{**case.__dict__, "apis": apis})


def why_not(case: Case, api: str) -> str:
    """Why ``api`` cannot express ``case``; empty when it can."""
    if api == "sequential" and case.returns_state:
        return "a Sequential model's layers have one output each, so return_state cannot be used"
    if api == "sequential" and case.initial_state != "none":
        return "a Sequential model has one input, so initial_state cannot be passed"
    return ""


def possible_apis(case: Case) -> tuple[str, ...]:
    return tuple(api for api in APIS if not why_not(case, api))


def load_case_file(path: Path) -> list[Case]:
    """Read every case in a TOML file; raise CaseError for an unreadable file or a bad entry."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaseError(f"case file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise CaseError(f"case file {path} is not valid TOML: {error}") from None
    entries = data.get("case")
    if not isinstance(entries, list) or not entries:
        raise CaseError(f"case file {path} has no [[case]] entries")
    cases = [parse_case(entry, str(path)) for entry in entries]
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            raise CaseError(f"case file {path}: case name {case.name!r} appears twice")
        seen.add(case.name)
    return cases


def builtin_cases() -> list[Case]:
    return load_case_file(BUILTIN_CASE_FILE)


def select_cases(cases: list[Case], pattern: str | None) -> list[Case]:
    """The cases whose name matches the glob ``pattern`` (all when None); CaseError when none do."""
    if pattern is None:
        return list(cases)
    selected = [case for case in cases if fnmatch.fnmatchcase(case.name, pattern)]
    if not selected:
        raise CaseError(f"no case matches {pattern!r}; 'python -m harness list' shows the case names")
    return selected
