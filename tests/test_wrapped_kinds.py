"""Bidirectional and branches wrap any recurrent cell kind (lstm, gru, simple_rnn), named in the case data:
``{type = "bidirectional", layer = "gru", ...}`` (``layer`` defaults to "lstm", so every existing case keeps its
meaning) and ``{type = "branches", layer = {type = "gru", ...}}``. The wrapped kind is looked up in each stage's
table (harness/case/kinds.py, harness/truth/kinds.py and truth/cells.py, harness/execute/kinds.py).

Small cases are defined here (not in harness/case/cases.toml), with batch, time, features and units all different
and the harness's own seeded, non-symmetric weights (harness.case.weights), and run through the reference's
central differences and the harness's run command and gradient study on the session's backend.
"""

import copy
import re

import numpy as np
import pytest

from conftest import gradient_study_of_entries, run_entries
from harness.case.schema import CaseError, load_case_file, parse_case
from harness.case.semantics import DOCUMENTED
from harness.case.weights import make_case_data
from harness.truth.expected import expected_outputs
from harness.truth.expected_gradients import expected_gradients, gradient_keys, input_keys

CASES = [
    {"name": "wrap_bidi_gru_state", "description": "Bidirectional(GRU) with return_state, a holed mask and random initial states",
     "dtype": "float32", "batch": 3, "time": 6, "features": 4, "mask": "holes", "mask_source": "argument",
     "initial_state": "random",
     "layers": [{"type": "bidirectional", "layer": "gru", "units": 5, "return_sequences": True, "return_state": True}]},
    {"name": "wrap_bidi_gru_v1_none", "description": "Bidirectional(GRU reset_after=false), merge_mode none, last step",
     "dtype": "float32", "batch": 2, "time": 5, "features": 3, "mask": "left_padded",
     "layers": [{"type": "bidirectional", "layer": "gru", "units": 4, "reset_after": False, "merge_mode": "none"}]},
    {"name": "wrap_bidi_simple_rnn_sum", "description": "Bidirectional(SimpleRNN), merge_mode sum, right padding, a Dense head",
     "dtype": "float32", "batch": 4, "time": 5, "features": 3, "mask": "right_padded",
     "layers": [{"type": "bidirectional", "layer": "simple_rnn", "units": 6, "merge_mode": "sum", "return_sequences": True},
                {"type": "time_distributed_dense", "units": 2}]},
    {"name": "wrap_bidi_simple_rnn_state", "description": "Bidirectional(SimpleRNN) with return_state and random initial states",
     "dtype": "float32", "batch": 2, "time": 7, "features": 5, "initial_state": "random",
     "layers": [{"type": "bidirectional", "layer": "simple_rnn", "units": 3, "merge_mode": "ave", "return_state": True}]},
    {"name": "wrap_bidi_gru_all_masked_row", "description": "Bidirectional(GRU), last step only, a fully masked row, random initial states",
     "dtype": "float32", "batch": 3, "time": 4, "features": 2, "mask": "all_masked_row", "mask_source": "argument",
     "initial_state": "random", "layers": [{"type": "bidirectional", "layer": "gru", "units": 5, "merge_mode": "concat"}]},
    {"name": "wrap_cell_bidi_gru_mul", "description": "Bidirectional(RNN(GRUCell)), merge_mode mul, holes",
     "dtype": "float32", "batch": 3, "time": 5, "features": 2, "mask": "holes", "layer_form": "rnn_cell",
     "layers": [{"type": "bidirectional", "layer": "gru", "units": 4, "merge_mode": "mul", "return_sequences": True}]},
    {"name": "wrap_branches_gru_shared", "description": "one GRU called on two branches, concatenated",
     "dtype": "float32", "batch": 2, "time": 6, "features": 3,
     "layers": [{"type": "branches", "shared": True, "layer": {"type": "gru", "units": 5, "return_sequences": True}},
                {"type": "dense", "units": 2}]},
    {"name": "wrap_branches_gru_separate", "description": "two GRUs (reset_after=false) on two branches, right padding",
     "dtype": "float32", "batch": 3, "time": 6, "features": 2, "mask": "right_padded",
     "layers": [{"type": "branches", "shared": False, "layer": {"type": "gru", "units": 4, "reset_after": False}}]},
    {"name": "wrap_branches_simple_rnn_separate", "description": "two SimpleRNNs on two branches",
     "dtype": "float32", "batch": 4, "time": 3, "features": 5,
     "layers": [{"type": "branches", "shared": False, "layer": {"type": "simple_rnn", "units": 6, "return_sequences": True}}]},
]
BY_NAME = {entry["name"]: entry for entry in CASES}


def _case(name, **changes):
    entry = copy.deepcopy(BY_NAME[name])
    entry.update(changes)
    return parse_case(entry, "test")


def _units(entry):
    layer = entry["layers"][0]
    return layer["layer"]["units"] if layer["type"] == "branches" else layer["units"]


def test_the_sizes_differ_in_every_case():
    for entry in CASES:
        sizes = [entry["batch"], entry["time"], entry["features"], _units(entry)]
        assert len(set(sizes)) == len(sizes), entry["name"]


def test_the_wrapped_kind_is_the_named_one():
    assert _case("wrap_bidi_gru_state").layers[0].kind.cell_kind(_case("wrap_bidi_gru_state").layers[0]).name == "gru"
    layer = _case("wrap_bidi_simple_rnn_sum").layers[0]
    assert layer.wrapped == "simple_rnn" and layer.kind.cell_kind(layer).name == "simple_rnn"
    assert "layer" not in layer.options  # options are the wrapped layer's (passed on to Keras) and merge_mode
    assert "recurrent_activation" not in layer.options and "implementation" not in layer.options
    gru = _case("wrap_bidi_gru_v1_none").layers[0]
    assert gru.options["reset_after"] is False and gru.options["merge_mode"] == "none"
    branch = _case("wrap_branches_gru_separate").layers[0]
    assert branch.kind.cell_kind(branch).name == "gru" and branch.inner.options["reset_after"] is False


def test_a_bidirectional_without_layer_is_the_lstm_one():
    entry = {"name": "default_bidi", "dtype": "float32", "batch": 3, "time": 5, "features": 4, "initial_state": "random",
             "layers": [{"type": "bidirectional", "units": 2, "return_state": True}]}
    implicit = parse_case(entry, "test")
    explicit = parse_case(dict(entry, layers=[dict(entry["layers"][0], layer="lstm")]), "test")
    assert implicit.layers == explicit.layers and implicit.layers[0].wrapped == "lstm"
    assert "layer" not in implicit.layers[0].options and "reset_after" not in implicit.layers[0].options
    assert implicit.output_names == ("output", "h_forward", "c_forward", "h_backward", "c_backward")
    assert implicit.initial_state_count == 4
    data = make_case_data(implicit)
    assert [a.shape for a in data.layer_weights[0][0]] == [(4, 8), (2, 8), (8,)] * 2
    with pytest.raises(CaseError, match="field 'reset_after' is not an option of a bidirectional layer of lstm"):
        parse_case(dict(entry, layers=[dict(entry["layers"][0], reset_after=True)]), "test")


def test_weight_shapes_states_and_output_names():
    case = _case("wrap_bidi_gru_state")
    data = make_case_data(case)
    assert [a.shape for a in data.layer_weights[0][0]] == [(4, 15), (5, 15), (2, 15)] * 2  # reset_after: two biases
    assert case.output_names == ("output", "h_forward", "h_backward") and case.initial_state_count == 2
    assert [s.shape for s in data.initial_state] == [(3, 5), (3, 5)]
    outputs = expected_outputs(case, data)
    assert list(outputs) == ["output", "h_forward", "h_backward"]
    assert outputs["output"].shape == (3, 6, 10) and outputs["h_forward"].shape == (3, 5) == outputs["h_backward"].shape
    assert gradient_keys(case) == [[[f"grad/bidirectional_0/{copy}_{name}" for copy in ("forward", "backward")
                                     for name in ("kernel", "recurrent_kernel", "bias")]]]
    assert input_keys(case) == ["grad/input/x", "grad/input/state_0", "grad/input/state_1"]

    case = _case("wrap_bidi_gru_v1_none")
    assert [a.shape for a in make_case_data(case).layer_weights[0][0]] == [(3, 12), (4, 12), (12,)] * 2
    assert case.output_names == ("forward", "backward")
    case = _case("wrap_bidi_simple_rnn_sum")
    assert [a.shape for a in make_case_data(case).layer_weights[0][0]] == [(3, 6), (6, 6), (6,)] * 2
    assert case.output_names == ("output",) and case.layers[0].output_width == 6
    assert expected_outputs(case, make_case_data(case))["output"].shape == (4, 5, 2)
    case = _case("wrap_bidi_simple_rnn_state")
    assert case.output_names == ("output", "h_forward", "h_backward") and case.initial_state_count == 2

    shared = make_case_data(_case("wrap_branches_gru_shared")).layer_weights[0]
    assert [[a.shape for a in group] for group in shared] == [[(3, 15), (5, 15), (2, 15)]]
    separate = make_case_data(_case("wrap_branches_gru_separate")).layer_weights[0]
    assert [[a.shape for a in group] for group in separate] == [[(2, 12), (4, 12), (12,)]] * 2
    assert gradient_keys(_case("wrap_branches_gru_separate")) == [[[f"grad/branches_0/{b}_{name}" for name in
                                                                    ("kernel", "recurrent_kernel", "bias")] for b in "ab"]]
    case = _case("wrap_branches_simple_rnn_separate")
    assert [[a.shape for a in group] for group in make_case_data(case).layer_weights[0]] == [[(5, 6), (6, 6), (6,)]] * 2
    assert expected_outputs(case, make_case_data(case))["output"].shape == (4, 3, 12)


def _run_cell(cell_layer, x, weights, mask, initial_state):
    """The output and final state of one plain cell case holding ``weights``, from the reference."""
    entry = {"name": "one_copy", "dtype": "float64", "batch": x.shape[0], "time": x.shape[1], "features": x.shape[2],
             "mask": "holes" if mask is not None else "none", "mask_source": "argument",
             "initial_state": "random" if initial_state is not None else "none", "layers": [cell_layer]}
    case = parse_case(entry, "test")
    data = make_case_data(case)
    data = type(data)(x=x, layer_weights=((tuple(weights),),), mask=mask, initial_state=initial_state)
    return expected_outputs(case, data)


def test_a_bidirectional_gru_is_a_forward_and_a_backward_gru():
    """The reference's Bidirectional(GRU) against two GRU cases built from its halves: the forward copy, and the
    go_backwards copy whose sequence is flipped back."""
    case = _case("wrap_bidi_gru_state")
    data = make_case_data(case)
    outputs = expected_outputs(case, data)
    arrays = data.layer_weights[0][0]
    halves = []
    for index, backwards in enumerate((False, True)):
        layer = {"type": "gru", "units": 5, "return_sequences": True, "return_state": True, "go_backwards": backwards,
                 "zero_output_for_mask": True}  # Bidirectional sets it to return_sequences
        halves.append(_run_cell(layer, data.x, arrays[3 * index:3 * index + 3], data.mask, [data.initial_state[index]]))
    forward, backward = halves
    np.testing.assert_allclose(outputs["output"][..., :5], forward["output"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(outputs["output"][..., 5:], backward["output"][:, ::-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(outputs["h_forward"], forward["h"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(outputs["h_backward"], backward["h"], rtol=0, atol=1e-12)
    assert not np.allclose(outputs["h_forward"], outputs["h_backward"])


def test_the_weights_are_not_symmetric_and_the_reference_uses_every_array():
    for name in ("wrap_bidi_simple_rnn_sum", "wrap_branches_gru_separate"):
        case = _case(name)
        data = make_case_data(case)
        groups = data.layer_weights[0]
        recurrent = groups[0][1]
        block = recurrent[:, :recurrent.shape[0]]
        assert not np.allclose(block, block.T), name
        base = expected_outputs(case, data)["output"]
        for g, group in enumerate(groups):
            for index in range(len(group)):
                changed_group = list(group)
                changed_group[index] = changed_group[index] * 1.5
                changed_groups = tuple(tuple(changed_group) if k == g else other for k, other in enumerate(groups))
                changed = type(data)(x=data.x, layer_weights=(changed_groups,) + data.layer_weights[1:], mask=data.mask,
                                     initial_state=data.initial_state)
                assert not np.allclose(expected_outputs(case, changed)["output"], base), (name, g, index)


@pytest.mark.parametrize("name", [entry["name"] for entry in CASES])
def test_reference_gradients_match_central_differences(name):
    from test_gradients import _check_central_differences

    _check_central_differences(_case(name), DOCUMENTED)


def test_a_shared_gru_gradient_is_the_sum_of_its_two_calls():
    shared = _case("wrap_branches_gru_shared")
    separate_entry = copy.deepcopy(BY_NAME["wrap_branches_gru_shared"])
    separate_entry["layers"][0]["shared"] = False
    separate = parse_case(separate_entry, "test")
    data = make_case_data(shared, 7)
    group = data.layer_weights[0][0]
    separate_data = type(data)(x=data.x, layer_weights=((group, group),) + data.layer_weights[1:], mask=data.mask,
                               initial_state=data.initial_state)
    _, _, _, targets = expected_gradients(shared, data, seed=7)
    _, shared_grads, shared_outputs, _ = expected_gradients(shared, data, targets=targets)
    _, separate_grads, separate_outputs, _ = expected_gradients(separate, separate_data, targets=targets)
    np.testing.assert_array_equal(shared_outputs["output"], separate_outputs["output"])
    for name in ("kernel", "recurrent_kernel", "bias"):
        total = separate_grads[f"grad/branches_0/a_{name}"] + separate_grads[f"grad/branches_0/b_{name}"]
        np.testing.assert_allclose(shared_grads[f"grad/branches_0/a_{name}"], total, rtol=1e-12, atol=1e-14)


def _layer_error(layer, **fields):
    entry = {"name": "bad", "dtype": "float32", "batch": 2, "time": 3, "features": 4, "layers": [layer], **fields}
    with pytest.raises(CaseError) as raised:
        parse_case(entry, "test")
    message = str(raised.value)
    assert "\n" not in message, message
    return message


def test_a_bad_wrapped_kind_is_one_line_naming_the_accepted_kinds():
    message = _layer_error({"type": "bidirectional", "layer": "lstm2", "units": 3})
    assert message == "test: case 'bad', layer 0: field 'layer' is 'lstm2'; accepted: lstm, gru, simple_rnn"
    for value in ("dense", "bidirectional", "branches", {"type": "gru", "units": 3}):
        assert "field 'layer' is " in _layer_error({"type": "bidirectional", "layer": value, "units": 3}), value
    message = _layer_error({"type": "branches", "shared": True, "layer": {"type": "dense", "units": 3}})
    assert message.endswith("field 'layer' must be a recurrent layer (lstm, gru, simple_rnn) without return_state")
    message = _layer_error({"type": "branches", "shared": True, "layer": {"type": "bidirectional", "layer": "gru", "units": 3}})
    assert message.endswith("field 'layer' must be a recurrent layer (lstm, gru, simple_rnn) without return_state")
    message = _layer_error({"type": "branches", "shared": True, "layer": "gru"})
    assert message.endswith("field 'layer' is 'gru'; expected a recurrent layer table (lstm, gru, simple_rnn)")


def test_a_bidirectional_accepts_its_wrapped_kinds_options_only():
    message = _layer_error({"type": "bidirectional", "layer": "simple_rnn", "units": 3, "recurrent_activation": "sigmoid"})
    assert "field 'recurrent_activation' is not an option of a bidirectional layer of simple_rnn; accepted: layer, units," in message
    assert "implementation" not in message.split("accepted:")[1] and "merge_mode" in message
    for option in ("implementation", "use_cudnn", "reset_after", "go_backwards"):
        assert f"field '{option}' is not an option" in _layer_error(
            {"type": "bidirectional", "layer": "simple_rnn", "units": 3, option: True}), option
    assert "field 'reset_after' is 1; expected true or false" in _layer_error(
        {"type": "bidirectional", "layer": "gru", "units": 3, "reset_after": 1})
    entry = {"name": "ok", "dtype": "float32", "batch": 2, "time": 3, "features": 4,
             "layers": [{"type": "bidirectional", "layer": "gru", "units": 3, "reset_after": False, "recurrent_activation": "hard_sigmoid"}]}
    assert parse_case(entry, "test").layers[0].options["recurrent_activation"] == "hard_sigmoid"


def test_wrapped_kinds_in_a_case_file(tmp_path):
    from harness.studies.fuzz import to_toml

    path = tmp_path / "wrapped.toml"
    path.write_text("\n".join(to_toml(entry) for entry in CASES), encoding="utf-8")
    cases = {case.name: case for case in load_case_file(path)}
    assert set(cases) == set(BY_NAME)
    assert cases["wrap_bidi_gru_state"] == _case("wrap_bidi_gru_state")
    assert cases["wrap_cell_bidi_gru_mul"].layer_form == "rnn_cell"


# The harness's own verdicts on the session's backend: pass, or a known divergence of the backend (its conditions
# name no layer kind, so a claim measured on LSTMs explains a GRU or SimpleRNN case the same way).
VERDICTS = ("pass", "known")
# Measured beyond the float32 gradients row, which was derived from LSTMs (as in test_kinds_gru_simple_rnn): one
# element of the backward copy's kernel gradient, the same element on TensorFlow and JAX (on an AMD EPYC):
# wrap_bidi_gru_v1_none (1 of 36, (1, 9): 1.39x the tolerance on TensorFlow, 1.11x on JAX) and, on JAX,
# wrap_bidi_simple_rnn_state (1 of 15, (2, 2): 1.21x). Left visible here, bounded, not widened in
# harness/case/tolerances.toml, until a row is derived for the GRU and SimpleRNN gradients.
GRADIENT_EXCESS = {("tensorflow", "wrap_bidi_gru_v1_none"): 2.0, ("jax", "wrap_bidi_gru_v1_none"): 2.0,
                   ("jax", "wrap_bidi_simple_rnn_state"): 2.0}



@pytest.mark.backend
def test_wrapped_kinds_through_the_run_command(session_backend, tmp_path):
    record, verdicts = run_entries(session_backend, CASES, tmp_path)
    assert set(verdicts) == set(BY_NAME)
    for result in record["cases"]:
        verdict = verdicts[result["case"]]
        assert verdict["verdict"] in VERDICTS, (result["case"], verdict, result["problems"])
        assert all(build["items"] for build in result["apis"].values()), result["case"]
        if session_backend == "tensorflow":
            assert result["status"] == "pass", (result["case"], result["problems"])
    outputs = {result["case"]: sorted(next(iter(result["apis"].values()))["items"]) for result in record["cases"]}
    assert outputs["wrap_bidi_gru_state"] == ["h_backward", "h_forward", "output"]
    assert outputs["wrap_bidi_simple_rnn_state"] == ["h_backward", "h_forward", "output"]
    assert outputs["wrap_bidi_gru_v1_none"] == ["backward", "forward"]


@pytest.mark.backend
def test_wrapped_kinds_through_the_gradient_study(session_backend, tmp_path):
    report = gradient_study_of_entries(session_backend, CASES, tmp_path)
    assert set(report) == set(BY_NAME)
    for name, result in report.items():
        if (session_backend, name) in GRADIENT_EXCESS and result["verdict"] == "fail":
            ratios = [re.search(r"kernel: 1 / \d+ elements mismatch .*\(([0-9.e+-]+)x tolerance\)", problem)
                      for problem in result["problems"]]
            assert all(ratios) and max(float(ratio.group(1)) for ratio in ratios) <= GRADIENT_EXCESS[(session_backend, name)], \
                (name, result["problems"])
            continue
        assert result["verdict"] in VERDICTS, (name, result)
        if session_backend == "tensorflow":
            assert result["status"] == "pass", (name, result["problems"])
    assert {"grad/input/state_0", "grad/input/state_1", "grad/bidirectional_0/backward_recurrent_kernel"} \
        <= set(report["wrap_bidi_gru_state"]["keys"])
    assert {"grad/branches_0/a_kernel", "grad/branches_0/b_bias"} <= set(report["wrap_branches_gru_separate"]["keys"])


def test_a_training_mode_case_refuses_a_wrapped_gru_in_one_line():
    """The training-mode study has dropout references for the LSTM's masks only: a Bidirectional(GRU) is refused
    with the kinds it takes (before, the message itself raised AttributeError: its KINDS was the study's own tuple)."""
    from harness.studies.training_mode import check_case

    entry = {"name": "dropout_bidi_gru", "dtype": "float32", "batch": 3, "time": 5, "features": 4,
             "layers": [{"type": "bidirectional", "layer": "gru", "units": 2, "return_sequences": True, "dropout": 0.25}]}
    with pytest.raises(CaseError) as raised:
        check_case(parse_case(entry, "test"), "test")
    assert str(raised.value) == "test: case 'dropout_bidi_gru': expected one lstm or bidirectional of lstm layer"
