"""The fault study judges a faulted case as a real run would: after the known-divergence claims, against the clean run
of the same case, on the kernel path the fault patches (issue 15). End to end on the session backend, in a subprocess:

- a claim that explains the faulted numbers makes the fault missed (exit 1), where the old rule (status alone) called
  it detected;
- a sweep whose every perturbation a claim explains detects nothing: a finding (exit 1, its own summary line);
- a patch that runs while the build's observed kernel path is one it does not compute is an error of the study;
- on JAX the float64 sweep runs (its clean case is explained by a claim) instead of being skipped.
"""

import json
import subprocess
import sys

import pytest

from conftest import ROOT

# A bound claim that explains any float32 output up to 10: every float32 fault a real run meets is "known" under it.
WIDE_CLAIM = """
[[divergence]]
id = "test_wide_float32_bound"
backends = ["tensorflow", "jax", "torch"]
versions = { keras = ">=3.0" }
when = { dtype = "float32" }
kind = "bound"
outputs = ["*"]
max_abs_error = 10.0
observed = "a test claim"
reference = "none"
upstream = "none"
reproducer = "none"
"""

SCRIPT = r"""
import dataclasses, json, sys
from pathlib import Path
from harness.execute.backends import activate

backend = activate(sys.argv[1])
out = Path(sys.argv[2])
from harness.case.divergences import load_divergences
from harness.case.schema import builtin_cases
from harness.execute import faults
from harness.studies import fault_study

CASE = ("lstm_last_step",)
report = {}
# 1. Every float32 output explained by a wide claim: the bias offset is known after claims (missed), and the sweep
#    detects no perturbation.
real_divergences = fault_study.load_divergences
fault_study.load_divergences = lambda: load_divergences(out / "wide.toml")
catalogue = {"bias_offset": dataclasses.replace(faults.FAULTS["forget_gate_bias_offset"], cases=CASE)}
faults.FAULTS.update(catalogue)
record = fault_study.run_fault_study(builtin_cases(), backend, out / "claimed", 20261124, catalogue=catalogue,
                                     sweep_cases={"float32": "lstm_last_step"}, gradient_faults={}, optimizer_faults={})
report["claimed"] = [fault_study.exit_code(record), fault_study.summary(record)]
fault_study.load_divergences = real_divergences

# 2. A patch that runs but computes a path the build did not take: LSTMCell.call declared as PyTorch's fallback loop,
#    on a masked case (Keras's generic loop on every backend on CPU).
from keras.src.layers.rnn.lstm import LSTMCell
catalogue = {"wrong_path": faults.Fault("a patch called on a path that does not compute the outputs", ("lstm_right_padded_mask",))}
faults.FAULTS.update(catalogue)
original_call = LSTMCell.call
def offset_call(self, inputs, states, training=False):
    h, (h2, c2) = original_call(self, inputs, states, training=training)
    return h + 1.0, [h2 + 1.0, c2]
real_patches_of = faults.patches_of
faults.patches_of = lambda name, magnitude=faults.DEFAULT_MAGNITUDE: (
    [faults.patch(LSTMCell, "call", "LSTMCell.call", offset_call, faults.FALLBACK_LOOP)] if name == "wrong_path" else real_patches_of(name, magnitude))
record = fault_study.run_fault_study(builtin_cases(), backend, out / "path", 20261124, catalogue=catalogue, sweep_cases={},
                                     gradient_faults={}, optimizer_faults={})
report["path"] = [fault_study.exit_code(record), fault_study.summary(record)]
faults.patches_of = real_patches_of

# 3. JAX: the float64 sweep runs on a case a claim explains.
if backend.name == "jax":
    record = fault_study.run_fault_study(builtin_cases(), backend, out / "float64", 20261124, catalogue={},
                                         sweep_cases={"float64": "lstm_float64_call"}, gradient_faults={}, optimizer_faults={})
    report["float64"] = [fault_study.exit_code(record), fault_study.summary(record)]
print(json.dumps(report))
"""


def _run(backend: str, tmp_path) -> dict:
    (tmp_path / "wide.toml").write_text(WIDE_CLAIM)
    completed = subprocess.run([sys.executable, "-c", SCRIPT, backend, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.backend
def test_fault_study_judges_after_claims_against_the_clean_run(session_backend, tmp_path):
    report = _run(session_backend, tmp_path)

    code, line = report["claimed"]
    record = json.loads((tmp_path / "claimed" / f"{session_backend}.faults.json").read_text())
    clean = record["clean"]["lstm_last_step"]
    assert clean["status"] == "pass" and clean["verdict"] == "pass" and not clean["false_alarm"]
    run = record["faults"]["bias_offset"]["runs"]["lstm_last_step"]
    # Measured a mismatch (the old rule's detection), but the claim explains it: a real run calls it known.
    assert run["status"] == "fail" and run["mismatched"] and run["after_claims"] == "known", run
    assert run["explained_by"] == ["test_wide_float32_bound"] and run["clean_verdict"] == "pass"
    assert run["verdict"] == "undetected" and "a real run would call it known" in run["reason"]
    assert record["faults"]["bias_offset"]["status"] == "undetected"
    assert all(path.endswith("generic") or path == "fallback_loop" for path in run["kernel_paths"].values()), run["kernel_paths"]
    sweep = record["sweep"]["float32"]
    assert sweep["smallest_detected"] is None and sweep["error"] is None and sweep["detected"]["1"]["after_claims"] == "known"
    assert sweep["no_detection"].startswith("no perturbation detected: the largest, 1, was missed on lstm_last_step")
    assert code == 1 and "sweeps that detected no perturbation: float32" in line, line

    code, line = report["path"]
    record = json.loads((tmp_path / "path" / f"{session_backend}.faults.json").read_text())
    entry = record["faults"]["wrong_path"]
    run = entry["runs"]["lstm_right_padded_mask"]
    assert all(path.endswith("generic") for path in run["kernel_paths"].values()), run["kernel_paths"]
    # The offset patch ran and the case failed, but no build took the path the patch computes.
    assert run["status"] == "fail" and run["patch_calls"]["LSTMCell.call"] > 0
    assert run["verdict"] == "error" and "the faulted code did not compute the outputs" in run["reason"], run
    assert entry["status"] == "error" and code == 2, line

    if session_backend == "jax":
        code, line = report["float64"]
        record = json.loads((tmp_path / "float64" / f"{session_backend}.faults.json").read_text())
        sweep = record["sweep"]["float64"]
        assert "skipped" not in sweep and sweep["error"] is None, sweep
        assert sweep["clean_verdict"] == "known" and sweep["known_divergence"] and sweep["smallest_detected"] is not None
        # Every perturbation down to the smallest detected one was flagged; the first missed one is what the claim hides.
        missed = [run for run in sweep["detected"].values() if not run["flagged"]]
        assert all(run["after_claims"] in ("known", "pass") for run in missed), sweep
        assert code == 0, line
