"""The verdict of ``keras-parity check`` (harness.verdicts.check) on synthetic captures: no Keras, no subprocess.

A capture here is what harness.execute.capture writes for a model x -> Dense "first" -> Dense "second", with
float32 outputs computed in NumPy (what a correct backend gives, up to rounding), so that each test can break one
thing (a NaN, one layer's output off, another backend's weights) and see exactly that reported.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from harness.case.tolerances import load_tolerances
from harness.verdicts.check import FAIL, NO_REFERENCE, PASS, Capture, judge, render_table

TOLERANCES = load_tolerances()
FLOAT32_ATOL = TOLERANCES["float32"]["outputs"].atol


def _dense_call(index: int, name: str, units: int, start: int) -> dict:
    return {"name": name, "layer": name, "parent": None, "class": "Dense", "container": False,
            "config": {"name": name, "units": units, "activation": "tanh", "use_bias": True},
            "compute_dtype": "float32", "start": start, "end": start + 1,
            "inputs": [f"call/{index}/in/0"], "initial_state": [], "mask": None, "outputs": [f"call/{index}/out/0"],
            "weights": [f"weight/{name}/0", f"weight/{name}/1"]}


def _capture(backend: str = "jax", seed: int = 0, fault: float = 0.0) -> Capture:
    """x (3, 4) -> first Dense(6, tanh) -> second Dense(2, tanh), the second's output off by ``fault``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    w1, b1 = (rng.standard_normal((4, 6)) * 0.5).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    w2, b2 = (rng.standard_normal((6, 2)) * 0.4).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    h = np.tanh(x @ w1 + b1).astype(np.float32)
    y = (np.tanh(h @ w2 + b2) + np.float32(fault)).astype(np.float32)
    arrays = {"input/x": x, "call/0/in/0": x, "call/0/out/0": h, "call/1/in/0": h, "call/1/out/0": y,
              "weight/first/0": w1, "weight/first/1": b1, "weight/second/0": w2, "weight/second/1": b2}
    manifest = {"backend": backend, "inputs": [{"name": "x", "shape": [None, 4], "dtype": "float32"}],
                "calls": [_dense_call(0, "first", 6, 0), _dense_call(1, "second", 2, 2)]}
    return Capture(backend, manifest, arrays)


def _rows(verdict):
    return {row.name: row for row in verdict.rows}


def test_a_correct_capture_passes_every_layer_with_finite_amplification_and_the_floor_stated():
    verdict = judge([_capture()], {"jax": TOLERANCES})
    rows = _rows(verdict)
    assert verdict.passed and verdict.first_divergent is None
    assert [row.status for row in verdict.rows] == [PASS, PASS]
    first, second = rows["first"].backends["jax"], rows["second"].backends["jax"]
    assert 0 < first.own_ratio <= 1 and 0 <= second.chained_ratio <= 1
    # The first layer's input is the model input (chained error 0): the floor, the float32 outputs row's atol, applies.
    assert first.input_error == 0.0 and first.floor_applied
    assert first.amplification == pytest.approx(first.chained_error / FLOAT32_ATOL)
    assert np.isfinite(second.amplification)
    assert verdict.floors == {"float32": FLOAT32_ATOL}
    assert f"float32: {FLOAT32_ATOL:g}" in render_table(verdict, ["jax"])


def test_one_layer_off_is_the_first_divergent_one_and_the_message_names_where():
    verdict = judge([_capture(fault=1e-4)], {"jax": TOLERANCES})
    rows = _rows(verdict)
    assert not verdict.passed and verdict.first_divergent == "second"
    assert rows["first"].status == PASS and rows["second"].status == FAIL
    reason = rows["second"].reasons[0]
    assert reason.startswith("jax: output vs the reference of its own inputs: 6 / 6 elements mismatch (100.0%)")
    assert "furthest beyond tolerance at (" in reason and "vs expected" in reason
    assert "first divergent layer: second (Dense)" in render_table(verdict, ["jax"])


def test_a_nan_output_fails_also_where_nothing_else_is_compared():
    capture = _capture()
    capture.arrays["call/1/out/0"] = capture.arrays["call/1/out/0"].copy()
    capture.arrays["call/1/out/0"][1, 0] = np.nan
    verdict = judge([capture], {"jax": TOLERANCES})
    row = _rows(verdict)["second"]
    assert row.status == FAIL and verdict.first_divergent == "second"
    assert row.backends["jax"].nonfinite == 1 and "1 non-finite output value(s)" in row.reasons[0]
    # A layer without a reference: only NaN can fail it on one backend, and it does.
    unknown = _capture()
    unknown.manifest["calls"][1]["class"] = "LayerNormalization"
    unknown.arrays["call/1/out/0"] = np.full((3, 2), np.inf, dtype=np.float32)
    verdict = judge([unknown], {"jax": TOLERANCES})
    assert _rows(verdict)["second"].status == FAIL and verdict.first_divergent == "second"


def test_a_layer_without_reference_is_said_so_and_restarts_the_chain():
    capture = _capture()
    capture.manifest["calls"][0]["class"] = "LayerNormalization"
    verdict = judge([capture], {"jax": TOLERANCES})
    rows = _rows(verdict)
    assert rows["first"].status == NO_REFERENCE and rows["first"].reference == "no reference: the reference has no LayerNormalization"
    assert rows["second"].status == PASS and rows["second"].backends["jax"].restarted
    assert verdict.passed
    assert "no reference: the reference has no LayerNormalization" in render_table(verdict, ["jax"])


def test_backends_are_compared_with_each_other_on_every_layer():
    agreeing = judge([_capture("jax"), _capture("torch")], {"jax": TOLERANCES, "torch": TOLERANCES})
    assert agreeing.passed and all(pair["passed"] for row in agreeing.rows for pair in row.cross)
    assert [pair["backends"] for pair in _rows(agreeing)["first"].cross] == [["jax", "torch"]]
    # Two layers without a reference, torch's first off by 3e-6: beyond the summed float32 tolerance of the two
    # sides (2e-6 + 2e-6 * |value|, values below 1), so the first layer fails across backends.
    torch = _capture("torch")
    torch.manifest["calls"][0]["class"] = torch.manifest["calls"][1]["class"] = "Conv1D"  # no reference on either side
    jax = copy.deepcopy(torch)
    jax.backend = "jax"
    torch.arrays["call/0/out/0"] = torch.arrays["call/0/out/0"] + np.float32(3e-6)
    verdict = judge([jax, torch], {"jax": TOLERANCES, "torch": TOLERANCES})
    rows = _rows(verdict)
    assert rows["first"].status == FAIL and verdict.first_divergent == "first"
    assert "jax and torch differ by" in rows["first"].reasons[0] and "their summed tolerance" in rows["first"].reasons[0]


def test_weights_or_inputs_that_differ_between_backends_are_problems():
    torch = _capture("torch")
    torch.arrays["weight/second/0"] = torch.arrays["weight/second/0"] * np.float32(1.0000001) + np.float32(1e-9)
    verdict = judge([_capture("jax"), torch], {"jax": TOLERANCES, "torch": TOLERANCES})
    assert not verdict.passed
    assert verdict.problems == ["weight/second/0 differs between jax and torch (the same file and inputs must give "
                                "bitwise the same weights)"]


def test_a_nan_carried_into_the_next_layer_fails_it_too_and_is_not_floored():
    capture = _capture()
    for key in ("call/0/out/0", "call/1/in/0"):
        capture.arrays[key] = capture.arrays[key].copy()
        capture.arrays[key][0, 2] = np.nan
    capture.arrays["call/1/out/0"] = capture.arrays["call/1/out/0"].copy()
    capture.arrays["call/1/out/0"][0, :] = np.nan
    verdict = judge([capture], {"jax": TOLERANCES})
    rows = _rows(verdict)
    assert verdict.first_divergent == "first" and rows["second"].status == FAIL
    second = rows["second"].backends["jax"]
    assert np.isnan(second.input_error) and np.isnan(second.amplification) and not second.floor_applied
