"""GRU and SimpleRNN as layer kinds: one entry in each stage's table (harness/case/kinds.py, harness/truth/kinds.py
and truth/cells.py, harness/execute/kinds.py), and small cases (defined here, not in harness/case/cases.toml: the
published matrix is unchanged) through the harness pipeline against the float64 reference on the session's backend.

The numbers are the harness's own: seeded normal weights and inputs (harness.case.weights), non-symmetric, with
batch, time, features and units all different, so that a transposed or mis-sliced array cannot pass.
"""

import re

import numpy as np
import pytest

from conftest import gradient_study_of_entries, run_entries
from harness.case.schema import parse_case
from harness.case.semantics import DOCUMENTED
from harness.case.weights import make_case_data
from harness.truth.expected import expected_outputs
from harness.truth.expected_gradients import gradient_keys, input_keys

CASES = [
    {"name": "kind_gru_state", "description": "GRU with return_state, a holed mask and a random initial state",
     "dtype": "float32", "batch": 3, "time": 5, "features": 4, "mask": "holes", "mask_source": "argument",
     "initial_state": "random", "layers": [{"type": "gru", "units": 6, "return_sequences": True, "return_state": True}]},
    {"name": "kind_gru_v1_backwards", "description": "GRU reset_after=false, go_backwards, a TimeDistributed(Dense) head",
     "dtype": "float32", "batch": 4, "time": 6, "features": 3, "mask": "right_padded",
     "layers": [{"type": "gru", "units": 5, "reset_after": False, "go_backwards": True, "return_sequences": True},
                {"type": "time_distributed_dense", "units": 2}]},
    {"name": "kind_simple_rnn_state", "description": "SimpleRNN with return_state, left padding and a random initial state",
     "dtype": "float32", "batch": 2, "time": 7, "features": 5, "mask": "left_padded", "mask_source": "argument",
     "initial_state": "random", "layers": [{"type": "simple_rnn", "units": 3, "return_state": True}]},
    {"name": "kind_cells_gru_simple_rnn", "description": "RNN(GRUCell) then RNN(SimpleRNNCell), a Dense head",
     "dtype": "float32", "batch": 3, "time": 4, "features": 2, "layer_form": "rnn_cell",
     "layers": [{"type": "gru", "units": 5, "return_sequences": True}, {"type": "simple_rnn", "units": 6},
                {"type": "dense", "units": 2}]},
    {"name": "kind_stacked_cells_gru_simple_rnn", "description": "RNN(StackedRNNCells([GRUCell, SimpleRNNCell]))",
     "dtype": "float32", "batch": 3, "time": 6, "features": 2, "layer_form": "stacked_cells",
     "layers": [{"type": "gru", "units": 4, "return_sequences": True}, {"type": "simple_rnn", "units": 5}]},
    {"name": "kind_gru_stateful", "description": "a stateful GRU across 3 successive batches, then reset_states",
     "dtype": "float32", "batch": 2, "time": 5, "features": 3, "stateful_batches": 3,
     "layers": [{"type": "gru", "units": 4, "return_sequences": True}, {"type": "dense", "units": 1}]},
]


def _case(name):
    return parse_case(next(entry for entry in CASES if entry["name"] == name), "test")


def test_the_sizes_differ_in_every_case():
    for entry in CASES:
        sizes = [entry["batch"], entry["time"], entry["features"], entry["layers"][0]["units"]]
        assert len(set(sizes)) == len(sizes), entry["name"]


def test_weight_shapes_states_and_output_names():
    data = make_case_data(_case("kind_gru_state"))
    assert [a.shape for a in data.layer_weights[0][0]] == [(4, 18), (6, 18), (2, 18)]  # reset_after: two biases
    assert [s.shape for s in data.initial_state] == [(3, 6)]
    data = make_case_data(_case("kind_gru_v1_backwards"))
    assert [a.shape for a in data.layer_weights[0][0]] == [(3, 15), (5, 15), (15,)]
    data = make_case_data(_case("kind_simple_rnn_state"))
    assert [a.shape for a in data.layer_weights[0][0]] == [(5, 3), (3, 3), (3,)]
    for name in ("kind_gru_state", "kind_simple_rnn_state"):
        case = _case(name)
        assert case.output_names == ("output", "h") and case.initial_state_count == 1
        assert case.layers[0].kind.state_names == ("h",)
    outputs = expected_outputs(_case("kind_gru_state"), make_case_data(_case("kind_gru_state")))
    assert list(outputs) == ["output", "h"] and outputs["output"].shape == (3, 5, 6) and outputs["h"].shape == (3, 6)
    stateful = expected_outputs(_case("kind_gru_stateful"), make_case_data(_case("kind_gru_stateful")))
    assert sorted(stateful) == ["after_reset@0", "h@0", "output@0", "output@1", "output@2"]
    assert gradient_keys(_case("kind_simple_rnn_state")) == [[["grad/simple_rnn_0/kernel", "grad/simple_rnn_0/recurrent_kernel",
                                                               "grad/simple_rnn_0/bias"]]]
    assert input_keys(_case("kind_simple_rnn_state")) == ["grad/input/x", "grad/input/state_0"]


def test_the_weights_are_not_symmetric_and_the_reference_uses_every_array():
    case = _case("kind_gru_v1_backwards")
    data = make_case_data(case)
    kernel, recurrent, _ = data.layer_weights[0][0]
    block = recurrent[:, :recurrent.shape[0]]  # the first gate's square block
    assert not np.allclose(block, block.T) and np.unique(kernel).size == kernel.size
    base = expected_outputs(case, data)["output"]
    for index in range(3):  # changing any array changes the output
        arrays = list(data.layer_weights[0][0])
        arrays[index] = arrays[index] * 1.5
        changed = type(data)(x=data.x, layer_weights=(tuple([tuple(arrays)]),) + data.layer_weights[1:], mask=data.mask,
                             initial_state=data.initial_state)
        assert not np.allclose(expected_outputs(case, changed)["output"], base), index


@pytest.mark.parametrize("name", [entry["name"] for entry in CASES if "stateful_batches" not in entry])
def test_reference_gradients_match_central_differences(name):
    from test_gradients import _check_central_differences

    _check_central_differences(_case(name), DOCUMENTED)


# The harness's own verdicts: a known divergence of the backend explains a case the same way for a GRU or a
# SimpleRNN as for an LSTM (its conditions name no layer kind): on JAX, masked steps before a row's first valid
# step output h0 (jax_scan_masked_output_is_previous_state) and its trainer does not carry stateful states
# (jax_stateful_states_not_carried_by_trainer).
VERDICTS = ("pass", "known")
# Measured beyond the gradients row, which was derived from LSTMs: SimpleRNN's kernel gradient in float32, the same
# element (1, 0) of 15 on both backends, on an AMD EPYC: JAX 3.56e-07 from the reference, 2.09x the tolerance;
# TensorFlow 1.77e-07, 1.04x (measured 2026-12-03; it passed on the CI machines before, whose float32 rounding
# follows their instruction set: tensorflow_float32_rounding_follows_cpu_isa). Each allowance is about 1.45x its
# measurement. Left visible here, not widened in harness/case/tolerances.toml, until a row is derived for the GRU
# and SimpleRNN gradients.
GRADIENT_EXCESS = {("jax", "kind_simple_rnn_state"): 3.0, ("tensorflow", "kind_simple_rnn_state"): 1.5}



@pytest.mark.backend
def test_gru_and_simple_rnn_cases_through_the_run_command(session_backend, tmp_path):
    record, verdicts = run_entries(session_backend, CASES, tmp_path)
    assert set(verdicts) == {entry["name"] for entry in CASES}
    for result in record["cases"]:
        verdict = verdicts[result["case"]]
        assert verdict["verdict"] in VERDICTS, (result["case"], verdict, result["problems"])
        assert all(build["items"] for build in result["apis"].values()), result["case"]
        if session_backend == "tensorflow":
            assert result["status"] == "pass", (result["case"], result["problems"])
    outputs = {result["case"]: sorted(next(iter(result["apis"].values()))["items"]) for result in record["cases"]}
    assert outputs["kind_gru_state"] == ["h", "output"] and outputs["kind_simple_rnn_state"] == ["h", "output"]
    assert outputs["kind_gru_stateful"] == ["after_reset@0", "h@0", "output@0", "output@1", "output@2"]


@pytest.mark.backend
def test_gru_and_simple_rnn_gradients_through_the_gradient_study(session_backend, tmp_path):
    entries = [entry for entry in CASES if "stateful_batches" not in entry]
    report = gradient_study_of_entries(session_backend, entries, tmp_path)
    assert set(report) == {entry["name"] for entry in entries}
    for name, result in report.items():
        if (session_backend, name) in GRADIENT_EXCESS and result["verdict"] == "fail":
            ratios = [re.search(r"\(([0-9.e+-]+)x tolerance\)", problem) for problem in result["problems"]]
            assert all(ratios) and max(float(ratio.group(1)) for ratio in ratios) <= GRADIENT_EXCESS[(session_backend, name)], \
                (name, result["problems"])
            continue
        assert result["verdict"] in VERDICTS, (name, result)
        if session_backend == "tensorflow":
            assert result["status"] == "pass", (name, result["problems"])
    assert "grad/input/state_0" in report["kind_gru_state"]["keys"]
    assert {"grad/gru_0/kernel", "grad/simple_rnn_1/recurrent_kernel"} <= set(report["kind_cells_gru_simple_rnn"]["keys"])
