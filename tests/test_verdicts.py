"""Verdicts against the known-divergence claims, without Keras: the "measured" outputs are computed by
the reference under the semantics a backend is claimed to have, with or without a bug on top, and
judged by the same functions a real run uses (judge_outputs, measured_status, classify_result)."""

from dataclasses import replace

import numpy as np
import pytest

from harness.case.divergences import DivergenceFileError, load_divergences
from harness.case.schema import builtin_cases, parse_case
from harness.case.semantics import Semantics
from harness.case.tolerances import load_tolerances
from harness.case.weights import DEFAULT_SEED, make_case_data
from harness.execute.measure import api_agreement, judge_outputs, measured_status
from harness.truth.expected import expected_outputs
from harness.verdicts.classify import classify_result

VERSIONS = {"keras": "3.15.1", "tensorflow": "2.21.0", "jax": "0.10.2", "torch": "2.13.0+cpu"}
GPU_VERSIONS = {"keras": "3.15.1", "jax": "0.11.2", "torch": "2.11.0+cu130"}  # the GPU records (results/gpu)
DIVERGENCES = load_divergences()
TOLERANCES = load_tolerances()


def _case(**fields):
    """A case nobody wrote into cases.toml, under a name no divergence entry mentions."""
    entry = {"name": "a_user_case_nobody_named", "dtype": "float32", "batch": 3, "time": 6, "features": 4,
             "layers": [{"type": "lstm", "units": 5, "return_sequences": True}]}
    entry.update(fields)
    return parse_case(entry, "test")


def _swap_gates(data):
    """The input and forget gate blocks of the first LSTM's kernels and bias swapped: a wrong-gate bug."""
    kernel, recurrent, bias = data.layer_weights[0][0]
    units = kernel.shape[1] // 4

    def swap(array):
        array = array.copy()
        first, second = array[..., :units].copy(), array[..., units:2 * units].copy()
        array[..., :units], array[..., units:2 * units] = second, first
        return array

    return replace(data, layer_weights=((tuple(swap(a) for a in (kernel, recurrent, bias)),),) + data.layer_weights[1:])


def _measured(case, semantics=Semantics(), wrong_gate=False, apis=("functional", "subclassed")):
    """A result and raw outputs as a run would record them, for outputs computed under ``semantics``."""
    data = make_case_data(case, DEFAULT_SEED)
    documented = expected_outputs(case, data)
    produced = expected_outputs(case, _swap_gates(data) if wrong_gate else data, semantics)
    actual = {name: value.astype(case.compute_dtype) for name, value in produced.items()}
    result = {"case": case.name, "apis": {}, "error": None}
    arrays = {}
    for api in apis:
        items = judge_outputs(case, actual, documented, TOLERANCES, api)
        result["apis"][api] = {"items": items, "passed": all(item["passed"] for item in items.values())}
        arrays.update({(api, name): value for name, value in actual.items()})
    result["api_agreement"] = api_agreement({api: actual for api in apis}, TOLERANCES.api_max_abs_diff)
    result["status"], result["problems"] = measured_status(result)
    return result, arrays


def _verdict(case, backend, result, arrays, versions=VERSIONS):
    return classify_result(case, backend, versions, result, arrays, TOLERANCES, DIVERGENCES, DEFAULT_SEED)


JAX_UNROLL = dict(mask="holes", mask_source="argument",
                  layers=[{"type": "lstm", "units": 5, "return_sequences": True, "unroll": True, "zero_output_for_mask": True}])


def test_semantic_divergence_explains_a_case_no_entry_names():
    case = _case(**JAX_UNROLL)
    result, arrays = _measured(case, Semantics(zero_output_for_mask_ignored=True))
    assert result["status"] == "fail"
    verdict = _verdict(case, "jax", result, arrays)
    assert verdict["verdict"] == "known"
    assert verdict["explained_by"] == ["jax_unroll_ignores_zero_output_for_mask"]


def test_semantic_divergence_with_a_wrong_gate_on_top_is_a_failure():
    case = _case(**JAX_UNROLL)
    result, arrays = _measured(case, Semantics(zero_output_for_mask_ignored=True), wrong_gate=True)
    verdict = _verdict(case, "jax", result, arrays)
    assert verdict["verdict"] == "fail"
    assert "jax_unroll_ignores_zero_output_for_mask" in verdict["applicable"]
    assert any("not the claimed behaviour" in reason for reason in verdict["unexplained"])


def test_a_claim_applies_only_on_its_backends_and_versions():
    case = _case(**JAX_UNROLL)
    result, arrays = _measured(case, Semantics(zero_output_for_mask_ignored=True))
    assert _verdict(case, "torch", result, arrays)["verdict"] == "fail"
    newer = dict(VERSIONS, keras="3.16.0.dev2026112500")
    assert _verdict(case, "jax", result, arrays, newer)["verdict"] == "fail"


def test_a_fuzzed_case_is_matched_by_its_configuration():
    case = _case(**dict(JAX_UNROLL, name="fuzz_found", batch=2, time=5, features=3))
    result, arrays = _measured(case, Semantics(zero_output_for_mask_ignored=True))
    assert _verdict(case, "jax", result, arrays)["verdict"] == "known"
    result, arrays = _measured(case, Semantics(zero_output_for_mask_ignored=True), wrong_gate=True)
    assert _verdict(case, "jax", result, arrays)["verdict"] == "fail"


TORCH_CRASH = dict(mask="right_padded", mask_source="argument",
                   layers=[{"type": "lstm", "units": 5, "return_sequences": True, "unroll": True, "go_backwards": True}])


def _crashed(case, error_type, message):
    """Raised by the first build, in the file the torch crash claim names (tests/test_refusals_and_crash_claims.py
    checks the other raising places)."""
    return {"case": case.name, "status": "error", "apis": {}, "api_agreement": [], "problems": [],
            "error": {"type": error_type, "message": message, "summary": f"{error_type}: {message}",
                      "raised_in": "keras/src/backend/torch/rnn.py", "api": case.apis[0]}}


def test_crash_divergence_is_known_only_for_its_exception_and_message():
    case = _case(**TORCH_CRASH)
    claimed = _crashed(case, "AttributeError", "'tuple' object has no attribute 'shape'")
    assert _verdict(case, "torch", claimed, {})["verdict"] == "known"
    other_type = _crashed(case, "TypeError", "'tuple' object has no attribute 'shape'")
    other_message = _crashed(case, "AttributeError", "'NoneType' object has no attribute 'dtype'")
    for result in (other_type, other_message):
        verdict = _verdict(case, "torch", result, {})
        assert verdict["verdict"] == "error"
        assert verdict["unexplained"]


def test_a_crash_claim_does_not_absorb_wrong_numbers():
    case = _case(**TORCH_CRASH)
    result, arrays = _measured(case, wrong_gate=True)
    verdict = _verdict(case, "torch", result, arrays)
    assert verdict["verdict"] == "fail"
    assert "torch_go_backwards_unroll_mask_error" in verdict["applicable"]


def test_passing_case_where_the_claim_was_checkable_is_possibly_resolved():
    case = _case(**JAX_UNROLL)
    result, arrays = _measured(case)
    verdict = _verdict(case, "jax", result, arrays)
    assert verdict["verdict"] == "pass"
    assert verdict["possibly_resolved"] == ["jax_unroll_ignores_zero_output_for_mask"]


def test_passing_case_where_the_alternative_changes_nothing_is_not_possibly_resolved():
    # return_sequences=False: the last output of a row whose last step is valid is the same either way;
    # right-padded rows end masked, so use a mask whose last steps are all valid.
    case = _case(mask="left_padded", mask_source="argument",
                 layers=[{"type": "lstm", "units": 5, "unroll": True, "zero_output_for_mask": True}])
    result, arrays = _measured(case)
    verdict = _verdict(case, "jax", result, arrays)
    assert verdict["applicable"] == ["jax_unroll_ignores_zero_output_for_mask"]
    assert verdict["possibly_resolved"] == []


def test_bound_claim_rejects_errors_beyond_it_and_non_finite_values():
    case = _case(dtype="float64", entry_point="call")
    result, arrays = _measured(case, Semantics(tanh_in_float32=True))
    assert result["status"] == "fail"
    assert _verdict(case, "jax", result, arrays)["explained_by"] == ["jax_float64_tanh_in_float32"]
    result, arrays = _measured(case, wrong_gate=True)
    assert _verdict(case, "jax", result, arrays)["verdict"] == "fail"
    data = make_case_data(case, DEFAULT_SEED)
    documented = expected_outputs(case, data)
    broken = {"output": documented["output"].copy()}
    broken["output"][0, 0, 0] = np.nan
    items = judge_outputs(case, broken, documented, TOLERANCES, "functional")
    nan_result = {"case": case.name, "apis": {"functional": {"items": items, "passed": False}}, "api_agreement": [], "error": None}
    nan_result["status"], nan_result["problems"] = measured_status(nan_result)
    verdict = _verdict(case, "jax", nan_result, {("functional", "output"): broken["output"]})
    assert verdict["verdict"] == "fail"


def test_builds_that_disagree_fail_and_no_semantics_explains_them():
    case = _case(**JAX_UNROLL)
    result, arrays = _measured(case, Semantics(zero_output_for_mask_ignored=True))
    bumped = arrays[("subclassed", "output")].copy()
    bumped[0, 0, 0] = np.nextafter(bumped[0, 0, 0], np.float32(np.inf))
    result["api_agreement"] = api_agreement(
        {"functional": {"output": arrays[("functional", "output")]}, "subclassed": {"output": bumped}}, TOLERANCES.api_max_abs_diff)
    result["status"], result["problems"] = measured_status(result)
    assert any("APIs disagree" in problem for problem in result["problems"])
    assert _verdict(case, "jax", result, arrays)["verdict"] == "fail"


def test_output_dtype_other_than_the_policy_promises_fails():
    case = _case()
    documented = expected_outputs(case, make_case_data(case, DEFAULT_SEED))
    items = judge_outputs(case, {"output": documented["output"]}, documented, TOLERANCES, "functional")  # float64, not float32
    assert not items["output"]["passed"]
    assert "promises float32" in items["output"]["message"]


def test_no_claim_covers_float16_on_tensorflow():
    """A float16 gate-order bug on TensorFlow could hide behind the old name glob; no claim applies now."""
    case = {c.name: c for c in builtin_cases()}["float16_default_initializer"]
    assert [d.id for d in DIVERGENCES if d.applies_to(case, "tensorflow", VERSIONS)] == []
    result, arrays = _measured(case, wrong_gate=True, apis=("sequential",))
    assert _verdict(case, "tensorflow", result, arrays)["verdict"] == "fail"


def test_every_claim_applies_to_some_builtin_case_and_has_a_reproducer():
    from conftest import ROOT

    cases = builtin_cases()
    keras_2 = dict(VERSIONS, keras="2.21.0")  # tf_keras records (harness run --keras-api tf_keras)
    for divergence in DIVERGENCES:
        assert any(divergence.applies_to(case, backend, versions, device) for case in cases for backend in divergence.backends
                   for versions, device in ((VERSIONS, "cpu"), (keras_2, "cpu"), (GPU_VERSIONS, "gpu"))), divergence.id
        assert (ROOT / divergence.reproducer).exists(), divergence.reproducer


@pytest.mark.parametrize("text, expected", [
    ('[[divergence]]\nid = "x"\n', "lacks"),
    ('[[divergence]]\nid = "x"\nbackends = ["jax"]\nversions = { keras = "==3.15.1" }\nwhen = { colour = "red" }\nkind = "bound"\n'
     'outputs = ["*"]\nmax_abs_error = 1.0\nobserved = ""\nreference = ""\nupstream = ""\nreproducer = ""\n', "not a case fact"),
    ('[[divergence]]\nid = "x"\nbackends = ["jax"]\nversions = { keras = "==3.15.1" }\nwhen = { unroll = true }\nkind = "guess"\n'
     'observed = ""\nreference = ""\nupstream = ""\nreproducer = ""\n', "accepted: semantics, crash, bound"),
    ('[[divergence]]\nid = "x"\nbackends = ["jax"]\nversions = { keras = "3.15" }\nwhen = { unroll = true }\nkind = "crash"\n'
     'exception = "E"\nmessage = "m"\nobserved = ""\nreference = ""\nupstream = ""\nreproducer = ""\n', "expected a range"),
])
def test_malformed_divergence_file_is_one_line_naming_the_problem(tmp_path, text, expected):
    path = tmp_path / "divergences.toml"
    path.write_text(text)
    with pytest.raises(DivergenceFileError) as raised:
        load_divergences(path)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


JAX_FUSED_BACKWARDS = dict(kernel="fused_on_cpu", layers=[{"type": "lstm", "units": 5, "return_sequences": True, "go_backwards": True}])


def test_the_fused_go_backwards_claim_explains_exactly_the_reversed_sequence():
    case = _case(**JAX_FUSED_BACKWARDS)
    result, arrays = _measured(case, Semantics(go_backwards_sequence_in_input_order=True))
    assert result["status"] == "fail"
    assert _verdict(case, "jax", result, arrays)["explained_by"] == ["jax_fused_go_backwards_sequence_in_input_order"]
    # the same reversal with a wrong gate on top, or on another backend, stays a failure
    result, arrays = _measured(case, Semantics(go_backwards_sequence_in_input_order=True), wrong_gate=True)
    assert _verdict(case, "jax", result, arrays)["verdict"] == "fail"
    result, arrays = _measured(case, Semantics(go_backwards_sequence_in_input_order=True))
    assert _verdict(case, "torch", result, arrays)["verdict"] == "fail"
    # as shipped on CPU the generic loop runs: the claim does not apply
    plain = _case(layers=JAX_FUSED_BACKWARDS["layers"])
    assert "jax_fused_go_backwards_sequence_in_input_order" not in _verdict(plain, "jax", *_measured(plain))["applicable"]


def test_the_device_fact_selects_gpu_claims_and_rejects_unknown_devices():
    """On a GPU an as-shipped LSTM takes JAX's fused path, so the go_backwards claim covers it there only."""
    claim = next(d for d in DIVERGENCES if d.id == "jax_fused_go_backwards_sequence_in_input_order")
    plain = _case(layers=JAX_FUSED_BACKWARDS["layers"])
    assert claim.applies_to(plain, "jax", GPU_VERSIONS, "gpu")
    assert not claim.applies_to(plain, "jax", GPU_VERSIONS, "cpu")
    assert claim.applies_to(_case(**JAX_FUSED_BACKWARDS), "jax", VERSIONS, "cpu")
    # the fused path needs a bias on JAX: without one the generic loop runs on the GPU too
    no_bias = _case(layers=[dict(JAX_FUSED_BACKWARDS["layers"][0], use_bias=False)])
    assert not claim.applies_to(no_bias, "jax", GPU_VERSIONS, "gpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        claim.applies_to(plain, "jax", GPU_VERSIONS, "tpu")


def test_a_claim_with_alternative_conditions_applies_when_any_holds():
    """jax_float64_tanh_in_float32: the generic loop, i.e. not fused_on_cpu, or fused_on_cpu with a mask (declined)."""
    claim = next(d for d in DIVERGENCES if d.id == "jax_float64_tanh_in_float32")
    assert len(claim.alternatives) == 2 and " or " in claim.when()
    applies = {
        (kernel, mask): claim.applies_to(_case(dtype="float64", kernel=kernel, mask=mask), "jax", VERSIONS)
        for kernel in ("as_shipped", "fused_on_cpu") for mask in ("none", "right_padded")
    }
    assert applies == {("as_shipped", "none"): True, ("as_shipped", "right_padded"): True,
                       ("fused_on_cpu", "none"): False, ("fused_on_cpu", "right_padded"): True}


def test_a_bound_may_allow_builds_to_disagree_up_to_its_api_bound(tmp_path):
    text = """
[[divergence]]
id = "builds_differ"
backends = ["jax"]
versions = { keras = "==3.15.1" }
when = { mask = "holes" }
kind = "bound"
outputs = ["*"]
max_abs_error = 0.0
api_max_abs_diff = 1e-6
observed = "x"
reference = "x"
upstream = ""
reproducer = "x"
"""
    path = tmp_path / "divergences.toml"
    path.write_text(text)
    claims = load_divergences(path)
    case = _case(mask="holes")
    result, arrays = _measured(case)
    for bump, expected in ((1e-7, "known"), (1e-5, "fail")):
        moved = arrays[("subclassed", "output")] + np.float32(bump)
        result["api_agreement"] = api_agreement({"functional": {"output": arrays[("functional", "output")]}, "subclassed": {"output": moved}},
                                                TOLERANCES.api_max_abs_diff)
        result["status"], result["problems"] = measured_status(result)
        verdict = classify_result(case, "jax", VERSIONS, result, arrays, TOLERANCES, claims, DEFAULT_SEED)
        assert verdict["verdict"] == expected, (bump, verdict)
    path.write_text(text.replace('kind = "bound"', 'kind = "crash"\nexception = "E"\nmessage = "m"').replace('outputs = ["*"]\nmax_abs_error = 0.0\n', ""))
    with pytest.raises(DivergenceFileError, match="api_max_abs_diff does not belong to a crash claim"):
        load_divergences(path)
