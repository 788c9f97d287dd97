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
