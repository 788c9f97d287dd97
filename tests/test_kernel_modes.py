"""The kernel axis (``kernel = as_shipped | generic | fused_on_cpu``) and the layer forms
(``layer_form = layer | rnn_cell | stacked_cells``).

On CPU (what CI has) Keras never runs its fused LSTM path, so its fused-path code (the weight re-layout
into the cuDNN format, go_backwards, initial states, Bidirectional's single fused call) would go
untested. ``fused_on_cpu`` opens Keras's GPU check and gives the kernel a CPU stand-in: JAX's
``jax.experimental.rnn.lstm_ref`` and PyTorch's ``torch._VF.lstm`` compute; TensorFlow's ``CudnnRNNV3``
has no CPU kernel, so a recorder checks that the fused path reaches it. The tests pin which path each
backend really took, that the numbers agree with the reference, and, by injecting the classic cuDNN
layout bug (the second bias not zeroed) into Keras's fused code, that the axis catches a bug the
as-shipped CPU run cannot see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_harness
from harness.case.schema import CaseError, builtin_cases, fused_path_possible, load_case_file

CASES = """
[[case]]
name = "plain_back_state"
dtype = "float32"
batch = 3
time = 7
features = 5
initial_state = "random"
layers = [{ type = "lstm", units = 6, go_backwards = true, return_sequences = true, return_state = true }]

[[case]]
name = "bidi"
dtype = "float32"
batch = 3
time = 6
features = 4
layers = [{ type = "bidirectional", units = 5, return_sequences = true }]

[[case]]
name = "right_padded"
dtype = "float32"
batch = 4
time = 7
features = 3
mask = "right_padded"
layers = [{ type = "lstm", units = 5, return_sequences = true }]

[[case]]
name = "unrolled"
dtype = "float32"
batch = 3
time = 6
features = 4
layers = [{ type = "lstm", units = 5, unroll = true }]

[[case]]
name = "cell_holes"
dtype = "float32"
batch = 4
time = 7
features = 3
mask = "holes"
layer_form = "rnn_cell"
layers = [{ type = "lstm", units = 5, return_sequences = true, go_backwards = true }]

[[case]]
name = "stacked"
dtype = "float32"
batch = 2
time = 8
features = 3
mask = "left_padded"
layer_form = "stacked_cells"
layers = [{ type = "lstm", units = 7, return_sequences = true }, { type = "lstm", units = 5 }, { type = "dense", units = 4 }]

[[variant]]
name = "{name}_fused_cpu"
where = "fused_path_possible"
set = { kernel = "fused_on_cpu" }
"""


def _write(tmp_path, text: str):
    path = tmp_path / "cases.toml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------ the case data, without Keras


def test_the_variant_adds_a_fused_case_exactly_where_the_fused_path_could_engage(tmp_path):
    cases = {case.name: case for case in load_case_file(_write(tmp_path, CASES))}
    fused = sorted(name for name, case in cases.items() if case.kernel == "fused_on_cpu")
    # not the unrolled LSTM (cuDNN cannot unroll), not the cell forms (an LSTMCell has no fused path)
    assert fused == ["bidi_fused_cpu", "plain_back_state_fused_cpu", "right_padded_fused_cpu"]
    variant = cases["plain_back_state_fused_cpu"]
    assert variant.definition["kernel"] == "fused_on_cpu"  # recorded, so a resumed run sees the difference
    assert variant.layers == cases["plain_back_state"].layers and variant.initial_state == "random"


def test_every_builtin_case_that_could_take_the_fused_path_has_its_fused_variant():
    cases = {case.name: case for case in builtin_cases()}
    for name, case in cases.items():
        if case.kernel == "as_shipped" and fused_path_possible(case):
            assert cases[f"{name}_fused_cpu"].kernel == "fused_on_cpu", name
    assert sum(case.kernel == "fused_on_cpu" for case in cases.values()) >= 100
    assert {case.layer_form for case in cases.values()} == {"layer", "rnn_cell", "stacked_cells"}
    assert {case.kernel for case in cases.values()} == {"as_shipped", "generic", "fused_on_cpu"}


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ('layer_form = "rnn_cell"', 'layer_form = "cell"', "field 'layer_form' is 'cell'; accepted: layer, rnn_cell, stacked_cells"),
        ('name = "unrolled"', 'name = "unrolled"\nkernel = "fused_on_cpu"', "case 'unrolled': field 'kernel' is 'fused_on_cpu', but no recurrent layer of the case can take the fused path (only lstm has one here"),
        ('name = "cell_holes"', 'name = "cell_holes"\nkernel = "generic"', "field 'kernel' is 'generic', but layer_form 'rnn_cell' always runs"),
        ('units = 5, return_sequences = true, go_backwards = true }', 'units = 5, use_cudnn = false }',
         "field 'layer_form' is 'rnn_cell', whose recurrent cells have no use_cudnn option"),
        ('{ type = "lstm", units = 5 }, { type = "dense"', '{ type = "lstm", units = 5, go_backwards = true }, { type = "dense"',
         "field 'layer_form' is 'stacked_cells': the stacked recurrent layers must share"),
        ('where = "fused_path_possible"', 'where = "sometimes"', "variant '{name}_fused_cpu': field 'where' is 'sometimes'; accepted: always"),
    ],
)
def test_a_bad_kernel_or_layer_form_is_one_line_naming_the_field(tmp_path, old, new, expected):
    assert old in CASES
    with pytest.raises(CaseError) as raised:
        load_case_file(_write(tmp_path, CASES.replace(old, new, 1)))
    assert expected in str(raised.value) and "\n" not in str(raised.value)


# ------------------------------------------------------------------ on the session's backend


@pytest.fixture(scope="module")
def kernel_run(tmp_path_factory):
    backend = os.environ.get("KERAS_BACKEND")
    if backend is None:
        pytest.skip("KERAS_BACKEND is not set: run through 'nox -s tests'")
    folder = tmp_path_factory.mktemp("kernels")
    case_file = _write(folder, CASES)
    completed = run_harness("run", "--backend", backend, "--case-file", str(case_file), "--out", str(folder / "out"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    record = json.loads((folder / "out" / f"{backend}.json").read_text())
    return backend, {case["case"]: case for case in record["cases"]}, folder / "out"


def _paths(case: dict) -> set[str]:
    return {entry["kernel_path"] for entry in case["apis"].values()}


@pytest.mark.backend
def test_every_form_and_kernel_mode_agrees_with_the_reference(kernel_run):
    """Except what JAX's fused path is known to do: a go_backwards sequence comes back in input order."""
    backend, cases, folder = kernel_run
    verdicts = json.loads((folder / f"{backend}.verdicts.json").read_text())["cases"]
    assert len(cases) == len(verdicts) == 9
    for name, case in cases.items():
        assert case["config"]["kernel"] in ("as_shipped", "fused_on_cpu") and case["config"]["layer_form"]
        if backend == "jax" and name == "plain_back_state_fused_cpu":
            assert case["status"] == "fail" and verdicts[name]["verdict"] == "known"
            assert verdicts[name]["explained_by"] == ["jax_fused_go_backwards_sequence_in_input_order"]
            continue
        assert case["status"] == "pass", (name, case["problems"], case.get("error"))


@pytest.mark.backend
def test_the_fused_path_runs_through_the_cpu_stand_in(kernel_run):
    backend, cases, _ = kernel_run
    for name in ("plain_back_state_fused_cpu", "bidi_fused_cpu", "right_padded_fused_cpu"):
        for api, entry in cases[name]["apis"].items():
            assert entry["stand_in"]["gate"] and entry["stand_in"]["numeric"] is (backend != "tensorflow"), (name, api)
    # Calls per build (a subclassed model is called once more, to create its variables).
    calls = {name: {entry["stand_in"]["stand_in_calls"] for entry in cases[name]["apis"].values()}
             for name in ("plain_back_state_fused_cpu", "bidi_fused_cpu", "right_padded_fused_cpu")}
    if backend == "tensorflow":
        # CudnnRNNV3 reached (the recorder declines, Keras falls back): once per LSTM, twice for a
        # Bidirectional (TensorFlow has no fused bidirectional call), and with a right-padded mask too.
        assert _paths(cases["plain_back_state_fused_cpu"]) == {"fused_failed->generic"}
        assert min(calls["plain_back_state_fused_cpu"]) >= 1 and min(calls["right_padded_fused_cpu"]) >= 1
        assert min(calls["bidi_fused_cpu"]) >= 2 and all(count % 2 == 0 for count in calls["bidi_fused_cpu"])
    else:
        assert _paths(cases["plain_back_state_fused_cpu"]) == {"fused"}
        assert _paths(cases["bidi_fused_cpu"]) == {"bidirectional_fused"}  # one fused call for both directions
        # Keras's JAX and PyTorch fused entry points decline any mask, before the kernel.
        assert _paths(cases["right_padded_fused_cpu"]) == {"fused_declined->generic"}
        assert min(calls["plain_back_state_fused_cpu"]) >= 1 and min(calls["bidi_fused_cpu"]) >= 1
        assert calls["right_padded_fused_cpu"] == {0}
    # Without the mode nothing reaches a kernel on CPU.
    assert all("stand_in" not in entry for entry in cases["plain_back_state"]["apis"].values())
    assert "fused" not in _paths(cases["plain_back_state"])


@pytest.mark.backend
def test_cell_forms_always_take_the_generic_loop(kernel_run):
    _, cases, _ = kernel_run
    assert _paths(cases["cell_holes"]) == {"generic"}
    assert _paths(cases["stacked"]) == {"generic"}
    assert set(cases["stacked"]["apis"]) == {"sequential", "functional", "subclassed"}


@pytest.mark.backend
def test_the_report_summarises_the_fused_cases_beside_their_twins(kernel_run):
    from harness.reports.markdown import render_markdown
    from harness.reports.model import build_report

    backend, _, folder = kernel_run
    report = build_report(folder)
    (fused,) = report.fused_on_cpu
    verdicts = (("known", 1), ("pass", 2)) if backend == "jax" else (("pass", 3),)
    assert (fused.backend, fused.cases, fused.verdicts) == (backend, 3, verdicts)
    assert fused.reached_kernel == 3 if backend == "tensorflow" else fused.reached_kernel == fused.ran_fused == 2
    assert fused.worst_fused is not None and fused.worst_twin is not None and fused.worst_fused < 1e-5
    assert "### Fused path on CPU" in render_markdown(report)


INJECTION_SCRIPT = r'''
import importlib, json, sys
import numpy as np
from harness.execute.backends import activate, with_gate_opened, aliases, patch_attributes
backend = sys.argv[1]
activate(backend)
from harness.case.schema import load_case_file
from harness.case.tolerances import load_tolerances
from harness.execute.measure import run_case

cases = {case.name: case for case in load_case_file(__import__("pathlib").Path(sys.argv[2]))}
tolerances = load_tolerances()
rnn = importlib.import_module(f"keras.src.backend.{backend}.rnn")
if backend == "jax":
    # The cuDNN layout has two biases; Keras zeroes the second. The bug: pass the bias twice.
    broken = with_gate_opened(rnn.lstm, "b_hh = jnp.zeros_like(b_ih)", "b_hh = b_ih")
    modules = ("keras.src.backend", "keras.src.backend.jax", "keras.src.backend.jax.rnn")
    patches = [(module, name, broken) for module, name in aliases(rnn.lstm, modules)]
else:
    original = rnn.prepare_lstm_params
    def broken(kernel, recurrent_kernel, bias, device):
        weight_ih, weight_hh, bias_ih, bias_hh = original(kernel, recurrent_kernel, bias, device)
        return weight_ih, weight_hh, bias_ih, bias_ih
    patches = [(rnn, "prepare_lstm_params", broken)]
statuses = {}
with patch_attributes(patches):
    for name in ("plain_back_state", "plain_back_state_fused_cpu"):
        statuses[name] = run_case(cases[name], 0, tolerances, {})["status"]
print(json.dumps(statuses))
'''


@pytest.mark.backend
def test_a_bug_in_kerass_fused_path_is_caught_by_the_fused_axis_only(tmp_path):
    backend = os.environ.get("KERAS_BACKEND")
    if backend not in ("jax", "torch"):
        pytest.skip("TensorFlow's fused kernel has no CPU stand-in: its fused path is checked structurally")
    completed = subprocess.run([sys.executable, "-c", INJECTION_SCRIPT, backend, str(_write(tmp_path, CASES))], cwd=ROOT,
                               capture_output=True, text=True, timeout=600, env={**os.environ, "KERAS_BACKEND": backend})
    assert completed.returncode == 0, completed.stderr[-3000:]
    statuses = json.loads(completed.stdout.strip().splitlines()[-1])
    # The as-shipped CPU run never enters the fused code, so it cannot see the bug; the fused axis does.
    assert statuses == {"plain_back_state": "pass", "plain_back_state_fused_cpu": "fail"}


def test_fused_on_cpu_is_refused_on_a_gpu(monkeypatch):
    """On a GPU the stand-in would replace the real kernel: the case is refused, its as-shipped twin measures it."""
    from harness.case.schema import parse_case
    from harness.execute import measure
    from harness.execute.backends import KernelModeRefused

    case = parse_case({"name": "f", "dtype": "float32", "batch": 2, "time": 3, "features": 4, "kernel": "fused_on_cpu",
                       "layers": [{"type": "lstm", "units": 5}]}, "test")
    assert measure.refused_by_design(case, KernelModeRefused("on a GPU"))
    assert not measure.refused_by_design(case, RuntimeError("cudnn failed"))  # only use_cudnn=True makes a cuDNN error a refusal
    pytest.importorskip("keras")
    import types

    from harness.execute import backends

    monkeypatch.setattr(backends, "backend_module", lambda name: types.SimpleNamespace(device_class=lambda: "gpu_tf32"))
    with pytest.raises(KernelModeRefused, match="on a GPU the as-shipped twin"):
        with backends.kernel_mode("fused_on_cpu"):
            pass


def test_only_as_shipped_cases_are_saved_for_the_cross_backend_load():
    """A kernel mode is how the harness runs a model, not part of the .keras file: a loaded fused_on_cpu twin
    would run as shipped (measured: JAX then judged lstm_float64_call_fused_cpu by the fused path's claims)."""
    from harness.studies.serialization import serializable

    cases = {case.name: case for case in builtin_cases()}
    assert serializable(cases["lstm_float64_call"]) and not serializable(cases["lstm_float64_call_fused_cpu"])
    assert not serializable(cases["kernel_generic_backoff_initnone"])
