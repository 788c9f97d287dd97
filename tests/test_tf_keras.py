"""Keras 2 (tf_keras) beside Keras 3: harness.execute.keras_api's selection, shims and refusal reasons (no
tf_keras needed), the between-versions labels and the report's second comparison pair; and, where tf_keras is
importable (the venv of nox -s "parity(keras='tf_keras', backend='tensorflow')"), a real Keras-2 run.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from harness.case.schema import parse_case
from harness.execute import keras_api
from harness.execute.backends import BackendUnavailable, activate
from harness.verdicts.between_versions import FILE_NAME, comparisons_for, reproducer


def _case(**fields):
    definition = {"name": "k2", "dtype": "float32", "batch": 2, "time": 3, "features": 4,
                  "layers": [{"type": "lstm", "units": 5}], **fields}
    return parse_case(definition, "test")


# --- selection ----------------------------------------------------------------------------------------


def test_the_keras_api_is_selected_by_name(monkeypatch):
    monkeypatch.delenv(keras_api.ENV_VAR, raising=False)
    assert keras_api.selected() == "keras" and not keras_api.is_keras_2()
    keras_api.select("tf_keras")
    assert keras_api.selected() == "tf_keras" and keras_api.is_keras_2()
    keras_api.select("keras")
    assert not keras_api.is_keras_2()
    with pytest.raises(ValueError, match="accepted: keras, tf_keras"):
        keras_api.select("keras2")
    monkeypatch.setenv(keras_api.ENV_VAR, "tf.keras")
    with pytest.raises(ValueError, match="unknown Keras API 'tf.keras'"):
        keras_api.selected()


def test_importing_keras_api_imports_no_keras():
    code = ("import sys; import harness.execute.keras_api as k; "
            "print(any(m in sys.modules for m in ('keras', 'tf_keras', 'tensorflow')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_keras_2_runs_on_tensorflow_only():
    with pytest.raises(BackendUnavailable, match="Keras 2 \\(tf_keras\\) runs on TensorFlow only, not on 'jax'"):
        activate("jax", keras_api="tf_keras")


# --- refusals: what Keras 2 cannot express ---------------------------------------------------------------


def test_cases_keras_2_can_express_are_not_refused():
    assert keras_api.refusal(_case(), "tf_keras") is None
    assert keras_api.refusal(_case(layer_form="stacked_cells", layers=[{"type": "lstm", "units": 5, "return_sequences": True},
                                                                       {"type": "lstm", "units": 3}]), "tf_keras") is None
    assert keras_api.refusal(_case(dtype="mixed_float16"), "tf_keras") is None  # measured, not refused
    assert keras_api.refusal(_case(kernel="fused_on_cpu"), "keras") is None  # Keras 3 expresses everything


@pytest.mark.parametrize("fields, words", [
    ({"kernel": "fused_on_cpu"}, "cannot express kernel = fused_on_cpu"),
    ({"kernel": "generic"}, "cannot express kernel = generic: it builds LSTM(use_cudnn=False)"),
    ({"layers": [{"type": "lstm", "units": 5, "use_cudnn": True}]}, "cannot express use_cudnn=True"),
    ({"layers": [{"type": "bidirectional", "units": 5, "use_cudnn": False}]}, "cannot express use_cudnn=False"),
    ({"layers": [{"type": "branches", "shared": True, "layer": {"type": "lstm", "units": 5, "use_cudnn": True}}]},
     "cannot express use_cudnn=True"),
])
def test_what_keras_2_cannot_express_is_refused_with_one_line(fields, words):
    reason = keras_api.refusal(_case(**fields), "tf_keras")
    assert reason is not None and words in reason and "\n" not in reason
    with pytest.raises(keras_api.NotExpressible, match="Keras 2 \\(tf_keras\\)"):
        keras_api.check_expressible(_case(**fields), "tf_keras")
    keras_api.check_expressible(_case(**fields), "keras")  # Keras 3: nothing refused


def test_an_activation_keras_2_lacks_is_refused():
    case = _case(layers=[{"type": "lstm", "units": 5, "activation": "celu", "recurrent_activation": "hard_sigmoid"}])
    assert keras_api.activation_names(case) == ["celu", "hard_sigmoid"]
    reason = keras_api.missing_activation(case, lambda name: name != "celu")
    assert reason == "Keras 2 (tf_keras) has no activation 'celu' (added in Keras 3; tf_keras.activations.get raises)"
    assert keras_api.missing_activation(case, lambda name: True) is None  # same name on both: measured


def test_a_refusal_is_recognised_through_wrapping_exceptions():
    try:
        try:
            raise keras_api.NotExpressible("no")
        except keras_api.NotExpressible as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert keras_api.is_refusal(outer)
    assert not keras_api.is_refusal(ValueError("Unknown activation"))


def test_the_measure_step_records_a_refusal_as_refused():
    from harness.execute import measure

    assert measure.refused_by_design(_case(), keras_api.NotExpressible("Keras 2 (tf_keras) cannot express kernel = generic"))
    assert not measure.refused_by_design(_case(), ValueError("boom"))
    cudnn = _case(layers=[{"type": "lstm", "units": 5, "use_cudnn": True}])
    # Only Keras 3's own refusal (its exact ValueError, raised in Keras's LSTM) is refused: a cuDNN failure is an error
    # (tests/test_refusals_and_crash_claims.py checks the whole rule).
    assert not measure.refused_by_design(cudnn, RuntimeError("cuDNN is not available"))


# --- shims -------------------------------------------------------------------------------------------


def test_use_cudnn_auto_is_dropped_on_keras_2_and_kept_on_keras_3():
    kwargs = {"units": 5, "use_cudnn": "auto", "return_sequences": True}
    assert keras_api.rnn_kwargs(kwargs, "tf_keras") == {"units": 5, "return_sequences": True}
    assert keras_api.rnn_kwargs(kwargs, "keras") == kwargs
    for value in (True, False):
        with pytest.raises(keras_api.NotExpressible, match=f"use_cudnn={value}"):
            keras_api.rnn_kwargs({**kwargs, "use_cudnn": value}, "tf_keras")


def test_jit_compile_auto_is_keras_2s_default():
    assert keras_api.jit_compile("auto", "tf_keras") is None
    assert keras_api.jit_compile(True, "tf_keras") is True and keras_api.jit_compile(False, "tf_keras") is False
    assert keras_api.jit_compile("auto", "keras") == "auto"


class _Tensor:
    def __init__(self, value):
        self.value = value

    def numpy(self):
        return np.asarray(self.value, dtype="float32")


def test_keras_2_numpy_shims_need_no_keras_ops(monkeypatch):
    monkeypatch.setenv(keras_api.ENV_VAR, "tf_keras")
    assert keras_api.convert_to_numpy(_Tensor([1.0, 2.0])).dtype == np.float32
    assert keras_api.convert_to_numpy(np.arange(3)).tolist() == [0, 1, 2]
    mapped = keras_api.map_structure(keras_api.convert_to_numpy, [_Tensor([1.0]), (_Tensor([2.0]), {"h": _Tensor([3.0])})])
    assert isinstance(mapped, list) and isinstance(mapped[1], tuple)
    assert mapped[0].tolist() == [1.0] and mapped[1][0].tolist() == [2.0] and mapped[1][1]["h"].tolist() == [3.0]


# --- between versions: Keras 2 against Keras 3 -----------------------------------------------------------


def _versions(keras, api=None):
    return {"versions": {"keras": keras, **({"keras_api": api} if api else {}), "tensorflow": "2.21.0", "numpy": "2.4.6"}}


def test_the_reproducer_names_the_keras_api():
    line = reproducer("tensorflow", "lstm_x", _versions("2.21.0", "tf_keras"), _versions("3.15.1"), "pass", "fail")
    assert "--out OUT [--keras-api tf_keras for tf_keras 2.21.0]" in line
    assert "# tf_keras 2.21.0 (pass) vs keras 3.15.1 (fail), tensorflow 2.21.0, numpy 2.4.6" in line
    plain = reproducer("tensorflow", "lstm_x", _versions("3.15.1"), _versions("3.16.0.dev1"), "pass", "fail")
    assert "--keras-api" not in plain and "# keras 3.15.1 (pass) vs 3.16.0.dev1 (fail)" in plain


def test_a_report_shows_the_comparisons_its_subfolders_store_about_it(tmp_path):
    release, keras_2, nightly = tmp_path / "results", tmp_path / "results" / "tf-keras", tmp_path / "results" / "keras-nightly"
    for folder in (keras_2, nightly):
        folder.mkdir(parents=True)
    (release / FILE_NAME).write_text(json.dumps({"old": {"folder": str(release)}, "new": {"folder": str(nightly)}}))
    (keras_2 / FILE_NAME).write_text(json.dumps({"old": {"folder": str(keras_2)}, "new": {"folder": str(release)}}))
    (nightly / FILE_NAME).write_text(json.dumps({"old": {"folder": str(nightly)}, "new": {"folder": str(tmp_path / "other")}}))
    assert comparisons_for(release) == [release / FILE_NAME, keras_2 / FILE_NAME]
    assert comparisons_for(keras_2) == [keras_2 / FILE_NAME]


def test_the_report_renders_keras_2_against_keras_3(tmp_path):
    from test_between_versions import RELEASE, ROUNDED, _result, _write

    from harness.reports.html import render_html
    from harness.reports.markdown import render_markdown
    from harness.reports.model import build_report
    from harness.verdicts.between_versions import write_between_versions

    release, keras_2 = tmp_path / "results", tmp_path / "results" / "tf-keras"
    _write(release, RELEASE, [_result("rounded", ROUNDED), _result("broken", wrong_gate=True), _result("same"),
                              _result("inherited", ROUNDED)])
    # 2.20.0: a Keras 2 no claim names (2.21.0 is named by the claims measured on it)
    _write(keras_2, "2.20.0", [_result("rounded"), _result("broken"), _result("same"), _result("inherited", ROUNDED)])
    record_path = keras_2 / "tensorflow.json"
    record = json.loads(record_path.read_text())
    record["versions"]["keras_api"] = "tf_keras"
    record_path.write_text(json.dumps(record))
    written = write_between_versions(keras_2, release)
    # pass on Keras 2, fail or known on Keras 3: both got worse (the 20 Masking cases of the real records are the
    # known kind); fail on Keras 2, known on Keras 3: changed
    assert written["counts"]["regression"] == 2 and written["counts"]["changed"] == 1
    assert written["not_compared"] == []
    details = {entry["case"]: entry["detail"] for entry in written["changes"]}
    # failing on Keras 2 only because the claim's range is Keras 3's: the claim describes Keras 2 exactly
    assert details["inherited"].startswith("fail -> known as predict_rounds_float64_inputs; the claim, its version range "
                                           "ignored, describes tf_keras 2.20.0's measurement exactly")
    assert "the same behaviour" not in details["rounded"]
    report = build_report(release)
    assert report.between_versions is None and len(report.other_between_versions) == 1
    section = render_markdown(report).split("## Between Keras versions")[1].split("\n## ")[0]
    assert "No other Keras version was compared" not in section
    assert "### keras 2.20.0 [tf_keras] (" in section and "#### Regressions (2)" in section
    assert "| broken | tensorflow | pass -> fail |" in section and "[--keras-api tf_keras for tf_keras 2.20.0]" in section
    assert "| rounded | tensorflow | pass -> known |" in section.split("#### Regressions (2)")[1].split("####")[0]
    assert "#### Changed behaviour (1)" in section and "| inherited | tensorflow | fail -> known |" in section
    page = render_html(report, {})
    assert 'id="between2-regression"' in page and "broken" in page.split('id="between2-regression"')[1].split("</table>")[0]


# --- a real Keras-2 run, where tf_keras is installed ------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("tf_keras") is None or importlib.util.find_spec("tensorflow") is None,
                    reason="tf_keras is not installed here (it is in nox -s \"parity(keras='tf_keras', backend='tensorflow')\")")
def test_a_keras_2_run_records_tf_keras_and_refuses_what_it_cannot_express(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--backend", "tensorflow", "--keras-api", "tf_keras", "--quiet",
         "--cases", "lstm_last_step,lstm_last_step_fused_cpu,act_celu", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={**__import__("os").environ, "KERAS_BACKEND": "tensorflow"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((tmp_path / "tensorflow.json").read_text())
    import tf_keras

    assert record["versions"]["keras"] == tf_keras.__version__ and record["versions"]["keras_api"] == "tf_keras"
    status = {result["case"]: result for result in record["cases"]}
    assert status["lstm_last_step"]["status"] == "pass"
    assert status["lstm_last_step_fused_cpu"]["status"] == "refused"
    assert "fused_on_cpu" in status["lstm_last_step_fused_cpu"]["error"]["message"]
    assert status["act_celu"]["status"] == "refused" and "no activation 'celu'" in status["act_celu"]["error"]["message"]


def test_a_case_keras_2_cannot_express_is_not_compared_rather_than_changed(tmp_path):
    from test_between_versions import RELEASE, _result, _write

    from harness.verdicts.between_versions import compare_versions

    refused, arrays = _result("fused")
    refused.update(status="refused", apis={}, api_agreement=[], problems=[],
                   error={"type": "NotExpressible", "message": "Keras 2 (tf_keras) cannot express kernel = fused_on_cpu",
                          "summary": "NotExpressible: Keras 2 (tf_keras) cannot express kernel = fused_on_cpu"})
    _write(tmp_path / "tf-keras", "2.21.0", [(refused, {}), _result("same")])
    _write(tmp_path / "results", RELEASE, [_result("fused"), _result("same")])
    record = compare_versions(tmp_path / "tf-keras", tmp_path / "results")
    assert record["changes"] == [] and record["counts"]["unchanged"] == 1
    assert record["not_compared"] == [{"backend": "tensorflow", "case": "fused",
                                       "reason": "Keras 2 (tf_keras) cannot express kernel = fused_on_cpu"}]
