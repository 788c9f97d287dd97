"""Measure one case on the active backend, in-process: build it in every API, run it, compare each
output with the float64 reference. This is the one measure step every study reuses.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import time
from typing import Any, Iterator

import numpy as np

from harness.case.schema import Case
from harness.case.tolerances import quantity_of, tolerance_for
from harness.case.weights import make_case_data
from harness.truth.compare import compare, max_difference
from harness.truth.expected import expected_outputs

DEFAULT_CASE_TIMEOUT_S = 300


class CaseTimeout(Exception):
    """A case ran past its time limit."""


def _error_summary(error: BaseException) -> str:
    """One line: the exception type, the first line of its message and, when different, its last line.

    Keras wraps errors raised inside a layer in a multi-line message whose first line names the
    cause and whose last line is only the call's arguments, so both ends are kept."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    summary = f"{type(error).__name__}: {lines[0]}"
    return summary if len(lines) == 1 else f"{summary} ... {lines[-1]}"


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
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


def _refused(case: Case, error: BaseException) -> bool:
    """use_cudnn=True where cuDNN cannot run is refused by Keras by design: recorded, not a failure."""
    asks_cudnn = any(layer.options.get("use_cudnn") is True for layer in case.layers)
    return asks_cudnn and "cudnn" in str(error).lower()


def run_case(case: Case, seed: int, tolerances: dict, raw_outputs: dict[tuple[str, str], np.ndarray], timeout_s: int = 0) -> dict[str, Any]:
    """Measure one case on the active backend; never raises (an exception becomes status 'error')."""
    from harness.execute import models

    started = time.perf_counter()
    result: dict[str, Any] = {
        "case": case.name, "dtype": case.dtype, "entry_point": case.entry_point, "description": case.description,
        "config": case_config(case), "apis": {}, "api_agreement": [],
    }
    try:
        with _time_limit(timeout_s):
            data = make_case_data(case, seed)
            expected = expected_outputs(case, data)
            actual_by_api: dict[str, dict[str, np.ndarray]] = {}
            for api in case.apis:
                model, blocks = models.build_model(api, case, data)
                actual = {name: np.asarray(value) for name, value in models.run_model(model, blocks, case, data).items()}
                actual_by_api[api] = actual
                items = {}
                for name, value in actual.items():
                    tolerance = tolerance_for(tolerances, case.compute_dtype, quantity_of(name))
                    comparison = compare(value, expected[name], tolerance, case.compute_dtype)
                    items[name] = comparison.to_json() | {"message": comparison.message(f"{api}/{name}")}
                    raw_outputs[(api, name)] = value
                result["apis"][api] = {
                    "passed": all(item["passed"] for item in items.values()),
                    "jit_compile": getattr(model, "jit_compile", None),
                    "items": items,
                }
            result["api_agreement"] = _api_agreement(actual_by_api)
        all_passed = all(entry["passed"] for entry in result["apis"].values())
        result["status"] = "pass" if all_passed else "fail"
        result["error"] = None
    except CaseTimeout as error:
        result["status"], result["error"] = "timeout", str(error)
    except Exception as error:  # one broken case must not stop the run
        result["status"] = "refused" if _refused(case, error) else "error"
        result["error"] = _error_summary(error)
    result["duration_s"] = round(time.perf_counter() - started, 3)
    return result


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
        "layers": [layer(spec) for spec in case.layers],
    }


def _api_agreement(actual_by_api: dict[str, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Every pair of APIs, every output: the largest difference and whether it is bitwise zero."""
    rows = []
    for first, second in itertools.combinations(actual_by_api, 2):
        for name in actual_by_api[first]:
            difference, bitwise = max_difference(actual_by_api[first][name], actual_by_api[second][name])
            rows.append({"apis": [first, second], "output": name, "max_abs_diff": difference, "bitwise_equal": bitwise})
    return rows
