"""Each study's exit code says what it found: 0 nothing to report, 1 what the study exists to find,
2 it could not run (or measured nothing).

- load: no model saved by another backend -> 2, one line naming the folder and what it expected;
- growth: a point's error over the tolerance -> 1; a point that raised (or no point) -> 2;
- probe: a probe that raised -> 2, naming it;
- faults: a fault is detected only by a failing verdict after claims, against a clean run of the same case
  that does not fail and whose outputs differ, on the kernel path the fault patches; a patch that raises,
  that cannot be applied, that is never called or that did not compute the outputs, and a case whose clean
  run fails, are errors of the study (-> 2); an undetected fault, a sweep that detects nothing or a false
  alarm -> 1.

The rules are checked on synthetic records (no Keras, fast), and end to end on the session's
backend in a subprocess (one backend per process) with small subsets.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_harness


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


# ---------------------------------------------------------------- load


@pytest.mark.parametrize("layout", ["missing", "empty", "own_backend_only"])
def test_load_with_no_models_from_other_backends_exits_2(tmp_path, layout):
    models = tmp_path / "models"
    if layout != "missing":
        models.mkdir()
    if layout == "own_backend_only":
        (models / "jax").mkdir()
        (models / "jax" / "lstm_last_step.keras").write_bytes(b"")  # load never reads its own backend's models
    out = tmp_path / "out"
    completed = run_harness("load", "--backend", "jax", "--models", str(models), "--out", str(out))
    assert completed.returncode == 2, completed.stdout + completed.stderr
    line = _one_line(completed.stderr)
    assert f"no models saved by other backends in {models}" in line
    assert f"{models}/<backend>/<case>.keras" in line and "tensorflow or torch" in line
    assert "python -m harness save" in line
    assert not out.exists()  # nothing written, not even the backend log


# ---------------------------------------------------------------- growth (pure)


def _growth_point(time, units, headroom, status=None):
    quantity = {"headroom": headroom, "passed": headroom >= 1}
    return {"time": time, "units": units, "status": status or ("pass" if headroom >= 1 else "fail"),
            "quantities": {"output": quantity, "h": quantity, "c": quantity}, "error": None}


def _growth_error(time, units):
    return {"time": time, "units": units, "status": "error", "passed": False, "error": "RuntimeError: boom"}


def _growth_record(points):
    return {"backend": "jax", "dtype": "float32", "points": points}


@pytest.mark.parametrize(
    "points, code",
    [
        ([_growth_point(10, 4, 4.0), _growth_point(100, 4, 1.5)], 0),
        ([_growth_point(10, 4, 4.0), _growth_point(100, 4, 0.5)], 1),
        ([_growth_point(10, 4, 4.0), _growth_point(100, 4, 0.9, status="pass")], 1),  # headroom below 1 is over the bound
        ([_growth_error(10, 4), _growth_error(100, 4)], 2),  # every point raised: nothing measured
        ([_growth_point(10, 4, 4.0), _growth_error(100, 4)], 2),  # a point could not be measured
        ([_growth_point(10, 4, 0.5), _growth_error(100, 4)], 1),  # the finding is reported first
        ([], 2),
    ],
)
def test_growth_exit_code(points, code):
    from harness.studies import growth

    record = _growth_record(points)
    assert growth.exit_code(record) == code
    line = growth.summary(record)
    assert "\n" not in line and line.startswith("jax: ")
    if code == 1:
        assert "over the float32 tolerance" in line
    if any(point["status"] == "error" for point in points):
        assert "could not be measured" in line


# ---------------------------------------------------------------- faults (pure)


def _injection(calls=1, errors=(), label="LSTMCell.call", computes=("generic",)):
    from harness.execute import faults

    injection = faults.Injection("demo", [label], {label: computes})
    injection.calls[label] = calls
    injection.errors = list(errors)
    return injection


def _case_result(status, mismatched=0, error=None, problems=(), path="fused_declined->generic"):
    items = {} if status in ("error", "timeout") else {
        "output": {"passed": mismatched == 0, "mismatched": mismatched, "max_abs_error": 1e-3 if mismatched else 1e-8},
    }
    apis = {"functional": {"passed": mismatched == 0, "items": items, "kernel_path": path}} if items else {}
    return {"status": status, "error": error, "apis": apis, "problems": list(problems)}


def _clean(verdict="pass", output=(0.25, -0.5, 0.75)):
    import numpy as np

    from harness.studies.fault_study import CleanRun

    return CleanRun(verdict, ("some_claim",) if verdict == "known" else (), {"functional/output": np.asarray(output, dtype=np.float32)})


FAULTED_OUTPUT = (0.25, -0.5, 0.7503)
CLEAN_OUTPUT = (0.25, -0.5, 0.75)


@pytest.mark.parametrize(
    "result, injection, after_claims, clean, faulted, verdict, reason",
    [
        (_case_result("fail", mismatched=3), _injection(), "fail", "pass", FAULTED_OUTPUT, "detected", None),
        # A clean run a claim explains does not stop a detection: the faulted run fails after claims.
        (_case_result("fail", mismatched=3), _injection(), "fail", "known", FAULTED_OUTPUT, "detected", None),
        (_case_result("pass"), _injection(), "pass", "pass", FAULTED_OUTPUT, "undetected", None),
        # Detection is judged after claims: a fault a real run would call known is missed.
        (_case_result("fail", mismatched=3), _injection(), "known", "known", FAULTED_OUTPUT, "undetected", "a known divergence explains"),
        # ... against the clean run of the same case: a case that fails unmodified cannot judge the fault.
        (_case_result("fail", mismatched=3), _injection(), "fail", "fail", FAULTED_OUTPUT, "error", "the unmodified case fails too"),
        # A failure with the clean run's very outputs is not the fault's.
        (_case_result("fail", mismatched=3), _injection(), "fail", "pass", CLEAN_OUTPUT, "error", "equal the unmodified run's"),
        (_case_result("pass"), _injection(), "pass", "pass", CLEAN_OUTPUT, "undetected", "changes nothing"),
        # Applied means the faulted code computed the outputs: PyTorch's _fallback_lstm called once (shape inference)
        # while cuDNN computed them ("fused") is not, whatever the status.
        (_case_result("pass", path="fused"), _injection(label="torch rnn._fallback_lstm", computes=("fallback_loop",)),
         "pass", "pass", FAULTED_OUTPUT, "error", "functional: fused"),
        (_case_result("fail", mismatched=3, path="fused"), _injection(label="torch rnn._fallback_lstm", computes=("fallback_loop",)),
         "fail", "pass", FAULTED_OUTPUT, "error", "did not compute the outputs"),
        (_case_result("fail", mismatched=3, path="fallback_loop"), _injection(label="torch rnn._fallback_lstm", computes=("fallback_loop",)),
         "fail", "pass", FAULTED_OUTPUT, "detected", None),
        # A patch of the layer's own call wraps whichever kernel runs.
        (_case_result("fail", mismatched=3, path="fused"), _injection(label="LSTM.call", computes=None), "fail", "pass", FAULTED_OUTPUT, "detected", None),
        # An exception is not a detection: a patch that raises is an error of the study.
        (_case_result("error", error={"summary": "RuntimeError: boom"}), _injection(errors=["LSTM.call raised RuntimeError: boom"]),
         "error", "pass", FAULTED_OUTPUT, "error", "the patch raised: LSTM.call raised RuntimeError: boom"),
        (_case_result("error", error={"summary": "ValueError: bad"}), _injection(), "error", "pass", FAULTED_OUTPUT, "error",
         "could not run under the fault: error (ValueError: bad)"),
        (_case_result("timeout", error={"summary": "case ran past its 300 s limit"}), _injection(), "timeout", "pass", FAULTED_OUTPUT, "error", "timeout"),
        # A patch that is never called proves nothing, even when the case passes.
        (_case_result("pass"), _injection(calls=0), "pass", "pass", FAULTED_OUTPUT, "error", "was never called"),
        (_case_result("fail", mismatched=3), _injection(calls=0), "fail", "pass", FAULTED_OUTPUT, "error", "was never called"),
        # A fail without an output beyond tolerance (builds disagreeing, a dtype) is not the mismatch sought.
        (_case_result("fail", mismatched=0, problems=["APIs disagree"]), _injection(), "fail", "pass", FAULTED_OUTPUT, "error",
         "without a compared output beyond tolerance"),
    ],
)
def test_fault_run_verdict(result, injection, after_claims, clean, faulted, verdict, reason):
    import numpy as np

    from harness.studies.fault_study import judge_fault_run

    claims = {"verdict": after_claims, "explained_by": ["some_claim"] if after_claims == "known" else []}
    got, why = judge_fault_run(result, injection, after_claims=claims, clean=_clean(clean, CLEAN_OUTPUT),
                               faulted_outputs={"functional/output": np.asarray(faulted, dtype=np.float32)})
    assert got == verdict, why
    if reason is None:
        assert why is None
    else:
        assert reason in why


def test_fault_run_without_its_clean_run_cannot_be_judged():
    from harness.studies.fault_study import judge_fault_run

    with pytest.raises(ValueError, match="needs after_claims, clean and faulted_outputs"):
        judge_fault_run(_case_result("fail", mismatched=3), _injection())


def test_fault_that_cannot_be_applied_is_an_error():
    from harness.studies.fault_study import judge_fault_run

    verdict, reason = judge_fault_run(None, None, "LSTMCell.gone does not exist in this Keras")
    assert verdict == "error" and "cannot be applied" in reason and "LSTMCell.gone" in reason


@pytest.mark.parametrize(
    "label, computes, calls, paths, unreached",
    [
        ("LSTMCell.call", ("generic",), 5, {"functional": "fused_declined->generic", "sequential": "generic"}, []),
        # Every layer call of a build must end in the faulted step (a bidirectional build: two layer calls).
        ("LSTMCell.call", ("generic",), 5, {"functional": "bidirectional_fused_declined->fused_declined->generic, fused_declined->generic"}, []),
        ("LSTMCell.call", ("generic",), 5, {"functional": "fused, fused_declined->generic"}, ["functional: fused, fused_declined->generic"]),
        ("LSTMCell.call", ("generic",), 5, {"functional": "none observed"}, ["functional: none observed"]),
        ("torch rnn._fallback_lstm", ("fallback_loop",), 1, {"functional": "fused", "sequential": "fallback_loop"}, ["functional: fused"]),
        ("LSTM.call", None, 3, {"functional": "bidirectional_fused"}, []),
    ],
)
def test_unreached_builds_follow_the_observed_kernel_path(label, computes, calls, paths, unreached):
    injection = _injection(calls, label=label, computes=computes)
    result = {"apis": {api: {"kernel_path": path} for api, path in paths.items()}}
    assert injection.unreached_builds(result) == unreached


def test_outputs_differ_sees_one_element():
    import numpy as np

    from harness.studies.fault_study import outputs_differ

    clean = {"functional/output": np.asarray([[0.1, 0.2], [0.3, np.nan]])}
    assert not outputs_differ(clean, {"functional/output": clean["functional/output"].copy()})
    assert outputs_differ(clean, {"functional/output": np.asarray([[0.1, 0.2], [np.nextafter(0.3, 1.0), np.nan]])})
    assert outputs_differ(clean, {"functional/output": clean["functional/output"].astype(np.float32)})
    assert outputs_differ(clean, {})


def _fault_record(statuses, false_alarm=False, sweep_error=None, sweep_smallest=1e-5):
    return {
        "backend": "jax",
        "faults": {f"f{i}": {"status": status, "reason": None if status == "detected" else "why", "description": "d"}
                   for i, status in enumerate(statuses)},
        "clean": {"lstm_sequences": {"status": "fail" if false_alarm else "pass", "false_alarm": false_alarm, "error": None}},
        "sweep": {"float32": {"case": "lstm_sequences", "clean_status": "pass", "error": sweep_error,
                              "smallest_detected": None if sweep_error else sweep_smallest,
                              "no_detection": None if sweep_error or sweep_smallest else "no perturbation detected: the largest, 1, was missed"}},
    }


@pytest.mark.parametrize(
    "statuses, false_alarm, sweep_error, sweep_smallest, code",
    [
        (["detected", "detected"], False, None, 1e-5, 0),
        (["detected", "undetected"], False, None, 1e-5, 1),
        (["detected", "detected"], True, None, 1e-5, 1),
        (["detected", "error"], False, None, 1e-5, 2),
        (["undetected", "error"], True, None, 1e-5, 2),
        (["detected"], False, "1e-05: the patch raised: ...", None, 2),
        # A sweep that detects no perturbation at all is a finding, not silence.
        (["detected", "detected"], False, None, None, 1),
    ],
)
def test_fault_study_exit_code(statuses, false_alarm, sweep_error, sweep_smallest, code):
    from harness.studies import fault_study

    record = _fault_record(statuses, false_alarm, sweep_error, sweep_smallest)
    assert fault_study.exit_code(record) == code
    line = fault_study.summary(record)
    assert "\n" not in line
    assert ("sweeps that detected no perturbation: float32" in line) == (sweep_error is None and sweep_smallest is None)


def test_fault_study_subset_names_what_it_runs():
    from harness.execute import faults
    from harness.studies import fault_study

    subset = fault_study.study_subset("forget_gate_bias_offset,recurrent_term_dropped", "float64")
    assert list(subset["catalogue"]) == ["forget_gate_bias_offset"] and list(subset["gradient_faults"]) == ["recurrent_term_dropped"]
    assert subset["optimizer_faults"] == {} and subset["sweep_cases"] == {"float64": "lstm_float64_call"}
    assert fault_study.study_subset(None, "none") == {"sweep_cases": {}}
    with pytest.raises(faults.FaultNotApplicable, match="unknown fault no_such_fault"):
        fault_study.study_subset("no_such_fault", None)
    with pytest.raises(faults.FaultNotApplicable, match="unknown dtype float8"):
        fault_study.study_subset(None, "float8")


def test_injection_counts_calls_and_restores():
    from harness.execute import faults

    class Target:
        def step(self, x):
            return x + 1

    original = Target.__dict__["step"]

    def faulty(self, x):
        return x + 2

    with faults.inject([faults.patch(Target, "step", "Target.step", faulty)], "demo") as injection:
        assert injection.calls == {"Target.step": 0} and not injection.applied
        assert Target().step(1) == 3 and Target().step(1) == 3
        assert injection.calls == {"Target.step": 2} and injection.applied
    assert Target.__dict__["step"] is original and Target().step(1) == 2


def test_injection_records_what_raised_in_a_patch():
    from harness.execute import faults

    class Target:
        def step(self, x):
            return x

    def faulty(self, x):
        raise RuntimeError("broken patch")

    with faults.inject([faults.patch(Target, "step", "Target.step", faulty)], "demo") as injection:
        with pytest.raises(RuntimeError):
            Target().step(1)
    assert injection.errors == ["Target.step raised RuntimeError: broken patch"]
    assert Target().step(1) == 1


def test_patching_a_missing_attribute_is_not_applicable():
    from harness.execute import faults

    class Target:
        pass

    with pytest.raises(faults.FaultNotApplicable, match="Target.renamed does not exist"):
        faults.patch(Target, "renamed", "Target.renamed", lambda self: None)


# ---------------------------------------------------------------- end to end on the session backend

STUDIES_SCRIPT = r"""
import json, sys
from pathlib import Path
from harness.execute.backends import activate

backend = activate(sys.argv[1])
out = Path(sys.argv[2])
from harness.case.tolerances import Tolerance, Tolerances
from harness.execute import measure
from harness.studies import growth, probes

report = {}
# growth: the float32 table forced tiny: every point's error outgrows it -> 1
tiny = Tolerance(rtol=1e-15, atol=1e-15, rel_floor=1e-15, reason="forced tiny by the test")
record = growth.run_growth(backend, out / "tiny", lengths=(10,), units=(4,), tolerances=Tolerances({"float32": {"outputs": tiny, "states": tiny}}))
report["growth_tiny"] = [growth.exit_code(record), growth.summary(record), [p["status"] for p in record["points"]]]
record = growth.run_growth(backend, out / "real", lengths=(10,), units=(4,))
report["growth_real"] = [growth.exit_code(record), growth.summary(record), record["schema"], record["command"]]
# growth: every point raised -> 2
def broken_case_data(case, seed):
    raise RuntimeError("no data for this point")
measure.make_case_data = broken_case_data
record = growth.run_growth(backend, out / "broken", lengths=(10, 30), units=(4,))
report["growth_broken"] = [growth.exit_code(record), growth.summary(record), [p["status"] for p in record["points"]]]

# probe: one probe raises -> 2, named
def broken_probe():
    raise RuntimeError("probe cannot run")
record = probes.run_probe_study(backend, out, probes={"identical_weights": probes.identical_weights, "broken_probe": broken_probe})
report["probe_broken"] = [probes.exit_code(record), probes.summary(record), sorted(probes.errored_probes(record)), record["schema"]]
record = probes.run_probe_study(backend, out / "fine", probes={"identical_weights": probes.identical_weights})
report["probe_fine"] = [probes.exit_code(record), probes.summary(record)]
print(json.dumps(report))
"""


@pytest.mark.backend
def test_growth_and_probe_exit_codes_on_the_backend(session_backend, tmp_path):
    completed = _run_script(STUDIES_SCRIPT, session_backend, str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    code, line, statuses = report["growth_tiny"]
    assert (code, statuses) == (1, ["fail"]), line
    assert "over the float32 tolerance at T=10 units=4" in line
    code, line, schema, command = report["growth_real"]
    assert code == 0, line
    assert schema == "keras-parity/growth"
    code, line, statuses = report["growth_broken"]
    assert (code, statuses) == (2, ["error", "error"]), line
    assert "0 of 2 sequence-length points measured" in line and "no data for this point" in line
    code, line, errored, schema = report["probe_broken"]
    assert (code, errored, schema) == (2, ["broken_probe"], "keras-parity/probes")
    assert "could not measure broken_probe" in line
    assert report["probe_fine"][0] == 0


FAULTS_SCRIPT = r"""
import dataclasses, json, sys
from pathlib import Path
from harness.execute.backends import activate

backend = activate(sys.argv[1])
import keras
from harness.case.schema import builtin_cases
from harness.execute import faults
from harness.studies import fault_study

def raising_layer_call(original, self, sequences, initial_state, mask, training):
    raise RuntimeError("the patch itself is broken")

CASE = ("lstm_last_step",)
catalogue = {
    "bias_offset": dataclasses.replace(faults.FAULTS["forget_gate_bias_offset"], cases=CASE),
    "patch_raises": faults.Fault("a patch that raises", CASE, layer_call=raising_layer_call),
    "patch_never_called": faults.Fault("a patch on a function the case never calls", CASE),
    "patch_target_missing": faults.Fault("a patch on a function this Keras does not have", CASE),
    "no_effect_here": dataclasses.replace(faults.FAULTS["go_backwards_output_not_reversed"], cases=CASE),
}
faults.FAULTS.update(catalogue)
real_patches_of = faults.patches_of

def patches_of(name, magnitude=faults.DEFAULT_MAGNITUDE):
    if name == "patch_never_called":  # a real Keras function an LSTM case does not reach
        return [faults.patch(keras.layers.GRU, "call", "GRU.call", keras.layers.GRU.call)]
    if name == "patch_target_missing":  # as if Keras had renamed what the fault patches
        from keras.src.layers.rnn.lstm import LSTMCell
        return [faults.patch(LSTMCell, "_compute_carry_and_output_fused_renamed", "LSTMCell._compute_carry_and_output_fused_renamed", None)]
    return real_patches_of(name, magnitude)

faults.patches_of = patches_of
record = fault_study.run_fault_study(builtin_cases(), backend, Path(sys.argv[2]), 20261124, catalogue=catalogue, sweep_cases={},
                                     gradient_faults={}, optimizer_faults={})
print(json.dumps({"exit_code": fault_study.exit_code(record)}))
"""


@pytest.mark.backend
def test_fault_study_counts_only_mismatches_as_detections(session_backend, tmp_path):
    from harness.studies import fault_study

    completed = _run_script(FAULTS_SCRIPT, session_backend, str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == {"exit_code": 2}
    record = json.loads((tmp_path / f"{session_backend}.faults.json").read_text())
    assert record["schema"] == "keras-parity/faults" and record["finished"] is not None
    entries = record["faults"]
    assert entries["bias_offset"]["status"] == "detected" and entries["bias_offset"]["detected"]
    run = entries["bias_offset"]["runs"]["lstm_last_step"]
    assert run["status"] == "fail" and run["mismatched"] and sum(run["patch_calls"].values()) > 0

    raised = entries["patch_raises"]
    assert raised["status"] == "error" and not raised["detected"], raised
    assert "the patch raised: LSTM.call raised RuntimeError: the patch itself is broken" in raised["reason"]
    assert raised["runs"]["lstm_last_step"]["status"] == "error"

    never = entries["patch_never_called"]
    assert never["status"] == "error" and not never["detected"]
    assert "GRU.call" in never["reason"] and "never called" in never["reason"]
    assert never["runs"]["lstm_last_step"]["patch_calls"] == {"GRU.call": 0}

    missing = entries["patch_target_missing"]
    assert missing["status"] == "error" and not missing["detected"]
    assert "cannot be applied" in missing["reason"] and "_compute_carry_and_output_fused_renamed does not exist" in missing["reason"]

    assert entries["no_effect_here"]["status"] == "undetected"
    assert record["clean"]["lstm_last_step"]["status"] == "pass" and not record["clean"]["lstm_last_step"]["false_alarm"]

    # Without the errors, the undetected fault is the finding (1); with only detections, 0.
    without_errors = dict(record, faults={k: v for k, v in entries.items() if v["status"] != "error"})
    assert fault_study.exit_code(without_errors) == 1
    assert fault_study.exit_code(dict(record, faults={"bias_offset": entries["bias_offset"]})) == 0
