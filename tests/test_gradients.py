"""Gradient parity: the NumPy reference gradients of a case (harness.truth.expected_gradients) against central
differences of the forward reference; the gradient selection and tolerance rows; and, on the session's
backend, the gradient study end to end with its faults caught."""

from dataclasses import replace
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import run_harness
from harness.case.schema import builtin_cases, select_cases
from harness.case.tolerances import load_tolerances, quantity_of
from harness.case.weights import make_case_data
from harness.truth.expected import expected_outputs
from harness.case.semantics import DOCUMENTED, Semantics
from harness.truth.expected_gradients import GradientNotSupported, expected_gradients, gradient_keys, input_keys, loss_of

# Layer types, merges, masks (argument and Masking layer), initial states, go_backwards, shared branches.
CHECKED = ("seed_example3_shared_instance,seed_example2_separate_instances,bidi_mul_seqon_holes,bidi_state_random_unrolloff,"
           "stacked_holes_maskinglayer,heads_timedistributeddense_leftpadded,mask_holes_argument_backon_unrolloff_initrandom,"
           "zero_output_holes_seqoff_unrolloff_backon,lstm_return_state,stacked_cells_holes_seqon")


def _float64(data):
    def cast(group):
        return tuple(np.asarray(w, np.float64) for w in group)

    return replace(data, x=data.x.astype(np.float64),
                   layer_weights=tuple(tuple(cast(group) for group in layer) for layer in data.layer_weights),
                   initial_state=None if data.initial_state is None else cast(data.initial_state))


def _with_array(data, location, delta):
    kind, *where = location
    if kind == "x":
        x = data.x.copy()
        x[where[0]] += delta
        return replace(data, x=x)
    if kind == "state":
        states = [s.copy() for s in data.initial_state]
        states[where[0]][where[1]] += delta
        return replace(data, initial_state=tuple(states))
    layer, group, array, index = where
    weights = [[list(g) for g in l] for l in data.layer_weights]
    weights[layer][group][array] = weights[layer][group][array].copy()
    weights[layer][group][array][index] += delta
    return replace(data, layer_weights=tuple(tuple(tuple(g) for g in l) for l in weights))


@pytest.mark.parametrize("case", select_cases(builtin_cases(), CHECKED), ids=lambda case: case.name)
def test_reference_gradients_match_central_differences(case):
    _check_central_differences(case, DOCUMENTED)


# The alternatives a known forward divergence names whose backward pass the reference models, on cases they change.
ALTERNATIVES = [
    ("mask_holes_argument_backoff_unrolloff_initrandom", Semantics(initial_output="h0")),
    ("mask_holes_argument_backon_unrolloff_initrandom", Semantics(initial_output="h0")),
    ("bidi_state_random_unrolloff", Semantics(initial_output="h0")),
    ("lstm_go_backwards", Semantics(go_backwards_sequence_in_input_order=True)),
]


@pytest.mark.parametrize("name,semantics", ALTERNATIVES, ids=[name for name, _ in ALTERNATIVES])
def test_alternative_semantics_gradients_match_central_differences_of_that_alternative(name, semantics):
    _check_central_differences(select_cases(builtin_cases(), name)[0], semantics)


def test_the_h0_alternative_changes_the_initial_state_gradient_and_an_unmodelled_alternative_raises():
    case = select_cases(builtin_cases(), "mask_holes_argument_backoff_unrolloff_initrandom")[0]
    data = _float64(make_case_data(case, 7))
    _, documented, _, targets = expected_gradients(case, data, seed=7)
    _, alternative, _, _ = expected_gradients(case, data, targets=targets, semantics=Semantics(initial_output="h0"))
    assert np.abs(alternative["grad/input/state_0"] - documented["grad/input/state_0"]).max() > 1e-3
    with pytest.raises(GradientNotSupported, match="no backward pass for semantics zero_output_for_mask_ignored"):
        expected_gradients(case, data, targets=targets, semantics=Semantics(zero_output_for_mask_ignored=True))


def _check_central_differences(case, semantics):
    data = _float64(make_case_data(case, 7))
    _, _, _, targets = expected_gradients(case, data, seed=7)
    loss, grads, outputs, _ = expected_gradients(case, data, targets=targets, semantics=semantics)
    assert loss == pytest.approx(loss_of(expected_outputs(case, data, semantics), targets), rel=1e-14)
    assert set(grads) == {key for layer in gradient_keys(case) for group in layer for key in group} | set(input_keys(case))
    rng = np.random.default_rng(0)
    locations = []
    for li, layer in enumerate(data.layer_weights):
        for gi, group in enumerate(layer):
            for ai, array in enumerate(group):
                for _ in range(2):
                    index = tuple(int(rng.integers(0, n)) for n in array.shape)
                    locations.append((("w", li, gi, ai, index), gradient_keys(case)[li][gi][ai], index))
    masked_input = case.mask != "none" and case.mask_source == "masking_layer"
    for _ in range(3):
        index = tuple(int(rng.integers(0, n)) for n in data.x.shape)
        if not masked_input or data.mask[index[:2]]:  # the Masking layer's mask is a step function of x
            locations.append((("x", index), "grad/input/x", index))
    for k, state in enumerate(data.initial_state or ()):
        index = tuple(int(rng.integers(0, n)) for n in state.shape)
        locations.append((("state", k, index), f"grad/input/state_{k}", index))
    eps = 1e-6
    for location, key, index in locations:
        plus = loss_of(expected_outputs(case, _with_array(data, location, eps), semantics), targets)
        minus = loss_of(expected_outputs(case, _with_array(data, location, -eps), semantics), targets)
        numeric = (plus - minus) / (2 * eps)
        assert abs(grads[key][index] - numeric) <= 1e-7 + 1e-5 * abs(numeric), (key, index, grads[key][index], numeric)


def test_shared_layer_gradient_is_the_sum_of_two_instances_with_its_weights():
    shared, separate = (select_cases(builtin_cases(), name)[0] for name in ("seed_example3_shared_instance", "seed_example2_separate_instances"))
    data = make_case_data(shared, 3)
    group = data.layer_weights[0][0]
    separate_data = replace(data, layer_weights=((group, group),) + tuple(data.layer_weights[1:]))
    loss, one, _, targets = expected_gradients(shared, data, seed=3)
    loss_two, two, _, _ = expected_gradients(separate, separate_data, targets=targets)
    assert loss == pytest.approx(loss_two, rel=1e-14)
    for name in ("kernel", "recurrent_kernel", "bias"):
        total = two[f"grad/branches_0/a_{name}"] + two[f"grad/branches_0/b_{name}"]
        np.testing.assert_allclose(one[f"grad/branches_0/a_{name}"], total, rtol=1e-12, atol=1e-15)
        # The two calls contribute different gradients (the branches see the same input but different upstream gradients).
        assert not np.allclose(two[f"grad/branches_0/a_{name}"], two[f"grad/branches_0/b_{name}"])


def test_gradient_rows_and_selection():
    from harness.studies.gradients import gradient_selection

    table = load_tolerances()
    assert table["float32"]["gradients"].measured
    assert quantity_of("grad/lstm_0/kernel") == "gradients" and quantity_of("loss") == "gradients"
    assert quantity_of("h") == "states" and quantity_of("output") == "outputs"
    cases, pairs = gradient_selection()
    names = {case.name for case in cases}
    assert len(cases) >= 15 and all(case.dtype == "float32" and not case.stateful for case in cases)
    assert {"seed_example3_shared_instance", "seed_example2_separate_instances"} <= names
    assert pairs == [{"shared": "seed_example3_shared_instance", "separate": "seed_example2_separate_instances"}]
    kinds = {layer.type for case in cases for layer in case.layers}
    assert kinds == {"lstm", "gru", "simple_rnn", "bidirectional", "branches", "dense", "time_distributed_dense"}
    wrapped = {layer.kind.cell_kind(layer).name for case in cases for layer in case.layers if layer.kind.is_wrapper}
    assert wrapped == {"lstm", "gru", "simple_rnn"}  # each kind inside a Bidirectional or branches too


# --- on the session's backend -------------------------------------------------------------------------------

QUICK = "lstm_last_step,lstm_return_state,bidi_mul_seqon_holes,mask_holes_argument_backon*,seed_example*,heads_dense_leftpadded"


@pytest.fixture(scope="module")
def gradient_run(tmp_path_factory):
    backend = os.environ.get("KERAS_BACKEND")
    if backend is None:
        pytest.skip("KERAS_BACKEND is not set: run through 'nox -s tests'")
    out = tmp_path_factory.mktemp("gradients")
    completed = run_harness("gradients", "--backend", backend, "--out", str(out), "--cases", QUICK)
    return backend, out, completed


@pytest.mark.backend
def test_backend_gradients_match_the_reference(gradient_run):
    backend, out, completed = gradient_run
    assert completed.returncode == 0, completed.stdout + completed.stderr
    record = json.loads((out / f"{backend}.gradients.json").read_text())
    assert record["schema"] == "keras-parity/gradients" and record["finished"] and record["versions"]["keras"]
    assert len(record["cases"]) == 7
    for result in record["cases"]:
        assert result["status"] == "pass", (result["case"], result["problems"], result["error"])
        assert set(result["apis"]) == set(select_cases(builtin_cases(), result["case"])[0].apis) and "functional" in result["apis"]
        items = result["apis"]["functional"]["items"]
        assert "loss" in items and "grad/input/x" in items and any(key.endswith("recurrent_kernel") for key in items)
        assert all(row["bitwise_equal"] for row in result["api_agreement"]), result["api_agreement"]
    pair = record["shared_pairs"][0]
    assert pair["passed"], pair
    with np.load(out / f"{backend}.gradients.npz") as arrays:
        assert "seed_example3_shared_instance/functional/grad/branches_0/a_recurrent_kernel" in arrays.files


@pytest.mark.backend
@pytest.mark.parametrize("fault", ["recurrent_term_dropped", "recurrent_kernel_gradient_scaled"])
def test_wrong_gradient_is_caught(fault, tmp_path, session_backend):
    completed = run_harness("gradients", "--backend", session_backend, "--out", str(tmp_path), "--cases",
                            "lstm_last_step,mask_holes_argument_backon*", "--inject-fault", fault)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    record = json.loads((tmp_path / f"{session_backend}.gradients.json").read_text())
    assert record["fault"] == fault
    for result in record["cases"]:
        assert result["fault_calls"] > 0 and result["status"] == "fail", result["case"]
        items = result["apis"]["functional"]["items"]
        assert not items["grad/lstm_0/recurrent_kernel"]["passed"]
        # The forward pass is untouched: the loss still matches the reference.
        assert items["loss"]["passed"]


def test_report_section_reads_the_gradient_and_training_records(tmp_path):
    from types import SimpleNamespace

    from harness.records.store import write_json
    from harness.reports.html import _gradients
    from harness.reports.markdown import _gradient_lines
    from harness.reports.model import gradients_and_training

    item = {"tolerance_ratio": 0.2, "max_abs_error": 3e-8}
    write_json(tmp_path / "jax.gradients.json", {
        "schema": "keras-parity/gradients", "schema_version": 1, "backend": "jax", "fault": None,
        "cases": [{"case": "lstm_last_step", "verdict": "pass", "apis": {"functional": {"items": {"loss": item}}}},
                  {"case": "mask_x", "verdict": "known", "forward_divergences": ["d1"],
                   "apis": {"functional": {"items": {"grad/input/state_0": {"tolerance_ratio": 4e5, "max_abs_error": 0.04}}}}}],
        "shared_pairs": [{"shared": "a", "separate": "b", "passed": True, "items": {"loss": item, "grad/x:branch_a_share": 0.4}}]})
    write_json(tmp_path / "jax.training.json", {
        "schema": "keras-parity/training", "schema_version": 1, "backend": "jax", "fault": None,
        "runs": [{"optimizer": {"name": "adam"}, "entry_point": "fit", "status": "pass", "items": {"losses": item},
                  "keras_losses": [0.5, 0.25], "numpy_losses": [0.5, 0.25], "error": None}],
        "long_runs": [{"optimizer": {"name": "adam"}, "max_abs_weight_difference": [1e-7, 2e-7, 3e-7]}]})
    write_json(tmp_path / "torch.training.json", {"schema": "keras-parity/training", "schema_version": 1, "backend": "torch",
                                                  "fault": "adam_without_bias_correction", "runs": [], "long_runs": []})
    notes: list[str] = []
    data = gradients_and_training(tmp_path, notes)
    assert notes == [] and data.backends == ("jax",) and data.faults == (("torch", "adam_without_bias_correction"),)
    assert [(row.case, row.verdict, row.where) for row in data.rows] == [("lstm_last_step", "pass", "functional/loss"),
                                                                         ("mask_x", "known", "functional/grad/input/state_0")]
    text = "\n".join(_gradient_lines(SimpleNamespace(gradients=data)))
    assert "## Gradients and training" in text and "(forward: d1)" in text and "is the sum of the two instances'" in text
    assert "0.5, 0.25" in text and "3e-07 after step 3" in text
    page = "\n".join(_gradients(SimpleNamespace(gradients=data)))
    assert "<table>" in page and "mask_x" in page and "3e-07 after 3 steps" in page
    assert gradients_and_training(tmp_path / "empty", []) is None
    from harness.reports.why import _shared_gradient_sentences

    why = " ".join(_shared_gradient_sentences(SimpleNamespace(gradients=data)))
    assert "is the sum of the gradients of two separate instances" in why and "40% / 60%" in why


# --- the verdict of a gradient result: a forward claim explains only what it says about the gradient -------------

def _recorded_known_case():
    """The committed JAX gradient result the h0 claim applies to, its raw gradients, and the run's backend."""
    from harness.execute.backends import BackendInfo
    from harness.records import store

    folder = Path(__file__).resolve().parents[1] / "results"
    record = json.loads((folder / "jax.gradients.json").read_text())
    result = next(r for r in record["cases"] if r["case"] == "mask_holes_argument_backoff_unrolloff_initrandom")
    raw = store.result_arrays(result, store.read_arrays(folder / "jax.gradients.npz"))
    backend = BackendInfo(name="jax", device="cpu", versions=record["versions"], settings={}, device_class=record["device_class"])
    case = select_cases(builtin_cases(), result["case"])[0]
    fresh = {key: value for key, value in result.items() if key not in ("verdict", "forward_divergences")}
    return case, fresh, raw, backend, record["seed"]


def _claim(kind, **fields):
    from harness.case.divergences import Divergence

    return Divergence(id=f"made_up_{kind}", backends=("jax", "torch"), versions={"keras": ">=3.0"}, conditions=(), kind=kind,
                      observed="", reference="", upstream="", reproducer="", **fields)


def test_the_recorded_h0_gradient_is_known_only_as_the_gradient_of_the_claimed_alternative():
    from harness.case.divergences import load_divergences
    from harness.studies.gradients import _judge

    case, result, raw, backend, seed = _recorded_known_case()
    judged = _judge(dict(result), case, backend, load_divergences(), raw, seed, load_tolerances())
    assert judged["verdict"] == "known" and judged["explained_by"] == ["jax_scan_masked_output_is_previous_state"], judged["unexplained"]


def test_a_zeroed_kernel_gradient_is_a_failure_even_where_a_forward_claim_applies():
    from harness.case.divergences import load_divergences
    from harness.studies.gradients import EXIT_FOUND, _judge, exit_code

    case, result, raw, backend, seed = _recorded_known_case()
    wrong = {key: (np.zeros_like(value) if key[1] == "grad/lstm_0/kernel" else value) for key, value in raw.items()}
    judged = _judge(dict(result), case, backend, load_divergences(), wrong, seed, load_tolerances())
    assert judged["forward_divergences"] == ["jax_scan_masked_output_is_previous_state"]
    assert judged["verdict"] == "fail" and judged["explained_by"] == []
    assert "not the gradient of the claimed behaviour" in judged["unexplained"][0] and "grad/lstm_0/kernel" in judged["unexplained"][0]
    assert exit_code({"fault": None, "cases": [judged], "shared_pairs": []}) == EXIT_FOUND


def test_bound_claims_and_unmodelled_semantics_never_explain_a_gradient():
    from harness.studies.gradients import _judge

    case, result, raw, backend, seed = _recorded_known_case()
    bound = _claim("bound", outputs=("*",), max_abs_error=1.0)
    judged = _judge(dict(result), case, backend, [bound], raw, seed, load_tolerances())
    assert judged["verdict"] == "fail" and "never explains a gradient" in judged["unexplained"][0]
    unmodelled = _claim("semantics", semantics=Semantics(zero_output_for_mask_ignored=True))
    judged = _judge(dict(result), case, backend, [unmodelled], raw, seed, load_tolerances())
    assert judged["verdict"] == "fail" and "no backward pass for semantics zero_output_for_mask_ignored" in judged["unexplained"][0]


def test_a_crash_claim_explains_only_its_own_exception_never_a_numeric_gradient_failure():
    from harness.studies.gradients import _judge

    case, result, raw, backend, seed = _recorded_known_case()
    crash = _claim("crash", exception="AttributeError", message=r"'tuple' object has no attribute 'shape'")
    judged = _judge(dict(result), case, backend, [crash], raw, seed, load_tolerances())
    assert judged["verdict"] == "fail" and "did not raise" in judged["unexplained"][0]
    raised = dict(result, status="error", apis={}, error={"type": "AttributeError", "message": "'tuple' object has no attribute 'shape'"})
    assert _judge(dict(raised), case, backend, [crash], {}, seed, load_tolerances())["verdict"] == "known"
    other = dict(raised, error={"type": "AttributeError", "message": "'NoneType' object has no attribute 'shape'"})
    judged = _judge(dict(other), case, backend, [crash], {}, seed, load_tolerances())
    assert judged["verdict"] == "error" and "whole message matches" in judged["unexplained"][0]
    other_type = dict(raised, error={"type": "TypeError", "message": "'tuple' object has no attribute 'shape'"})
    assert _judge(dict(other_type), case, backend, [crash], {}, seed, load_tolerances())["verdict"] == "error"
    # The same rule as the case verdicts: the whole message (a longer one that contains it is another error), and the
    # claimed raising file when the claim names one.
    longer = dict(raised, error={"type": "AttributeError", "message": "in the harness: 'tuple' object has no attribute 'shape'"})
    assert _judge(dict(longer), case, backend, [crash], {}, seed, load_tolerances())["verdict"] == "error"
    located = _claim("crash", exception="AttributeError", message=r"'tuple' object has no attribute 'shape'",
                     raised_in="keras/src/backend/torch/rnn.py")
    elsewhere = dict(raised, error=dict(raised["error"], raised_in="harness/execute/models.py"))
    assert _judge(dict(elsewhere), case, backend, [located], {}, seed, load_tolerances())["verdict"] == "error"
    there = dict(raised, error=dict(raised["error"], raised_in="keras/src/backend/torch/rnn.py"))
    assert _judge(dict(there), case, backend, [located], {}, seed, load_tolerances())["verdict"] == "known"
