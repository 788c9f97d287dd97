"""Refused only where Keras refuses by design; a crash claim explains only the exact crash it names, in the build
that raised it (issue 15). Record-only: no Keras. Exceptions "raised in Keras" are raised by code compiled under
Keras's file and module name, so the recorded raising frame is the one a real run records; the builds' outputs
come from the float64 reference, with a wrong-gate bug where a build is meant to be wrong."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.case.divergences import DivergenceFileError, load_divergences
from harness.case.schema import Case, parse_case
from harness.case.tolerances import load_tolerances
from harness.case.weights import DEFAULT_SEED, CaseData
from harness.execute import measure
from harness.truth.expected import expected_outputs
from harness.verdicts.classify import classify_result

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = {"keras": "3.15.1", "tensorflow": "2.21.0", "jax": "0.10.2", "torch": "2.13.0+cpu"}
DIVERGENCES = load_divergences()
TOLERANCES = load_tolerances()
TORCH_RNN = "keras/src/backend/torch/rnn.py"
TUPLE_MESSAGE = "'tuple' object has no attribute 'shape'"
# Keras 3.15.1's words (keras/src/layers/rnn/lstm.py, LSTM.inner_loop), the same on every backend.
KERAS_REFUSAL = ("use_cudnn=True was specified, but cuDNN is not supported for this layer configuration with this backend. "
                 "Pass use_cudnn='auto' to fallback to a non-cuDNN implementation.")


def _case(**fields: Any) -> Case:
    entry = {"name": "a_case_nobody_named", "dtype": "float32", "batch": 3, "time": 7, "features": 4,
             "layers": [{"type": "lstm", "units": 5, "return_sequences": True}]}
    entry.update(fields)
    return parse_case(entry, "test")


CUDNN_ON = dict(layers=[{"type": "lstm", "units": 5, "return_sequences": True, "use_cudnn": True}])
TORCH_CRASH = dict(mask="right_padded", mask_source="argument",
                   layers=[{"type": "lstm", "units": 5, "return_sequences": True, "unroll": True, "go_backwards": True}])


def _raised_in(module: str, error: BaseException) -> BaseException:
    """``error`` raised by a function of ``module`` (its file under a site-packages folder), caught and returned."""
    filename = "/opt/venv/lib/python3.11/site-packages/" + module.replace(".", "/") + ".py"
    namespace: dict[str, Any] = {"__name__": module}
    exec(compile("def fail(error):\n    raise error\n", filename, "exec"), namespace)
    try:
        namespace["fail"](error)
    except BaseException as caught:  # noqa: BLE001 - handed back to the test
        return caught
    raise AssertionError("not raised")


def _keras_refusal() -> BaseException:
    return _raised_in("keras.src.layers.rnn.lstm", ValueError(KERAS_REFUSAL))


# --- refused only where Keras refuses by design ---------------------------------------------------------------

def test_kerass_own_refusal_of_use_cudnn_true_is_refused():
    assert measure.refused_by_design(_case(**CUDNN_ON), _keras_refusal())


def test_the_refusal_wrapped_by_keras_is_still_recognized():
    inner = _keras_refusal()
    outer = ValueError("Exception encountered when calling LSTM.call().\n\n" + str(inner))
    outer._keras_call_info_injected = True  # what Keras's traceback_utils sets on the exception it re-raises
    outer.__context__ = inner
    assert measure.refused_by_design(_case(**CUDNN_ON), outer)


@pytest.mark.parametrize("error", [
    _raised_in("keras.src.backend.torch.rnn", RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED")),
    _raised_in("tensorflow.python.eager.execute", ValueError(
        "assertion failed: [You are passing a RNN mask that does not correspond to right-padded sequences, while using cuDNN]")),
    _raised_in("keras.src.backend.jax.rnn", RuntimeError("cudnn rnn backward failed")),
    # the refusal's own words, but not raised by Keras's LSTM, or not exactly them, or not a ValueError
    _raised_in("harness.execute.models", ValueError(KERAS_REFUSAL)),
    _raised_in("keras.src.layers.rnn.lstm", ValueError(KERAS_REFUSAL + " (cuDNN failed)")),
    _raised_in("keras.src.layers.rnn.lstm", RuntimeError(KERAS_REFUSAL)),
], ids=["execution_failed", "tf_assert_while_using_cudnn", "backward_failed", "harness_raised", "longer_message", "other_type"])
def test_a_cudnn_crash_on_a_use_cudnn_true_case_is_an_error_not_a_refusal(error):
    assert not measure.refused_by_design(_case(**CUDNN_ON), error)


def test_the_refusal_on_a_case_that_does_not_ask_use_cudnn_true_is_an_error():
    assert not measure.refused_by_design(_case(), _keras_refusal())


def _reference_build(wrong_in: tuple[str, ...] = (), raise_in: dict[str, BaseException] | None = None):
    """A run_build for measure_builds: the reference's own outputs, with the input and forget gates swapped for
    the APIs in ``wrong_in``, and ``raise_in[api]`` raised by that API's build."""
    def swap_gates(data: CaseData) -> CaseData:
        kernel, recurrent, bias = data.layer_weights[0][0]
        units = kernel.shape[1] // 4

        def swap(array: np.ndarray) -> np.ndarray:
            swapped = array.copy()
            swapped[..., :units], swapped[..., units:2 * units] = array[..., units:2 * units], array[..., :units]
            return swapped

        return replace(data, layer_weights=((tuple(swap(a) for a in (kernel, recurrent, bias)),),) + data.layer_weights[1:])

    def run_build(api: str, data: CaseData, result: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if raise_in and api in raise_in:
            raise raise_in[api]
        case = parse_case(result["definition"], "test")
        produced = expected_outputs(case, swap_gates(data) if api in wrong_in else data)
        return {name: value.astype(case.compute_dtype) for name, value in produced.items()}, {}
    return run_build


def _measure(case: Case, run_build, monkeypatch) -> dict[str, Any]:
    from harness.execute import backends
    monkeypatch.setattr(backends, "isolate_case", lambda: None)  # no Keras here
    return measure.measure_builds(case, DEFAULT_SEED, TOLERANCES, {}, 0, case.entry_point,
                                  lambda data: expected_outputs(case, data), run_build)


def test_measured_cudnn_execution_failure_is_an_error(monkeypatch):
    case = _case(**CUDNN_ON)
    failure = _raised_in("keras.src.backend.tensorflow.rnn", RuntimeError("CUDNN_STATUS_EXECUTION_FAILED"))
    result = _measure(case, _reference_build(raise_in={case.apis[0]: failure}), monkeypatch)
    assert result["status"] == "error"
    refusal = _measure(case, _reference_build(raise_in={case.apis[0]: _keras_refusal()}), monkeypatch)
    assert refusal["status"] == "refused"


def test_a_refusal_after_a_build_ran_is_an_error(monkeypatch):
    case = _case(**CUDNN_ON)
    assert len(case.apis) >= 2
    result = _measure(case, _reference_build(raise_in={case.apis[1]: _keras_refusal()}), monkeypatch)
    assert result["status"] == "error"
    assert result["error"]["api"] == case.apis[1]


# --- what a record says about an error ---------------------------------------------------------------------

def test_the_error_record_names_the_raising_build_and_file(monkeypatch):
    case = _case(**TORCH_CRASH)
    second = case.apis[1]
    crash = _raised_in("keras.src.backend.torch.rnn", AttributeError(TUPLE_MESSAGE))
    result = _measure(case, _reference_build(wrong_in=(case.apis[0],), raise_in={second: crash}), monkeypatch)
    assert result["status"] == "error"
    assert result["error"]["api"] == second
    assert result["error"]["raised_in"] == TORCH_RNN
    assert result["error"]["raised_at"].startswith(TORCH_RNN + ":2 in fail")
    assert list(result["apis"]) == [case.apis[0]] and not result["apis"][case.apis[0]]["passed"]
    assert result["problems"]  # the wrong first build is listed


def test_an_error_while_the_reference_is_made_names_no_build(monkeypatch):
    from harness.execute import backends
    monkeypatch.setattr(backends, "isolate_case", lambda: None)
    case = _case(**TORCH_CRASH)

    def broken_reference(data: CaseData) -> dict[str, np.ndarray]:
        raise AttributeError(TUPLE_MESSAGE)

    result = measure.measure_builds(case, DEFAULT_SEED, TOLERANCES, {}, 0, case.entry_point, broken_reference, _reference_build())
    assert result["status"] == "error" and result["error"]["api"] is None
    assert result["error"]["raised_in"].endswith("test_refusals_and_crash_claims.py")  # not a Keras file


# --- crash claims -------------------------------------------------------------------------------------------

def _crashed(case: Case, error_type: str, message: str, **error: Any) -> dict[str, Any]:
    return {"case": case.name, "status": "error", "apis": {}, "api_agreement": [], "problems": [],
            "error": {"type": error_type, "message": message, "summary": f"{error_type}: {message}", **error}}


def _verdict(case: Case, backend: str, result: dict[str, Any]) -> dict[str, Any]:
    return classify_result(case, backend, VERSIONS, result, {}, TOLERANCES, DIVERGENCES, DEFAULT_SEED)


def test_the_torch_tuple_crash_is_known_where_keras_torch_rnn_raises_it():
    case = _case(**TORCH_CRASH)
    result = _crashed(case, "AttributeError", TUPLE_MESSAGE, raised_in=TORCH_RNN, api=case.apis[0])
    verdict = _verdict(case, "torch", result)
    assert verdict["verdict"] == "known" and verdict["explained_by"] == ["torch_go_backwards_unroll_mask_error"]


@pytest.mark.parametrize("error", [
    {"raised_in": "harness/execute/models.py"},  # a harness bug raising the same generic message
    {},  # a record that does not say where it was raised
    {"raised_in": TORCH_RNN, "api": None},  # raised while the harness made the data or the reference
])
def test_the_generic_tuple_message_alone_does_not_make_the_crash_known(error):
    case = _case(**TORCH_CRASH)
    result = _crashed(case, "AttributeError", TUPLE_MESSAGE, **error)
    verdict = _verdict(case, "torch", result)
    assert verdict["verdict"] == "error" and verdict["unexplained"]


@pytest.mark.parametrize("message", [
    "'tuple' object has no attribute 'shape' (while the harness compared outputs)",
    "in the harness: 'tuple' object has no attribute 'shape'",
])
def test_a_crash_message_must_match_whole(message):
    case = _case(**TORCH_CRASH)
    result = _crashed(case, "AttributeError", message, raised_in=TORCH_RNN, api=case.apis[0])
    assert _verdict(case, "torch", result)["verdict"] == "error"


def test_a_crash_claim_does_not_explain_a_wrong_build_that_ran_before_the_crash(monkeypatch):
    case = _case(**TORCH_CRASH)
    crash = _raised_in("keras.src.backend.torch.rnn", AttributeError(TUPLE_MESSAGE))
    wrong_first = _measure(case, _reference_build(wrong_in=(case.apis[0],), raise_in={case.apis[1]: crash}), monkeypatch)
    verdict = _verdict(case, "torch", wrong_first)
    assert verdict["verdict"] == "error"
    assert any("ran before" in reason for reason in verdict["unexplained"]), verdict["unexplained"]
    right_first = _measure(case, _reference_build(raise_in={case.apis[1]: crash}), monkeypatch)
    assert _verdict(case, "torch", right_first)["verdict"] == "known"


def test_the_tensorflow_graph_assert_claim_matches_the_whole_recorded_message():
    """The committed TensorFlow record's message for this crash is matched whole; the same message with its
    reason replaced (another Assert in the same graph) is not."""
    record = json.loads((ROOT / "results" / "tensorflow.json").read_text())
    claim = next(d for d in DIVERGENCES if d.id == "tensorflow_fused_mask_not_right_padded_fails_in_graph")
    crashed = [result for result in record["cases"]
               if result["status"] == "error" and "right-padded" in result["error"]["message"]]
    assert crashed
    result = crashed[0]
    case = parse_case(result["definition"], "tensorflow.json")
    assert _verdict(case, "tensorflow", result)["explained_by"] == [claim.id]
    other = json.loads(json.dumps(result))
    other["error"]["message"] = other["error"]["message"].replace("does not correspond to right-padded sequences",
                                                                  "has a NaN")
    assert _verdict(case, "tensorflow", other)["verdict"] == "error"


# --- the divergence file --------------------------------------------------------------------------------------

def _one_entry(tmp_path: Path, extra: str, kind: str = 'kind = "crash"\nexception = "AttributeError"\nmessage = "m"') -> Path:
    path = tmp_path / "divergences.toml"
    path.write_text('[[divergence]]\nid = "x"\nbackends = ["torch"]\nversions = { keras = "==3.15.1" }\n'
                    f'when = {{ unroll = true }}\n{kind}\n{extra}'
                    'observed = ""\nreference = ""\nupstream = ""\nreproducer = ""\n')
    return path


def test_raised_in_is_read_for_a_crash_claim(tmp_path):
    assert load_divergences(_one_entry(tmp_path, f'raised_in = "{TORCH_RNN}"\n'))[0].raised_in == TORCH_RNN


@pytest.mark.parametrize("extra, kind, expected", [
    ('raised_in = "/abs/keras/rnn.py"\n', None, "raised_in is '/abs/keras/rnn.py'; expected a relative source file"),
    ('raised_in = "keras.src.backend.torch.rnn"\n', None, "expected a relative source file"),
    ('raised_in = "keras/src/x.py"\n', 'kind = "bound"\noutputs = ["*"]\nmax_abs_error = 0.0', "raised_in does not belong to a bound claim"),
    ('', 'kind = "crash"\nexception = "AttributeError"\nmessage = ""', "message must be a non-empty regular expression"),
])
def test_a_malformed_crash_field_is_refused_with_one_line(tmp_path, extra, kind, expected):
    path = _one_entry(tmp_path, extra, kind) if kind else _one_entry(tmp_path, extra)
    with pytest.raises(DivergenceFileError, match=expected.replace("(", r"\(").replace(")", r"\)")) as raised:
        load_divergences(path)
    assert "\n" not in str(raised.value)
