"""End to end on the session's backend: the harness runs, agrees with the reference, and catches bugs.

These tests run Keras for real on KERAS_BACKEND (set by 'nox -s tests'); each nox session runs them
for its own backend.
"""

import json

import numpy as np
import pytest

from conftest import run_harness

pytestmark = pytest.mark.backend

QUICK_CASES = "lstm_*"  # every float32 single-LSTM case: sequences, state, masks, go_backwards, activations


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    import os

    backend = os.environ.get("KERAS_BACKEND")
    if backend is None:
        pytest.skip("KERAS_BACKEND is not set: run through 'nox -s tests'")
    out = tmp_path_factory.mktemp("clean")
    completed = run_harness("run", "--backend", backend, "--cases", QUICK_CASES, "--out", str(out))
    return backend, out, completed


def test_unmodified_backend_passes_every_case(clean_run):
    backend, out, completed = clean_run
    assert completed.returncode == 0, completed.stderr
    record = json.loads((out / f"{backend}.json").read_text())
    assert record["backend"] == backend and record["finished"] is not None
    assert record["versions"]["keras"] == "3.15.1"
    verdicts = json.loads((out / f"{backend}.verdicts.json").read_text())["cases"]
    statuses = {name: entry["verdict"] for name, entry in verdicts.items()}
    assert len(statuses) >= 8 and set(statuses) == {case["case"] for case in record["cases"]}
    assert set(statuses.values()) <= {"pass", "known"}, statuses


def test_sequential_functional_and_subclassed_agree(clean_run):
    backend, out, _ = clean_run
    record = json.loads((out / f"{backend}.json").read_text())
    sequential_cases = [case for case in record["cases"] if "sequential" in case["apis"]]
    assert sequential_cases
    for case in record["cases"]:
        pairs = {tuple(row["apis"]) for row in case["api_agreement"]}
        if "sequential" in case["apis"]:
            assert ("sequential", "functional") in pairs
        for row in case["api_agreement"]:
            # Same layers, same weights, same backend: any difference at all would be a finding.
            assert row["bitwise_equal"], (case["case"], row)


def test_raw_outputs_saved_beside_record(clean_run):
    backend, out, _ = clean_run
    record = json.loads((out / f"{backend}.json").read_text())
    with np.load(out / f"{backend}.npz") as arrays:
        keys = set(arrays.files)
    for case in record["cases"]:
        for api, result in case["apis"].items():
            for output in result["items"]:
                assert f"{case['case']}/{api}/{output}" in keys


@pytest.mark.parametrize("fault", ["swap_input_forget_gates", "forget_gate_bias_offset", "no_cell_activation", "output_reads_previous_cell_state"])
def test_injected_fault_makes_harness_run_fail(session_backend, tmp_path, fault):
    completed = run_harness(
        "run", "--backend", session_backend, "--cases", "lstm_sequences", "--inject-fault", fault, "--out", str(tmp_path)
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    record = json.loads((tmp_path / f"{session_backend}.json").read_text())
    assert record["fault"] == fault
    assert [case["status"] for case in record["cases"]] == ["fail"]
    assert "elements mismatch" in completed.stderr


def test_report_merges_the_run(clean_run):
    backend, out, _ = clean_run
    classified = run_harness("classify", str(out))
    assert classified.returncode == 0, classified.stderr
    completed = run_harness("report", str(out))
    assert completed.returncode == 0, completed.stderr
    report = (out / "REPORT.md").read_text()
    assert backend in report and "cpu" in report
    assert "lstm_right_padded_mask" in report
    why = (out / "WHY.md").read_text()
    assert backend in why


def test_reference_activations_match_keras(session_backend):
    import os

    os.environ["KERAS_BACKEND"] = session_backend
    import keras

    from reference.activations import ACTIVATIONS, sparsemax_cumulative_threshold

    x = np.random.default_rng(0).normal(scale=3.0, size=(4, 9)).astype("float32")
    x[0, :5] = [0.0, 3.0, -3.0, 0.5, -0.5]  # the kinks of hard_sigmoid, shrink functions
    for name, function in ACTIVATIONS.items():
        expected = function(x.astype(np.float64))
        if name == "sparsemax" and keras.__version__ == "3.15.1":
            # known divergence sparsemax_threshold_sums_cumulative_sums: 3.15.1 computes exactly that formula
            expected = sparsemax_cumulative_threshold(x.astype(np.float64))
        actual = keras.ops.convert_to_numpy(keras.activations.get(name)(keras.ops.convert_to_tensor(x)))
        # float32 evaluation against float64: a few float32 ulps of the output's magnitude.
        np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=2e-6, err_msg=name)


# A slice of the default matrix that touches every layer type, mask source, state handling and
# policy, small enough for CI; the full matrix runs in 'nox'.
MATRIX_SLICE = ",".join([
    "bidi_concat_seqon_holes", "bidi_none_seqoff_rightpadded", "branches_*", "heads_*_leftpadded",
    "mask_holes_argument_backon_unrolloff_initrandom", "mask_leftpadded_maskinglayer_backoff_unrollon_initnone",
    "stateful_call", "stateful_fit", "dtype_mixedfloat16_none", "dtype_bfloat16_rightpadded", "cudnn_*_impl2",
    "zero_output_holes_seqon_unrollon", "seed_example*",
])


def test_matrix_slice_has_no_unexplained_disagreement(session_backend, tmp_path):
    completed = run_harness("run", "--backend", session_backend, "--cases", MATRIX_SLICE, "--out", str(tmp_path))
    verdicts = json.loads((tmp_path / f"{session_backend}.verdicts.json").read_text())["cases"]
    statuses = {name: entry["verdict"] for name, entry in verdicts.items()}
    assert len(statuses) >= 18
    unexplained = {name: status for name, status in statuses.items() if status not in ("pass", "known", "refused")}
    assert unexplained == {}, completed.stderr[-2000:]
    assert completed.returncode == 0


def test_probes_measure_every_cause(session_backend, tmp_path):
    completed = run_harness("probe", "--backend", session_backend, "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    probes = json.loads((tmp_path / f"{session_backend}.probes.json").read_text())["probes"]
    assert probes["identical_weights"]["max_abs_diff"] == 0.0
    assert probes["separately_initialized_weights"]["max_abs_diff"] > 1e-3
    assert probes["dropout_in_training_mode"]["max_abs_diff"] > 1e-3
    assert probes["stateful_carry_over"]["max_abs_diff"] > 1e-3


def test_resume_keeps_measured_cases(session_backend, tmp_path):
    first = run_harness("run", "--backend", session_backend, "--cases", "lstm_last_step", "--out", str(tmp_path))
    assert first.returncode == 0
    second = run_harness(
        "run", "--backend", session_backend, "--cases", "lstm_last_step,lstm_sequences", "--out", str(tmp_path), "--resume"
    )
    assert second.returncode == 0
    record = json.loads((tmp_path / f"{session_backend}.json").read_text())
    assert [case["case"] for case in record["cases"]] == ["lstm_last_step", "lstm_sequences"]


def test_saved_model_loads_and_agrees(session_backend, tmp_path):
    import shutil

    models = tmp_path / "models"
    saved = run_harness("save", "--backend", session_backend, "--cases", "lstm_return_state,heads_*_none", "--models", str(models))
    assert saved.returncode == 0, saved.stderr
    assert len(list((models / session_backend).glob("*.keras"))) == 3
    # Pose as another backend's saved models: load never reads its own backend's folder.
    other = next(b for b in ("tensorflow", "jax", "torch") if b != session_backend)
    shutil.move(str(models / session_backend), str(models / other))
    loaded = run_harness("load", "--backend", session_backend, "--models", str(models), "--out", str(tmp_path))
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    record = json.loads((tmp_path / f"{session_backend}.serialization.json").read_text())
    assert [entry["status"] for entry in record["loads"]] == ["pass"] * 3
    assert {entry["saved_on"] for entry in record["loads"]} == {other}


def test_fault_catalogue_is_detected_without_false_alarm(session_backend, tmp_path):
    from harness.execute.faults import FAULTS
    from harness.execute.gradients import GRADIENT_FAULTS, OPTIMIZER_FAULTS

    completed = run_harness("faults", "--backend", session_backend, "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    record = json.loads((tmp_path / f"{session_backend}.faults.json").read_text())
    assert len(record["faults"]) == len(FAULTS) + len(GRADIENT_FAULTS) + len(OPTIMIZER_FAULTS) >= 15
    assert all(entry["detected"] for entry in record["faults"].values())
    # No false alarm: every unmodified run passes or is known after the claims (a sweep case a claim explains, such as
    # JAX's float64 LSTM, is measured as a failure and judged known).
    assert all(entry["verdict"] in ("pass", "known") and not entry["false_alarm"] for entry in record["clean"].values())
    # The float32 tolerances must catch a bias error of 1e-3 (what the tolerance table promises).
    assert record["sweep"]["float32"]["smallest_detected"] <= 1e-3
