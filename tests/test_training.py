"""Training parity: the NumPy training loop, and on the session's backend train_on_batch and fit with SGD and
Adam against it, with a wrong optimizer step and a wrong gradient caught."""

import json

import numpy as np
import pytest

from conftest import run_harness
from harness.studies.training import make_batches, numpy_loop, training_setup
from harness.truth.expected_gradients import expected_gradients
from reference import optimizers


def test_setup_has_distinct_sizes_a_mask_and_both_optimizers():
    setup = training_setup()
    case = setup["case"]
    sizes = [case.batch, case.time, case.features] + [layer.units for layer in case.layers]
    assert len(set(sizes)) == len(sizes), sizes
    assert case.mask != "none" and case.dtype == "float32" and setup["steps"] >= 3 and setup["long_steps"] > setup["steps"]
    assert {entry["name"] for entry in setup["optimizers"]} == {"sgd", "adam"}
    assert any(entry.get("momentum") for entry in setup["optimizers"])


def test_numpy_loop_is_the_reference_gradient_then_the_reference_update():
    setup = training_setup()
    case = setup["case"]
    data, batches = make_batches(case, 3, 11)
    assert not np.array_equal(batches[0][0], batches[1][0]) and batches[0][1] is not None
    sgd = {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}
    loop = numpy_loop(case, data, batches, sgd, 3)
    x, mask, target = batches[0]
    from dataclasses import replace

    loss, grads, _, _ = expected_gradients(case, replace(data, x=x, mask=mask), targets={"output": target})
    assert loop["losses"][0] == loss
    params = {key: value for key, value in loop["trajectory"][0].items()}
    kernel = data.layer_weights[0][0][0].astype(np.float64)
    # SGD with momentum, first step: m = -lr g, w = w + m.
    np.testing.assert_allclose(params["grad/lstm_0/kernel"], kernel - float(np.float32(0.1)) * grads["grad/lstm_0/kernel"], rtol=0, atol=1e-15)
    # The loop moves downhill on its first batch.
    updated = replace(data, x=x, mask=mask, layer_weights=((tuple(params[k] for k in ("grad/lstm_0/kernel", "grad/lstm_0/recurrent_kernel", "grad/lstm_0/bias")),),
                                                            (tuple(params[k] for k in ("grad/dense_1/kernel", "grad/dense_1/bias")),)))
    assert expected_gradients(case, updated, targets={"output": target})[0] < loss
    assert optimizers.adam_init(params)  # the Adam state the loop starts from


@pytest.mark.backend
def test_backend_trains_like_the_numpy_loop(tmp_path, session_backend):
    completed = run_harness("training", "--backend", session_backend, "--out", str(tmp_path), "--long-steps", "8")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    record = json.loads((tmp_path / f"{session_backend}.training.json").read_text())
    assert record["schema"] == "keras-parity/training" and record["finished"]
    runs = {(entry["optimizer"]["name"], entry["entry_point"]): entry for entry in record["runs"]}
    assert set(runs) == {("sgd", "train_on_batch"), ("sgd", "fit"), ("adam", "train_on_batch"), ("adam", "fit")}
    for entry in runs.values():
        assert entry["status"] == "pass", entry["problems"]
        assert len(entry["keras_losses"]) == record["steps"]
    # train_on_batch reports each batch's loss; fit the running mean over the epoch: the same first value.
    per_batch = np.array(runs[("sgd", "train_on_batch")]["numpy_losses"])
    np.testing.assert_allclose(runs[("sgd", "fit")]["numpy_losses"], np.cumsum(per_batch) / np.arange(1, len(per_batch) + 1))
    for entry in record["long_runs"]:
        assert entry["error"] is None and len(entry["max_abs_weight_difference"]) == 8
        assert max(entry["max_abs_weight_difference"]) < 1e-5


@pytest.mark.backend
@pytest.mark.parametrize("fault, caught", [("adam_without_bias_correction", {"adam"}), ("recurrent_term_dropped", {"sgd", "adam"})])
def test_wrong_optimizer_step_and_wrong_gradient_are_caught(fault, caught, tmp_path, session_backend):
    completed = run_harness("training", "--backend", session_backend, "--out", str(tmp_path), "--steps", "3",
                            "--long-steps", "0", "--inject-fault", fault)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    record = json.loads((tmp_path / f"{session_backend}.training.json").read_text())
    assert record["fault"] == fault
    failed = {entry["optimizer"]["name"] for entry in record["runs"] if entry["status"] == "fail"}
    assert failed == caught, [(entry["optimizer"]["name"], entry["entry_point"], entry["status"]) for entry in record["runs"]]
    for entry in record["runs"]:
        if entry["optimizer"]["name"] in caught:
            assert entry["fault_calls"] > 0 and not entry["items"]["final/grad/lstm_0/kernel"]["passed"]
