"""Training mode: the options that only act when ``training=True`` (dropout, recurrent_dropout), with each
implementation and use_cudnn value and inside Bidirectional, on the active backend, against the NumPy reference
fed the same dropout masks (reference/lstm_dropout.py).

Dropout masks are random and not comparable across backends, so each case (harness/case/training_mode_cases.toml)
is judged three ways:

1. **inference**: ``model(x, training=False)`` runs and equals the reference without masks (dropout does nothing
   at inference);
2. **captured**: ``settings.calls`` eager ``model(x, training=True)`` calls (the first on the case's input, the rest on
   its rows repeated to ``settings.statistics_batch`` rows, so the rate is measured on enough elements) while ``DropoutRNNCell.get_dropout_mask``
   and ``get_recurrent_dropout_mask`` record what they return. The masks Keras drew must be one per sequence (one
   mask object per call and cell, reused at every timestep; a new one on the next call), hold only 0 and
   1 / (1 - rate) (within 2 float32 ulp), drop a fraction of elements within ``z`` binomial standard deviations of
   the rate (pooled over the calls), be one mask for all four gates with implementation 2 and four independent
   ones with implementation 1 (and with any recurrent_dropout, which switches the cell to implementation 1), and
   differ between Bidirectional's two directions. The first call's output must equal the reference fed the masks
   Keras drew (the float32 ``outputs`` row of the tolerance table, the one comparison);
3. **fixed**: the harness replaces ``DropoutRNNCell._create_dropout_mask`` by seeded NumPy masks (from the seed and
   the case name only: the same on every backend, so every backend is judged against the same numbers). Keras's
   own caching, and every line that applies the masks, run as shipped. The training-mode output, and the loss
   ``train_on_batch`` and ``fit`` report for one SGD step (the loss before the update: the weights are restored
   before fit), must equal the reference's (``outputs`` row; the losses by the ``training`` row).

The gradient in training mode is not compared here: reference/lstm_backward.py has no dropout masks (the loss
check above proves the masks act inside the training step; the gradient through them is left to a later piece).

A configuration that raises in training mode but runs in inference is a finding (status ``error``); one that a
``[[known]]`` entry of the case file describes exactly (the stage, the backend's error type and message fragment,
the Keras version) is ``known``, with its reproducer. ``DIR/<backend>.training_mode.json`` is rewritten atomically
after every case. Exit codes (``exit_code``): 0 every case passes or is known; 1 a case fails or errors; 2 nothing
ran. With ``--inject-fault`` (``FAULTS``: a mask without the 1 / (1 - rate) scaling; a different mask at every
timestep): 0 when the fault is caught, 1 when not, 2 when it never ran.
"""

from __future__ import annotations

import contextlib
import re
import time as clock
import tomllib
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.case.kinds import KINDS as LAYER_KINDS
from harness.case.schema import Case, CaseError, LayerSpec, name_matches, parse_case
from harness.case.tolerances import Tolerances, load_tolerances, tolerance_table_json
from harness.case.weights import DEFAULT_SEED, CaseData, make_case_data
from harness.execute.backends import BackendInfo
from harness.records import store
from harness.records.header import SCHEMAS, make_header, now
from harness.truth.cells import CELLS, cell_reference
from harness.truth.compare import compared_item
from reference.lstm_dropout import GATES, inverted_dropout_mask

CASE_FILE = Path(__file__).resolve().parents[1] / "case" / "training_mode_cases.toml"
SCHEMA, SCHEMA_VERSION = SCHEMAS["training_mode"]
EXIT_OK, EXIT_FOUND, EXIT_COULD_NOT_RUN = 0, 1, 2
KINDS = ("input", "recurrent")
STAGES = ("build", "inference", "captured", "fixed")
FAULTS = {
    "dropout_unscaled": "Keras's dropout masks keep 1 instead of 1 / (1 - rate) (dropout without the inverted scaling)",
    "mask_per_step": "get_dropout_mask hands out a different mask at every call (every timestep of the generic loop) "
                     "instead of the one mask of the sequence: the cached mask rolled along the batch axis by a call counter",
}
# A kept element is 1 / (1 - rate) computed in float32; backends compute it as ones / keep or ones * (1 / keep).
VALUE_ULPS = 2


# --- the case file ---------------------------------------------------------------------------------


def load_setup(path: Path = CASE_FILE) -> dict[str, Any]:
    """{"settings", "cases", "known"} from the case file; CaseError names what is wrong."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CaseError(f"{path}: cannot read the training-mode cases: {error}") from error
    settings = dict(raw.get("settings", {}))
    for key, kind in (("calls", int), ("statistics_batch", int), ("z", float), ("learning_rate", float)):
        if not isinstance(settings.get(key), (int, float)) or isinstance(settings.get(key), bool) or settings[key] <= 0:
            raise CaseError(f"{path}: settings.{key} is {settings.get(key)!r}; expected a positive number")
        settings[key] = kind(settings[key])
    if settings["calls"] < 3:
        raise CaseError(f"{path}: settings.calls is {settings['calls']}; expected at least 3 (a new mask per call is checked "
                        "between two calls of the statistics batch)")
    cases = [parse_case(dict(entry), str(path)) for entry in raw.get("case", [])]
    if not cases:
        raise CaseError(f"{path}: no [[case]] entries")
    names = [case.name for case in cases]
    if len(set(names)) != len(names):
        raise CaseError(f"{path}: duplicate case names")
    for case in cases:
        check_case(case, str(path))
    known = [dict(entry) for entry in raw.get("known", [])]
    for index, entry in enumerate(known):
        missing = [key for key in ("id", "cases", "backends", "keras", "reproducer", "description") if key not in entry]
        bad_stages = set(entry.get("stages", [])) - set(STAGES)
        if missing or bad_stages or entry.get("semantics", "backward_in_input_order") not in SEMANTICS[1:]:
            raise CaseError(f"{path}: [[known]] {index} lacks {', '.join(missing) or 'valid stages or semantics'}; expected id, cases, "
                            f"backends, keras, reproducer, description, and stages (of {', '.join(STAGES)}) with errors, "
                            f"failing_checks, or semantics ({', '.join(SEMANTICS[1:])})")
        for backend, error in entry.get("errors", {}).items():
            if set(error) != {"type", "message"} or not all(isinstance(value, str) and value for value in error.values()):
                raise CaseError(f"{path}: [[known]] {entry['id']!r} errors.{backend} is {error!r}; expected "
                                "{ type = EXCEPTION, message = PATTERN } (the whole message must match the pattern)")
            try:
                re.compile(error["message"])
            except re.error as problem:
                raise CaseError(f"{path}: [[known]] {entry['id']!r} errors.{backend}.message is not a pattern: {problem}") from problem
        unknown_cases = set(entry["cases"]) - set(names)
        if unknown_cases:
            raise CaseError(f"{path}: [[known]] {entry['id']!r} names cases that do not exist: {', '.join(sorted(unknown_cases))}")
    return {"settings": settings, "cases": cases, "known": known}


def check_case(case: Case, source: str) -> None:
    """A training-mode case: one LSTM or Bidirectional(LSTM, concat), return_sequences, dropout or
    recurrent_dropout, no sequence mask or initial state, the LSTM layer form, distinct sizes."""
    where = f"{source}: case {case.name!r}"
    if len(case.layers) != 1 or not _has_dropout_reference(case.layers[0]):
        raise CaseError(f"{where}: expected one {' or '.join(_training_kinds())} layer")
    options = case.layers[0].options
    if not options["return_sequences"] or options["return_state"] or options.get("merge_mode", "concat") != "concat":
        raise CaseError(f"{where}: expected return_sequences = true, no return_state, merge_mode concat")
    if not (options["dropout"] or options["recurrent_dropout"]):
        raise CaseError(f"{where}: neither dropout nor recurrent_dropout is set: nothing acts in training mode")
    if case.mask != "none" or case.initial_state != "none" or case.layer_form != "layer" or case.dtype != "float32":
        raise CaseError(f"{where}: expected float32, mask none, initial_state none, layer_form layer")
    sizes = [case.batch, case.time, case.features, case.layers[0].units]
    if len(set(sizes)) != len(sizes):
        raise CaseError(f"{where}: batch, time, features and units must differ (got {sizes})")


def _has_dropout_reference(layer: LayerSpec) -> bool:
    """A flat recurrent layer (a cell or a Bidirectional) whose cell has a training-mode reference."""
    kind = layer.kind
    if not kind.recurrent or kind.nested:
        return False
    cell = CELLS.get(kind.cell_kind(layer).name)
    return cell is not None and cell.with_dropout is not None


def _training_kinds() -> list[str]:
    """The layer kinds a training-mode case may use (for the message): a flat wrapper names the cells it may wrap
    ('bidirectional of lstm')."""
    names = []
    for name, kind in LAYER_KINDS.items():
        if not kind.recurrent or kind.nested:
            continue
        cells = [cell for cell in (kind.wraps if kind.is_wrapper else (name,))
                 if getattr(CELLS.get(cell), "with_dropout", None) is not None]
        if cells:
            names.append(f"{name} of {' or '.join(cells)}" if kind.is_wrapper else name)
    return names


def select(cases: list[Case], pattern: str | None) -> list[Case]:
    if pattern is None:
        return cases
    chosen = [case for case in cases if name_matches(case.name, pattern)]
    if not chosen:
        raise CaseError(f"no training-mode case matches {pattern!r}; cases: {', '.join(case.name for case in cases)}")
    return chosen


# --- the reference's expectation ---------------------------------------------------------------------


def per_gate(case: Case) -> bool:
    """Keras's LSTMCell draws four masks (one per gate) with implementation 1, and any recurrent_dropout switches
    the cell to implementation 1 (keras/src/layers/rnn/lstm.py)."""
    options = case.layers[0].options
    return options["implementation"] == 1 or options["recurrent_dropout"] > 0


def directions(case: Case) -> list[str]:
    """The copies of the cell that run: forward (and backward for a Bidirectional)."""
    return list(case.layers[0].kind.copies) or ["forward"]


def rates(case: Case) -> dict[str, float]:
    options = case.layers[0].options
    return {"input": float(options["dropout"]), "recurrent": float(options["recurrent_dropout"])}


def seeded_masks(case: Case, seed: int) -> dict[str, dict[str, Any]]:
    """The harness's masks per direction and kind: four (batch, width) float32 masks (one per gate); None where
    the rate is 0. From the seed and the case name only."""
    rng = np.random.default_rng([seed, zlib.crc32(case.name.encode("utf-8")), 77])
    widths = {"input": case.features, "recurrent": case.layers[0].units}
    masks: dict[str, dict[str, Any]] = {}
    for direction in directions(case):
        masks[direction] = {}
        for kind in KINDS:
            rate = rates(case)[kind]
            if not rate:
                masks[direction][kind] = None
                continue
            masks[direction][kind] = [inverted_dropout_mask(rng, (case.batch, widths[kind]), rate, case.compute_dtype)
                                      for _ in range(GATES)]
    return masks


def as_structure(masks: dict[str, dict[str, Any]], per_gate_by_direction: dict[str, bool]) -> dict[str, dict[str, Any]]:
    """The seeded masks in the structure a cell uses: four per kind (per gate), or the first for all gates."""
    return {direction: {kind: (value if per_gate_by_direction[direction] or value is None else value[0])
                        for kind, value in kinds.items()} for direction, kinds in masks.items()}


SEMANTICS = ("documented", "backward_in_input_order")


def expected_output(case: Case, data: CaseData, masks: dict[str, dict[str, Any]] | None, semantics: str = "documented") -> np.ndarray:
    """The reference's training-mode output (batch, time, width) with the given masks (None: inference).
    ``backward_in_input_order``: Bidirectional's backward half as JAX's fused go_backwards path gives it (the
    backward layer returns input order, which Bidirectional then flips: processing order)."""
    if semantics not in SEMANTICS:
        raise ValueError(f"unknown semantics {semantics!r}; accepted: {', '.join(SEMANTICS)}")
    layer = case.layers[0]
    with_dropout = cell_reference(layer.kind.cell_kind(layer).name).with_dropout
    arrays = data.layer_weights[0][0]
    half = len(arrays) // len(directions(case))
    outputs = []
    for index, (direction, options) in enumerate(zip(directions(case), layer.kind.copy_options(layer))):
        weights = arrays[index * half:(index + 1) * half]
        given = (masks or {}).get(direction, {})
        backwards = options["go_backwards"]
        out = with_dropout(data.x, *weights, input_masks=given.get("input"), recurrent_masks=given.get("recurrent"),
                           activation=options["activation"], recurrent_activation=options["recurrent_activation"],
                           go_backwards=backwards, return_sequences=True)
        flip = layer.kind.is_wrapper and backwards and semantics == "documented"
        outputs.append(out[:, ::-1, :] if flip else out)  # Bidirectional flips the backward layer's output
    return np.concatenate(outputs, axis=-1)


def targets(case: Case, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(case.name.encode("utf-8")), 78])
    width = case.layers[0].output_width
    return rng.normal(0.0, 0.5, size=(case.batch, case.time, width)).astype(case.compute_dtype)


# --- Keras's dropout masks: recorded, fixed, or made wrong (one place) -------------------------------


def _dropout_cell_class() -> Any:
    from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

    return DropoutRNNCell


@contextlib.contextmanager
def capturing(log: list[tuple[int, str, Any]]) -> Iterator[None]:
    """Every mask get_dropout_mask / get_recurrent_dropout_mask return is appended to ``log`` as (id of the cell,
    kind, the returned object)."""
    from harness.execute.backends import patch_attributes

    cls = _dropout_cell_class()

    def recorder(original: Any, kind: str) -> Any:
        def get(self: Any, step_input: Any) -> Any:
            value = original(self, step_input)
            if value is not None:
                log.append((id(self), kind, value))
            return value
        return get

    with patch_attributes([(cls, "get_dropout_mask", recorder(cls.get_dropout_mask, "input")),
                           (cls, "get_recurrent_dropout_mask", recorder(cls.get_recurrent_dropout_mask, "recurrent"))]):
        yield


@contextlib.contextmanager
def fixing(masks_by_cell: dict[int, dict[str, Any]], dtype: str, units: int) -> Iterator[None]:
    """``DropoutRNNCell._create_dropout_mask`` returns the harness's masks of the cell (a recurrent mask is the one
    drawn for a (batch, units) step input; the case's features differ from its units)."""
    import keras

    from harness.execute.backends import patch_attributes

    cls = _dropout_cell_class()

    def create(self: Any, step_input: Any, dropout_rate: float) -> Any:
        kind = "recurrent" if int(step_input.shape[-1]) == units else "input"
        fixed = masks_by_cell.get(id(self), {}).get(kind)
        if fixed is None:
            raise RuntimeError(f"Keras asked {self.name} for a {kind} dropout mask (rate {dropout_rate}) the case does not have")
        if isinstance(fixed, list):
            return [keras.ops.convert_to_tensor(mask, dtype=dtype) for mask in fixed]
        return keras.ops.convert_to_tensor(fixed, dtype=dtype)

    with patch_attributes([(cls, "_create_dropout_mask", create)]):
        yield


@contextlib.contextmanager
def injected(name: str) -> Iterator[dict[str, Any]]:
    """The fault ``name`` patched into Keras's mask creation (applied after a fixed mask too); yields a counter."""
    from harness.execute.backends import patch_attributes

    if name not in FAULTS:
        raise ValueError(f"unknown training-mode fault {name!r}; accepted: {', '.join(FAULTS)}")
    cls = _dropout_cell_class()
    original = cls._create_dropout_mask
    state = {"name": name, "calls": 0}

    def unscaled(self: Any, step_input: Any, dropout_rate: float) -> Any:
        state["calls"] += 1
        value = original(self, step_input, dropout_rate)
        keep = 1.0 - dropout_rate
        return [mask * keep for mask in value] if isinstance(value, (list, tuple)) else value * keep

    get_original = cls.get_dropout_mask

    def per_step(self: Any, step_input: Any) -> Any:
        import keras

        value = get_original(self, step_input)
        if value is None:
            return value
        state["calls"] += 1
        shift = state["calls"]
        return ([keras.ops.roll(mask, shift, axis=0) for mask in value] if isinstance(value, (list, tuple))
                else keras.ops.roll(value, shift, axis=0))

    patches = {"dropout_unscaled": [(cls, "_create_dropout_mask", unscaled)], "mask_per_step": [(cls, "get_dropout_mask", per_step)]}
    with patch_attributes(patches[name]):
        yield state


# --- one case ----------------------------------------------------------------------------------------


def _cells(model: Any, case: Case) -> dict[str, Any]:
    from harness.execute.kinds import execute_kind

    spec = case.layers[0]
    copies = execute_kind(spec).copy_layers(model.get_layer(f"{spec.type}_0"))
    return {direction: copy.cell for direction, copy in zip(directions(case), copies, strict=True)}


def _numpy(value: Any) -> np.ndarray:
    import keras

    if isinstance(value, (list, tuple)):
        return np.stack([np.asarray(keras.ops.convert_to_numpy(item)) for item in value])
    return np.asarray(keras.ops.convert_to_numpy(value))


def _check(passed: bool, detail: str, **values: Any) -> dict[str, Any]:
    return {"passed": bool(passed), "detail": detail, **values}


def mask_checks(case: Case, calls: list[dict[tuple[str, str], list[np.ndarray]]], z: float,
                batches: list[int] | None = None) -> dict[str, dict[str, Any]]:
    """The statistics of the masks Keras drew: ``calls[k][(direction, kind)]`` is the list of distinct mask arrays
    call k returned for that cell and kind (one expected); ``batches[k]`` is the batch size of call k's input (the
    case's batch for every call when not given)."""
    checks: dict[str, dict[str, Any]] = {}
    batches = batches if batches is not None else [case.batch] * len(calls)
    for direction in directions(case):
        for kind in KINDS:
            rate = rates(case)[kind]
            key = (direction, kind)
            label = f"{direction}/{kind}"
            counts = [len(call.get(key, [])) for call in calls]
            if not rate:
                checks[f"{label}/none_drawn"] = _check(sum(counts) == 0, f"rate 0: {sum(counts)} masks returned", counts=counts)
                continue
            checks[f"{label}/one_per_sequence"] = _check(all(count == 1 for count in counts),
                                                         f"distinct masks per call: {sorted(set(counts))} (1 expected)", counts=counts)
            drawn_with_batch = [(concrete[0], batch) for call, batch in zip(calls, batches)
                                for concrete in [[mask for mask in call.get(key, []) if mask is not None]] if concrete]
            drawn = [mask for mask, _ in drawn_with_batch]
            if not drawn:
                continue
            width = case.features if kind == "input" else case.layers[0].units
            gates = (GATES,) if per_gate(case) else ()
            shape = gates + (case.batch, width)
            wrong_shapes = [(mask.shape, gates + (batch, width)) for mask, batch in drawn_with_batch if mask.shape != gates + (batch, width)]
            checks[f"{label}/structure"] = _check(not wrong_shapes,
                                                  f"shape {wrong_shapes[0][0] if wrong_shapes else drawn[0].shape}, expected "
                                                  f"{wrong_shapes[0][1] if wrong_shapes else shape} "
                                                  f"({'four per-gate masks' if per_gate(case) else 'one mask for the four gates'})",
                                                  shape=list(drawn[0].shape))
            pooled = np.concatenate([mask.ravel() for mask in drawn]).astype(np.float64)
            scale = float(np.float32(1.0) / np.float32(1.0 - rate))
            kept = pooled[pooled != 0]
            worst = float(np.max(np.abs(kept - scale))) if kept.size else 0.0
            ulp = float(np.spacing(np.float32(scale)))
            finite = bool(np.all(np.isfinite(pooled)))
            checks[f"{label}/values"] = _check(finite and kept.size > 0 and worst <= VALUE_ULPS * ulp,
                                               f"kept values within {worst / ulp:.3g} float32 ulp of 1/(1-rate) = {scale:.8g} "
                                               f"(at most {VALUE_ULPS})", distinct=sorted({float(v) for v in np.unique(pooled)})[:6])
            zero_fraction = float(np.mean(pooled == 0))
            bound = z * float(np.sqrt(rate * (1 - rate) / pooled.size))
            checks[f"{label}/rate"] = _check(abs(zero_fraction - rate) <= bound,
                                             f"zero fraction {zero_fraction:.4f} over {pooled.size} elements, rate {rate}, "
                                             f"bound +-{bound:.4f} ({z:g} sd)", zero_fraction=zero_fraction, elements=int(pooled.size),
                                             bound=bound)
            if len(drawn) >= 2 and drawn[-2].shape == drawn[-1].shape:
                checks[f"{label}/new_per_call"] = _check(not np.array_equal(drawn[-2], drawn[-1]),
                                                         "the last two calls drew different masks")
            if per_gate(case) and drawn[0].shape == shape:
                gates_equal = all(np.array_equal(drawn[0][0], drawn[0][gate]) for gate in range(1, GATES))
                checks[f"{label}/independent_gates"] = _check(not gates_equal, "the four gates' masks are not all the same")
    if len(directions(case)) == 2 and calls:
        for kind in KINDS:
            forward = [mask for mask in calls[0].get(("forward", kind), []) if mask is not None]
            backward = [mask for mask in calls[0].get(("backward", kind), []) if mask is not None]
            if forward and backward and forward[0].shape == backward[0].shape:
                checks[f"directions/{kind}/own_masks"] = _check(not np.array_equal(forward[0], backward[0]),
                                                                 "Bidirectional's two directions drew different masks")
    return checks


def _by_call(log: list[tuple[int, str, Any]], cells: dict[str, Any]) -> dict[tuple[str, str], list[np.ndarray]]:
    direction_of = {id(cell): direction for direction, cell in cells.items()}
    distinct: dict[tuple[str, str], dict[int, Any]] = {}
    for cell_id, kind, value in log:
        if cell_id in direction_of:
            distinct.setdefault((direction_of[cell_id], kind), {})[id(value)] = value
    return {key: [_concrete(value) for value in values.values()] for key, values in distinct.items()}


def _concrete(value: Any) -> np.ndarray | None:
    """The mask as NumPy; None for one only seen while a loop body was traced (JAX's scan): it still counts as a
    distinct mask of that call."""
    try:
        return _numpy(value)
    except Exception as error:  # a tracer cannot be read back
        if "Tracer" in type(error).__name__ or "trace" in str(error).lower():
            return None
        raise


def run_case(case: Case, settings: dict[str, Any], seed: int, tolerances: Tolerances, fault: str | None = None,
             alternative: str | None = None) -> dict[str, Any]:
    """Judge one case in inference, with Keras's own masks, and with the harness's; never raises. With an
    ``alternative`` semantics (a [[known]] claim's), every compared quantity is also judged against it
    (``alternative_items``)."""
    import keras

    from harness.execute import models
    from harness.execute.backends import isolate_case, kernel_mode
    from harness.execute.measure import error_record

    started = clock.perf_counter()
    entry: dict[str, Any] = {"case": case.name, "description": case.description, "definition": case.definition,
                             "kernel": case.kernel, "per_gate_masks": per_gate(case), "rates": rates(case),
                             "stages": {}, "items": {}, "checks": {}, "alternative": alternative, "alternative_items": {},
                             "fault_calls": 0}
    tolerance = {"outputs": tolerances.for_case(case, "outputs"), "training": tolerances.for_case(case, "training")}
    data = make_case_data(case, seed)
    semantics = ["documented"] + ([alternative] if alternative else [])

    def judge(label: str, quantity: str, actual: Any, expected_by: Any) -> None:
        """``expected_by(semantics)`` is the expectation under one semantics."""
        for name in semantics:
            items = entry["items"] if name == "documented" else entry["alternative_items"]
            items[label] = compared_item(actual, expected_by(name), tolerance[quantity], "float32", label)

    def stage(name: str) -> dict[str, Any]:
        entry["stages"][name] = {"ran": False, "error": None}
        return entry["stages"][name]

    def faulted() -> Any:
        return injected(fault) if fault else contextlib.nullcontext({"calls": 0})

    isolate_case()
    record = stage("build")
    try:
        model, _ = models.build_model("functional", case, data)
        cells = _cells(model, case)
        record["ran"] = True
    except Exception as error:  # a case Keras cannot build: an error, recorded
        record["error"] = error_record(error)
        return _finish(entry, started)
    # The implementation the cell runs: 1 when asked, or when recurrent_dropout forces it.
    wanted = 1 if per_gate(case) else 2
    running = {direction: int(cell.implementation) for direction, cell in cells.items()}
    entry["cell_implementation"] = running
    entry["checks"]["implementation_kept"] = _check(all(value == wanted for value in running.values()),
                                                    f"cells run implementation {running}, the case asks for {wanted}")

    with kernel_mode(case.kernel) as stand_in:
        record = stage("inference")
        try:
            inferred = _numpy(model(data.x, training=False))
            judge("inference/outputs", "outputs", inferred, lambda name: expected_output(case, data, None, name))
            record["ran"] = True
        except Exception as error:
            record["error"] = error_record(error)

        record = stage("captured")
        try:
            calls, first = [], None
            # Call 0 is the case's input (its output is judged); the others draw masks for the statistics on the
            # case's rows repeated to settings.statistics_batch rows (a mask's size is the batch's, not the data's).
            statistics_x = np.resize(data.x, (settings["statistics_batch"],) + data.x.shape[1:])
            batches = [case.batch] + [settings["statistics_batch"]] * (settings["calls"] - 1)
            with faulted() as fault_state:
                for call in range(settings["calls"]):
                    log: list[tuple[int, str, Any]] = []
                    with capturing(log):
                        output = _numpy(model(data.x if call == 0 else statistics_x, training=True))
                    calls.append(_by_call(log, cells))
                    if call == 0:
                        first = output
            entry["fault_calls"] += fault_state["calls"]
            entry["checks"].update(mask_checks(case, calls, settings["z"], batches))
            masks = {direction: {kind: _as_reference_masks(calls[0].get((direction, kind))) for kind in KINDS}
                     for direction in directions(case)}
            judge("captured/outputs", "outputs", first, lambda name: expected_output(case, data, masks, name))
            record["ran"] = True
        except Exception as error:
            record["error"] = error_record(error)

        record = stage("fixed")
        try:
            # The harness's masks, in the structure each cell asks for (four per gate with implementation 1).
            keras_per_gate = {direction: getattr(cell, "dropout_mask_count", None) == GATES for direction, cell in cells.items()}
            fixed = as_structure(seeded_masks(case, seed), keras_per_gate)
            by_cell = {id(cells[direction]): fixed[direction] for direction in directions(case)}
            target = targets(case, seed)

            def loss_under(name: str) -> list[float]:
                return [float(np.mean((expected_output(case, data, fixed, name) - target.astype(np.float64)) ** 2))]

            # The fault (if any) wraps the harness's masks: it acts on them as it would on Keras's.
            with fixing(by_cell, case.compute_dtype, case.layers[0].units), faulted() as fault_state:
                output = _numpy(model(data.x, training=True))
                judge("fixed/outputs", "outputs", output, lambda name: expected_output(case, data, fixed, name))
                initial = model.get_weights()
                model.compile(optimizer=keras.optimizers.SGD(learning_rate=settings["learning_rate"]), loss="mse")
                result = model.train_on_batch(data.x, target)
                loss = float(_numpy(result[0] if isinstance(result, (list, tuple)) else result))
                judge("fixed/train_on_batch_loss", "training", [loss], loss_under)
                moved = max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), initial))
                entry["checks"]["fixed/step_moved_weights"] = _check(np.isfinite(moved) and moved > 0,
                                                                     f"largest weight change after one SGD step: {moved:.3g}")
                model.set_weights(initial)
                history = model.fit(data.x, target, batch_size=case.batch, epochs=1, shuffle=False, verbose=0)
                judge("fixed/fit_loss", "training", [float(history.history["loss"][0])], loss_under)
            entry["fault_calls"] += fault_state["calls"]
            entry["keras_per_gate_masks"] = keras_per_gate
            entry["expected_loss"] = loss_under("documented")[0]
            record["ran"] = True
        except Exception as error:
            record["error"] = error_record(error)
        stand_in_calls = stand_in.calls if stand_in is not None else 0
    if case.kernel == "fused_on_cpu":
        entry["stand_in_calls"] = stand_in_calls
        entry["checks"]["fused_path_reached"] = _check(stand_in_calls > 0, f"the fused path's stand-in kernel ran {stand_in_calls} times")
    return _finish(entry, started)


def _as_reference_masks(drawn: list[np.ndarray | None] | None) -> Any:
    drawn = [mask for mask in drawn or [] if mask is not None]
    if not drawn:
        return None
    mask = drawn[0].astype(np.float64)
    return list(mask) if mask.ndim == 3 else mask


def _finish(entry: dict[str, Any], started: float) -> dict[str, Any]:
    entry["problems"] = [item["message"] for item in entry["items"].values() if not item["passed"]]
    entry["problems"] += [f"{name}: {check['detail']}" for name, check in entry["checks"].items() if not check["passed"]]
    errors = {name: stage["error"] for name, stage in entry["stages"].items() if stage["error"]}
    if errors:
        entry["status"] = "error"
    else:
        entry["status"] = "pass" if not entry["problems"] else "fail"
    entry["verdict"] = entry["status"]
    entry["known"] = None
    entry["duration_s"] = round(clock.perf_counter() - started, 3)
    return entry


def claim_for(case: Case, known: list[dict[str, Any]], backend: str, keras_version: str) -> dict[str, Any] | None:
    for claim in known:
        if case.name in claim["cases"] and keras_version in claim["keras"] and backend in claim["backends"]:
            return claim
    return None


# Where an error a [[known]] claim explains may not come from: the harness's own code (its mask capture and fixing, its
# reference) raising with the claimed type and message fragment is a harness bug, not Keras's.
HARNESS_CODE = ("harness/", "reference/")


def _claimed_error(error: dict[str, Any], expected: dict[str, Any]) -> bool:
    """The stage's error is the claimed one: its type, its whole message matching the claimed pattern, and raised
    outside the harness (the record says where: ``raised_in``)."""
    raised_in = error.get("raised_in")
    return (error["type"] == expected["type"] and re.fullmatch(expected["message"], error["message"]) is not None
            and bool(raised_in) and not str(raised_in).startswith(HARNESS_CODE))


def judge_known(entry: dict[str, Any], claim: dict[str, Any] | None, backend: str) -> None:
    """``known`` when the claim describes the case's measurement exactly, and it did not pass: the stages that raised
    (each with this backend's error type and message fragment, raised outside the harness's code), the checks that
    failed, and, with a claim's ``semantics``, every compared quantity within tolerance of that semantics. The
    measurement stays in the record."""
    if claim is None or entry["status"] in ("pass", "refused"):
        return
    errors = {name: stage["error"] for name, stage in entry["stages"].items() if stage["error"]}
    expected_error = claim.get("errors", {}).get(backend)
    if set(errors) != set(claim.get("stages", [])):
        return
    if errors and (expected_error is None or not all(_claimed_error(error, expected_error) for error in errors.values())):
        return
    failed_checks = {name for name, check in entry["checks"].items() if not check["passed"]}
    if failed_checks != set(claim.get("failing_checks", [])):
        return
    failed_items = {label for label, item in entry["items"].items() if not item["passed"]}
    if claim.get("semantics"):
        explained = entry["alternative_items"] and all(item["passed"] for item in entry["alternative_items"].values())
        if not explained or set(entry["alternative_items"]) != set(entry["items"]):
            return
    elif failed_items:
        return
    entry["verdict"] = "known"
    entry["known"] = {"id": claim["id"], "description": claim["description"], "reproducer": claim["reproducer"]}


# --- the study ---------------------------------------------------------------------------------------


def training_mode_path(out_dir: Path, backend: str) -> Path:
    return Path(out_dir) / f"{backend}.training_mode.json"


def refused_entry(case: Case, reason: str) -> dict[str, Any]:
    """A case this device refuses by design (a kernel mode that only exists on CPU): recorded, not run."""
    return {"case": case.name, "description": case.description, "definition": case.definition, "status": "refused",
            "verdict": "refused", "refused": reason, "stages": {}, "items": {}, "problems": []}


def run_training_mode_study(backend: BackendInfo, out_dir: Path, seed: int = DEFAULT_SEED, *, command: str = "",
                            pattern: str | None = None, fault: str | None = None, setup: dict[str, Any] | None = None,
                            tolerances: Tolerances | None = None) -> dict[str, Any]:
    """Every selected case; the record is rewritten after each."""
    setup = setup or load_setup()
    cases = select(setup["cases"], pattern)
    tolerances = tolerances or load_tolerances(backend.device_class, backend.name)
    path = training_mode_path(out_dir, backend.name)
    record: dict[str, Any] = make_header("training_mode", backend, seed=seed, command=command, fault=fault) | {
        "settings": setup["settings"],
        "tolerances": {"float32": {quantity: rows[quantity] for quantity in ("outputs", "training")
                                   for dtype, rows in tolerance_table_json(tolerances).items() if dtype == "float32"}},
        "cases": [], "duration_s": None,
    }
    started = clock.perf_counter()
    store.write_json(path, record)
    from harness.execute.backends import KernelModeRefused

    for case in cases:
        # Under a fault too: a case whose faulted measurement a claim explains exactly (what it shows without the fault)
        # is known, not a caught fault.
        claim = claim_for(case, setup["known"], backend.name, str(backend.versions.get("keras")))
        try:
            entry = run_case(case, setup["settings"], seed, tolerances, fault, claim.get("semantics") if claim else None)
        except KernelModeRefused as refused:  # fused_on_cpu on a GPU, where the as-shipped twin runs the real kernel
            entry = refused_entry(case, str(refused))
        judge_known(entry, claim, backend.name)
        record["cases"].append(entry)
        store.write_json(path, record)
    record["finished"] = now()
    record["duration_s"] = round(clock.perf_counter() - started, 3)
    store.write_json(path, record)
    return record


def exit_code(record: dict[str, Any]) -> int:
    cases = record["cases"]
    if not cases or not any(stage["ran"] for entry in cases for name, stage in entry["stages"].items() if name != "build"):
        return EXIT_COULD_NOT_RUN
    if record.get("fault"):
        ran = [entry for entry in cases if entry.get("fault_calls")]
        if not ran:
            return EXIT_COULD_NOT_RUN
        return EXIT_OK if any(entry["verdict"] == "fail" for entry in ran) else EXIT_FOUND
    return EXIT_OK if all(entry["verdict"] in ("pass", "known", "refused") for entry in cases) else EXIT_FOUND


def problems(record: dict[str, Any]) -> list[str]:
    lines = []
    for entry in record["cases"]:
        if entry["verdict"] in ("pass", "known", "refused") and not record.get("fault"):
            continue
        for name, stage in entry["stages"].items():
            if stage["error"]:
                lines.append(f"{entry['case']}: {name}: raised {stage['error']['summary'][:300]}")
        lines += [f"{entry['case']}: {problem}" for problem in entry["problems"]]
    return lines


def summary(record: dict[str, Any]) -> str:
    cases = record["cases"]
    counts = {verdict: sum(entry["verdict"] == verdict for entry in cases) for verdict in ("pass", "known", "fail", "error")}
    line = (f"{record['backend']}: training mode: {counts['pass']} of {len(cases)} cases pass, {counts['known']} known, "
            f"{counts['fail']} fail, {counts['error']} error")
    ratios = [item["tolerance_ratio"] for entry in cases if entry["verdict"] == "pass" for item in entry["items"].values()]
    if ratios:
        line += f"; worst tolerance ratio of the passing cases {max(ratios):.3g}"
    for entry in cases:
        if entry["verdict"] == "known":
            line += f"; {entry['case']}: known ({entry['known']['id']})"
    if record.get("fault"):
        caught = [entry["case"] for entry in cases if entry.get("fault_calls") and entry["verdict"] == "fail"]
        line += f"; fault {record['fault']!r} caught in {len(caught)} of {sum(bool(e.get('fault_calls')) for e in cases)} cases"
    return line
