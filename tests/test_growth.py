"""Error growth with sequence length (harness/growth.py) and the figures (harness/plots.py).

The plot tests are pure (synthetic records, no Keras) and skip where matplotlib is not installed.
The growth test runs Keras on the session's backend in a subprocess (one backend per process).
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _growth_record(backend: str, scale: float) -> dict:
    points = []
    for units in (4, 16):
        for time in (10, 100, 1000):
            error = scale * 1e-7 * (1 + math.log10(time)) * (1 + units / 64)
            quantity = {
                "max_abs_error": error, "max_rel_error": error * 10, "max_ulp": 12.0, "passed": True,
                "headroom": 1e-6 / error, "tightest_bound": 1.01e-6, "rtol": 1e-5, "atol": 1e-6,
            }
            points.append({"time": time, "units": units, "status": "pass",
                           "quantities": {"output": quantity, "h": quantity, "c": quantity}})
    points.append({"time": 2000, "units": 4, "status": "error", "error": "RuntimeError: boom"})
    return {"schema": "keras-parity/growth", "schema_version": 1, "backend": backend,
            "tolerances": {"float32": {"outputs": {"rtol": 1e-5, "atol": 1e-6}}}, "points": points}


def _case(name: str, status: str, error: float, ulp: float, dtype: str = "float32") -> dict:
    items = {} if status in ("error", "refused") else {
        "output": {"max_abs_error": error, "max_ulp": ulp},
        "h": {"max_abs_error": error / 2, "max_ulp": ulp / 2},
    }
    return {"case": name, "dtype": dtype, "status": status,
            "apis": {"functional": {"passed": status == "pass", "items": items}} if items else {}}


def _run_records() -> dict:
    rng = np.random.default_rng(0)
    records = {}
    for backend in ("tensorflow", "jax", "torch"):
        cases = [_case(f"mask_variant{i}", "pass", float(rng.lognormal(-16, 1)), float(rng.integers(0, 500)))
                 for i in range(40)]
        cases += [
            _case("lstm_zero", "pass", 0.0, 0.0),
            _case("act_broken", "error", 0.0, 0.0),
            _case("cudnn_on", "refused", 0.0, 0.0),
            _case("dtype_float64", "pass", 1e-16, 3.0, dtype="float64"),
            _case("known_inf", "known", math.inf, math.inf),
        ]
        records[backend] = {"schema": "keras-parity/run", "backend": backend, "cases": cases}
    return records


@pytest.fixture
def plots():
    pytest.importorskip("matplotlib")
    from harness.reports import plots

    return plots


def _check_png(data: bytes) -> None:
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5000


def test_growth_plot_is_a_png(plots):
    _check_png(plots.growth_plot({"jax": _growth_record("jax", 1.0), "torch": _growth_record("torch", 2.0)}))


def test_growth_plot_of_empty_records_still_draws(plots):
    _check_png(plots.growth_plot({"jax": {"points": []}}))


@pytest.mark.parametrize("group", [True, False])
def test_error_heatmap_is_a_png(plots, group):
    _check_png(plots.error_heatmap(_run_records(), group=group))


def test_heatmap_masks_unmeasured_cases_and_groups_by_prefix(plots):
    rows, backends, worst, unmeasured = plots._heatmap_cells(_run_records(), group=True)
    assert backends == ["tensorflow", "jax", "torch"]
    assert rows == ["mask", "lstm", "act", "cudnn", "dtype", "known"]
    assert np.isnan(worst[rows.index("act")]).all() and (unmeasured[rows.index("act")] == 1).all()
    assert np.isnan(worst[rows.index("cudnn")]).all()
    assert (worst[rows.index("lstm")] == 0.0).all()
    assert np.isposinf(worst[rows.index("known")]).all()
    assert (worst[rows.index("mask")] > 0).all()


def test_worst_case_error_takes_the_worst_item():
    from harness.reports.plots import worst_case_error, worst_case_ulp

    case = _case("x", "fail", 3e-6, 40.0)
    assert worst_case_error(case) == 3e-6 and worst_case_ulp(case) == 40.0
    assert worst_case_error(_case("x", "error", 0.0, 0.0)) is None


def test_ulp_histogram_is_a_png(plots):
    _check_png(plots.ulp_histogram(_run_records()))


def test_ulp_histogram_without_float32_cases_still_draws(plots):
    _check_png(plots.ulp_histogram({"jax": {"cases": [_case("d", "pass", 1e-16, 2.0, dtype="float64")]}}))


GROWTH_SCRIPT = """
import sys
from pathlib import Path
from harness.execute.backends import activate
backend = activate(sys.argv[1])
from harness.studies.growth import run_growth
run_growth(backend, Path(sys.argv[2]), lengths=(10, 100), units=(4,))
"""


@pytest.mark.backend
def test_run_growth_stays_within_the_float32_bound(session_backend, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    completed = subprocess.run(
        [sys.executable, "-c", GROWTH_SCRIPT, session_backend, str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    record = json.loads((tmp_path / f"{session_backend}.growth.json").read_text())
    assert record["schema"] == "keras-parity/growth" and record["schema_version"] == 1
    assert record["backend"] == session_backend and record["finished"] is not None
    assert {"device", "versions", "settings", "started"} <= set(record)
    assert [(p["time"], p["units"]) for p in record["points"]] == [(10, 4), (100, 4)]
    for point in record["points"]:
        assert point["status"] == "pass", point
        assert set(point["quantities"]) == {"output", "h", "c"}
        for name, quantity in point["quantities"].items():
            assert math.isfinite(quantity["max_abs_error"]) and math.isfinite(quantity["max_ulp"]), (name, quantity)
            assert 0 <= quantity["max_abs_error"] < quantity["atol"] + quantity["rtol"] * quantity["max_abs_expected"]
            assert quantity["headroom"] > 1, (point["time"], name, quantity)
