"""Wrong results fed to the judging code (no Keras): each must come out failing, never pass, known or exit 0.

- a run record that leaves a build's failing output out of its items (the other outputs pass) was recomputed as
  pass: the integrity check only asked the recorded outputs to be some of the reference's;
- a training-mode [[known]] crash claim absorbed an error raised by the harness's own code with the claimed type
  and message fragment;
- under an injected training-mode fault, a case that fails exactly as its [[known]] claim says (without the
  fault) counted as the fault caught: the study exited 0 for a fault that changed nothing there.
"""

from __future__ import annotations

import copy
import json

import numpy as np

from conftest import ROOT
from harness.case.tolerances import load_tolerances
from harness.records import store
from harness.records.integrity import recomputed_status
from harness.studies import training_mode

RESULTS = ROOT / "results"


def _committed_case(name: str) -> tuple[dict, dict, int]:
    run = store.read_record(RESULTS / "jax.json")
    result = next(case for case in run["cases"] if case["case"] == name)
    arrays = store.result_arrays(result, store.read_arrays(RESULTS / "jax.npz"))
    return result, arrays, run["seed"]


def test_a_record_that_leaves_out_a_wrong_output_is_not_recomputed_as_pass():
    result, arrays, seed = _committed_case("lstm_return_state")
    tolerances = load_tolerances("cpu")
    assert recomputed_status(result, arrays, tolerances, seed) == ("pass", "")
    # The h state of every build off by 0.1, and left out of the items: the outputs that remain pass.
    dropped = copy.deepcopy(result)
    wrong = dict(arrays)
    for api, entry in dropped["apis"].items():
        del entry["items"]["h"]
        wrong[(api, "h")] = arrays[(api, "h")] + np.float32(0.1)
    status, reason = recomputed_status(dropped, wrong, tolerances, seed)
    assert status is None and "records the outputs ['c', 'output'], the build gives ['c', 'h', 'output']" in reason


def test_a_stateful_fit_record_needs_its_states_but_no_per_batch_outputs():
    result, arrays, seed = _committed_case("stateful_fit")
    tolerances = load_tolerances("cpu")
    assert recomputed_status(result, arrays, tolerances, seed) == (result["status"], "")  # fail: a known divergence
    dropped = copy.deepcopy(result)
    for entry in dropped["apis"].values():
        del entry["items"]["c@0"]
    status, reason = recomputed_status(dropped, arrays, tolerances, seed)
    assert status is None and "the build gives ['after_reset@0', 'c@0', 'h@0']" in reason


def _crash_entry(raised_in: str | None) -> dict:
    error = {"type": "ValueError", "message": "Cannot broadcast to shape with fewer dimensions: arr_shape=(4, 1, 5, 4) shape=(5, 7, 4)",
             "raised_in": raised_in}
    return {"status": "error", "verdict": "error", "problems": [], "checks": {}, "items": {}, "alternative_items": {},
            "stages": {name: {"ran": name not in ("captured", "fixed"), "error": error if name in ("captured", "fixed") else None}
                       for name in training_mode.STAGES}}


def test_a_known_crash_claim_does_not_absorb_an_error_the_harness_raised():
    claim = next(claim for claim in training_mode.load_setup()["known"] if claim["id"] == "lstm_implementation1_dropout_fused_path_raises")
    verdicts = {}
    for raised_in in ("jax/_src/lax/lax.py", "harness/studies/training_mode.py", "reference/lstm.py", None):
        entry = _crash_entry(raised_in)
        training_mode.judge_known(entry, claim, "jax")
        verdicts[raised_in] = entry["verdict"]
    assert verdicts == {"jax/_src/lax/lax.py": "known", "harness/studies/training_mode.py": "error", "reference/lstm.py": "error",
                        None: "error"}


def test_a_fault_that_leaves_a_known_failure_as_it_was_is_not_caught(tmp_path, monkeypatch):
    """tm_bidi_i1_dropout fails without any fault exactly as bidirectional_drops_lstm_implementation says; a fault whose
    patch ran there but changed nothing the claim does not explain is not caught (exit 1), and one that adds a failure
    is (exit 0)."""
    from harness.execute.backends import BackendInfo

    setup = training_mode.load_setup()
    claim = next(claim for claim in setup["known"] if claim["id"] == "bidirectional_drops_lstm_implementation")
    case = next(case for case in setup["cases"] if case.name == "tm_bidi_i1_dropout")
    extra = {"value": False}

    def fake_run_case(case, *args, **kwargs):
        checks = {name: {"passed": False, "detail": "as claimed"} for name in claim["failing_checks"]}
        checks["forward/input/values"] = {"passed": not extra["value"], "detail": "values"}
        return {"case": case.name, "status": "fail", "verdict": "fail", "known": None, "fault_calls": 4, "problems": ["as claimed"],
                "stages": {name: {"ran": True, "error": None} for name in training_mode.STAGES}, "checks": checks,
                "items": {}, "alternative_items": {}}

    monkeypatch.setattr(training_mode, "run_case", fake_run_case)
    backend = BackendInfo(name="jax", device="cpu", versions={"keras": claim["keras"][0]}, settings={}, device_class="cpu")
    one_case = dict(setup, cases=[case])
    record = training_mode.run_training_mode_study(backend, tmp_path, setup=one_case, fault="mask_per_step")
    assert record["cases"][0]["verdict"] == "known" and training_mode.exit_code(record) == 1
    assert "caught in 0 of 1 cases" in training_mode.summary(record)
    extra["value"] = True
    record = training_mode.run_training_mode_study(backend, tmp_path, setup=one_case, fault="mask_per_step")
    assert record["cases"][0]["verdict"] == "fail" and training_mode.exit_code(record) == 0
    assert json.loads((tmp_path / "jax.training_mode.json").read_text())["fault"] == "mask_per_step"
