"""Error growth with sequence length (harness/studies/growth.py), run on the session's backend in a
subprocess (one backend per process). The growth figure is tested with the report model
(tests/test_report_model.py).
"""

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import ROOT


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
    assert record["schema"] == "keras-parity/growth" and record["schema_version"] == 2
    assert record["backend"] == session_backend and record["finished"] is not None
    assert {"device", "versions", "settings", "started"} <= set(record)
    assert [(p["time"], p["units"]) for p in record["points"]] == [(10, 4), (100, 4)]
    for point in record["points"]:
        assert point["status"] == "pass", point
        assert set(point["quantities"]) == {"output", "h", "c"}
        for name, quantity in point["quantities"].items():
            assert math.isfinite(quantity["max_abs_error"]) and math.isfinite(quantity["max_ulp"]), (name, quantity)
            assert 0 <= quantity["tolerance_ratio"] < 1 and quantity["passed"], (name, quantity)
            assert quantity["headroom"] == pytest.approx(1 / quantity["tolerance_ratio"]) and quantity["headroom"] > 1
            assert quantity["max_abs_error"] <= quantity["tightest_bound"]
