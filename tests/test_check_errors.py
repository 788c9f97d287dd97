"""``keras-parity check`` on bad input: exit 2 and one line naming the problem and what is accepted, never a
traceback. These need no Keras (the ones that do, a Lambda refused and inputs that do not fit the model, are in
test_check_model.py); the inputs' own checks are tested on NumPy arrays."""

from __future__ import annotations

import importlib.util
import sys
import zipfile

import numpy as np
import pytest

from conftest import run_harness
from harness.case.model_inputs import InputProblem, InputSpec, ModelInput, draw_inputs, fit_inputs, parse_input_spec
from harness.studies.check import CheckProblem, check


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def fake_model(tmp_path):
    """A zip with a config.json: passes the parent's file check; the capture never gets as far as reading it."""
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    return path


def _check(*args: str):
    """The command line: exit 2, nothing on stdout, one line on stderr (returned)."""
    completed = run_harness("check", *args)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert completed.stdout == ""
    return _one_line(completed.stderr)


def _problem(model, *args, **kwargs) -> str:
    """The Python API, in this process: the one-line CheckProblem the command line prints."""
    with pytest.raises(CheckProblem) as raised:
        check(model, *args, **kwargs)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_missing_model_file(tmp_path):
    assert "does not exist; give a model saved with model.save('NAME.keras')" in _check(str(tmp_path / "nope.keras"))


def test_a_file_that_is_not_a_keras_model(tmp_path):
    text = tmp_path / "model.keras"
    text.write_text("not a model")
    assert "is not a Keras model file (a .keras zip archive" in _problem(text)
    other_zip = tmp_path / "other.keras"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("weights.bin", "x")
    assert "a zip archive without config.json, not a Keras model file" in _problem(other_zip)


def test_unknown_backend(fake_model):
    line = _check(str(fake_model), "--backends", "jax,mxnet")
    assert "unknown backend 'mxnet'; accepted: tensorflow, jax, torch" in line


def test_interpreter_that_does_not_exist_or_is_malformed(fake_model, tmp_path):
    line = _problem(fake_model, backends=["jax"], python={"jax": str(tmp_path / "nope" / "python")})
    assert "no such executable; give the python of a virtualenv with keras and jax" in line
    assert "expected BACKEND=INTERPRETER" in _check(str(fake_model), "--python", "jax")


def test_interpreter_that_lacks_the_backend(fake_model):
    missing = [name for name in ("tensorflow", "jax", "torch") if importlib.util.find_spec(name) is None]
    if not missing:
        pytest.skip("this interpreter has every backend: none to be missing")
    line = _check(str(fake_model), "--backends", missing[0], "--python", f"{missing[0]}={sys.executable}")
    assert f"{sys.executable} cannot run backend {missing[0]}" in line and "is not installed" in line and "pip install" in line


@pytest.mark.parametrize("spec, expected", [
    ("seed=1", "lacks batch; expected seed=N,batch=B[,time=T]"),
    ("seed=1,batch=0", "batch = 0 is out of range"),
    ("seed=x,batch=2", "seed must be an integer"),
    ("seed=1,batch=2,units=3", "'units=3' is not one of seed, batch, time"),
])
def test_bad_input_spec(fake_model, spec, expected):
    assert expected in _problem(fake_model, input_spec=spec)


def test_unreadable_or_pickled_input_files(fake_model, tmp_path):
    garbage = tmp_path / "x.npy"
    garbage.write_bytes(b"garbage")
    assert f"cannot read input file {garbage} as .npy without pickle" in _problem(fake_model, garbage)
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "without pickle" in _check(str(fake_model), "--input", str(pickled))
    assert "neither .npy nor .npz" in _problem(fake_model, fake_model)
    assert "does not exist" in _problem(fake_model, tmp_path / "none.npz")
    assert "either inputs (a .npy or .npz) or an input spec, not both" in _problem(fake_model, garbage, input_spec="seed=1,batch=2")


def test_json_into_a_missing_folder(fake_model, tmp_path):
    assert "does not exist" in _check(str(fake_model), "--json", str(tmp_path / "no" / "out.json"))


SERIES = ModelInput("series", (None, 5, 4), "float32")
IDS = ModelInput("ids", (None, None), "int32", vocabulary=11, mask_zero=True)


@pytest.mark.parametrize("given, expected", [
    (np.zeros((3, 5, 4)), "a .npy holds one array but the model has 2 inputs: give a .npz keyed by series, ids"),
    ({"series": np.zeros((3, 5, 4))}, "the input arrays' names do not fit: lacks ids"),
    ({"series": np.zeros((3, 5, 4)), "ids": np.ones((3, 5), int), "extra": np.zeros(1)}, "has unknown extra"),
    ({"series": np.zeros((3, 6, 4)), "ids": np.ones((3, 5), int)}, "input series has shape (3, 6, 4)"),
    ({"series": np.zeros((3, 5, 4)), "ids": np.ones((3, 5))}, "input ids has dtype float64, the model wants integers (int32)"),
    ({"series": np.zeros((3, 5, 4)), "ids": np.full((3, 5), 11)}, "holds ids outside [0, 11) of the Embedding it feeds"),
    ({"series": np.zeros((3, 5, 4)), "ids": np.ones((2, 5), int)}, "the inputs have different batch sizes [2, 3]"),
])
def test_inputs_that_do_not_fit_name_the_problem_and_what_the_model_takes(given, expected):
    with pytest.raises(InputProblem) as raised:
        fit_inputs([SERIES, IDS], given)
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_fitting_inputs_casts_to_the_model_dtype():
    fitted = fit_inputs([SERIES], np.ones((3, 5, 4), dtype=np.float64))
    assert fitted["series"].dtype == np.float32 and fitted["series"].shape == (3, 5, 4)


def test_drawn_inputs_are_seeded_and_fit_the_model():
    spec = parse_input_spec("seed=7, batch=4, time=6")
    assert spec == InputSpec(seed=7, batch=4, time=6)
    first, again = draw_inputs([SERIES, IDS], spec), draw_inputs([SERIES, IDS], spec)
    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert first["series"].shape == (4, 5, 4) and first["series"].dtype == np.float32
    ids = first["ids"]
    assert ids.shape == (4, 6) and ids.dtype == np.int32 and ids.max() < 11
    assert (ids[0] > 0).all() and (ids[1, :1] == 0).all() and (ids[1, 1:] > 0).all() and (ids[3, :3] == 0).all()
    assert not np.array_equal(draw_inputs([SERIES], InputSpec(seed=8, batch=4))["series"], first["series"])
    fit_inputs([SERIES, IDS], first)  # what is drawn fits


def test_custom_classes_are_named_from_the_model_config(tmp_path):
    """What the one-line error names when Keras cannot rebuild a model: its classes from outside Keras."""
    import json

    from harness.case.model_file import custom_classes, read_config

    config = {"class_name": "Functional", "registered_name": "Functional", "module": "keras", "config": {"layers": [
        {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None, "config": {}},
        {"module": None, "class_name": "Scale", "registered_name": "mine>Scale", "config": {}},
        {"module": "my_project.layers", "class_name": "Gate", "registered_name": None, "config": {}},
        {"module": "keras.layers", "class_name": "Dense", "registered_name": None, "config": {}}]}}
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    assert custom_classes(read_config(path)) == ["mine>Scale", "my_project.layers.Gate"]


def test_interpreters_given_then_nox_virtualenvs_then_this_one(tmp_path, monkeypatch):
    """Which interpreter runs each backend: --python first, then the project's .nox virtualenv, then this interpreter
    when it has the backend; without --backends, every backend that has one."""
    from harness.studies import check as study

    monkeypatch.setattr(study, "PROJECT_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    nox_jax = tmp_path / ".nox" / "tests-backend-jax" / "bin" / "python"
    nox_torch = tmp_path / ".nox" / "parity-3-11-keras-release-backend-torch" / "bin" / "python"
    given = tmp_path / "venv" / "bin" / "python"
    for path in (nox_jax, nox_torch, given):
        path.parent.mkdir(parents=True)
        path.write_text("")
        path.chmod(0o755)
    monkeypatch.setattr(study, "_has_backend", lambda backend: backend == "tensorflow")
    assert study.interpreters(None) == {"tensorflow": sys.executable, "jax": str(nox_jax), "torch": str(nox_torch)}
    assert study.interpreters(["jax"], {"jax": str(given)}) == {"jax": str(given)}
    monkeypatch.setattr(study, "_has_backend", lambda backend: False)
    assert study.interpreters(None) == {"jax": str(nox_jax), "torch": str(nox_torch)}
    with pytest.raises(study.CheckProblem, match="no interpreter with backend tensorflow: .* pass --python tensorflow="):
        study.interpreters(["tensorflow"])
