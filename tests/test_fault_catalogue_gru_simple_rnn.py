"""The GRU and SimpleRNN faults (harness.execute.faults: those with a ``cell_class``) through the fault study, on the
session's backend, judged by the harness's own verdicts under the current tolerance table.

The cases are defined here (harness/case/cases.toml holds the built-in matrix; the catalogue names its GRU and SimpleRNN
cases), with batch, time, features and units all different and the harness's seeded weights:

- a GRU with reset_after=False (implementation 2) and a masked GRU with reset_after=True (implementation 1): Keras's
  generic loop over GRUCell on every backend, where every GRU fault must be detected;
- a SimpleRNN: the generic loop over SimpleRNNCell on every backend, where every SimpleRNN fault must be detected;
- an unmasked GRU with reset_after=True (implementation 1, as the built-in gru_layer_implementation1): TensorFlow runs
  GRUCell (its backend.gru declines on CPU), JAX and PyTorch run their backend's own GRU loop, which no GRUCell patch
  reaches: there the study must report the fault as not applied (its patched function was never called), not as
  detected or undetected.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from conftest import ROOT, SESSION_BACKEND

GENERIC_GRU_CASES: list[dict[str, Any]] = [
    {"name": "fault_gru_resetafterfalse", "description": "GRU reset_after=False, implementation 2", "dtype": "float32",
     "batch": 3, "time": 7, "features": 5, "layers": [{"type": "gru", "units": 6, "return_sequences": True, "reset_after": False}]},
    {"name": "fault_gru_implementation1_masked", "description": "GRU reset_after=True, implementation 1, right-padded mask",
     "dtype": "float32", "batch": 4, "time": 6, "features": 3, "mask": "right_padded",
     "layers": [{"type": "gru", "units": 5, "return_sequences": True, "implementation": 1}]},
]
UNMASKED_GRU_CASE: dict[str, Any] = {
    "name": "fault_gru_implementation1_unmasked", "description": "GRU reset_after=True, implementation 1, no mask",
    "dtype": "float32", "batch": 3, "time": 7, "features": 5,
    "layers": [{"type": "gru", "units": 6, "return_sequences": True, "implementation": 1}]}
SIMPLE_RNN_CASE: dict[str, Any] = {
    "name": "fault_simple_rnn", "description": "SimpleRNN returning the sequence", "dtype": "float32",
    "batch": 2, "time": 7, "features": 5, "layers": [{"type": "simple_rnn", "units": 3, "return_sequences": True}]}
CASES = GENERIC_GRU_CASES + [UNMASKED_GRU_CASE, SIMPLE_RNN_CASE]

GRU_FAULTS = ("gru_update_reset_gates_swapped", "gru_reset_gate_other_side", "gru_candidate_recurrent_bias_dropped",
              "gru_update_gate_bias_offset")
SIMPLE_RNN_FAULTS = ("simple_rnn_recurrent_kernel_transposed", "simple_rnn_bias_dropped", "simple_rnn_bias_offset")
# The built-in cases the catalogue names .
BUILTIN_CASES = {
    "gru_update_reset_gates_swapped": ("gru_layer_resetafterfalse",),
    "gru_reset_gate_other_side": ("gru_layer_resetafterfalse",),
    "gru_candidate_recurrent_bias_dropped": ("gru_mask_rightpadded_backoff_unrolloff",),
    "gru_update_gate_bias_offset": ("gru_layer_resetafterfalse",),
    "simple_rnn_recurrent_kernel_transposed": ("simplernn_layer",),
    "simple_rnn_bias_dropped": ("simplernn_layer",),
    "simple_rnn_bias_offset": ("simplernn_layer",),
}
# The test cases each fault is run on here: every GRU fault on the generic-loop GRUs whose configuration has what it
# changes (the candidate's recurrent bias exists only with reset_after=True), and on the unmasked reset_after=True GRU.
TEST_CASES = {
    "gru_update_reset_gates_swapped": ("fault_gru_resetafterfalse", "fault_gru_implementation1_masked"),
    "gru_reset_gate_other_side": ("fault_gru_resetafterfalse", "fault_gru_implementation1_masked"),
    "gru_candidate_recurrent_bias_dropped": ("fault_gru_implementation1_masked",),
    "gru_update_gate_bias_offset": ("fault_gru_resetafterfalse", "fault_gru_implementation1_masked"),
    "simple_rnn_recurrent_kernel_transposed": ("fault_simple_rnn",),
    "simple_rnn_bias_dropped": ("fault_simple_rnn",),
    "simple_rnn_bias_offset": ("fault_simple_rnn",),
}
# Where a GRUCell patch computes the outputs of the unmasked reset_after=True GRU (measured: GRUCell.call's counter).
GRU_CELL_RUNS_UNMASKED = {"tensorflow": True, "jax": False, "torch": False}

SCRIPT = r"""
import contextlib, dataclasses, json, sys
from pathlib import Path
from harness.execute.backends import activate

backend = activate(sys.argv[1])
from harness.case.schema import parse_case
from harness.execute import faults
from harness.studies import fault_study

entries, test_cases, unmasked = json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
cases = [parse_case(entry, "test") for entry in entries]
# Every GRU fault also on the unmasked reset_after=True GRU, as a fault of its own (the study judges a fault by all of
# its cases: one not applied would hide the others' verdicts).
catalogue = {name: dataclasses.replace(faults.FAULTS[name], cases=tuple(names)) for name, names in test_cases.items()}
catalogue |= {f"{name}@unmasked": dataclasses.replace(faults.FAULTS[name], cases=(unmasked,))
              for name in test_cases if faults.FAULTS[name].cell_class == "GRUCell"}
original_injected = faults.injected
current = {"fault": None}

@contextlib.contextmanager
def named_injected(name, magnitude=faults.DEFAULT_MAGNITUDE):
    current["fault"] = name
    try:
        with original_injected(name.split("@")[0], magnitude) as injection:
            yield injection
    finally:
        current["fault"] = None

faults.injected = named_injected
faults.FAULTS.update({name: fault for name, fault in catalogue.items() if "@" in name})
original_run_case = fault_study.run_case
ratios = {}

def measured_run_case(case, *args, **kwargs):
    result = original_run_case(case, *args, **kwargs)
    if current["fault"] is not None:
        worst = max((item.get("tolerance_ratio") or 0.0 for build in (result.get("apis") or {}).values()
                     for item in (build.get("items") or {}).values()), default=None)
        ratios[f"{current['fault']}/{case.name}"] = worst
    return result

fault_study.run_case = measured_run_case
record = fault_study.run_fault_study(cases, backend, Path(sys.argv[5]), 20261124, catalogue=catalogue, sweep_cases={},
                                     gradient_faults={}, optimizer_faults={})
print(json.dumps({"ratios": ratios, "exit_code": fault_study.exit_code(record), "summary": fault_study.summary(record)}))
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the script's report: worst tolerance ratio per faulted run, exit code, summary; the study's record), made once."""
    if SESSION_BACKEND is None:
        pytest.skip("KERAS_BACKEND is not set: run through 'nox -s tests'")
    return _run_study(SESSION_BACKEND, tmp_path_factory.mktemp("gru_simple_rnn_faults"))


def _run_study(backend: str, tmp_path) -> tuple[dict[str, Any], dict[str, Any]]:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, backend, json.dumps(CASES), json.dumps(TEST_CASES), UNMASKED_GRU_CASE["name"], str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    record = json.loads((tmp_path / f"{backend}.faults.json").read_text())
    return report, record


def test_the_sizes_differ_in_every_case():
    for entry in CASES:
        sizes = [entry["batch"], entry["time"], entry["features"], entry["layers"][0]["units"]]
        assert len(set(sizes)) == len(sizes), entry["name"]


def test_the_catalogue_holds_the_gru_and_simple_rnn_faults_on_their_cells_and_cases():
    from harness.execute.faults import FAULTS
    from harness.execute.kinds import KERAS_CELLS

    cells = {cell.cell for cell in KERAS_CELLS.values()}
    cell_faults = {name: fault for name, fault in FAULTS.items() if fault.cell_class is not None}
    assert set(cell_faults) == set(GRU_FAULTS) | set(SIMPLE_RNN_FAULTS)
    for name, fault in cell_faults.items():
        assert fault.cell_class in cells and fault.cell_attributes is not None, name
        assert fault.cases == BUILTIN_CASES[name], name
        assert fault.gates is None and fault.weights is None and fault.layer_call is None, name  # no LSTM patch
    assert {FAULTS[name].cell_class for name in GRU_FAULTS} == {"GRUCell"}
    assert {FAULTS[name].cell_class for name in SIMPLE_RNN_FAULTS} == {"SimpleRNNCell"}
    # The existing LSTM faults patch no other cell.
    assert all(fault.cell_class is None for name, fault in FAULTS.items() if name not in cell_faults)


@pytest.mark.backend
def test_patches_name_the_cell_and_compute_the_generic_loop(session_backend):
    from harness.execute import faults

    for name in GRU_FAULTS + SIMPLE_RNN_FAULTS:
        patches = faults.patches_of(name)
        assert [(item.label, item.computes) for item in patches] == [(f"{faults.FAULTS[name].cell_class}.call", faults.GENERIC_LOOP)]


@pytest.mark.backend
def test_the_cell_attributes_are_restored_after_each_faulty_call(session_backend):
    import keras
    import numpy as np

    from harness.execute import faults

    rng = np.random.default_rng(3)
    layer = keras.layers.GRU(4, reset_after=True, return_sequences=True)
    layer.build((2, 3, 5))
    layer.set_weights([rng.normal(scale=0.5, size=(5, 12)), rng.normal(scale=0.5, size=(4, 12)), rng.normal(scale=0.5, size=(2, 12))])
    x = rng.standard_normal((2, 3, 5)).astype("float32")
    mask = np.array([[True, True, True], [True, True, False]])
    clean = keras.ops.convert_to_numpy(layer(x, mask=mask))
    with faults.injected("gru_reset_gate_other_side") as injection:
        faulty = keras.ops.convert_to_numpy(layer(x, mask=mask))
    assert injection.calls["GRUCell.call"] > 0 and not injection.errors
    assert layer.cell.reset_after is True and tuple(layer.cell.bias.shape) == (2, 12)
    assert np.max(np.abs(faulty - clean)) > 1e-2
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, mask=mask)), clean)


@pytest.mark.backend
def test_a_fault_refuses_a_cell_without_what_it_drops(session_backend):
    import keras
    import numpy as np

    from harness.execute import faults

    layer = keras.layers.GRU(4, reset_after=False)
    x = np.random.default_rng(4).standard_normal((2, 3, 5)).astype("float32")
    with pytest.raises(faults.FaultNotApplicable, match="reset_after=True"):
        with faults.injected("gru_candidate_recurrent_bias_dropped") as injection:
            layer(x)
    assert injection.errors and "FaultNotApplicable" in injection.errors[0]
    layer = keras.layers.SimpleRNN(4, use_bias=False)
    with pytest.raises(faults.FaultNotApplicable, match="no bias to drop"):
        with faults.injected("simple_rnn_bias_dropped") as injection:
            layer(x)
    assert injection.calls["SimpleRNNCell.call"] > 0 and "FaultNotApplicable" in injection.errors[0]


@pytest.mark.backend
def test_every_gru_and_simple_rnn_fault_is_detected_by_the_fault_study(session_backend, study):
    report, record = study
    # No false alarm: every unmodified case passes or is known after the claims.
    assert set(record["clean"]) == {entry["name"] for entry in CASES}
    assert all(entry["verdict"] in ("pass", "known") and not entry["false_alarm"] for entry in record["clean"].values()), record["clean"]
    for name, case_names in TEST_CASES.items():
        entry = record["faults"][name]
        assert entry["status"] == "detected" and entry["flagged_cases"] == list(case_names), (name, entry)
        cell_class = "GRUCell" if name in GRU_FAULTS else "SimpleRNNCell"
        for case_name in case_names:
            run = entry["runs"][case_name]
            assert run["verdict"] == "detected" and run["clean_verdict"] == "pass" and run["mismatched"], (name, case_name, run)
            assert run["patch_calls"][f"{cell_class}.call"] > 0
            assert all(path.endswith("generic") for path in run["kernel_paths"].values()), run["kernel_paths"]
            assert report["ratios"][f"{name}/{case_name}"] > 1.0, report["ratios"]
    print(json.dumps(report["ratios"], indent=1))


@pytest.mark.backend
def test_gru_faults_on_the_unmasked_reset_after_gru_are_detected_only_where_gru_cell_runs(session_backend, study):
    report, record = study
    for name in GRU_FAULTS:
        entry = record["faults"][f"{name}@unmasked"]
        run = entry["runs"][UNMASKED_GRU_CASE["name"]]
        if GRU_CELL_RUNS_UNMASKED[session_backend]:
            assert entry["status"] == "detected" and run["verdict"] == "detected", (name, run)
            assert run["patch_calls"]["GRUCell.call"] > 0
        else:  # not applicable: the backend's own GRU loop computed the outputs, the patched cell never ran
            assert entry["status"] == "error" and run["verdict"] == "error", (name, run)
            assert run["patch_calls"] == {"GRUCell.call": 0} and run["status"] == "pass"
            assert run["reason"] == "the patched function (GRUCell.call) was never called during the case", run["reason"]
    assert report["exit_code"] == (0 if GRU_CELL_RUNS_UNMASKED[session_backend] else 2), report["summary"]


# --- each fault computes the bug it names ----------------------------------------------------------------------------
# The faulted Keras layer equals the float64 reference (reference.gru, reference.simple_rnn) run on the weights that
# express the bug, and differs from the reference on the true weights. The GRUs take the generic loop on every backend
# (a mask, or reset_after=False).
BUG_BATCH, BUG_TIME, BUG_FEATURES, BUG_UNITS = 2, 5, 4, 3
BUG_MAGNITUDE = 0.3  # the offsets, large enough to tell the bug from the correct layer at a float32 tolerance
GRU_CONFIGURATIONS = {
    "reset_after_masked_implementation1": {"reset_after": True, "implementation": 1, "use_bias": True},
    "reset_after_masked_implementation2": {"reset_after": True, "implementation": 2, "use_bias": True},
    "reset_before_implementation2": {"reset_after": False, "implementation": 2, "use_bias": True},
    "reset_before_implementation1_no_bias": {"reset_after": False, "implementation": 1, "use_bias": False},
}


def _swapped_update_reset(array, units):
    update, reset, candidate = (array[..., n * units:(n + 1) * units] for n in range(3))
    return np.concatenate([reset, update, candidate], axis=-1)


def _gru_bug_weights(name, kernel, recurrent, bias, reset_after, units):
    """(kernel, recurrent kernel, bias, reset_after) of the correct-layer reference that computes fault ``name``'s bug."""
    if name == "gru_update_reset_gates_swapped":
        return (_swapped_update_reset(kernel, units), _swapped_update_reset(recurrent, units),
                None if bias is None else _swapped_update_reset(bias, units), reset_after)
    if name == "gru_reset_gate_other_side":
        if bias is None:
            return kernel, recurrent, None, not reset_after
        return kernel, recurrent, (bias[0] + bias[1] if reset_after else np.stack([bias, np.zeros_like(bias)])), not reset_after
    if name == "gru_candidate_recurrent_bias_dropped":
        dropped = bias.copy()
        dropped[1, 2 * units:] = 0.0
        return kernel, recurrent, dropped, reset_after
    if name == "gru_update_gate_bias_offset":
        shift = np.zeros(3 * units)
        shift[:units] = BUG_MAGNITUDE
        if reset_after:
            shift = np.stack([shift, np.zeros(3 * units)])
        return kernel, recurrent, shift if bias is None else bias + shift, reset_after
    raise AssertionError(name)


def _bug_inputs(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BUG_BATCH, BUG_TIME, BUG_FEATURES)).astype("float32")
    mask = np.array([[True] * BUG_TIME, [True] * (BUG_TIME - 2) + [False] * 2])
    return rng, x, mask


# Every GRU fault in every configuration, but the candidate's recurrent bias only where it exists (with reset_after=True
# and a bias; elsewhere the patch refuses: test_a_fault_refuses_a_cell_without_what_it_drops).
GRU_BUG_RUNS = [(name, configuration) for name in GRU_FAULTS for configuration, options in GRU_CONFIGURATIONS.items()
                if name != "gru_candidate_recurrent_bias_dropped" or (options["reset_after"] and options["use_bias"])]


@pytest.mark.backend
@pytest.mark.parametrize("name, configuration", GRU_BUG_RUNS)
def test_each_gru_fault_computes_the_bug_it_names(session_backend, name, configuration):
    import keras

    from harness.execute import faults
    from reference.gru import gru as reference_gru

    options = GRU_CONFIGURATIONS[configuration]
    reset_after, units = options["reset_after"], BUG_UNITS
    rng, x, mask = _bug_inputs(21)
    kernel = rng.normal(scale=0.6, size=(BUG_FEATURES, 3 * units))
    recurrent = rng.normal(scale=0.6, size=(units, 3 * units))
    bias = rng.normal(scale=0.4, size=(2, 3 * units) if reset_after else (3 * units,)) if options["use_bias"] else None
    layer = keras.layers.GRU(units, return_sequences=True, **options)
    layer.build((BUG_BATCH, BUG_TIME, BUG_FEATURES))
    layer.set_weights([kernel, recurrent] + ([] if bias is None else [bias]))
    layer_mask = mask if reset_after else None  # reset_after=False takes the generic loop unmasked too
    with faults.injected(name, BUG_MAGNITUDE) as injection:
        faulty = keras.ops.convert_to_numpy(layer(x, mask=layer_mask))
    assert injection.calls["GRUCell.call"] > 0 and not injection.errors, (injection.calls, injection.errors)
    bug_kernel, bug_recurrent, bug_bias, bug_reset_after = _gru_bug_weights(name, kernel, recurrent, bias, reset_after, units)
    expected_bug = reference_gru(x, bug_kernel, bug_recurrent, bug_bias, reset_after=bug_reset_after, mask=layer_mask,
                                 return_sequences=True)
    np.testing.assert_allclose(faulty, expected_bug, rtol=1e-5, atol=1e-5)
    correct = reference_gru(x, kernel, recurrent, bias, reset_after=reset_after, mask=layer_mask, return_sequences=True)
    assert np.max(np.abs(faulty - correct)) > 1e-2  # the bug is not the GRU


@pytest.mark.backend
@pytest.mark.parametrize("name, use_bias", [(name, use_bias) for name in SIMPLE_RNN_FAULTS for use_bias in (True, False)
                                            if name != "simple_rnn_bias_dropped" or use_bias])
def test_each_simple_rnn_fault_computes_the_bug_it_names(session_backend, name, use_bias):
    import keras

    from harness.execute import faults
    from reference.simple_rnn import simple_rnn as reference_simple_rnn

    rng, x, mask = _bug_inputs(22)
    kernel = rng.normal(scale=0.6, size=(BUG_FEATURES, BUG_UNITS))
    recurrent = rng.normal(scale=0.6, size=(BUG_UNITS, BUG_UNITS))
    bias = rng.normal(scale=0.4, size=(BUG_UNITS,)) if use_bias else None
    layer = keras.layers.SimpleRNN(BUG_UNITS, return_sequences=True, use_bias=use_bias)
    layer.build((BUG_BATCH, BUG_TIME, BUG_FEATURES))
    layer.set_weights([kernel, recurrent] + ([] if bias is None else [bias]))
    with faults.injected(name, BUG_MAGNITUDE) as injection:
        faulty = keras.ops.convert_to_numpy(layer(x, mask=mask))
    assert injection.calls["SimpleRNNCell.call"] > 0 and not injection.errors, (injection.calls, injection.errors)
    bug = {
        "simple_rnn_recurrent_kernel_transposed": (recurrent.T, bias),
        "simple_rnn_bias_dropped": (recurrent, None),
        "simple_rnn_bias_offset": (recurrent, (np.zeros(BUG_UNITS) if bias is None else bias) + BUG_MAGNITUDE),
    }[name]
    expected_bug = reference_simple_rnn(x, kernel, bug[0], bug[1], mask=mask, return_sequences=True)
    np.testing.assert_allclose(faulty, expected_bug, rtol=1e-5, atol=1e-5)
    correct = reference_simple_rnn(x, kernel, recurrent, bias, mask=mask, return_sequences=True)
    assert np.max(np.abs(faulty - correct)) > 1e-2  # the bug is not the SimpleRNN
