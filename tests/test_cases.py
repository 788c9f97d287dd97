"""Case files: the built-ins obey the rules, and a bad entry is named with its field and accepted values."""

import re
import textwrap

import pytest

from harness.cases import CaseError, builtin_cases, load_case_file, select_cases
from harness.expected import expected_outputs
from harness.weights import make_case_data


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
            for array, array_again in zip(layer, layer_again):
                assert array.dtype == case.dtype
                assert (array == array_again).all(), "the same seed must give the same weights"
                assert len(set(array.ravel().tolist())) == array.size, "weights must not repeat (no constants)"
        kernel = data.layer_weights[0][0]
        units = case.layers[0].units
        gate_blocks = [kernel[:, g * units : (g + 1) * units] for g in range(4)]
        assert all((gate_blocks[0] != block).any() for block in gate_blocks[1:])


def test_expected_outputs_are_finite_and_shaped():
    for case in builtin_cases():
        outputs = expected_outputs(case, make_case_data(case))
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
        ("batch = 2", "batch = 0", "field 'batch' is 0; expected a positive integer"),
        ("units = 5 }", 'units = 5, activation = "nope" }', "field 'activation' is 'nope'; accepted:"),
        ("units = 5 }", "units = 5, colour = 1 }", "field 'colour' is not an option of a lstm layer"),
        ('type = "lstm"', 'type = "gru"', "field 'type' is 'gru'; accepted: lstm, dense"),
        ("layers =", 'mask = "left"\nlayers =', "field 'mask' is 'left'; accepted: none, right_padded"),
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
