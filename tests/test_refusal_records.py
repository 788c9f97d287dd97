"""A record's 'refused' is checked against the one rule that makes a case refused, so a crash relabelled refused
(which exits 0 and skips the claims) is caught by classify's integrity check."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from harness.execute.measure import CUDNN_REFUSAL_MESSAGE

CUDNN_REFUSAL_RAISED_IN = "keras/src/layers/rnn/lstm.py"  # where LSTM.inner_loop raises it (Keras 3.15.1)
from harness.records.integrity import refusal_status

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _refused_result() -> dict:
    """The committed TensorFlow record's cudnn_on_impl2 (Keras's use_cudnn=True refusal), with the location fields
    a record measured since raised_in exists carries."""
    record = json.loads((RESULTS / "tensorflow.json").read_text())
    result = copy.deepcopy(next(r for r in record["cases"] if r["definition"]["name"] == "cudnn_on_impl2"))
    assert result["status"] == "refused" and result["error"]["message"] == CUDNN_REFUSAL_MESSAGE
    result["error"].update(raised_in=CUDNN_REFUSAL_RAISED_IN, api=result["definition"].get("apis", ["functional"])[0]
                           if result["definition"].get("apis") else None)
    return result


def test_keras_use_cudnn_refusal_is_refused():
    assert refusal_status(_refused_result()) == ("refused", "")


def test_a_cudnn_failure_recorded_as_refused_is_an_error():
    result = _refused_result()
    result["error"].update(type="RuntimeError", message="cuDNN error: CUDNN_STATUS_EXECUTION_FAILED")
    status, why = refusal_status(result)
    assert status == "error" and "is not Keras's use_cudnn=True refusal" in why


def test_the_refusal_message_raised_elsewhere_or_after_a_build_is_an_error():
    result = _refused_result()
    result["error"]["raised_in"] = "harness/execute/models.py"
    assert refusal_status(result)[0] == "error"
    result = _refused_result()
    result["error"]["api"] = "no_such_build_after_the_first"
    assert refusal_status(result)[0] == "error"


def test_a_refusal_on_a_case_that_does_not_ask_use_cudnn_true_is_an_error():
    result = _refused_result()
    for layer in result["definition"]["layers"]:
        layer.pop("use_cudnn", None)
    status, why = refusal_status(result)
    assert status == "error" and "does not ask use_cudnn=True" in why


def test_an_old_record_without_the_raising_file_cannot_be_checked_and_says_so():
    result = _refused_result()
    del result["error"]["raised_in"]
    status, why = refusal_status(result)
    assert status is None and "does not say where" in why


def test_a_relabelled_crash_fails_the_record_and_an_unlocated_refusal_is_flagged_unchecked(tmp_path):
    """Through classify: the record's integrity fails on a crash recorded as refused; an old refusal without its
    raising file is listed as unchecked (a warning), not as a mismatch."""
    import shutil

    from harness.verdicts.classify import classify_record

    for name in ("tensorflow.json", "tensorflow.npz"):
        shutil.copy(RESULTS / name, tmp_path / name)
    record = json.loads((tmp_path / "tensorflow.json").read_text())
    refused = [r for r in record["cases"] if r["status"] == "refused"]
    for result in refused:  # as a record measured before error records named their raising file
        result["error"].pop("raised_in", None)
    (tmp_path / "tensorflow.json").write_text(json.dumps(record))
    integrity = classify_record(tmp_path, "tensorflow")["integrity"]
    assert integrity["failing"] == 0 and len(integrity["status_check"]["unchecked"]) == len(refused)
    refused[0]["error"].update(type="RuntimeError", message="cuDNN error: CUDNN_STATUS_EXECUTION_FAILED")
    (tmp_path / "tensorflow.json").write_text(json.dumps(record))
    integrity = classify_record(tmp_path, "tensorflow")["integrity"]
    assert integrity["failing"] == 1 and "is not Keras's use_cudnn=True refusal" in integrity["status_check"]["mismatches"][0]["reason"]


def test_the_harness_own_refusal_is_refused():
    result = _refused_result()
    result["error"] = {"type": "KernelModeRefused", "message": "kernel = fused_on_cpu needs a CPU", "summary": ""}
    assert refusal_status(result) == ("refused", "")


def test_a_gru_refusal_is_recognized_in_the_gru_source_only():
    """The refusal's raising file is the asking layer's own (harness.execute.kinds KerasCell.source): a GRU's refusal
    comes from gru.py; the same message from lstm.py on a case with no LSTM asking use_cudnn=True is an error."""
    result = _refused_result()
    for layer in result["definition"]["layers"]:
        layer["type"] = "gru"
    assert refusal_status(result)[0] == "error"  # raised in lstm.py, but no LSTM asks use_cudnn=True
    result["error"]["raised_in"] = "keras/src/layers/rnn/gru.py"
    assert refusal_status(result) == ("refused", "")
