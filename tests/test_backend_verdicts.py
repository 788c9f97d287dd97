"""On the session's backend, for real: a case a user wrote, under a name no divergence entry mentions,
is judged by the claims its configuration triggers; with a wrong gate injected on top it is a failure;
a resumed run refuses a record measured differently; an error keeps the innermost exception."""

import json

import numpy as np
import pytest

from conftest import run_harness
from harness.case.divergences import load_divergences
from harness.case.schema import load_case_file
from harness.case.tolerances import load_tolerances
from harness.records import store
from harness.verdicts.classify import classify_result

pytestmark = pytest.mark.backend

# Masked, read backwards, unrolled, zeros for masked steps: TensorFlow zeroes the wrong steps, JAX
# ignores zero_output_for_mask, PyTorch raises. One configuration, three documented divergences.
USER_CASE = """
[[case]]
name = "my_own_backwards_model"
description = "a user's model: masked, backwards, unrolled, zero_output_for_mask"
dtype = "float32"
batch = 3
time = 7
features = 4
mask = "holes"
mask_source = "argument"
apis = ["functional"]
layers = [{ type = "lstm", units = 5, return_sequences = true, go_backwards = true, unroll = true, zero_output_for_mask = true }]
"""
EXPECTED_CLAIM = {
    "tensorflow": "tensorflow_unroll_go_backwards_zero_output_misaligned",
    "jax": "jax_unroll_ignores_zero_output_for_mask",
    "torch": "torch_go_backwards_unroll_mask_error",
}


@pytest.fixture
def case_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(USER_CASE)
    return path


def test_user_case_triggering_a_documented_divergence_is_known(session_backend, case_file, tmp_path):
    out = tmp_path / "clean"
    completed = run_harness("run", "--backend", session_backend, "--case-file", str(case_file), "--out", str(out))
    assert completed.returncode == 0, completed.stderr[-2000:]
    verdicts = store.read_json_file(out / f"{session_backend}.verdicts.json")
    verdict = verdicts["cases"]["my_own_backwards_model"]
    assert verdict["measured_status"] in ("fail", "error")
    assert verdict["verdict"] == "known"
    assert verdict["explained_by"] == [EXPECTED_CLAIM[session_backend]]
    assert len(verdicts["divergences_sha256"]) == 64
    if session_backend == "torch":
        error = store.read_record(out / "torch.json")["cases"][0]["error"]
        # The innermost exception, not Keras's "Exception encountered when calling LSTM.call()" wrapper.
        assert error["type"] == "AttributeError"
        assert "'tuple' object has no attribute 'shape'" in error["message"]
        assert "Exception encountered" not in error["message"]


def test_the_same_case_with_a_wrong_gate_on_top_is_a_failure(session_backend, case_file, tmp_path):
    out = tmp_path / "faulty"
    completed = run_harness("run", "--backend", session_backend, "--case-file", str(case_file), "--out", str(out),
                            "--inject-fault", "swap_input_forget_gates")
    record = store.read_record(out / f"{session_backend}.json")
    result = record["cases"][0]
    raw = store.read_arrays(out / f"{session_backend}.npz")
    arrays = {("functional", name): raw[store.array_key(result["case"], "functional", name)]
              for name in result["apis"].get("functional", {}).get("items", {})}
    case = load_case_file(case_file)[0]
    verdict = classify_result(case, session_backend, record["versions"], result, arrays, load_tolerances(),
                              load_divergences(), record["seed"])
    if session_backend == "torch":
        # The crash comes first whatever the gates: the claim still describes exactly what is observed.
        assert verdict["verdict"] == "known"
    else:
        assert completed.returncode == 1
        assert verdict["verdict"] == "fail"
        assert EXPECTED_CLAIM[session_backend] in verdict["applicable"]


def test_resume_refuses_a_record_measured_differently(session_backend, case_file, tmp_path):
    out = tmp_path / "resumed"
    first = run_harness("run", "--backend", session_backend, "--cases", "lstm_last_step", "--out", str(out))
    assert first.returncode == 0, first.stderr[-2000:]
    other_seed = run_harness("run", "--backend", session_backend, "--cases", "lstm_last_step,lstm_sequences", "--out", str(out),
                             "--resume", "--seed", "7")
    assert other_seed.returncode == 2
    assert "seed" in other_seed.stderr and len(other_seed.stderr.strip().splitlines()) == 1
    record_path = out / f"{session_backend}.json"
    record = json.loads(record_path.read_text())
    record["cases"][0]["definition"]["time"] = 99
    record_path.write_text(json.dumps(record))
    redefined = run_harness("run", "--backend", session_backend, "--cases", "lstm_last_step,lstm_sequences", "--out", str(out), "--resume")
    assert redefined.returncode == 2 and "defined differently" in redefined.stderr
    record["cases"][0]["definition"]["time"] = 7
    record["versions"]["keras"] = "3.0.0"
    record_path.write_text(json.dumps(record))
    other_versions = run_harness("run", "--backend", session_backend, "--cases", "lstm_last_step", "--out", str(out), "--resume")
    assert other_versions.returncode == 2 and "versions" in other_versions.stderr


def test_run_that_measured_nothing_is_not_a_success(session_backend, tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    completed = run_harness("run", "--backend", session_backend, "--case-file", str(empty), "--out", str(tmp_path))
    assert completed.returncode == 2
    assert np.all([line.startswith("keras-parity: error") for line in completed.stderr.strip().splitlines()])
