"""Case files: the built-ins obey the rules, and a bad entry is named with its field and accepted values."""

import re
import textwrap

import pytest

from harness.case.schema import CaseError, builtin_cases, load_case_file, select_cases
from harness.truth.expected import expected_outputs
from harness.case.weights import make_case_data


def test_builtin_cases_use_distinct_sizes():
    for case in builtin_cases():
        sizes = [case.batch, case.time, case.features] + [layer.units for layer in case.layers]
        first_lstm_sizes = [case.batch, case.time, case.features, case.layers[0].units]
        assert len(set(first_lstm_sizes)) == 4, f"{case.name}: batch, time, features, units must differ: {sizes}"


def test_weights_are_seeded_random_and_not_symmetric():
    for case in builtin_cases():
        data = make_case_data(case)
        again = make_case_data(case)
        for layer, layer_again in zip(data.layer_weights, again.layer_weights):
            for group, group_again in zip(layer, layer_again):
                for array, array_again in zip(group, group_again):
                    assert str(array.dtype) == case.variable_dtype
                    assert (array == array_again).all(), "the same seed must give the same weights"
                    distinct = len(set(array.astype("float64").ravel().tolist()))
                    if case.variable_dtype in ("float32", "float64"):
                        assert distinct == array.size, "weights must not repeat (no constants)"
                    else:  # half precision rounds some draws together, but never to a constant
                        assert distinct > array.size // 2
        kernel = data.layer_weights[0][0][0]
        units = case.layers[0].units
        gates = kernel.shape[1] // units  # 4 for an LSTM, 3 for a GRU, 1 for a SimpleRNN
        gate_blocks = [kernel[:, g * units : (g + 1) * units] for g in range(gates)]
        assert all((gate_blocks[0] != block).any() for block in gate_blocks[1:])


def test_expected_outputs_are_finite_and_shaped():
    for case in builtin_cases():
        outputs = expected_outputs(case, make_case_data(case))
        if case.stateful:
            batches = case.stateful_batches
            assert {f"output@{k}" for k in range(batches)} | {"after_reset@0"} <= set(outputs)
        else:
            assert set(outputs) == set(case.output_names)
        for value in outputs.values():
            assert value.dtype == "float64" and value.shape[0] == case.batch
            assert (value == value).all() and abs(value).max() < 1e6


def _write(tmp_path, body):
    path = tmp_path / "cases.toml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """
[[case]]
name = "mine"
dtype = "float32"
batch = 2
time = 3
features = 4
layers = [{ type = "lstm", units = 5 }]
"""


def test_user_case_file_loads():
    import pathlib, tempfile

    with tempfile.TemporaryDirectory() as folder:
        cases = load_case_file(_write(pathlib.Path(folder), GOOD))
    assert [case.name for case in cases] == ["mine"]
    assert cases[0].apis == ("sequential", "functional", "subclassed")


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ('dtype = "float32"', 'dtype = "float8"', "case 'mine': field 'dtype' is 'float8'; accepted: float32, float64"),
        ("batch = 2", "batch = 0", "field 'batch' is 0; expected an integer >= 1"),
        ("units = 5 }", 'units = 5, activation = "nope" }', "field 'activation' is 'nope'; accepted:"),
        ("units = 5 }", "units = 5, colour = 1 }", "field 'colour' is not an option of a lstm layer"),
        ('type = "lstm"', 'type = "rnn"', "field 'type' is 'rnn'; accepted: lstm, bidirectional, branches, dense"),
        ("layers =", 'mask = "left"\nlayers =', "field 'mask' is 'left'; accepted: none, right_padded, left_padded"),
        ("layers =", "stateful_batches = 2\ninitial_state = \"random\"\nlayers =", "field 'stateful_batches' cannot be combined"),
        ("units = 5 }", "units = 5, implementation = 3 }", "field 'implementation' is 3; accepted: 1, 2"),
        ("units = 5 }", "units = 5, return_state = true }]\napis = [\"sequential\"", "field 'apis' asks for 'sequential'"),
    ],
)
def test_bad_entry_names_entry_field_and_accepted_values(tmp_path, old, new, expected):
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(CaseError) as raised:
        load_case_file(path)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_glob_that_matches_nothing_is_an_error():
    with pytest.raises(CaseError, match=re.escape("no case matches 'nothing_*'")):
        select_cases(builtin_cases(), "nothing_*")


def test_matrix_expands_every_combination(tmp_path):
    path = _write(tmp_path, """
[[matrix]]
name = "m_{mask}_{unroll}"
base = { dtype = "float32", batch = 2, time = 3, features = 4, layers = [{ type = "lstm", units = 5 }] }
axes = { mask = ["none", "holes"], "layers.0.unroll" = [true, false] }
""")
    cases = load_case_file(path)
    assert sorted(case.name for case in cases) == ["m_holes_off", "m_holes_on", "m_none_off", "m_none_on"]
    holes_on = next(case for case in cases if case.name == "m_holes_on")
    assert holes_on.mask == "holes" and holes_on.layers[0].options["unroll"] is True


def test_every_mask_kind_has_a_valid_and_a_masked_step():
    import numpy as np

    from harness.case.weights import make_mask

    for kind in ("right_padded", "left_padded", "holes", "all_masked_row"):
        mask = make_mask(kind, 4, 7, np.random.default_rng(0))
        assert mask.shape == (4, 7) and mask[0].all() and not mask.all(), kind
    assert not make_mask("all_masked_row", 4, 7, np.random.default_rng(0))[-1].any()


def test_one_case_selector_comma_separated_globs_case_sensitive():
    """Every command selects cases with schema.name_matches: comma-separated globs, spaces ignored, case-sensitive
    on every platform (the claim study used fnmatch, which folds case on Windows, and took no comma list)."""
    import harness.studies.claim_study as claim_study
    import harness.studies.training_mode as training_mode
    from harness.case.schema import name_matches

    assert name_matches("lstm_last_step", "gru_*, lstm_*")
    assert not name_matches("lstm_last_step", "LSTM_*")
    assert not name_matches("lstm_last_step", "lstm_last")
    for module in (claim_study, training_mode):
        assert "fnmatch" not in vars(module) and module.name_matches is name_matches
