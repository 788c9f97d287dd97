"""``keras-parity check`` end to end on the session's backend (KERAS_BACKEND): small models built here with seeded,
non-symmetric weights, saved as .keras, checked layer by layer in a capture subprocess (this interpreter for the
session's backend), and, where the project's other nox virtualenvs exist, on a second backend too.

Every model here has different sizes on every axis (batch 3, time 5, features 4, units 6 and 7) so that a
transposed or mis-sliced weight cannot pass by symmetry.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SESSION_BACKEND, run_harness
from harness.studies.check import check

pytestmark = pytest.mark.backend

BATCH, TIME, FEATURES = 3, 5, 4
OTHER_BACKENDS = [b for b in ("tensorflow", "jax", "torch") if b != SESSION_BACKEND]


def _other_backend() -> tuple[str, Path] | None:
    """A second backend with its nox virtualenv here (absent in CI jobs that install one backend)."""
    for backend in OTHER_BACKENDS:
        python = ROOT / ".nox" / f"tests-backend-{backend}" / "bin" / "python"
        if python.is_file():
            return backend, python
    return None


def _seeded(model, seed: int) -> None:
    """Every weight of the model (nested models and wrapped layers included) drawn from a seeded normal distribution."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        scale = 0.8 / np.sqrt(shape[0]) if len(shape) > 1 else 0.5
        variable.assign((rng.standard_normal(shape) * scale).astype(variable.dtype))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The models and an input, saved once: lstm (Sequential regressor), mixed (Functional), lambda."""
    if SESSION_BACKEND is None:
        pytest.skip("KERAS_BACKEND is not set: run through 'nox -s tests'")
    import keras

    folder = tmp_path_factory.mktemp("check_models")
    layers = keras.layers

    regressor = keras.Sequential([keras.Input((TIME, FEATURES), name="series"), layers.LSTM(6, return_sequences=True, name="lstm_a"),
                                  layers.LSTM(7, name="lstm_b"), layers.Dense(2, name="head")])
    _seeded(regressor, 1)
    regressor.save(folder / "lstm.keras")

    # Two inputs, two outputs: a float series a and integer ids; the LSTM "shared" is called on both, the second time
    # with the mask of the ids' zeros (Embedding mask_zero), which reaches the Bidirectional, the layer normalization
    # and the LSTM reading backwards. Embedding and LayerNormalization have no reference.
    a, ids = keras.Input((TIME, FEATURES), name="a"), keras.Input((None,), dtype="int32", name="ids")
    shared = layers.LSTM(6, return_sequences=True, name="shared")
    inner = keras.Sequential([keras.Input((7,)), layers.Dense(5, activation="tanh", name="inner_dense")], name="inner")
    gru_output, _ = layers.GRU(7, reset_after=True, return_state=True, name="gru")(shared(a))
    masked = shared(layers.Embedding(11, FEATURES, mask_zero=True, name="embed")(ids))
    summed = layers.Bidirectional(layers.SimpleRNN(3, return_sequences=True), merge_mode="sum", name="bi")(masked)
    second = layers.TimeDistributed(layers.Dense(2), name="per_step")(
        layers.LSTM(5, return_sequences=True, go_backwards=True, name="back")(layers.LayerNormalization(name="norm")(summed)))
    mixed = keras.Model([a, ids], [inner(gru_output), second])
    _seeded(mixed, 2)
    mixed.save(folder / "mixed.keras")

    series = keras.Input((TIME, FEATURES), name="series")
    logged = keras.Model(series, layers.Dense(2, name="out")(layers.Lambda(lambda x: x ** 0.5, name="sqrt")(series)))
    _seeded(logged, 5)
    logged.save(folder / "lambda.keras")

    series = np.random.default_rng(6).standard_normal((BATCH, TIME, FEATURES)).astype(np.float32)
    np.save(folder / "series.npy", series)
    np.savez(folder / "series.npz", series=series)
    return folder


def _here() -> dict[str, str]:
    return {SESSION_BACKEND: sys.executable}


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def regressor_run(saved, tmp_path_factory):
    """The CLI on the regressor: the session's backend, and a second one where its virtualenv exists."""
    other = _other_backend()
    backends = [SESSION_BACKEND] + ([other[0]] if other else [])
    python = [f"--python={SESSION_BACKEND}={sys.executable}"] + ([f"--python={other[0]}={other[1]}"] if other else [])
    out = tmp_path_factory.mktemp("regressor") / "check.json"
    completed = run_harness("check", str(saved / "lstm.keras"), "--input", str(saved / "series.npy"),
                            "--backends", ",".join(backends), *python, "--json", str(out))
    return completed, json.loads(out.read_text()) if out.is_file() else None, backends


def test_sequential_lstm_regressor_every_layer_within_tolerance_exit_0(regressor_run):
    completed, result, backends = regressor_run
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert [layer["name"] for layer in result["layers"]] == ["lstm_a", "lstm_b", "head"]
    assert [layer["reference"] for layer in result["layers"]] == ["lstm", "lstm", "dense"]
    for layer in result["layers"]:
        own = layer["backends"][SESSION_BACKEND]
        assert layer["status"] == "pass" and 0 < own["own_ratio"] <= 1 and 0 < own["chained_ratio"] <= 1, layer
    assert result["safe_mode"] and result["passed"] and result["first_divergent"] is None
    assert "lstm_b" in completed.stdout and "PASS: every layer within tolerance" in completed.stdout


def test_cross_backend_the_regressor_agrees_on_two_backends(regressor_run):
    completed, result, backends = regressor_run
    if len(backends) < 2:
        pytest.skip(f"no nox virtualenv of {' or '.join(OTHER_BACKENDS)} under {ROOT / '.nox'}: only {SESSION_BACKEND} was "
                    "checked (the cross-backend comparison itself is tested on synthetic captures in test_check_verdicts.py)")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert result["versions"][backends[1]]["keras"] == result["versions"][backends[0]]["keras"]
    for layer in result["layers"]:
        assert set(layer["backends"]) == set(backends)
        assert layer["cross"] and all(pair["passed"] and pair["summed_tolerance_ratio"] <= 1 for pair in layer["cross"]), layer
    assert "and across them" in completed.stdout


@pytest.fixture(scope="module")
def mixed_run(saved, tmp_path_factory):
    """The Functional model checked on the session's backend, its inputs drawn from a seeded spec; the capture kept."""
    folder = tmp_path_factory.mktemp("mixed")
    result = check(saved / "mixed.keras", backends=[SESSION_BACKEND], input_spec=f"seed=3,batch={BATCH},time=7",
                   python=_here(), workdir=folder)
    return result, {row.name: row for row in result.layers}, folder


def test_gru_shared_lstm_two_inputs_two_outputs_nested_model_masks_every_call_judged(mixed_run):
    result, rows, folder = mixed_run
    assert set(rows) == {"shared", "shared#2", "gru", "inner", "inner/inner_dense", "embed", "bi", "bi/forward_simple_rnn",
                         "bi/backward_simple_rnn", "norm", "back", "per_step"}, sorted(rows)
    assert {name: row.reference for name, row in rows.items() if row.status == "pass"} == {
        "shared": "lstm", "shared#2": "lstm", "gru": "gru", "inner/inner_dense": "dense", "bi": "bidirectional",
        "bi/forward_simple_rnn": "simple_rnn", "bi/backward_simple_rnn": "simple_rnn", "back": "lstm",
        "per_step": "time_distributed_dense"}
    assert rows["inner"].status == "container"
    for row in rows.values():
        if row.status == "pass":
            entry = row.backends[SESSION_BACKEND]
            assert entry.own_ratio <= 1 and entry.chained_ratio <= 1, (row.name, row.reasons)
    assert result.passed and result.exit_code == 0
    # The chain: the GRU is fed the shared LSTM's call on a, the Dense inside the nested model the GRU's output; the
    # shared LSTM's call on the ids (the one with a mask: the calls are named in the order they ran) restarts after
    # the Embedding, the LSTM reading backwards after the layer normalization, neither having a reference.
    on_ids = [name for name in ("shared", "shared#2") if _call(folder, name)["mask"] is not None]
    assert len(on_ids) == 1
    restarted = {name for name, row in rows.items() if row.status == "pass" and row.backends[SESSION_BACKEND].restarted}
    assert restarted == {on_ids[0], "back"}
    # The ids' mask reached every recurrent layer after the Embedding; the GRU's state was judged too.
    with np.load(folder / f"{SESSION_BACKEND}.npz") as arrays:
        masks = {name: arrays[_call(folder, name)["mask"]] for name in (on_ids[0], "bi", "back")}
        ids = arrays["input/ids"]
    for name, mask in masks.items():
        assert np.array_equal(mask, ids != 0), name
    assert len(_call(folder, "gru")["outputs"]) == 2  # the output and the state h, each compared with the reference


def test_layers_without_reference_are_said_so_and_the_rest_judged(mixed_run):
    result, rows, folder = mixed_run
    assert {name: row.status for name, row in rows.items() if row.status not in ("pass", "container")} == {
        "embed": "no reference", "norm": "no reference"}
    assert rows["norm"].reference == "no reference: the reference has no LayerNormalization"
    assert rows["embed"].reference == "no reference: the reference has no Embedding"
    assert result.passed and "2 without a reference, compared across backends only: embed, norm" in result.table()


def test_seeded_inputs_have_the_model_shapes_and_ids_within_the_embedding_vocabulary(mixed_run):
    result, rows, folder = mixed_run
    with np.load(folder / f"{SESSION_BACKEND}.npz") as arrays:
        a, ids = arrays["input/a"], arrays["input/ids"]
    assert a.shape == (BATCH, TIME, FEATURES) and a.dtype == np.float32
    # mask_zero: ids from 1, every other row left-padded with zeros
    assert ids.shape == (BATCH, 7) and ids.dtype == np.int32 and ids.max() < 11
    assert (ids[0] > 0).all() and ids[1, 0] == 0 and (ids[1, 1:] > 0).all() and (ids[2] > 0).all()
    assert result.inputs == f"drawn from --input-spec seed=3,batch={BATCH},time=7"


def test_a_fault_in_one_layer_is_localized_to_that_layer_with_finite_amplification(saved):
    # lstm_b computes with a recurrent kernel 1e-5 off what the file holds (8 float32 eps at 0.1): only lstm_b's own
    # comparison can fail; the head is right on what it was given, and wrong only chained from the model input.
    result = check(saved / "lstm.keras", saved / "series.npy", [SESSION_BACKEND], python=_here(),
                   fault=(SESSION_BACKEND, "lstm_b:weight1:1e-5"))
    rows = {row.name: row for row in result.layers}
    assert result.first_divergent == "lstm_b" and result.exit_code == 1
    assert [rows[name].status for name in ("lstm_a", "lstm_b", "head")] == ["pass", "fail", "fail"]
    lstm_a, lstm_b, head = (rows[name].backends[SESSION_BACKEND] for name in ("lstm_a", "lstm_b", "head"))
    assert lstm_b.own_ratio > 1 and head.own_ratio <= 1 < head.chained_ratio
    assert "vs the reference of its own inputs" in rows["lstm_b"].reasons[0]
    assert "vs the reference chained from the model input" in rows["head"].reasons[0]
    for entry in (lstm_a, lstm_b, head):
        assert np.isfinite(entry.amplification)
    # lstm_a's and lstm_b's inputs carry less error than the floor (the float32 atol): the floor applies; the head's
    # input carries lstm_b's error, which the head passes on (amplification about 1, no floor).
    assert lstm_a.floor_applied and lstm_b.floor_applied and not head.floor_applied
    assert lstm_b.amplification > 1 and 0.05 < head.amplification < 20
    assert "first divergent layer: lstm_b (LSTM)" in result.table()


def _call(folder: Path, name: str) -> dict:
    manifest = json.loads((folder / f"{SESSION_BACKEND}.json").read_text())
    return next(call for call in manifest["calls"] if call["name"] == name)


def test_the_model_file_declares_its_inputs_and_python_code_as_keras_saved_them(saved):
    """What check reads from config.json before any backend starts (harness.case.model_file), on files Keras wrote."""
    from harness.case.model_file import declared_inputs, python_code_layers, read_config
    from harness.case.model_inputs import ModelInput

    series = ModelInput("series", (None, TIME, FEATURES), "float32")
    assert declared_inputs(read_config(saved / "lstm.keras")) == [series]
    assert declared_inputs(read_config(saved / "mixed.keras")) == [ModelInput("a", (None, TIME, FEATURES), "float32"),
                                                                   ModelInput("ids", (None, None), "int32")]
    assert python_code_layers(read_config(saved / "lambda.keras")) == ["sqrt"]
    assert python_code_layers(read_config(saved / "mixed.keras")) == []


def test_safe_mode_refuses_a_lambda_in_one_line_exit_2(saved):
    completed = run_harness("check", str(saved / "lambda.keras"), "--backends", SESSION_BACKEND, f"--python={SESSION_BACKEND}={sys.executable}")
    assert completed.returncode == 2
    line = _one_line(completed.stderr)
    assert "safe mode refuses" in line and "--unsafe" in line and "lambda.keras" in line


def test_unsafe_loads_the_lambda_and_its_nan_is_the_first_divergence_exit_1(saved):
    # The square root of normal draws: NaN wherever the input is negative. The Lambda has no reference, yet its NaN fails it.
    completed = run_harness("check", str(saved / "lambda.keras"), "--input", str(saved / "series.npz"), "--unsafe",
                            "--backends", SESSION_BACKEND, f"--python={SESSION_BACKEND}={sys.executable}")
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "UNSAFE: safe mode off (--unsafe)" in completed.stdout
    assert "first divergent layer: sqrt (Lambda)" in completed.stdout and "non-finite output value(s)" in completed.stdout


def test_inputs_that_do_not_fit_the_model_exit_2_in_one_line(saved, tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((BATCH, TIME, FEATURES + 1), dtype=np.float32))
    completed = run_harness("check", str(saved / "lstm.keras"), "--input", str(wrong), "--backends", SESSION_BACKEND,
                            f"--python={SESSION_BACKEND}={sys.executable}")
    assert completed.returncode == 2
    line = _one_line(completed.stderr)
    assert "input series has shape (3, 5, 5); the model takes series (None, 5, 4) float32" in line
    wrong_names = tmp_path / "wrong.npz"
    np.savez(wrong_names, a=np.zeros((BATCH, TIME, FEATURES), dtype=np.float32), idz=np.ones((BATCH, 7), dtype=np.int32))
    completed = run_harness("check", str(saved / "mixed.keras"), "--input", str(wrong_names))
    assert completed.returncode == 2
    assert ("the input arrays' names do not fit: lacks ids; has unknown idz; the model takes a (None, 5, 4) float32, "
            "ids (None, None) int32") in _one_line(completed.stderr)
