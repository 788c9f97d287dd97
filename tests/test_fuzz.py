"""The fuzzer: its strategy only makes valid cases, its TOML round-trips, and it runs on a backend."""

import json
import subprocess
import sys
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from harness.case.schema import DTYPES, parse_case
from harness.studies.fuzz import case_entries, to_toml
from harness.truth.conditioning import EXPLAIN_FACTOR, SHRINK


@settings(max_examples=100, deadline=None, database=None)
@given(case_entries())
def test_every_generated_entry_is_a_valid_case_with_distinct_sizes(entry):
    case = parse_case(entry, "fuzz-test")
    sizes = (case.batch, case.time, case.features, case.layers[0].units)
    assert len(set(sizes)) == 4, sizes
    assert case.dtype == "float32"
    assert "exponential" not in to_toml(entry)
    # Only the last layer may carry return_state.
    assert all(not layer.options.get("return_state") for layer in case.layers[:-1])


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case_entries(dtypes=tuple(DTYPES)))
def test_dtypes_widen_the_generated_dtypes(entry):
    assert parse_case(entry, "fuzz-test").dtype in DTYPES


def test_an_empty_dtype_list_is_refused():
    with pytest.raises(ValueError):
        case_entries(dtypes=())


@settings(max_examples=100, deadline=None, database=None)
@given(case_entries())
def test_to_toml_round_trips_generated_entries(entry):
    assert tomllib.loads(to_toml(entry)) == {"case": [entry]}


_SCALARS = (
    st.text(max_size=12)
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
)
_KEYS = st.text(min_size=1, max_size=8)
_INLINE = st.dictionaries(_KEYS, _SCALARS | st.lists(_SCALARS, max_size=3), max_size=4)


@settings(max_examples=200, deadline=None, database=None)
@given(st.dictionaries(_KEYS, _SCALARS | st.lists(_INLINE, max_size=3) | _INLINE, max_size=6))
def test_to_toml_round_trips_arbitrary_tables(entry):
    assert tomllib.loads(to_toml(entry)) == {"case": [entry]}


def test_a_key_ending_in_a_newline_is_quoted():
    """Found by test_to_toml_round_trips_arbitrary_tables: a regex "$" also matches before a final newline."""
    entry = {"a\n": 1, "0\n": [1]}
    assert tomllib.loads(to_toml(entry)) == {"case": [entry]}


def test_to_toml_escapes_strings_and_writes_layers_one_per_line():
    entry = {
        "name": "x",
        "description": 'a "quoted" \\ back\tslash\nnew line \u00e9 \x01',
        "dropout": 0.3,
        "big": 1e300,
        "layers": [{"type": "lstm", "units": 4, "return_sequences": True}, {"type": "dense", "units": 1}],
    }
    text = to_toml(entry)
    assert text.startswith("[[case]]\n")
    assert '  { type = "lstm", units = 4, return_sequences = true },\n' in text
    assert tomllib.loads(text) == {"case": [entry]}


def test_to_toml_refuses_values_toml_cannot_hold():
    with pytest.raises(TypeError):
        to_toml({"name": None})


def test_a_pasted_entry_parses_back_to_the_same_case():
    entry = {
        "name": "fuzz_found", "dtype": "float32", "batch": 3, "time": 2, "features": 1, "mask": "holes",
        "layers": [{"type": "bidirectional", "units": 4, "merge_mode": "none", "return_sequences": True, "return_state": True}],
    }
    pasted = tomllib.loads(to_toml(entry))["case"][0]
    assert parse_case(pasted, "pasted") == parse_case(entry, "entry")


@pytest.mark.backend
def test_fuzz_runs_on_the_session_backend(session_backend):
    completed = subprocess.run(
        [sys.executable, "-c", f"from harness.studies.fuzz import fuzz; raise SystemExit(fuzz({session_backend!r}, 3, 1))"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode in (0, 1), completed.stderr[-3000:]
    assert "fuzz: " in completed.stdout and f" on {session_backend}, " in completed.stdout, completed.stdout
    if completed.returncode == 1:
        assert "failure shrunk to:" in completed.stdout
        toml_text = "\n".join(line for line in completed.stdout.splitlines() if not line.startswith(("fuzz:", "#")))
        parse_case(tomllib.loads(toml_text)["case"][0], "fuzz output")
    else:
        assert "no failure" in completed.stdout


def _fuzz_gradients(backend: str, examples: int, fault: str | None = None) -> subprocess.CompletedProcess:
    code = (f"from harness.studies.fuzz import fuzz_gradients; "
            f"raise SystemExit(fuzz_gradients({backend!r}, {examples}, 1, {fault!r}, shrink=False))")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.mark.backend
def test_gradient_fuzz_passes_clean_on_the_session_backend(session_backend):
    completed = _fuzz_gradients(session_backend, 3)
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    summary = [line for line in completed.stdout.splitlines() if line.startswith("fuzz --gradients: ")]
    assert len(summary) == 1 and f"3 examples on {session_backend}, " in summary[0] and summary[0].split(", ")[-1].startswith("no bug")


@pytest.mark.backend
@pytest.mark.parametrize("fault", ["recurrent_term_dropped", "recurrent_kernel_gradient_scaled"])
def test_gradient_fuzz_classifies_a_wrong_gradient_as_a_bug(session_backend, fault):
    """The dropped term is far beyond what kappa explains; the gradient scaled by 1 + 1e-4 is within 256 kappa u on
    some cases, and only the float64 recomputation (the same error: it does not shrink) makes it a bug."""
    completed = _fuzz_gradients(session_backend, 6, fault)
    assert completed.returncode == 1, completed.stdout + completed.stderr[-3000:]
    before, found, after = completed.stdout.partition(", bug found: ")
    assert found and f"on {session_backend} with fault {fault!r} injected" in before, completed.stdout
    lines = after.splitlines()[1:]
    assert any(line.startswith("# verdict on ") and "classified bug by the rule" in line for line in lines), after
    judged = [line for line in lines if line.startswith("# grad/") and ": bug: float32 error " in line]
    assert judged, after
    # The printed case is a case: it parses, and is the float32 configuration that failed.
    toml_text = "\n".join(line for line in lines if not line.startswith("#"))
    assert parse_case(tomllib.loads(toml_text)["case"][0], "gradient fuzz output").dtype == "float32"


RECOMPUTE_SCRIPT = r"""
import json, sys
from harness.execute.backends import activate

info = activate(sys.argv[1])
from harness.case.divergences import load_divergences
from harness.case.schema import builtin_cases, select_cases
from harness.case.tolerances import load_tolerances
from harness.execute.gradients import run_gradient_case
from harness.studies.fuzz import classify_disagreement, float64_bound

rows = {}
for name in ("lstm_last_step", "heads_dense_leftpadded"):
    case = select_cases(builtin_cases(), name)[0]
    raw = {}
    result = run_gradient_case(case, 20261124, load_tolerances(), raw, 0)
    keys = sorted({key for _, key in raw})
    bound = float64_bound(case, info, load_divergences())
    judgement = classify_disagreement(case, result, raw, 20261124, keys=keys, float64_claim=bound and bound[0])
    rows[name] = {"status": result["status"], "error": judgement["error"], "layers": judgement["float64_layers"],
                  "bound": bound, "keys": [key.to_json() for key in judgement["keys"]]}
print(json.dumps(rows))
"""


@pytest.mark.backend
def test_the_float64_recomputation_is_float64_where_no_known_divergence_says_otherwise(session_backend):
    """Every gradient of two passing cases through classify_disagreement: where no known divergence says the backend's
    float64 is not float64 end to end, the float64 recomputation's error is at least 1e6 times smaller than the float32
    one (its loss avoids keras.ops.mean, which computes float64 in float32 on PyTorch); where one does (JAX's float64
    tanh, PyTorch's float64 Dense matmul) it is recorded beside the key and the shrink alone decides."""
    completed = subprocess.run([sys.executable, "-c", RECOMPUTE_SCRIPT, session_backend], cwd=ROOT, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = json.loads(completed.stdout.strip().splitlines()[-1])
    for name, row in rows.items():
        assert row["status"] == "pass" and row["error"] is None and row["layers"] == ["float64"], (name, row)
        assert len(row["keys"]) >= 5
        for key in row["keys"]:
            assert key["float64_claim"] == (row["bound"] and row["bound"][0]), (name, key)
            if row["bound"] is None:
                assert key["verdict"] == "ill_conditioned" and key["explained32"] < 64 and key["shrink"] >= 1e6, (name, key)
            else:
                assert key["verdict"] == ("ill_conditioned" if key["explained32"] <= EXPLAIN_FACTOR and key["shrink"] >= SHRINK else "bug"), (name, key)
