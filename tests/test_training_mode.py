"""Training mode (dropout, recurrent_dropout): the case file, the mask statistics and the reference expectation
without a backend; on the session's backend the study's verdicts, the known findings described exactly, and an
unscaled dropout mask and a new mask at every step caught."""

import json
import math

import numpy as np
import pytest

from conftest import ROOT, run_harness
from harness.case.schema import CaseError
from harness.case.weights import make_case_data
from harness.studies import training_mode
from reference.lstm import lstm

SETUP = training_mode.load_setup()
CASES = {case.name: case for case in SETUP["cases"]}


def test_cases_cover_every_training_mode_option_at_distinct_sizes():
    seen = set()
    for case in SETUP["cases"]:
        layer = case.layers[0]
        sizes = [case.batch, case.time, case.features, layer.units]
        assert len(set(sizes)) == len(sizes), case.name
        rates = [layer.options["dropout"], layer.options["recurrent_dropout"]]
        assert 0.5 not in rates and any(rates)
        seen.add((layer.type, layer.options["implementation"], layer.options["use_cudnn"], case.kernel,
                  bool(layer.options["dropout"]), bool(layer.options["recurrent_dropout"])))
    assert {entry[0] for entry in seen} == {"lstm", "bidirectional"}
    assert {entry[1] for entry in seen} == {1, 2} and {entry[2] for entry in seen} == {"auto", False}
    assert "fused_on_cpu" in {entry[3] for entry in seen}
    assert {(entry[4], entry[5]) for entry in seen} == {(True, False), (False, True), (True, True)}


def test_known_claims_name_existing_cases_and_reproducers():
    assert SETUP["known"]
    for claim in SETUP["known"]:
        assert set(claim["cases"]) <= set(CASES)
        assert (ROOT / claim["reproducer"]).is_file(), claim["reproducer"]


def test_bad_case_file_is_a_case_error(tmp_path):
    text = (ROOT / "harness/case/training_mode_cases.toml").read_text()
    same_sizes = tmp_path / "bad.toml"
    same_sizes.write_text(text.replace("features = 4\napis", "features = 6\napis", 1))
    with pytest.raises(CaseError, match="batch, time, features and units must differ"):
        training_mode.load_setup(same_sizes)
    no_calls = tmp_path / "no_calls.toml"
    no_calls.write_text(text.replace("calls = 20", "calls = 2"))
    with pytest.raises(CaseError, match="at least 3"):
        training_mode.load_setup(no_calls)


def _masks(rng, shape, rate, per_gate=False):
    keep = rng.random(((4,) if per_gate else ()) + shape) >= rate
    return np.where(keep, np.float32(1) / np.float32(1 - rate), 0).astype(np.float32)


def _calls(case, rng, count=20, transform=lambda mask: [mask], batches=None, drawn_rate=None):
    """What the capture records per call: one new mask per call and kind with a rate (drawn at ``drawn_rate``
    instead of the case's rate when given, but scaled by the case's 1 / (1 - rate) as Keras would)."""
    calls = []
    for call_index in range(count):
        call = {}
        batch = batches[call_index] if batches else case.batch
        for direction in training_mode.directions(case):
            for kind, width in (("input", case.features), ("recurrent", case.layers[0].units)):
                rate = training_mode.rates(case)[kind]
                if rate:
                    mask = _masks(rng, (batch, width), rate, training_mode.per_gate(case))
                    if drawn_rate is not None:
                        keep = rng.random(mask.shape) >= drawn_rate
                        mask = np.where(keep, np.float32(1) / np.float32(1 - rate), 0).astype(np.float32)
                    call[(direction, kind)] = transform(mask)
        calls.append(call)
    return calls



def test_mask_checks_pass_keras_like_masks_and_catch_each_wrong_one():
    case = CASES["tm_bidi_i2_both_generic"]
    rng = np.random.default_rng(0)
    checks = training_mode.mask_checks(case, _calls(case, rng), SETUP["settings"]["z"])
    assert all(check["passed"] for check in checks.values()), {k: c["detail"] for k, c in checks.items() if not c["passed"]}
    assert {"forward/input/rate", "backward/recurrent/independent_gates", "directions/input/own_masks"} <= set(checks)

    def failing(calls, target_case=case):
        return {name for name, check in training_mode.mask_checks(target_case, calls, 5.0).items() if not check["passed"]}

    # No inverted scaling: kept values are 1.
    assert "forward/input/values" in failing(_calls(case, rng, transform=lambda m: [np.where(m > 0, 1.0, 0.0).astype(np.float32)]))
    # A fresh mask at every timestep: several distinct masks in one call.
    assert "forward/input/one_per_sequence" in failing(_calls(case, rng, transform=lambda m: [m, m[..., ::-1].copy()]))
    # The keep probability used as the drop rate (0.7 dropped instead of 0.3).
    flipped = _calls(case, rng, transform=lambda m: [np.where(m > 0, 0, np.float32(1) / np.float32(0.7)).astype(np.float32)])
    assert "forward/input/rate" in failing(flipped)
    # One mask reused across calls, and the two directions sharing their masks.
    fixed = _calls(case, rng, count=1)[0]
    assert "forward/input/new_per_call" in failing([fixed, fixed])
    shared = {(direction, kind): fixed[("forward", kind)] for direction in ("forward", "backward") for kind in ("input", "recurrent")}
    assert "directions/input/own_masks" in failing([shared, shared])
    # Implementation 1 with one mask for all gates.
    tiled = _calls(case, rng, transform=lambda m: [np.broadcast_to(m[:1], m.shape).copy()])
    assert "forward/input/independent_gates" in failing(tiled)
    # Implementation 2 asked, four masks returned.
    single = CASES["tm_lstm_i2_dropout"]
    assert "forward/input/structure" in failing(_calls(single, rng, transform=lambda m: [np.stack([m] * 4)]), single)


def test_rate_bound_is_the_stated_binomial_bound():
    case = CASES["tm_lstm_i2_dropout"]
    checks = training_mode.mask_checks(case, _calls(case, np.random.default_rng(1)), 5.0)
    n = 20 * case.batch * case.features
    assert checks["forward/input/rate"]["elements"] == n
    assert checks["forward/input/rate"]["bound"] == pytest.approx(5 * math.sqrt(0.3 * 0.7 / n))


def test_rate_check_tells_0_3_from_0_25_and_0_35_with_the_study_settings():
    """The study's calls (the case's batch, then settings.statistics_batch rows) pool enough mask elements that a
    mask drawn at 0.25 or 0.35 fails the rate check for 0.3, on every seed tried; a mask at 0.3 passes. With the
    case's batch alone (n = 400, the earlier design) the same wrong masks pass."""
    case = CASES["tm_lstm_i2_dropout"]
    settings = SETUP["settings"]
    batches = [case.batch] + [settings["statistics_batch"]] * (settings["calls"] - 1)

    def rate_passes(drawn_rate, seed, study_batches=batches):
        calls = _calls(case, np.random.default_rng(seed), count=len(study_batches), batches=study_batches, drawn_rate=drawn_rate)
        return training_mode.mask_checks(case, calls, settings["z"], study_batches)["forward/input/rate"]["passed"]

    for seed in range(20):
        assert rate_passes(0.3, seed)
        assert not rate_passes(0.25, seed) and not rate_passes(0.35, seed), seed
    small = [case.batch] * settings["calls"]
    assert rate_passes(0.25, 0, small) and rate_passes(0.35, 0, small)


def test_structure_check_uses_each_calls_own_batch():
    case = CASES["tm_lstm_i2_dropout"]
    settings = SETUP["settings"]
    batches = [case.batch] + [settings["statistics_batch"]] * (settings["calls"] - 1)
    calls = _calls(case, np.random.default_rng(3), count=len(batches), batches=batches)
    checks = training_mode.mask_checks(case, calls, settings["z"], batches)
    assert all(check["passed"] for check in checks.values()), {k: c["detail"] for k, c in checks.items() if not c["passed"]}
    # A statistics call that returned a mask of the case's batch instead of its own input's batch is wrong.
    calls[5] = _calls(case, np.random.default_rng(4), count=1)[0]
    assert not training_mode.mask_checks(case, calls, settings["z"], batches)["forward/input/structure"]["passed"]


def test_expected_output_without_masks_is_the_plain_reference_and_masks_change_it():
    case = CASES["tm_bidi_i2_both_generic"]
    data = make_case_data(case, 7)
    forward, backward = data.layer_weights[0][0][:3], data.layer_weights[0][0][3:]
    # loop="readable": lstm_with_dropout's loop, the same operations (the fast loop's sigmoid differs by ulps)
    plain = np.concatenate([lstm(data.x, *forward, return_sequences=True, loop="readable"),
                            lstm(data.x, *backward, go_backwards=True, return_sequences=True, loop="readable")[:, ::-1]],
                           axis=-1)
    np.testing.assert_allclose(training_mode.expected_output(case, data, None), plain, rtol=0, atol=1e-14)
    masks = training_mode.seeded_masks(case, 7)
    assert training_mode.seeded_masks(case, 7)["backward"]["recurrent"][2].tobytes() == masks["backward"]["recurrent"][2].tobytes()
    assert np.max(np.abs(training_mode.expected_output(case, data, masks) - plain)) > 1e-2
    flipped = training_mode.expected_output(case, data, None, "backward_in_input_order")
    np.testing.assert_array_equal(flipped[..., 6:], plain[..., 6:][:, ::-1])


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    for args, message in ((["--cases", "no_such_case"], "no training-mode case matches"),
                          (["--inject-fault", "no_such_fault"], "unknown training-mode fault")):
        completed = run_harness("training-mode", "--backend", "jax", "--out", str(tmp_path), *args)
        assert completed.returncode == 2 and message in completed.stderr, completed.stderr
        assert len(completed.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "jax.training_mode.json").exists()


@pytest.mark.backend
def test_backend_runs_training_mode_like_the_reference(tmp_path, session_backend):
    selection = "tm_lstm_i2_both,tm_lstm_i1_dropout,tm_bidi_i1_dropout"
    completed = run_harness("training-mode", "--backend", session_backend, "--out", str(tmp_path), "--cases", selection)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    record = json.loads((tmp_path / f"{session_backend}.training_mode.json").read_text())
    assert record["schema"] == "keras-parity/training-mode" and record["finished"]
    entries = {entry["case"]: entry for entry in record["cases"]}
    both = entries["tm_lstm_i2_both"]
    assert both["verdict"] == "pass" and all(stage["ran"] for stage in both["stages"].values())
    assert set(both["items"]) == {"inference/outputs", "captured/outputs", "fixed/outputs", "fixed/train_on_batch_loss", "fixed/fit_loss"}
    assert both["checks"]["forward/recurrent/independent_gates"]["passed"] and both["checks"]["fixed/step_moved_weights"]["passed"]
    # The known findings, measured exactly as their claims say.
    crash = entries["tm_lstm_i1_dropout"]
    assert crash["verdict"] == "known" and crash["stages"]["inference"]["ran"] and crash["stages"]["captured"]["error"]
    lost = entries["tm_bidi_i1_dropout"]
    assert lost["verdict"] == "known" and lost["cell_implementation"] == {"forward": 2, "backward": 2}
    assert all(item["passed"] for item in lost["items"].values())


@pytest.mark.backend
def test_a_new_mask_at_every_step_is_caught(tmp_path, session_backend):
    completed = run_harness("training-mode", "--backend", session_backend, "--out", str(tmp_path), "--cases", "tm_lstm_i2_dropout_generic",
                            "--inject-fault", "mask_per_step")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    entry = json.loads((tmp_path / f"{session_backend}.training_mode.json").read_text())["cases"][0]
    assert entry["fault_calls"] > 0 and entry["status"] == "fail"
    assert not entry["checks"]["forward/input/one_per_sequence"]["passed"]
    assert not entry["items"]["captured/outputs"]["passed"] and not entry["items"]["fixed/outputs"]["passed"]


@pytest.mark.backend
def test_unscaled_dropout_mask_is_caught(tmp_path, session_backend):
    completed = run_harness("training-mode", "--backend", session_backend, "--out", str(tmp_path), "--cases", "tm_lstm_i2_dropout_generic",
                            "--inject-fault", "dropout_unscaled")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    entry = json.loads((tmp_path / f"{session_backend}.training_mode.json").read_text())["cases"][0]
    assert entry["fault_calls"] > 0 and entry["status"] == "fail"
    assert not entry["checks"]["forward/input/values"]["passed"]
    assert not entry["items"]["fixed/outputs"]["passed"] and not entry["items"]["fixed/train_on_batch_loss"]["passed"]
    # The reference fed the (wrong) masks Keras drew still agrees: the masks, not their application, are wrong.
    assert entry["items"]["captured/outputs"]["passed"]


def test_a_known_claim_that_does_not_describe_the_measurement_exactly_is_not_applied():
    claim = next(claim for claim in SETUP["known"] if claim["id"] == "lstm_implementation1_dropout_fused_path_raises")
    error = {"type": "ValueError", "message": "Cannot broadcast to shape with fewer dimensions: arr_shape=(4, 1, 5, 4) shape=(5, 7, 4)",
             "raised_in": "jax/_src/lax/lax.py"}

    def entry(stages):
        measured = {"status": "error", "verdict": "error", "problems": [], "checks": {}, "items": {}, "alternative_items": {},
                    "stages": {name: {"ran": name not in stages, "error": error if name in stages else None}
                               for name in training_mode.STAGES}}
        training_mode.judge_known(measured, claim, "jax")
        return measured["verdict"]

    assert entry({"captured", "fixed"}) == "known"
    assert entry({"captured"}) == "error"  # the fixed stage ran: not what the claim says
    assert entry({"inference", "captured", "fixed"}) == "error"
    error = dict(error, type="TypeError")
    assert entry({"captured", "fixed"}) == "error"


def test_a_kernel_mode_the_device_refuses_is_recorded_as_refused_and_the_study_goes_on(tmp_path, monkeypatch):
    """On a GPU kernel_mode refuses fused_on_cpu (the as-shipped twin runs the real kernel): the first GPU run of
    this study crashed there and lost the cases after it; now the case is recorded as refused and the rest run."""
    from harness.execute.backends import BackendInfo, KernelModeRefused

    fused = [case for case in SETUP["cases"] if case.kernel == "fused_on_cpu"]
    plain = [case for case in SETUP["cases"] if case.kernel == "as_shipped"][:1]
    assert fused and plain

    def fake_run_case(case, *args, **kwargs):
        if case.kernel == "fused_on_cpu":
            raise KernelModeRefused("kernel fused_on_cpu replaces the GPU kernel by a CPU stand-in")
        return {"case": case.name, "status": "pass", "verdict": "pass", "stages": {"inference": {"ran": True, "error": None}},
                "items": {}, "problems": []}

    monkeypatch.setattr(training_mode, "run_case", fake_run_case)
    setup = dict(SETUP, cases=fused[:1] + plain)
    gpu = BackendInfo(name="jax", device="gpu:test", versions={"keras": "3.15.1"}, settings={}, device_class="gpu_highest")
    record = training_mode.run_training_mode_study(gpu, tmp_path, setup=setup)
    verdicts = [entry["verdict"] for entry in record["cases"]]
    assert verdicts == ["refused", "pass"]
    assert "CPU stand-in" in record["cases"][0]["refused"]
    assert training_mode.exit_code(record) == 0 and training_mode.problems(record) == []
    # a refused case never becomes known, whatever claim names it
    entry = training_mode.refused_entry(fused[0], "refused")
    for claim in SETUP["known"]:
        training_mode.judge_known(entry, claim, "jax")
    assert entry["verdict"] == "refused"


def test_a_known_crash_is_the_whole_message_not_a_fragment(tmp_path):
    """A [[known]] crash explains exactly Keras's error: another error that merely contains the claimed text (a
    harness or Keras message quoting the shapes, say) is not absorbed, and a claim whose message is not a pattern
    is refused with one line."""
    claim = next(entry for entry in SETUP["known"] if entry["id"] == "lstm_implementation1_dropout_fused_path_raises")
    expected = claim["errors"]["jax"]
    exact = {"type": "ValueError", "raised_in": "jax/_src/numpy/lax_numpy.py",
             "message": "Cannot broadcast to shape with fewer dimensions: arr_shape=(4, 1, 5, 4) shape=(5, 7, 4)"}
    assert training_mode._claimed_error(exact, expected)
    longer = dict(exact, message="while checking the mask: " + exact["message"] + " (raised again)")
    assert not training_mode._claimed_error(longer, expected)
    other_shape = dict(exact, message=exact["message"].replace("(5, 7, 4)", "(5, 7, 6)"))
    assert not training_mode._claimed_error(other_shape, expected)
    text = (ROOT / "harness/case/training_mode_cases.toml").read_text()
    bad = tmp_path / "bad_pattern.toml"
    bad.write_text(text.replace("errors.jax = { type = \"ValueError\", message = '", "errors.jax = { type = \"ValueError\", message = '(", 1))
    with pytest.raises(CaseError, match="is not a pattern"):
        training_mode.load_setup(bad)
