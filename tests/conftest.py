import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SESSION_BACKEND = os.environ.get("KERAS_BACKEND")


@pytest.fixture
def session_backend() -> str:
    """The backend this test session runs (nox sets KERAS_BACKEND); skip backend tests without one."""
    if SESSION_BACKEND is None:
        pytest.skip("KERAS_BACKEND is not set: run through 'nox -s tests'")
    return SESSION_BACKEND


def run_harness(*args: str, cwd: Path = ROOT) -> "subprocess.CompletedProcess[str]":
    import subprocess

    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def load_noxfile():
    """noxfile.py as a module, loaded once per process (loading it again would register its sessions twice)."""
    name = "keras_parity_noxfile"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "noxfile.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_GRADIENT_STUDY_SCRIPT = r"""
import json, sys
from pathlib import Path
from harness.execute.backends import activate

backend = activate(sys.argv[1])
from harness.case.schema import parse_case
from harness.studies.gradients import run_gradient_study

cases = [parse_case(entry, "test") for entry in json.loads(sys.argv[2])]
record = run_gradient_study(cases, [], backend, Path(sys.argv[3]))
print(json.dumps({result["case"]: {"verdict": result["verdict"], "status": result["status"],
                                   "explained_by": result["explained_by"], "problems": result["problems"],
                                   "keys": sorted({key for build in result["apis"].values() for key in build["items"]})}
                  for result in record["cases"]}))
"""


def gradient_study_of_entries(backend: str, entries: list, out: Path) -> dict:
    """The gradient study (harness.studies.gradients) on case tables defined in a test, in a fresh process on
    ``backend``: per case its verdict, status, explaining claims, problems and gradient keys."""
    import json
    import subprocess

    completed = subprocess.run([sys.executable, "-c", _GRADIENT_STUDY_SCRIPT, backend, json.dumps(entries), str(out)], cwd=ROOT,
                               capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_entries(backend: str, entries: list, out: Path) -> tuple[dict, dict]:
    """``harness run --case-file`` on case tables defined in a test, on ``backend``, into ``out``: the run record and
    its verdicts by case (the run must exit 0)."""
    import json

    from harness.studies.fuzz import to_toml

    case_file = out / "cases.toml"
    case_file.write_text("\n".join(to_toml(entry) for entry in entries), encoding="utf-8")
    completed = run_harness("run", "--backend", backend, "--out", str(out / "out"), "--case-file", str(case_file))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    record = json.loads((out / "out" / f"{backend}.json").read_text())
    verdicts = json.loads((out / "out" / f"{backend}.verdicts.json").read_text())["cases"]
    return record, verdicts
