"""Measure one case on the active backend, in-process: build it in every API, run it, compare each
output with the float64 reference. This is the one measure step every study reuses.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import signal
import time
import traceback
from typing import Any, Callable, Iterator

import numpy as np

from harness.case.schema import Case
from harness.case.tolerances import Tolerances, quantity_of
from harness.case.weights import CaseData, make_case_data
from harness.execute.kinds import keras_cell
from harness.truth.compare import compare, max_difference
from harness.truth.expected import expected_outputs

DEFAULT_CASE_TIMEOUT_S = 300


class CaseTimeout(Exception):
    """A case ran past its time limit."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def innermost_exception(error: BaseException) -> BaseException:
    """The exception that caused ``error``: Keras re-raises errors from inside a layer as a new
    exception of the same type whose message wraps the original (with ``from None``), so the chain is
    followed through explicit causes and through Keras's wrappers to the original."""
    seen = {id(error)}
    while True:
        inner = error.__cause__
        if inner is None and getattr(error, "_keras_call_info_injected", False):
            inner = error.__context__
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def raising_frame(error: BaseException) -> tuple[str, str] | None:
    """Where ``error`` was raised: the innermost frame of its traceback, as (source file relative to the
    package root it was imported from, e.g. "keras/src/backend/torch/rnn.py"; "file:line in function"), or
    None when it carries no traceback. The path comes from the frame's module name, so it reads the same
    wherever the package is installed; a frame without one keeps its file name."""
    frames = list(traceback.walk_tb(error.__traceback__))
    if not frames:
        return None
    frame, line = frames[-1]
    filename = frame.f_code.co_filename.replace("\\", "/")
    module = frame.f_globals.get("__name__", "")
    parts = filename.split("/")
    if module and module != "__main__" and not module.startswith("<"):
        depth = len(module.split(".")) + (1 if parts[-1] == "__init__.py" else 0)
        if parts[-1].endswith(".py") and len(parts) >= depth:
            filename = "/".join(parts[-depth:])
    return filename, f"{filename}:{line} in {frame.f_code.co_name}"


def error_record(error: BaseException) -> dict[str, str]:
    """The innermost exception's type and message (one line, terminal colours removed), and where it was
    raised (``raised_in``: the source file of the innermost traceback frame, see raising_frame; ``raised_at``
    adds the line and function), so a crash claim can name the file that raises, not only the message."""
    inner = innermost_exception(error)
    lines = [line.strip() for line in _ANSI.sub("", str(inner)).splitlines() if line.strip()]
    message = " / ".join(lines)
    if len(message) > 900:  # keep the head (what failed) and the tail (TensorFlow puts the reason after its traceback)
        message = message[:280] + " ... " + message[-600:]
    where = raising_frame(inner)
    return {"type": type(inner).__name__, "message": message, "summary": f"{type(inner).__name__}: {message}" if message else type(inner).__name__,
            "raised_in": where[0] if where else None, "raised_at": where[1] if where else None}


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise CaseTimeout in the main thread after ``seconds`` (SIGALRM; no-op where unavailable)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise CaseTimeout(f"case ran past its {seconds} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# Keras 3's one by-design refusal of use_cudnn=True: LSTM.inner_loop (keras/src/layers/rnn/lstm.py) and GRU.inner_loop
# (gru.py) raise exactly this ValueError, on every backend, when the backend's fused lstm or gru declines the
# configuration (raises NotImplementedError) and use_cudnn is True rather than "auto". The raising file is the layer's
# own (harness.execute.kinds: KerasCell.source).
CUDNN_REFUSAL_TYPE = ValueError
CUDNN_REFUSAL_MESSAGE = ("use_cudnn=True was specified, but cuDNN is not supported for this layer configuration "
                         "with this backend. Pass use_cudnn='auto' to fallback to a non-cuDNN implementation.")


def cudnn_refusal_sources(case: Case) -> set[str]:
    """The Keras files that may raise the use_cudnn=True refusal for ``case``: the source of each recurrent layer that
    asks use_cudnn=True (empty: the case asks it nowhere, so no error of it is a refusal)."""
    return {keras_cell(layer).source for layer in case.layers
            if layer.kind.recurrent and layer.kind.cell_spec_options(layer).get("use_cudnn") is True}


def refused_by_design(case: Case, error: BaseException) -> bool:
    """Whether ``error`` is a refusal by design, recorded as refused rather than as an error: the harness's
    own (a KernelModeRefused: a kernel mode that cannot run on this device, such as fused_on_cpu on a GPU, or
    a NotExpressible case on Keras 2), or Keras's refusal of use_cudnn=True where its fused path declines the
    configuration, recognized by its exact type, message and raising file on a case that asks use_cudnn=True.
    Anything else, a cuDNN kernel that ran and failed included (CUDNN_STATUS_EXECUTION_FAILED, TensorFlow's
    mask Assert 'while using cuDNN'), is an error."""
    from harness.execute.backends import KernelModeRefused

    if isinstance(error, KernelModeRefused):
        return True
    asking = cudnn_refusal_sources(case)
    if not asking:
        return False
    inner = innermost_exception(error)
    where = raising_frame(inner)
    return (type(inner) is CUDNN_REFUSAL_TYPE and str(inner) == CUDNN_REFUSAL_MESSAGE
            and where is not None and where[0] in asking)


def run_case(case: Case, seed: int, tolerances: Tolerances, raw_outputs: dict[tuple[str, str], np.ndarray], timeout_s: int = 0) -> dict[str, Any]:
    """Measure one case's outputs on the active backend; never raises (an exception becomes status 'error').

    The measured status is one of: pass; fail (an output beyond tolerance, a NaN or Inf that the case
    does not expect, an output dtype other than the policy's, or two APIs that disagree beyond the
    documented bound: each reason is a line of ``problems``); invalid (the reference's expected values
    cannot be represented in the compared dtype); error (an exception; its innermost type and message
    are kept); timeout; refused (Keras refuses the configuration by design). Raw outputs go into
    ``raw_outputs`` keyed by (api, output name)."""
    from harness.execute import kernels, models
    from harness.execute.backends import kernel_mode

    def run_build(api: str, data: CaseData, result: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # The case's kernel mode (fused_on_cpu: Keras's fused path through a CPU stand-in), and which kernel
        # path each build really ran.
        with kernel_mode(case.kernel) as stand_in, kernels.observe(api, result) as observed:
            model, blocks = models.build_model(api, case, data)
            actual = {name: np.asarray(value) for name, value in models.run_model(model, blocks, case, data).items()}
        return actual, {"jit_compile": getattr(model, "jit_compile", None), **observed.record(),
                        **({"stand_in": stand_in.record()} if stand_in is not None else {})}

    return measure_builds(case, seed, tolerances, raw_outputs, timeout_s, case.entry_point,
                          lambda data: expected_outputs(case, data), run_build)


def measure_builds(case: Case, seed: int, tolerances: Tolerances, raw_outputs: dict[tuple[str, str], np.ndarray],
                   timeout_s: int, entry_point: str, expected_of: Callable[[CaseData], dict[str, np.ndarray]],
                   run_build: Callable[[str, CaseData, dict[str, Any]], tuple[dict[str, np.ndarray], dict[str, Any]]],
                   ) -> dict[str, Any]:
    """The one measure step: the case's data, what the reference expects (``expected_of``), then every API's
    build (``run_build(api, data, result)`` returns its arrays and what to record about it) judged against it
    and the builds against each other; the status and its problems. Never raises: an exception becomes
    status error (or refused, when the configuration is refused by design), a time-out status timeout."""
    from harness.execute.backends import isolate_case

    started = time.perf_counter()
    result: dict[str, Any] = {
        "case": case.name, "dtype": case.dtype, "entry_point": entry_point, "description": case.description,
        "definition": case.definition, "config": case_config(case), "apis": {}, "api_agreement": [], "problems": [],
    }
    actual_by_api: dict[str, dict[str, np.ndarray]] = {}
    building: str | None = None  # the API whose build is running; None while the data and the reference are made
    try:
        with time_limit(timeout_s):
            isolate_case()
            data = make_case_data(case, seed)
            expected = expected_of(data)
            for api in case.apis:
                building = api
                actual, recorded = run_build(api, data, result)
                building = None  # what follows is the harness judging the build
                actual_by_api[api] = actual
                raw_outputs.update({(api, name): value for name, value in actual.items()})
                result["apis"][api] = {**recorded, "items": judge_outputs(case, actual, expected, tolerances, api)}
                result["apis"][api]["passed"] = all(item["passed"] for item in result["apis"][api]["items"].values())
            result["api_agreement"] = api_agreement(actual_by_api, tolerances.api_max_abs_diff)
        result["status"], result["problems"] = measured_status(result)
        result["error"] = None
    except CaseTimeout as error:
        result["status"], result["error"] = "timeout", {"type": "CaseTimeout", "message": str(error), "summary": str(error)}
    except Exception as error:  # one broken case must not stop the run
        # A refusal by design refuses the configuration, so it comes from the first build; after a build that
        # ran it is an error. The builds that ran before the one that raised are judged all the same (their
        # items, their agreement, their problems), and the error says which build raised ("api": None when it
        # was raised while the data or the reference was made), so a crash claim explains only that build.
        result["status"] = "refused" if refused_by_design(case, error) and not result["apis"] else "error"
        result["error"] = error_record(error) | {"api": building}
        result["api_agreement"] = api_agreement(actual_by_api, tolerances.api_max_abs_diff)
        result["problems"] = measured_status(result)[1]
    result["duration_s"] = round(time.perf_counter() - started, 3)
    return result


def judge_outputs(case: Case, actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], tolerances: Tolerances,
                  api: str) -> dict[str, dict[str, Any]]:
    """Each output of one build against the reference: the comparison, its dtype against the policy's."""
    items = {}
    promised = case.compute_dtype
    for name, value in actual.items():
        tolerance = tolerances.for_case(case, quantity_of(name))
        comparison = compare(value, expected[name], tolerance, case.compute_dtype, case.allow_nonfinite)
        dtype_ok = np.asarray(value).dtype.name == promised
        items[name] = comparison.to_json() | {
            "passed": comparison.passed and dtype_ok,
            "dtype": np.asarray(value).dtype.name,
            "expected_dtype": promised,
            "tolerance_row": tolerance.row,
            "message": comparison.message(f"{api}/{name}") + ("" if dtype_ok else f"; dtype {np.asarray(value).dtype.name}, the {case.dtype} policy promises {promised}"),
        }
    return items


def measured_status(result: dict[str, Any]) -> tuple[str, list[str]]:
    """pass, fail or invalid, with one line per reason a case is not a pass."""
    problems = []
    invalid = False
    for api, entry in result["apis"].items():
        for name, item in entry["items"].items():
            if item["invalid_expected"]:
                invalid = True
            if not item["passed"]:
                problems.append(item["message"])
    for row in result["api_agreement"]:
        if not row["within"]:
            first, second = row["apis"]
            problems.append(
                f"APIs disagree: {first} vs {second} on {row['output']} by {row['max_abs_diff']:.3g} "
                f"(documented bound {row['bound']:g}{': bitwise' if row['bound'] == 0 else ''})"
            )
    if invalid:
        return "invalid", problems
    return ("pass" if not problems else "fail"), problems


def case_config(case: Case) -> dict[str, Any]:
    """The case's axis values, recorded so that reports can count the combinations exercised."""
    def layer(spec) -> dict[str, Any]:
        entry = {"type": spec.type, **spec.options}
        if spec.inner is not None:
            entry["layer"] = layer(spec.inner)
        return entry

    return {
        "dtype": case.dtype, "batch": case.batch, "time": case.time, "features": case.features,
        "mask": case.mask, "mask_source": case.mask_source if case.mask != "none" else None,
        "initial_state": case.initial_state, "entry_point": case.entry_point, "jit_compile": case.jit_compile,
        "predict_batch_size": case.predict_batch_size, "stateful_batches": case.stateful_batches,
        "kernel": case.kernel, "layer_form": case.layer_form,
        "layers": [layer(spec) for spec in case.layers],
    }


def api_agreement(actual_by_api: dict[str, dict[str, np.ndarray]], bound: float) -> list[dict[str, Any]]:
    """Every pair of APIs, every output: the largest difference, whether it is bitwise zero, and whether
    it is within the documented bound (0 means the builds must be bitwise identical)."""
    rows = []
    for first, second in itertools.combinations(actual_by_api, 2):
        for name in actual_by_api[first]:
            difference, bitwise = max_difference(actual_by_api[first][name], actual_by_api[second][name])
            within = bitwise if bound == 0 else bool(difference <= bound)  # NaN is never within
            rows.append({"apis": [first, second], "output": name, "max_abs_diff": difference, "bitwise_equal": bitwise,
                         "bound": bound, "within": within})
    return rows
