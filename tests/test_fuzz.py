"""The fuzzer: its strategy only makes valid cases, its TOML round-trips, and it runs on a backend."""

import subprocess
import sys
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from harness.case.schema import DTYPES, parse_case
from harness.studies.fuzz import case_entries, to_toml


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
