"""harness fuzz --gradients without a backend run: its strategy only draws configurations the NumPy backward pass
supports, the failing keys and the float64 bound a disagreement is classified with, and its command-line errors.
(The runs on the session's backend are in tests/test_fuzz.py.)"""

from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings

from conftest import run_harness
from harness.case.divergences import load_divergences
from harness.case.schema import builtin_cases, parse_case, select_cases
from harness.studies.fuzz import failing_gradient_keys, float64_bound, gradient_case_entries
from harness.truth.expected_gradients import check_supported


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(gradient_case_entries())
def test_every_gradient_entry_has_a_reference_gradient_and_distinct_sizes(entry):
    case = parse_case(entry, "gradient-fuzz-test")
    check_supported(case)  # raises GradientNotSupported otherwise
    assert case.dtype == "float32" and not case.stateful
    assert len({case.batch, case.time, case.features, case.layers[0].units}) == 4


def test_failing_keys_are_the_items_beyond_tolerance_in_any_api():
    result = {"apis": {
        "functional": {"items": {"loss": {"passed": True}, "grad/lstm_0/kernel": {"passed": False}}},
        "sequential": {"items": {"grad/lstm_0/kernel": {"passed": False}, "grad/input/x": {"passed": False}}},
    }}
    assert failing_gradient_keys(result) == ["grad/input/x", "grad/lstm_0/kernel"]
    assert failing_gradient_keys({"apis": {}, "status": "error"}) == []


def test_float64_bound_names_the_known_divergence_that_keeps_a_backend_from_float64():
    divergences = load_divergences()
    lstm = select_cases(builtin_cases(), "lstm_last_step")[0]
    dense = select_cases(builtin_cases(), "heads_dense_leftpadded")[0]
    jax = SimpleNamespace(name="jax", device_class="cpu", versions={"keras": "3.15.1", "jax": "0.10.2"})
    torch = SimpleNamespace(name="torch", device_class="cpu", versions={"keras": "3.15.1", "torch": "2.13.0"})
    tensorflow = SimpleNamespace(name="tensorflow", device_class="cpu", versions={"keras": "3.15.1", "tensorflow": "2.21.0"})
    # Semantics claims whose alternative runs an op in float32 say so as much as a bound does (issue 15: the JAX
    # tanh claim became a semantics claim and float64_bound, reading bounds only, lost it).
    assert float64_bound(lstm, jax, divergences) == ("jax_float64_tanh_in_float32", "semantics tanh_in_float32")
    assert float64_bound(lstm, torch, divergences) is None  # PyTorch's unmasked float64 LSTM is float64
    # heads_dense_leftpadded is masked: the generic loop's matmuls run in float32 as well as the Dense's
    assert float64_bound(dense, torch, divergences) == ("torch_float64_masked_lstm_matmuls_in_float32",
                                                        "semantics dense_matmul_in_float32, lstm_matmuls_in_float32")
    unmasked_dense = select_cases(builtin_cases(), "stacked_lstm_float64_call")[0]
    assert float64_bound(unmasked_dense, torch, divergences) == ("torch_float64_dense_matmul_in_float32", "semantics dense_matmul_in_float32")
    # A semantics claim about something else than precision (a mask ignored) is not one.
    masking = select_cases(builtin_cases(), "mask_rightpadded_maskinglayer_backoff_unrolloff_initrandom")[0]
    assert float64_bound(masking, tensorflow, divergences) is None
    assert float64_bound(lstm, tensorflow, divergences) is None
    # Another Keras than the one the claim was observed on: no bound, the recomputation is held to float64.
    assert float64_bound(lstm, SimpleNamespace(name="jax", device_class="cpu", versions={"keras": "3.16.0", "jax": "0.10.2"}), divergences) is None


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_fault_without_gradients_is_bad_usage():
    completed = run_harness("fuzz", "--backend", "jax", "--inject-fault", "recurrent_term_dropped")
    assert completed.returncode == 2 and completed.stdout == ""
    assert "--inject-fault is for fuzz --gradients" in _one_line(completed.stderr)


def test_an_unknown_gradient_fault_is_bad_usage():
    completed = run_harness("fuzz", "--backend", "jax", "--gradients", "--inject-fault", "swap_input_forget_gates")
    assert completed.returncode == 2 and completed.stdout == ""
    line = _one_line(completed.stderr)
    assert "unknown gradient fault 'swap_input_forget_gates'" in line and "recurrent_term_dropped" in line


def test_no_examples_is_bad_usage():
    completed = run_harness("fuzz", "--backend", "jax", "--gradients", "--examples", "0")
    assert completed.returncode == 2 and completed.stdout == ""
    assert "--examples must be at least 1" in _one_line(completed.stderr)


def test_only_a_failure_the_rule_does_not_explain_is_a_bug():
    from harness.studies.fuzz import gradient_outcome

    ill, bug = {"verdict": "ill_conditioned"}, {"verdict": "bug"}
    assert gradient_outcome({"verdict": "pass"}, None) == "pass"
    assert gradient_outcome({"verdict": "known"}, None) == "known"
    assert gradient_outcome({"verdict": "fail"}, ill) == "ill_conditioned"
    assert gradient_outcome({"verdict": "fail"}, bug) == "bug"
    assert gradient_outcome({"verdict": "fail"}, None) == "bug"
    assert gradient_outcome({"verdict": "invalid"}, None) == "beyond_float32"
    # An error or a time-out is never explained by rounding, whatever a judgement says.
    assert gradient_outcome({"verdict": "error"}, ill) == "bug" and gradient_outcome({"verdict": "timeout"}, None) == "bug"
