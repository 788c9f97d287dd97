"""The fault study's gradient and optimizer faults: entries of DIR/<backend>.faults.json with the forward faults'
verdicts, judged by the gradient measure step and the training study; a wrong gradient that changes nothing is
missed (exit 1), a patch that never runs is an error (exit 2); the report shows them beside the forward faults."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPT = r"""
import json, sys
from pathlib import Path
from harness.execute.backends import activate

backend = activate(sys.argv[1])
from harness.case.schema import builtin_cases
from harness.execute import gradients
from harness.studies import fault_study

out = Path(sys.argv[2])
record = fault_study.run_fault_study(builtin_cases(), backend, out / "full", 20261124, catalogue={}, sweep_cases={})
# The scaled gradient scaled by exactly 1 runs and changes nothing: missed. Adam's fault judged on SGD never runs: an error.
gradients.SCALE = 1.0
other = fault_study.run_fault_study(builtin_cases(), backend, out / "other", 20261124, catalogue={}, sweep_cases={},
                                    gradient_faults={"recurrent_kernel_gradient_scaled": ("lstm_last_step",)},
                                    optimizer_faults={"adam_without_bias_correction": ("sgd",)})
print(json.dumps({"full": fault_study.exit_code(record), "other": fault_study.exit_code(other),
                  "summary": fault_study.summary(record)}))
"""


@pytest.mark.backend
def test_gradient_and_optimizer_faults_are_judged_like_the_forward_faults(session_backend, tmp_path):
    from harness.execute.gradients import GRADIENT_FAULTS, OPTIMIZER_FAULTS
    from harness.studies import fault_study

    completed = subprocess.run([sys.executable, "-c", SCRIPT, session_backend, str(tmp_path)], cwd=ROOT,
                               capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    codes = json.loads(completed.stdout.strip().splitlines()[-1])
    assert codes["full"] == 0 and codes["summary"].startswith(f"{session_backend}: 3 of 3 faults detected"), codes

    record = json.loads((tmp_path / "full" / f"{session_backend}.faults.json").read_text())
    assert record["finished"] and set(record["faults"]) == set(GRADIENT_FAULTS) | set(OPTIMIZER_FAULTS)
    for name in GRADIENT_FAULTS:
        entry = record["faults"][name]
        assert entry["kind"] == "gradient" and entry["status"] == "detected" and entry["detected"], entry
        assert entry["flagged_cases"] == list(fault_study.GRADIENT_FAULT_CASES[name])
        for run in entry["runs"].values():
            assert run["verdict"] == "detected" and run["status"] == "fail" and sum(run["patch_calls"].values()) > 0
            assert any(output.endswith("recurrent_kernel") for output in run["mismatched"])
            # The forward pass is untouched: the loss is never among the mismatches.
            assert not any(output.endswith("/loss") for output in run["mismatched"])
    adam = record["faults"]["adam_without_bias_correction"]
    assert adam["kind"] == "optimizer" and adam["status"] == "detected"
    assert sorted(adam["runs"]) == ["adam/fit", "adam/train_on_batch"] and adam["flagged_cases"]
    assert all("final/grad/lstm_0/kernel" in "".join(run["mismatched"]) for run in adam["runs"].values())
    # The unmodified runs pass: no false alarm.
    assert {"gradients/lstm_last_step", "training/adam/fit", "training/adam/train_on_batch"} <= set(record["clean"])
    assert not any(entry["false_alarm"] for entry in record["clean"].values()), record["clean"]

    assert codes["other"] == 2  # the error of the study wins over the miss
    other = json.loads((tmp_path / "other" / f"{session_backend}.faults.json").read_text())
    scaled = other["faults"]["recurrent_kernel_gradient_scaled"]
    assert scaled["status"] == "undetected" and scaled["runs"]["lstm_last_step"]["verdict"] == "undetected"
    never = other["faults"]["adam_without_bias_correction"]
    assert never["status"] == "error" and "never called" in never["reason"]
    assert fault_study.exit_code(dict(other, faults={"recurrent_kernel_gradient_scaled": scaled})) == 1
    assert fault_study.undetected_faults(other) == ["recurrent_kernel_gradient_scaled"]


def test_report_renders_the_committed_fault_records_and_the_new_entries(tmp_path):
    from harness.reports import markdown
    from harness.reports.sections.faults import build_faults

    studies = {path.name.split(".")[0]: json.loads(path.read_text()) for path in sorted((ROOT / "results").glob("*.faults.json"))}
    assert studies, "no committed faults record"
    # As records written before the gradient and optimizer faults existed: the forward faults only.
    studies = {backend: dict(data, faults={name: entry for name, entry in data["faults"].items() if entry.get("kind", "forward") == "forward"})
               for backend, data in studies.items()}
    assert all(len(data["faults"]) >= 12 for data in studies.values())
    before = build_faults(studies)
    committed_rows = {row.name for row in before.rows}
    backend = next(iter(studies))
    run = {"status": "fail", "error": None, "max_abs_error": 0.03, "mismatched": ["functional/grad/lstm_0/recurrent_kernel"],
           "patch_calls": {"harness.execute.gradients.injected(recurrent_term_dropped)": 12}, "verdict": "detected", "reason": None}
    studies[backend] = dict(studies[backend], faults=dict(studies[backend]["faults"], recurrent_term_dropped={
        "description": "the backward pass drops the recurrent term", "kind": "gradient", "judged_by": "the gradient measure step",
        "cases": ["lstm_last_step"], "runs": {"lstm_last_step": run}, "status": "detected", "reason": None, "detected": True,
        "flagged_cases": ["lstm_last_step"]}))
    after = build_faults(studies)
    assert {row.name for row in after.rows} == committed_rows | {"recurrent_term_dropped"}
    row = next(row for row in after.rows if row.name == "recurrent_term_dropped")
    assert row.cells[backend].status == "detected" and row.cells[backend].worst_error == 0.03
    others = [b for b in after.backends if b != backend]
    assert all(row.cells[b].status == "not run" for b in others)
    detection = next(d for d in after.detection if d.backend == backend)
    assert detection.total == len(studies[backend]["faults"]) and detection.detected == detection.total
    text = "\n".join(markdown._faults(type("R", (), {"faults": after})()))
    assert "| recurrent_term_dropped |" in text and "detected (1/1 cases, error up to 3.00e-02) | not run" in text


def test_every_gradient_and_optimizer_fault_has_its_judges():
    from harness.case.schema import builtin_cases
    from harness.execute.gradients import GRADIENT_FAULTS, OPTIMIZER_FAULTS
    from harness.studies import fault_study
    from harness.studies.gradients import gradient_selection
    from harness.studies.training import training_setup

    assert set(fault_study.GRADIENT_FAULT_CASES) == set(GRADIENT_FAULTS)
    assert set(fault_study.OPTIMIZER_FAULT_RUNS) == set(OPTIMIZER_FAULTS)
    gradient_cases = {case.name for case in gradient_selection()[0]}
    for cases in fault_study.GRADIENT_FAULT_CASES.values():
        assert cases and set(cases) <= gradient_cases  # measured (and passing) in the gradient study
    names = {case.name for case in builtin_cases()}
    assert all(set(cases) <= names for cases in fault_study.GRADIENT_FAULT_CASES.values())
    optimizers = {optimizer["name"] for optimizer in training_setup()["optimizers"]}
    assert all(runs and set(runs) <= optimizers for runs in fault_study.OPTIMIZER_FAULT_RUNS.values())


def test_on_a_gpu_the_faults_meet_the_generic_loop():
    """A fault patches LSTMCell; on a GPU the fused kernel bypasses it (the first GPU run: 'the patched function was
    never called' for every forward fault on JAX), so the study runs each case's generic-path twin there."""
    from dataclasses import replace

    from harness.case.schema import builtin_cases
    from harness.studies import fault_study

    cases = {case.name: case for case in builtin_cases()}
    twin = fault_study.generic_path_twin(cases["lstm_sequences"])
    assert twin.kernel == "generic" and twin.name == "lstm_sequences" and twin.layers == cases["lstm_sequences"].layers
    # Cases the schema would not allow as generic stay as they are: an explicit use_cudnn=True, a kernel mode
    # already chosen, an RNN(LSTMCell) form (no use_cudnn option).
    unchanged = [case for case in builtin_cases() if case.kernel != "as_shipped" or case.layer_form != "layer"]
    assert unchanged and all(fault_study.generic_path_twin(case) is case for case in unchanged)
    forced = [case for case in builtin_cases() if any(layer.options.get("use_cudnn") is True for layer in case.layers)]
    assert all(fault_study.generic_path_twin(case) is case for case in forced)
    assert fault_study.generic_path_twin(replace(twin, kernel="generic")).kernel == "generic"


GPU_CLASS_SCRIPT = r"""
import json, sys
from dataclasses import replace
from pathlib import Path
from harness.execute.backends import activate

backend = replace(activate(sys.argv[1]), device_class="gpu_highest")  # judged as a GPU run, computed on this CPU
from harness.case.schema import builtin_cases
from harness.execute import faults
from harness.studies import fault_study

record = fault_study.run_fault_study(builtin_cases(), backend, Path(sys.argv[2]), 20261124,
                                     catalogue={"swap_input_forget_gates": faults.FAULTS["swap_input_forget_gates"]},
                                     gradient_faults={}, optimizer_faults={}, sweep_cases={})
print(json.dumps({"code": fault_study.exit_code(record), "flag": record.get("generic_path_on_gpu", ""),
                  "status": record["faults"]["swap_input_forget_gates"]["status"]}))
"""


@pytest.mark.backend
def test_a_gpu_class_fault_study_runs_the_generic_twins_and_still_detects(session_backend, tmp_path):
    completed = subprocess.run([sys.executable, "-c", GPU_CLASS_SCRIPT, session_backend, str(tmp_path)], cwd=ROOT,
                               capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    assert found["code"] == 0 and found["status"] == "detected" and "use_cudnn=False" in found["flag"], found


def test_report_shows_the_per_case_detection_table_and_a_sweep_that_detected_nothing():
    """The report's fault section: one row per (fault, case) with the verdict after claims against the clean run and the
    kernel path; a sweep that detected no perturbation is a warning and its own line, not a quiet 'none detected'."""
    from harness.reports import html, markdown
    from harness.reports.sections.faults import build_faults

    run = {"status": "fail", "error": None, "max_abs_error": 2e-4, "mismatched": ["functional/output"], "patch_calls": {"LSTMCell.call": 6},
           "after_claims": "known", "explained_by": ["some_claim"], "clean_verdict": "known",
           "kernel_paths": {"functional": "fused_declined->generic", "sequential": "fused_declined->generic"},
           "verdict": "undetected", "reason": "a known divergence explains the faulted outputs (some_claim): a real run would call it known"}
    study = {"backend": "jax", "faults": {"bias": {"description": "a bias error", "kind": "forward", "cases": ["lstm_sequences"],
                                                   "runs": {"lstm_sequences": run}, "status": "undetected", "reason": "r",
                                                   "detected": False, "flagged_cases": []}},
             "clean": {"lstm_sequences": {"status": "fail", "verdict": "known", "false_alarm": False}},
             "sweep": {"float64": {"case": "lstm_float64_call", "clean_status": "fail", "clean_verdict": "known", "known_divergence": ["some_claim"],
                                   "detected": {"1": {"flagged": False, "max_abs_error": 0.2, "after_claims": "known", "reason": "r"}},
                                   "smallest_detected": None, "error": None,
                                   "no_detection": "no perturbation detected: the largest, 1, was missed on lstm_float64_call (r)"},
                       "float32": {"case": "lstm_sequences", "clean_status": "pass", "clean_verdict": "pass", "known_divergence": [],
                                   "detected": {}, "smallest_detected": 1e-5, "error": None, "no_detection": None}}}
    faults = build_faults({"jax": study})
    assert [(row.fault, row.case) for row in faults.cases] == [("bias", "lstm_sequences")]
    cell = faults.cases[0].cells["jax"]
    assert cell.startswith("MISSED (known vs clean known; fused_declined->generic)") and "a real run would call it known" in cell
    assert faults.detection[0].blind_sweeps == ("float64: no perturbation detected: the largest, 1, was missed on lstm_float64_call (r)",)
    assert {row.dtype: row.cells["jax"] for row in faults.sweep} == {"float64": "NONE DETECTED", "float32": "1e-05"}
    report = type("R", (), {"faults": faults})()
    text = "\n".join(markdown._faults(report))
    assert "**jax: the sweep detected no perturbation (float64: no perturbation detected" in text
    assert "| bias | lstm_sequences | MISSED (known vs clean known; fused_declined->generic)" in text
    page = "\n".join(html._faults(report))
    assert "jax: the sweep detected no perturbation" in page and "MISSED (known vs clean known" in page


def test_what_tf32_cannot_see_is_stated_per_precision_in_the_record_line_and_report():
    """The committed GPU PyTorch fault records (TF32 allowed, then highest precision): the report names, per precision,
    the faults it missed and the sweeps that detected nothing; the study's summary line says the same."""
    from harness.reports import markdown
    from harness.reports.sections.faults import build_faults
    from harness.studies import fault_study

    default = json.loads((ROOT / "results" / "gpu" / "default" / "torch.faults.json").read_text())
    highest = json.loads((ROOT / "results" / "gpu" / "highest" / "torch.faults.json").read_text())
    missed_default = [name for name, entry in default["faults"].items() if entry["status"] == "undetected"]
    assert missed_default, "the TF32 record misses no fault"
    for record in (default, highest):
        detection = build_faults({"torch": record}).detection[0]
        expected = [name for name, entry in record["faults"].items() if entry["status"] == "undetected"]
        expected += [f"sweep:{dtype}" for dtype in fault_study.undetected_sweeps(record)]
        assert list(detection.missed) == expected
        assert detection.precision == f"{record['device_class']}, precision {record['settings']['precision_mode']}"
        line = fault_study.summary(record)
        if expected:
            assert line.endswith(f"missed at {detection.precision}: {', '.join(expected)}"), line
    detection = build_faults({"torch": default}).detection[0]
    assert detection.precision == "gpu_tf32, precision default" and set(missed_default) <= set(detection.missed)
    text = "\n".join(markdown._faults(type("R", (), {"faults": build_faults({"torch": default})})()))
    assert f"**Missed at this precision (torch, gpu_tf32, precision default): {', '.join(detection.missed)}.**" in text
    summary = fault_study.missed_at_this_precision(default)
    assert summary["precision"] == "gpu_tf32, precision default" and summary["faults"] == missed_default
