"""Cases: an architecture, its options, an input spec and a dtype, described as data.

Cases are read from TOML (the built-in ``cases.toml`` beside this file, or a user's ``--case-file``)
and validated here, so that a bad entry fails with one line naming the entry, the field and what is
accepted. A ``[[matrix]]`` entry expands into the cartesian product of its axes, one case per
combination. Nothing in this module imports Keras.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from harness.case.kinds import CELL_OPTIONS, KINDS, MERGE_MODES, LayerKind, OptionTable, kind_of, recurrent_kind_names
from harness.case.toml_file import read_toml

BUILTIN_CASE_FILE = Path(__file__).with_name("cases.toml")

# dtype name -> (variable dtype, compute dtype). The mixed policies keep float32 variables.
DTYPES: dict[str, tuple[str, str]] = {
    "float32": ("float32", "float32"),
    "float64": ("float64", "float64"),
    "float16": ("float16", "float16"),
    "bfloat16": ("bfloat16", "bfloat16"),
    "mixed_float16": ("float32", "float16"),
    "mixed_bfloat16": ("float32", "bfloat16"),
}
MASKS = ("none", "right_padded", "left_padded", "holes", "all_masked_row")
MASK_SOURCES = ("masking_layer", "argument")
INITIAL_STATES = ("none", "zeros", "random")
APIS = ("sequential", "functional", "subclassed")
ENTRY_POINTS = ("predict", "call", "predict_on_batch")
STATEFUL_ENTRY_POINTS = ("call", "predict", "predict_on_batch", "evaluate", "train_on_batch", "fit")
JIT_COMPILE = ("auto", "on", "off")
# Which LSTM kernel a case drives (see harness.execute.backends.kernel_mode):
#   as_shipped    Keras as users get it: the fused path where Keras selects it, else the generic loop
#   generic       every LSTM built with use_cudnn=False: Keras's generic loop over the cell
#   fused_on_cpu  Keras's own fused-path code (weight re-layout, masks, go_backwards, states) with its GPU
#                 gate opened and the cuDNN kernel replaced by the backend's exact CPU stand-in
KERNELS = ("as_shipped", "generic", "fused_on_cpu")
# How the recurrent layers are written:
#   layer          keras.layers.LSTM (and Bidirectional(LSTM))
#   rnn_cell       keras.layers.RNN(keras.layers.LSTMCell(...)): always Keras's generic loop
#   stacked_cells  one keras.layers.RNN(keras.layers.StackedRNNCells([...])) for a stack of LSTMs
LAYER_FORMS = ("layer", "rnn_cell", "stacked_cells")
class CaseError(ValueError):
    """A case entry is malformed; the message names the entry, the field and what is accepted."""


# Per layer kind: option -> (default, check) (harness.case.kinds). A check returns "" when the value is
# accepted, else the accepted values. Defaults are Keras's.
LAYER_OPTIONS: dict[str, OptionTable] = {name: kind.options for name, kind in KINDS.items()}
RECURRENT_TYPES = recurrent_kind_names()
_CELL_NAMES = ", ".join(name for name, kind in KINDS.items() if kind.is_cell)  # "lstm, gru, simple_rnn"
_FUSED_NAMES = " or ".join(name for name, kind in KINDS.items() if kind.fused_path is not None)  # "lstm"
_NAME_PATTERN = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class LayerSpec:
    type: str
    options: dict[str, Any]
    inner: "LayerSpec | None" = None  # the layer a nested wrapper ('branches') applies on each branch
    # the cell kind a flat wrapper ('bidirectional') runs copies of: its ``layer`` option (default "lstm"),
    # kept apart from ``options`` (which are the wrapped layer's and merge_mode, passed on to Keras as they are)
    wrapped: str | None = None

    @property
    def kind(self) -> LayerKind:
        """This layer's entry in the case stage's kind table (harness.case.kinds)."""
        return kind_of(self.type)

    @property
    def units(self) -> int:
        return self.inner.units if self.inner is not None else int(self.options["units"])

    @property
    def output_width(self) -> int:
        """The size of the last axis of this layer's (main) output."""
        return self.kind.output_width(self)

    @property
    def returns_sequences(self) -> bool:
        return self.kind.returns_sequences(self)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The names of this layer's outputs, in Keras's order."""
        return self.kind.output_names(self)


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
    mask_source: str = "masking_layer"
    initial_state: str = "none"
    apis: tuple[str, ...] = APIS
    entry_point: str = "predict"
    jit_compile: str = "auto"
    predict_batch_size: int | None = None
    stateful_batches: int = 0
    input_scale: float = 1.0
    allow_nonfinite: bool = False
    kernel: str = "as_shipped"
    layer_form: str = "layer"
    source: str = field(default="builtin", compare=False)
    # The validated TOML table the case was parsed from (after matrix expansion): recorded with every
    # result so that a record can be re-judged, and a resumed run checked, against the same definition.
    definition: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def variable_dtype(self) -> str:
        return DTYPES[self.dtype][0]

    @property
    def compute_dtype(self) -> str:
        return DTYPES[self.dtype][1]

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.layers[-1].output_names

    @property
    def stateful(self) -> bool:
        return self.stateful_batches > 0

    @property
    def initial_state_count(self) -> int:
        """How many state arrays the first layer takes: an LSTM's [h0, c0], both copies' for a Bidirectional."""
        return len(self.layers[0].kind.initial_state_names(self.layers[0]))


_CASE_FIELDS: dict[str, Any] = {
    "name": None, "description": "", "dtype": None, "batch": None, "time": None, "features": None, "layers": None,
    "mask": "none", "mask_source": "masking_layer", "initial_state": "none", "apis": None, "entry_point": "predict",
    "jit_compile": "auto", "predict_batch_size": None, "stateful_batches": 0, "input_scale": 1.0,
    "allow_nonfinite": False, "kernel": "as_shipped", "layer_form": "layer",
}


def _fail(where: str, field_name: str, problem: str) -> CaseError:
    return CaseError(f"{where}: field {field_name!r} {problem}")


def _require_int(entry: dict[str, Any], where: str, key: str, minimum: int = 1) -> int:
    if key not in entry:
        raise _fail(where, key, "is missing; expected a positive integer")
    value = entry[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _fail(where, key, f"is {value!r}; expected an integer >= {minimum}")
    return value


def _require_choice(entry: dict[str, Any], where: str, key: str, accepted: tuple[str, ...] | dict, default: str | None) -> str:
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
    kind = kind_of(layer_type)
    allowed = LAYER_OPTIONS[layer_type]
    if kind.names_its_cell:  # a Bidirectional: its options are those of the cell kind it names
        wrapped = raw.get("layer", allowed["layer"][0])
        problem = allowed["layer"][1](wrapped)
        if problem:
            raise _fail(where, "layer", f"is {wrapped!r}; {problem}")
        allowed = kind.accepted_options(wrapped)
    options = {key: default for key, (default, _) in allowed.items()}
    for key, value in raw.items():
        if key == "type":
            continue
        if key not in allowed:
            of = f"{layer_type} layer of {options['layer']}" if kind.names_its_cell else f"{layer_type} layer"
            raise _fail(where, key, f"is not an option of a {of}; accepted: {', '.join(allowed)}")
        problem = allowed[key][1](value)
        if problem:
            raise _fail(where, key, f"is {value!r}; {problem}")
        options[key] = value
    for key, (default, _) in allowed.items():
        if default is None and key not in raw:
            raise _fail(where, key, f"is missing from the {layer_type} layer")
    inner = wrapped = None
    if kind.nested:
        inner = _parse_layer(options.pop("layer"), f"{where}, branch layer")
        if inner.type not in kind.wraps or inner.options["return_state"]:
            raise _fail(where, "layer", f"must be a recurrent layer ({', '.join(kind.wraps)}) without return_state")
    elif kind.names_its_cell:
        wrapped = options.pop("layer")
    return LayerSpec(type=layer_type, options=options, inner=inner, wrapped=wrapped)


def _check_stack(layers: tuple[LayerSpec, ...], where: str) -> None:
    if not layers[0].kind.recurrent:
        raise _fail(where, "layers", f"must start with a recurrent layer ({', '.join(RECURRENT_TYPES)})")
    for index, layer in enumerate(layers[:-1]):
        if len(layer.output_names) > 1:
            raise _fail(f"{where}, layer {index}", "type", "has several outputs (return_state or merge_mode none): only the last layer may")
        if layer.kind.recurrent and not layer.returns_sequences and layers[index + 1].kind.recurrent:
            raise _fail(f"{where}, layer {index}", "return_sequences", "must be true: the next recurrent layer needs a sequence")


def parse_case(entry: dict[str, Any], source: str) -> Case:
    """Validate one TOML entry and turn it into a Case; raise CaseError naming what is wrong."""
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise CaseError(f"{source}: a case has name {name!r}; expected lower-case letters, digits and _")
    where = f"{source}: case {name!r}"
    for key in entry:
        if key not in _CASE_FIELDS:
            raise _fail(where, key, f"is not a case field; accepted: {', '.join(_CASE_FIELDS)}")

    raw_layers = entry.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise _fail(where, "layers", "is missing or empty; expected a list of layer tables")
    layers = tuple(_parse_layer(raw, f"{where}, layer {index}") for index, raw in enumerate(raw_layers))
    _check_stack(layers, where)

    stateful_batches = entry.get("stateful_batches", 0)
    if not isinstance(stateful_batches, int) or isinstance(stateful_batches, bool) or stateful_batches < 0:
        raise _fail(where, "stateful_batches", f"is {stateful_batches!r}; expected an integer >= 0")
    entry_points = STATEFUL_ENTRY_POINTS if stateful_batches else ENTRY_POINTS
    predict_batch_size = entry.get("predict_batch_size")
    if predict_batch_size is not None:
        predict_batch_size = _require_int(entry, where, "predict_batch_size")

    input_scale = entry.get("input_scale", 1.0)
    if not isinstance(input_scale, (int, float)) or isinstance(input_scale, bool) or not input_scale > 0:
        raise _fail(where, "input_scale", f"is {input_scale!r}; expected a positive number")

    allow_nonfinite = entry.get("allow_nonfinite", False)
    if not isinstance(allow_nonfinite, bool):
        raise _fail(where, "allow_nonfinite", f"is {allow_nonfinite!r}; expected true or false")

    case = Case(
        name=name,
        description=str(entry.get("description", "")),
        dtype=_require_choice(entry, where, "dtype", DTYPES, None),
        batch=_require_int(entry, where, "batch"),
        time=_require_int(entry, where, "time"),
        features=_require_int(entry, where, "features"),
        layers=layers,
        mask=_require_choice(entry, where, "mask", MASKS, "none"),
        mask_source=_require_choice(entry, where, "mask_source", MASK_SOURCES, "masking_layer"),
        initial_state=_require_choice(entry, where, "initial_state", INITIAL_STATES, "none"),
        entry_point=_require_choice(entry, where, "entry_point", entry_points, "predict"),
        jit_compile=_require_choice(entry, where, "jit_compile", JIT_COMPILE, "auto"),
        predict_batch_size=predict_batch_size,
        stateful_batches=stateful_batches,
        input_scale=float(input_scale),
        allow_nonfinite=allow_nonfinite,
        kernel=_require_choice(entry, where, "kernel", KERNELS, "as_shipped"),
        layer_form=_require_choice(entry, where, "layer_form", LAYER_FORMS, "layer"),
        source=source,
        definition=copy.deepcopy(entry),
    )
    problem = _case_problem(case)
    if problem:
        raise _fail(where, problem[0], problem[1])
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
    if not apis:
        raise _fail(where, "layers", "cannot be expressed in any model-building API")
    return replace(case, apis=apis)


def _case_problem(case: Case) -> tuple[str, str] | None:
    """A (field, problem) pair for combinations no Keras model can express, else None."""
    if case.initial_state != "none" and not case.layers[0].kind.takes_initial_state:
        return "initial_state", f"cannot be combined with a {case.layers[0].type} layer"
    if case.stateful:
        if any(layer.options.get("go_backwards") for layer in case.layers):
            return "stateful_batches", "cannot be combined with go_backwards (each batch would be read backwards)"
        if case.initial_state != "none" or case.mask != "none":
            return "stateful_batches", "cannot be combined with initial_state or a mask"
        if any(not layer.kind.is_cell for layer in case.layers if layer.kind.recurrent):
            return "stateful_batches", f"is only supported for stacks of plain recurrent layers ({_CELL_NAMES})"
        if case.layers[-1].output_names != ("output",):
            return "stateful_batches", "cannot be combined with return_state on the last layer"
    if case.predict_batch_size is not None and case.entry_point != "predict":
        return "predict_batch_size", "is only meaningful with entry_point = \"predict\""
    if case.mask == "all_masked_row" and case.batch < 2:
        return "mask", "all_masked_row needs batch >= 2 (one row fully masked, others not)"
    return _kernel_problem(case) or _layer_form_problem(case)


def recurrent_options(case: Case) -> list[dict[str, Any]]:
    """The options of every recurrent layer the case builds (a Bidirectional's and a branch's included)."""
    return [layer.kind.cell_spec_options(layer) for layer in case.layers if layer.kind.recurrent]


def _fused_candidates(case: Case) -> list[tuple[LayerKind, dict[str, Any]]]:
    """(cell kind, options) of every recurrent layer the case builds."""
    return [(layer.kind.cell_kind(layer), layer.kind.cell_spec_options(layer)) for layer in case.layers if layer.kind.recurrent]


def fused_path_possible(case: Case) -> bool:
    """Whether some recurrent layer of the case (an LSTM: the kinds with a fused_path) is configured so that Keras would try its fused (cuDNN) path on a GPU:
    tanh and sigmoid, a bias, not unrolled, use_cudnn not False, no recurrent dropout. This only selects
    which cases get a fused_on_cpu variant; which path really ran is observed (harness.execute.kernels)."""
    if case.layer_form != "layer":
        return False
    return any(cell.fused_path is not None and cell.fused_path(options) for cell, options in _fused_candidates(case))


def _kernel_problem(case: Case) -> tuple[str, str] | None:
    if case.kernel == "as_shipped":
        return None
    if case.layer_form != "layer":
        return "kernel", (f"is {case.kernel!r}, but layer_form {case.layer_form!r} always runs the generic loop "
                          "(a recurrent cell has no fused path); use kernel = \"as_shipped\"")
    if case.kernel == "fused_on_cpu" and not fused_path_possible(case):
        return "kernel", (f"is 'fused_on_cpu', but no recurrent layer of the case can take the fused path (only {_FUSED_NAMES} has "
                          "one here; it needs tanh, sigmoid, use_bias, unroll false, use_cudnn auto or true, no recurrent_dropout)")
    if case.kernel == "generic" and any(options.get("use_cudnn") is True for options in recurrent_options(case)):
        return "kernel", f"is 'generic', which builds every recurrent layer ({_CELL_NAMES}) with use_cudnn=False; remove use_cudnn = true"
    return None


def _layer_form_problem(case: Case) -> tuple[str, str] | None:
    if case.layer_form == "layer":
        return None
    if any(options.get("use_cudnn", "auto") != "auto" for options in recurrent_options(case)):
        return "layer_form", f"is {case.layer_form!r}, whose recurrent cells have no use_cudnn option; leave use_cudnn at auto"
    if case.layer_form == "stacked_cells":
        recurrent = [layer for layer in case.layers if layer.kind.recurrent]
        if len(recurrent) < 2 or any(not layer.kind.is_cell for layer in recurrent) or \
                any(not layer.kind.recurrent for layer in case.layers[:len(recurrent)]):
            return "layer_form", f"is 'stacked_cells', which needs the stack to start with two or more plain recurrent layers ({_CELL_NAMES})"
        wrapper = [{key: value for key, value in layer.options.items() if key not in CELL_OPTIONS + ("return_sequences", "use_cudnn")}
                   for layer in recurrent]
        if any(options != wrapper[0] for options in wrapper) or wrapper[0]["go_backwards"] or wrapper[0]["return_state"] \
                or wrapper[0]["zero_output_for_mask"]:
            return "layer_form", ("is 'stacked_cells': the stacked recurrent layers must share unroll and the other RNN options, "
                                  "without go_backwards, return_state or zero_output_for_mask (one RNN wraps them all)")
        if case.stateful:
            return "layer_form", "is 'stacked_cells', which is not combined with stateful_batches here"
    return None


def why_not(case: Case, api: str) -> str:
    """Why ``api`` cannot express ``case``; empty when it can."""
    if api != "sequential":
        return ""
    if len(case.output_names) > 1:
        return "a Sequential model's layers have one output each, so return_state and merge_mode none cannot be used"
    if case.initial_state != "none":
        return "a Sequential model has one input, so initial_state cannot be passed"
    if case.mask != "none" and case.mask_source == "argument":
        return "a Sequential model has one input, so a mask cannot be passed as an argument"
    if any(not layer.kind.single_chain for layer in case.layers):
        return "a Sequential model is a single chain, so it cannot have branches"
    return ""


def possible_apis(case: Case) -> tuple[str, ...]:
    return tuple(api for api in APIS if not why_not(case, api))


def _set_path(entry: dict[str, Any], path: str, value: Any) -> None:
    """Set ``layers.0.unroll``-style paths inside a case table."""
    parts = path.split(".")
    target: Any = entry
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    last = parts[-1]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


def _name_part(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return re.sub(r"[^a-z0-9]+", "", str(value).lower()) or "x"


def expand_matrix(matrix: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """One case table per combination of the matrix's axes (cartesian product)."""
    label = f"{source}: matrix {matrix.get('name', '?')!r}"
    for key in ("name", "base", "axes"):
        if key not in matrix:
            raise CaseError(f"{label}: field {key!r} is missing; a matrix has name (a template), base and axes")
    axes = matrix["axes"]
    if not isinstance(axes, dict) or not axes or not all(isinstance(v, list) and v for v in axes.values()):
        raise CaseError(f"{label}: field 'axes' must map field paths to non-empty lists of values")
    entries = []
    keys = list(axes)
    for values in itertools.product(*(axes[key] for key in keys)):
        entry = copy.deepcopy(matrix["base"])
        parts = {}
        for key, value in zip(keys, values):
            _set_path(entry, key, value)
            parts[key.split(".")[-1]] = _name_part(value)
        try:
            entry["name"] = matrix["name"].format(**parts)
        except KeyError as missing:
            raise CaseError(f"{label}: name template uses {missing} which is not an axis") from None
        entries.append(entry)
    return entries


# What a [[variant]]'s `where` can name: which cases get the variant.
VARIANT_CONDITIONS: dict[str, Callable[[Case], bool]] = {
    "always": lambda case: True,
    # the cases Keras builds as shipped whose fused path could engage on a GPU
    "fused_path_possible": lambda case: case.kernel == "as_shipped" and fused_path_possible(case),
}


def expand_variant(variant: dict[str, Any], cases: list[Case], source: str) -> list[dict[str, Any]]:
    """One more case table per case the variant's condition selects: the case's own table with the
    variant's ``set`` fields, named by the variant's template (``{name}`` is the case's name)."""
    label = f"{source}: variant {variant.get('name', '?')!r}"
    unknown = set(variant) - {"name", "where", "set"}
    if unknown or not {"name", "where", "set"} <= set(variant):
        raise CaseError(f"{label}: a variant has exactly name (a template using {{name}}), where and set")
    if variant["where"] not in VARIANT_CONDITIONS:
        raise CaseError(f"{label}: field 'where' is {variant['where']!r}; accepted: {', '.join(VARIANT_CONDITIONS)}")
    if not isinstance(variant["set"], dict) or not variant["set"] or any(key not in _CASE_FIELDS or key == "name" for key in variant["set"]):
        raise CaseError(f"{label}: field 'set' must map case fields (not name) to values")
    entries = []
    for case in cases:
        if not VARIANT_CONDITIONS[variant["where"]](case):
            continue
        entry = copy.deepcopy(case.definition) | copy.deepcopy(variant["set"])
        entry["name"] = variant["name"].format(name=case.name)
        entries.append(entry)
    return entries


def load_case_file(path: Path) -> list[Case]:
    """Read every case (and expand every matrix, then every variant) in a TOML file; CaseError for any bad entry."""
    data = read_toml(path, "case file", CaseError)
    unknown = set(data) - {"case", "matrix", "variant"}
    if unknown:
        raise CaseError(f"case file {path} has unknown tables {sorted(unknown)}; accepted: [[case]], [[matrix]], [[variant]]")
    entries = list(data.get("case", []))
    for matrix in data.get("matrix", []):
        entries += expand_matrix(matrix, str(path))
    if not entries:
        raise CaseError(f"case file {path} has no [[case]] or [[matrix]] entries")
    cases = [parse_case(entry, str(path)) for entry in entries]
    base = list(cases)
    for variant in data.get("variant", []):
        cases += [parse_case(entry, str(path)) for entry in expand_variant(variant, base, str(path))]
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            raise CaseError(f"case file {path}: case name {case.name!r} appears twice")
        seen.add(case.name)
    return cases


def builtin_cases() -> list[Case]:
    return load_case_file(BUILTIN_CASE_FILE)


def name_matches(name: str, pattern: str) -> bool:
    """The one case selector of every command: ``pattern`` is one or more comma-separated globs (spaces around a
    comma ignored), matched case-sensitively on every platform (``fnmatchcase``)."""
    return any(fnmatch.fnmatchcase(name, glob.strip()) for glob in pattern.split(","))


def select_cases(cases: list[Case], pattern: str | None) -> list[Case]:
    """The cases whose name matches ``pattern`` (``name_matches``; all when None); CaseError when none do."""
    if pattern is None:
        return list(cases)
    selected = [case for case in cases if name_matches(case.name, pattern)]
    if not selected:
        raise CaseError(f"no case matches {pattern!r}; 'python -m harness list' shows the case names")
    return selected
