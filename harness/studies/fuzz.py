"""Property-based fuzzing of the case space: random valid cases, run against the reference, shrunk on failure.

``case_entries()`` is a hypothesis strategy drawing case tables (the ``[[case]]`` TOML schema that
``harness.case.schema.parse_case`` accepts) across the axes the built-in matrices cover one or two at a
time: the layer stack (one or two recurrent layers of type lstm, bidirectional or branches, with an
optional dense or time_distributed_dense head), the LSTM options, the mask kind and source, the
initial state, the entry point and jit_compile. Sizes are drawn so that batch, time, features and
the first layer's units are pairwise distinct, as every case of the project must be.

``fuzz()`` runs those cases on one backend through ``harness.execute.measure.run_case``. A case that fails,
errors or times out (and is not a known divergence) fails the hypothesis test, hypothesis shrinks
it to a minimal configuration, and that configuration is printed as a ready-to-paste ``[[case]]``
entry (``to_toml``) with the failing comparisons. Nothing here imports Keras at import time.

``fuzz_gradients()`` (``harness fuzz --gradients``) draws the same configurations, restricted to those the
NumPy backward pass supports (``gradient_case_entries``), takes the backend's gradients through the gradient
measure step (``harness.execute.gradients.run_gradient_case``, judged by the ``gradients`` tolerance row) and
classifies every disagreement (``classify_disagreement``) by ``harness.truth.conditioning``'s rule from a
float64 recomputation on the backend and a condition estimate from the float64 reference: an
``ill_conditioned`` case is printed apart with its numbers and the fuzzing goes on, as is a case whose reference
gradients overflow float32 (status invalid: an exploding gradient cannot be judged in float32); only a ``bug``
(``gradient_outcome``) fails the hypothesis test, is shrunk and makes the command exit 1.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, assume, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from harness.case.kinds import feedforward_kind_names, kind_of, wrapper_names
from harness.case.schema import (
    ENTRY_POINTS,
    INITIAL_STATES,
    JIT_COMPILE,
    MASK_SOURCES,
    MASKS,
    MERGE_MODES,
    CaseError,
    parse_case,
)
from reference.activations import ACTIVATIONS

FUZZ_CASE_NAME = "fuzz_found"
FUZZ_SOURCE = "harness.studies.fuzz"
CASE_TIMEOUT_S = 120
FAILING_STATUSES = ("fail", "error", "timeout", "invalid")

# Defaults first: hypothesis shrinks towards the first element of sampled_from, so a shrunk case
# keeps only the options that matter to its failure (an option at its default is left out).
# "exponential" overflows float32 on random inputs, so it is left out of the fuzzed activations.
FUZZ_ACTIVATIONS: tuple[str, ...] = tuple(name for name in ACTIVATIONS if name != "exponential")
_CELL_ACTIVATIONS = ("tanh",) + tuple(name for name in FUZZ_ACTIVATIONS if name != "tanh")
_GATE_ACTIVATIONS = ("sigmoid",) + tuple(name for name in FUZZ_ACTIVATIONS if name != "sigmoid")
_HEAD_ACTIVATIONS = ("linear",) + tuple(name for name in FUZZ_ACTIVATIONS if name != "linear")
# The LSTM family (the LSTM and the wrappers of an LSTM) with the LSTM options below; heads: every feedforward kind.
_FUZZED_CELL = "lstm"
_RECURRENT_TYPES = (_FUZZED_CELL,) + wrapper_names(_FUZZED_CELL)
_HEAD_TYPES = ("none",) + feedforward_kind_names()
_RATES = (0.0, 0.3)

_MAX_BATCH = 5
_MAX_TIME = 8
_MAX_FEATURES = 6
_MAX_UNITS = 7
_MAX_HEAD_UNITS = 4


def _option(draw: st.DrawFn, options: dict[str, Any], key: str, choices: st.SearchStrategy, default: Any, used: bool = True) -> Any:
    """Draw one option; record it in ``options`` only when ``used`` and it differs from Keras's default.

    Every option is drawn whether it is used or not, so that every stack draws the same number of
    choices and hypothesis shrinks towards the simplest stack rather than the one that draws least.
    """
    value = draw(choices)
    if used and (value != default or type(value) is not type(default)):
        options[key] = value
    return value


def _lstm_options(draw: st.DrawFn, *, allow_go_backwards: bool, allow_return_state: bool, needs_sequences: bool) -> dict[str, Any]:
    """The LSTM options of one recurrent layer (without type and units)."""
    options: dict[str, Any] = {}
    _option(draw, options, "activation", st.sampled_from(_CELL_ACTIVATIONS), "tanh")
    _option(draw, options, "recurrent_activation", st.sampled_from(_GATE_ACTIVATIONS), "sigmoid")
    _option(draw, options, "use_bias", st.sampled_from((True, False)), True)
    _option(draw, options, "return_sequences", st.booleans(), False)
    if needs_sequences:
        options["return_sequences"] = True
    _option(draw, options, "return_state", st.booleans(), False, used=allow_return_state)
    _option(draw, options, "go_backwards", st.booleans(), False, used=allow_go_backwards)
    _option(draw, options, "zero_output_for_mask", st.booleans(), False)
    _option(draw, options, "unroll", st.booleans(), False)
    _option(draw, options, "implementation", st.sampled_from((2, 1)), 2)
    _option(draw, options, "dropout", st.sampled_from(_RATES), 0.0)
    _option(draw, options, "recurrent_dropout", st.sampled_from(_RATES), 0.0)
    return options


def _recurrent_layer(draw: st.DrawFn, units: int, *, is_last: bool, needs_sequences: bool) -> dict[str, Any]:
    """One recurrent layer table; only the last layer of the stack may have several outputs."""
    layer_type = draw(st.sampled_from(_RECURRENT_TYPES))
    kind = kind_of(layer_type)
    shared = draw(st.booleans())
    merge_mode = draw(st.sampled_from(MERGE_MODES if is_last else tuple(m for m in MERGE_MODES if m != "none")))
    options = _lstm_options(
        draw,
        allow_go_backwards="go_backwards" in (kind_of(_FUZZED_CELL) if kind.nested else kind).options,  # where they go
        allow_return_state=is_last and "return_state" in kind.options,
        needs_sequences=needs_sequences,
    )
    if kind.nested:
        return {"type": layer_type, "shared": shared, "layer": {"type": _FUZZED_CELL, "units": units, **options}}
    layer: dict[str, Any] = {"type": layer_type, "units": units}
    if "merge_mode" in kind.options and merge_mode != kind.options["merge_mode"][0]:
        layer["merge_mode"] = merge_mode
    layer.update(options)
    return layer


def _distinct_sizes(draw: st.DrawFn, min_batch: int) -> tuple[int, int, int, int]:
    """batch, time, features and the first layer's units, pairwise distinct."""
    batch = draw(st.integers(min_batch, _MAX_BATCH))
    time_steps = draw(st.integers(1, _MAX_TIME).filter(lambda t: t != batch))
    features = draw(st.integers(1, _MAX_FEATURES).filter(lambda f: f not in (batch, time_steps)))
    units = draw(st.integers(1, _MAX_UNITS).filter(lambda u: u not in (batch, time_steps, features)))
    return batch, time_steps, features, units


@st.composite
def _case_entry(draw: st.DrawFn, dtypes: tuple[str, ...]) -> dict[str, Any]:
    dtype = draw(st.sampled_from(dtypes))
    mask = draw(st.sampled_from(MASKS))
    batch, time_steps, features, units = _distinct_sizes(draw, min_batch=2 if mask == "all_masked_row" else 1)

    recurrent_count = draw(st.integers(1, 2))
    head = draw(st.sampled_from(_HEAD_TYPES))
    layers: list[dict[str, Any]] = []
    for index in range(recurrent_count):
        is_last_recurrent = index == recurrent_count - 1
        layer_units = units if index == 0 else draw(st.integers(1, _MAX_UNITS))
        needs_sequences = not is_last_recurrent or (head != "none" and kind_of(head).needs_time_axis)
        layers.append(
            _recurrent_layer(draw, layer_units, is_last=is_last_recurrent and head == "none", needs_sequences=needs_sequences)
        )
    head_layer: dict[str, Any] = {"type": head, "units": draw(st.integers(1, _MAX_HEAD_UNITS))}
    _option(draw, head_layer, "activation", st.sampled_from(_HEAD_ACTIVATIONS), "linear")
    _option(draw, head_layer, "use_bias", st.sampled_from((True, False)), True)
    if head != "none":
        layers.append(head_layer)

    entry: dict[str, Any] = {
        "name": FUZZ_CASE_NAME,
        "description": "found by harness.studies.fuzz",
        "dtype": dtype,
        "batch": batch,
        "time": time_steps,
        "features": features,
    }
    if mask != "none":
        entry["mask"] = mask
    mask_source = draw(st.sampled_from(MASK_SOURCES))
    if mask != "none" and mask_source != "masking_layer":
        entry["mask_source"] = mask_source
    initial_state = draw(st.sampled_from(INITIAL_STATES))
    if initial_state != "none" and kind_of(layers[0]["type"]).takes_initial_state:  # branches take none
        entry["initial_state"] = initial_state
    entry_point = draw(st.sampled_from(ENTRY_POINTS))
    if entry_point != "predict":
        entry["entry_point"] = entry_point
    jit_compile = draw(st.sampled_from(JIT_COMPILE))
    if jit_compile != "auto":
        entry["jit_compile"] = jit_compile
    entry["layers"] = layers

    # The construction above only makes valid stacks; parse_case stays the judge.
    try:
        parse_case(entry, FUZZ_SOURCE)
    except CaseError:
        assume(False)
    return entry


def case_entries(dtypes: tuple[str, ...] | list[str] = ("float32",)) -> st.SearchStrategy[dict[str, Any]]:
    """A strategy of valid case tables (what ``parse_case`` accepts), float32 unless ``dtypes`` widens it."""
    if not dtypes:
        raise ValueError("dtypes must name at least one dtype")
    return _case_entry(tuple(dtypes))


# ---------------------------------------------------------------------------------------------
# A minimal TOML writer for case tables: strings, bools, ints, floats, lists and inline tables.

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_string(value: str) -> str:
    out = ['"']
    for char in value:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _toml_key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys are strings, not {key!r}")
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)  # fullmatch: "$" would accept "a\n"


def _toml_float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(value)
    return text if any(c in text for c in ".eE") else text + ".0"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _toml_float(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


def to_toml(entry: dict[str, Any]) -> str:
    """``entry`` as one ``[[case]]`` table; a list of tables is written one per line, as in cases.toml."""
    lines = ["[[case]]"]
    for key, value in entry.items():
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{_toml_key(key)} = [")
            lines += [f"  {_toml_value(v)}," for v in value]
            lines.append("]")
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------


def failure_messages(result: dict[str, Any]) -> list[str]:
    """The messages of every comparison that did not pass, or the error of a case that did not run."""
    messages = []
    for api_result in result.get("apis", {}).values():
        for item in api_result.get("items", {}).values():
            if not item.get("passed", False):
                messages.append(str(item.get("message", "")))
    messages += [problem for problem in result.get("problems", []) if problem.startswith("APIs disagree")]
    if result.get("error"):
        messages.append(str(result["error"]["summary"]))
    return messages


class FuzzFailure(AssertionError):
    """A fuzzed case failed, errored or timed out on the backend."""


def _hypothesis_settings(examples: int, seed: int | None, shrink: bool = True,
                         suppress: tuple[HealthCheck, ...] = (HealthCheck.too_slow,)) -> settings:
    """The fuzz runs' hypothesis settings: no deadline and no database, derandomized when a seed is given, one bug
    reported, shrunk unless ``shrink`` is False, quiet."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is not None,
        report_multiple_bugs=False,
        phases=(Phase.explicit, Phase.generate) + ((Phase.shrink,) if shrink else ()),
        suppress_health_check=suppress,
        verbosity=Verbosity.quiet,
        print_blob=False,
    )


def _print_failure(backend: str, last_failure: dict[str, Any], failure_error: BaseException) -> None:
    """The failing case as TOML with its verdict and messages (and, for a gradient case, the rule that called it a bug)."""
    if not last_failure:
        print(f"# no failing case was recorded; hypothesis raised {type(failure_error).__name__}: {failure_error}")
        return
    result, judgement = last_failure["result"], last_failure.get("judgement")
    print(to_toml(last_failure["entry"]), end="")
    print(f"# verdict on {backend}: {result['verdict']} (measured {result['status']})"
          + (f"; classified bug by the rule: {judgement['rule']}" if judgement else ""))
    for message in failure_messages(result):
        for line in message.splitlines() or [""]:
            print(f"# {line}")
    for line in _judgement_lines(judgement) if judgement else []:
        print(f"# {line}")


def fuzz(backend: str, examples: int, seed: int | None) -> int:
    """Run ``examples`` fuzzed cases on ``backend``; print the shrunk failure as TOML. 0: no failure, 1: failure."""
    from harness.execute.backends import activate

    info = activate(backend)
    import keras

    from harness.case.divergences import device_kind, load_divergences
    from harness.case.tolerances import load_tolerances
    from harness.case.weights import DEFAULT_SEED
    from harness.execute.measure import run_case
    from harness.verdicts.classify import classify_result

    tolerances = load_tolerances(info.device_class, info.name)
    divergences = load_divergences()
    exercised: set[str] = set()
    counts = {"examples": 0}
    last_failure: dict[str, Any] = {}

    @_hypothesis_settings(examples, seed)
    @given(case_entries())
    def check(entry: dict[str, Any]) -> None:
        case = parse_case(entry, FUZZ_SOURCE)
        counts["examples"] += 1
        exercised.add(json.dumps(entry, sort_keys=True))
        # Weights come from the published seed and the case name, so the printed TOML reproduces
        # the failure with 'python -m harness run --case-file'.
        arrays: dict[tuple[str, str], Any] = {}
        result = run_case(case, DEFAULT_SEED, tolerances, arrays, CASE_TIMEOUT_S)
        # Known divergences match on the configuration, so a fuzzed case is judged like any other.
        verdict = classify_result(case, info.name, info.versions, result, arrays, tolerances, divergences, DEFAULT_SEED,
                                  device_kind(info.device_class))
        result["verdict"] = verdict["verdict"]
        keras.backend.clear_session()
        if verdict["verdict"] in FAILING_STATUSES:
            last_failure.clear()
            last_failure.update(entry=entry, result=result)
            raise FuzzFailure(f"{result['status']}: " + "; ".join(failure_messages(result)))

    if seed is not None:
        check = hypothesis_seed(seed)(check)

    started = time.perf_counter()
    failed = False
    try:
        check()
    except Exception as error:  # the shrunk FuzzFailure, or hypothesis reporting a flaky one
        failed = True
        failure_error: BaseException = error
    elapsed = time.perf_counter() - started
    summary = f"fuzz: {counts['examples']} examples on {info.name}, {len(exercised)} combinations exercised"
    if not failed:
        print(f"{summary}, no failure ({elapsed:.0f} s)")
        return 0
    print(f"{summary}, failure shrunk to: ({elapsed:.0f} s)")
    _print_failure(info.name, last_failure, failure_error)
    return 1


# ---------------------------------------------------------------------------------------------
# Gradients: the same configurations, the backend's autodiff against the NumPy backward pass, and every
# disagreement classified as ill-conditioning or bug (harness.truth.conditioning) from a float64 recomputation.

GRADIENT_DTYPE = "float32"  # the dtype with a measured gradient tolerance row


def _has_reference_gradient(entry: dict[str, Any]) -> bool:
    from harness.truth.expected_gradients import GradientNotSupported, check_supported

    try:
        check_supported(parse_case(entry, FUZZ_SOURCE))
    except (CaseError, GradientNotSupported):
        return False
    return True


def gradient_case_entries() -> st.SearchStrategy[dict[str, Any]]:
    """``case_entries`` (float32) restricted to the configurations the reference backward pass supports."""
    return case_entries((GRADIENT_DTYPE,)).filter(_has_reference_gradient)


def failing_gradient_keys(result: dict[str, Any]) -> list[str]:
    """The gradient keys (and the loss) beyond tolerance in any API of a gradient case result."""
    return sorted({key for entry in result.get("apis", {}).values() for key, item in entry.get("items", {}).items()
                   if not item.get("passed", True)})


def classify_disagreement(case: Any, result: dict[str, Any], raw: dict[tuple[str, str], Any], seed: int,
                          backend_gradients: Any = None, keys: list[str] | None = None, float64_claim: str | None = None,
                          ) -> dict[str, Any]:
    """Ill-conditioning or bug for a gradient case that failed (harness.truth.conditioning's rule): per failing key
    the float32 error (worst API), kappa from the float64 reference, and the error of a float64 recomputation on
    the backend (the first API's build with dtype float64, the same weights, inputs and targets). ``keys`` judges
    other keys than the failing ones (the measurement of the rule's factor judges them all); ``float64_claim``: the id
    of a known divergence that bounds this backend's float64 computation of the case (``float64_bound``), recorded
    beside each key and never counted as the float64 recomputation agreeing.
    Never raises."""
    from dataclasses import replace as replace_case

    import keras
    import numpy as np

    from harness.case.weights import make_case_data
    from harness.execute import models
    from harness.execute.backends import kernel_mode
    from harness.execute.gradients import LOSS_KEY, model_gradients, rounded_targets
    from harness.execute.measure import error_record
    from harness.truth.conditioning import RULE, classify, classify_key, gradient_condition, relative_error

    judgement: dict[str, Any] = {"rule": RULE, "keys": [], "error": None}
    failing = failing_gradient_keys(result) if keys is None else keys
    try:
        data = make_case_data(case, seed)
        loss, expected, targets = rounded_targets(case, data, seed)
        expected[LOSS_KEY] = np.asarray(loss)
        kappa = gradient_condition(case, data, targets, LOSS_KEY)

        def as64(group: Any) -> Any:
            return tuple(np.asarray(w, np.float64) for w in group)

        case64 = replace_case(case, dtype="float64")
        data64 = replace_case(data, x=data.x.astype(np.float64), initial_state=None if data.initial_state is None else as64(data.initial_state),
                              layer_weights=tuple(tuple(as64(group) for group in layer) for layer in data.layer_weights))
        # The default dtype policy float64 too: a layer the case gives no dtype (the Concatenate joining two branches)
        # would otherwise compute in float32.
        floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
        keras.config.set_floatx("float64")
        keras.config.set_dtype_policy("float64")
        try:
            with kernel_mode(case.kernel):
                model, blocks = models.build_model(case.apis[0], case64, data64)
                grads64 = model_gradients(model, blocks, case64, data64, targets,
                                          float64_loss(case64, targets, backend_gradients))
        finally:
            keras.config.set_floatx(floatx)
            keras.config.set_dtype_policy(policy)
        judgement["float64_layers"] = sorted({str(layer.dtype_policy.compute_dtype) for layer in model.layers})
        for key in failing:
            error32 = max((relative_error(value, expected[key]) for (api, name), value in raw.items() if name == key),
                          key=lambda e: np.nan_to_num(e, nan=np.inf), default=float("nan"))
            judgement["keys"].append(classify_key(key, error32, relative_error(grads64[key], expected[key]), kappa[key],
                                                  float64_claim=float64_claim))
    except Exception as error:  # a recomputation that cannot run explains nothing
        judgement["error"] = error_record(error)["summary"]
        judgement["keys"] = []
    judgement["verdict"] = classify(judgement["keys"])
    return judgement


def float64_loss(case: Any, targets: dict[str, Any], backend_gradients: Any = None) -> Any:
    """A gradient function for ``model_gradients`` that takes the gradient of the same loss, sum over outputs of
    mean((y - t)^2), written as sum((y - t)^2) * (1 / size): keras.ops.mean computes a float64 input in float32 on
    PyTorch (dtypes.result_type(x.dtype, "float32"), keras/src/backend/torch/numpy.py), which would give every
    float64 gradient a float32-sized error through dL/dy. ``backend_gradients`` (a fault's) or the backend's own
    ``loss_and_gradients`` computes it."""
    import keras

    from harness.execute.backends import backend_module

    compute = backend_gradients or backend_module(keras.backend.backend()).loss_and_gradients
    names = list(case.output_names)

    def exact_loss(outputs: Any) -> Any:
        values = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        total = None
        for name, value in zip(names, values):
            target = keras.ops.convert_to_tensor(targets[name].astype("float64"))
            term = keras.ops.sum(keras.ops.square(keras.ops.subtract(value, target))) * (1.0 / targets[name].size)
            total = term if total is None else total + term
        return total

    def gradients(model: Any, inputs: Any, loss_fn: Any, differentiable: Any) -> Any:
        return compute(model, inputs, exact_loss, differentiable)

    return gradients


def float64_bound(case: Any, info: Any, divergences: list) -> tuple[str, str] | None:
    """The known divergence that says this backend does not compute the float64 version of ``case`` in float64
    end to end, as (id, what it claims): a bound claim (the loosest, "bound <max_abs_error>") or else a semantics
    claim whose alternative runs an op in float32 (harness.case.semantics.FLOAT32_OP_FIELDS, "semantics <fields>");
    None when none applies."""
    from dataclasses import replace as replace_case

    from harness.case.divergences import device_kind
    from harness.case.semantics import FLOAT32_OP_FIELDS

    case64 = replace_case(case, dtype="float64")
    device = device_kind(info.device_class)
    applicable = [d for d in divergences if d.applies_to(case64, info.name, info.versions, device)]
    bounds = sorted((d for d in applicable if d.kind == "bound"), key=lambda d: float(d.max_abs_error), reverse=True)
    if bounds:
        return bounds[0].id, f"bound {float(bounds[0].max_abs_error):g}"
    for divergence in applicable:
        in_float32 = [name for name in FLOAT32_OP_FIELDS if divergence.kind == "semantics" and getattr(divergence.semantics, name)]
        if in_float32:
            return divergence.id, "semantics " + ", ".join(in_float32)
    return None


def _judgement_lines(judgement: dict[str, Any]) -> list[str]:
    lines = [judgement_key.line() for judgement_key in judgement["keys"]]
    mixed = [dtype for dtype in judgement.get("float64_layers", []) if dtype != "float64"]
    if mixed:
        lines.append(f"the float64 recomputation had layers computing in {', '.join(mixed)}")
    if judgement.get("error"):
        lines.append(f"the float64 recomputation could not run: {judgement['error']}")
    if not judgement["keys"] and not judgement.get("error"):
        lines.append("no gradient beyond tolerance (the failure is not numeric: APIs disagree or a dtype is wrong)")
    return lines


def gradient_outcome(result: dict[str, Any], judgement: dict[str, Any] | None) -> str:
    """What a fuzzed gradient case is: pass, known (a known forward divergence), ill_conditioned (a disagreement the
    rule of harness.truth.conditioning explains), beyond_float32 (status invalid: the reference's gradients overflow
    float32, so float32 cannot be judged; an exploding gradient, not a bug) or bug (anything else that failed)."""
    verdict = result["verdict"]
    if verdict in ("pass", "known", "refused"):
        return verdict
    if verdict == "invalid":
        return "beyond_float32"
    if verdict == "fail" and judgement is not None and judgement["verdict"] == "ill_conditioned":
        return "ill_conditioned"
    return "bug"


def fuzz_gradients(backend: str, examples: int, seed: int | None, fault: str | None = None, shrink: bool = True) -> int:
    """Fuzz gradient configurations on ``backend``; each disagreement is classified. Prints the ill-conditioned
    cases apart with their numbers and the shrunk bug (if any) as TOML. 0: no bug, 1: a bug, 2: nothing measured.
    ``fault`` (harness.execute.gradients.GRADIENT_FAULTS) is patched into Keras for the whole run."""
    from harness.execute.backends import activate

    info = activate(backend)
    import keras

    from harness.case.divergences import load_divergences
    from harness.case.tolerances import load_tolerances
    from harness.case.weights import DEFAULT_SEED
    from harness.execute.gradients import GRADIENT_FAULTS, injected, run_gradient_case
    from harness.studies.gradients import _judge

    if fault is not None and fault not in GRADIENT_FAULTS:
        raise ValueError(f"unknown gradient fault {fault!r}; accepted: {', '.join(GRADIENT_FAULTS)}")
    tolerances = load_tolerances(info.device_class, info.name)
    divergences = load_divergences()
    exercised: set[str] = set()
    counts = {"examples": 0, "known": 0}
    ill_conditioned: dict[str, dict[str, Any]] = {}
    beyond_float32: dict[str, dict[str, Any]] = {}
    last_failure: dict[str, Any] = {}
    in_force: dict[str, Any] = {}

    @_hypothesis_settings(examples, seed, shrink, (HealthCheck.too_slow, HealthCheck.filter_too_much))
    @given(gradient_case_entries())
    def check(entry: dict[str, Any]) -> None:
        case = parse_case(entry, FUZZ_SOURCE)
        counts["examples"] += 1
        key = json.dumps(entry, sort_keys=True)
        exercised.add(key)
        gradients_fn = in_force["fault"].backend_gradients if "fault" in in_force else None
        raw: dict[tuple[str, str], Any] = {}
        # Known only as the gradient study judges it: the claimed exception, or the claimed semantics' backward pass.
        result = _judge(run_gradient_case(case, DEFAULT_SEED, tolerances, raw, CASE_TIMEOUT_S, gradients_fn), case, info,
                        divergences, raw, DEFAULT_SEED, tolerances)
        counts["known"] += result["verdict"] == "known"
        judgement = None
        if result["verdict"] == "fail":
            claim64 = float64_bound(case, info, divergences)
            judgement = classify_disagreement(case, result, raw, DEFAULT_SEED, gradients_fn,
                                              float64_claim=None if claim64 is None else claim64[0])
        keras.backend.clear_session()
        outcome = gradient_outcome(result, judgement)
        if outcome == "ill_conditioned":
            ill_conditioned[key] = {"entry": entry, "judgement": judgement}
            return
        if outcome == "beyond_float32":
            beyond_float32[key] = {"entry": entry, "judgement": None}
            return
        if outcome == "bug":
            last_failure.clear()
            last_failure.update(entry=entry, result=result, judgement=judgement)
            raise FuzzFailure(f"{result['status']}: " + "; ".join(failure_messages(result)))

    if seed is not None:
        check = hypothesis_seed(seed)(check)

    started = time.perf_counter()
    failed = False
    with contextlib.ExitStack() as stack:
        if fault is not None:
            in_force["fault"] = stack.enter_context(injected(fault))
        try:
            check()
        except Exception as error:  # the shrunk FuzzFailure, or hypothesis reporting a flaky one
            failed = True
            failure_error: BaseException = error
    elapsed = time.perf_counter() - started
    summary = (f"fuzz --gradients: {counts['examples']} examples on {info.name}"
               + (f" with fault {fault!r} injected" if fault else "")
               + f", {len(exercised)} combinations exercised, {counts['known']} known, {len(ill_conditioned)} ill-conditioned (not bugs)"
               + f", {len(beyond_float32)} beyond float32's range (not judged)")
    if ill_conditioned:
        print(f"# ill-conditioned, kept apart from bugs (rule: {next(iter(ill_conditioned.values()))['judgement']['rule']}):")
        for found in ill_conditioned.values():
            print(to_toml(found["entry"]), end="")
            for line in _judgement_lines(found["judgement"]):
                print(f"# {line}")
    if beyond_float32:
        print("# the reference's gradients are beyond float32's range (exploding gradients: invalid, not judged, not bugs):")
        for found in beyond_float32.values():
            print(to_toml(found["entry"]), end="")
    if counts["examples"] == 0:
        print(f"{summary}: nothing measured")
        return 2
    if not failed:
        print(f"{summary}, no bug ({elapsed:.0f} s)")
        return 0
    print(f"{summary}, bug {'shrunk to' if shrink else 'found'}: ({elapsed:.0f} s)")
    _print_failure(info.name, last_failure, failure_error)
    return 1
