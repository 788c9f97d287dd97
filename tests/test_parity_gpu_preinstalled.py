"""parity_gpu on a GPU machine whose CUDA stack is preinstalled and offline ('-- --preinstalled', with nox --no-venv):
nothing is installed; the interpreter is checked for every pinned package first, and a missing one is one line and a
failed session before anything runs. Shown with a fake nox session around the session function itself."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from packaging.requirements import Requirement

from conftest import load_noxfile

noxfile = load_noxfile()


class SessionError(Exception):
    pass


class FakeSession:
    """The parts of nox.Session parity_gpu uses. ``installed``: the distributions INSTALLED_CHECK reports; the GPU
    check passes (a CUDA build that sees a GPU); every harness command is recorded, none runs."""

    def __init__(self, posargs: list[str], installed: dict[str, str | None], tmp: str) -> None:
        self.posargs, self.installed, self.tmp = posargs, installed, tmp
        self.installs: list[tuple[str, ...]] = []
        self.commands: list[tuple[str, ...]] = []
        self.logs: list[str] = []

    def install(self, *args: str) -> None:
        self.installs.append(args)

    def create_tmp(self) -> str:
        return self.tmp

    def log(self, message: str) -> None:
        self.logs.append(message)

    def error(self, message: str) -> None:
        raise SessionError(message)

    def skip(self, message: str) -> None:
        raise AssertionError(f"skipped: {message}")

    def run(self, *args: str, env: dict[str, str] | None = None, silent: bool = False) -> Any:
        if args[:2] == ("python", "-c") and args[2] == noxfile.INSTALLED_CHECK:
            # what the check prints, computed by running it for the names asked with this fake's answers
            return json.dumps({"python": "/usr/bin/python3", "versions": {name: self.installed.get(name) for name in args[3:]}})
        if len(args) >= 3 and args[2] == "devices":
            return "parity_gpu: jax 0.11.2 sees 1 GPU(s): cuda:0\n"
        self.commands.append(args)
        return ""


def _everything(backend: str) -> dict[str, str]:
    versions = {}
    for requirement in noxfile.preinstalled_requirements(backend):
        pins = [spec.version for spec in requirement.specifier if spec.operator in ("==", "===")]
        versions[requirement.name] = pins[0] if pins else "9.9"
    return versions


def _parity_gpu(session: FakeSession, backend: str) -> None:
    noxfile.parity_gpu(session, backend=backend)


@pytest.mark.parametrize("backend", noxfile.BACKENDS)
def test_preinstalled_installs_nothing_and_measures_both_precisions(backend: str, tmp_path) -> None:
    session = FakeSession([noxfile.PREINSTALLED], _everything(backend), str(tmp_path))
    _parity_gpu(session, backend)
    assert session.installs == []
    harness = [c for c in session.commands if c[:3] == ("python", "-m", "harness")]
    assert [c[3] for c in harness] == (["run", *noxfile.GPU_STUDIES]) * len(noxfile.PRECISIONS)
    assert all(noxfile.PREINSTALLED not in c for c in harness)  # the flag is the session's, not the harness's
    assert [c[c.index("--precision") + 1] for c in harness if c[3] == "run"] == noxfile.PRECISIONS


@pytest.mark.parametrize("backend", noxfile.BACKENDS)
def test_preinstalled_with_a_package_missing_fails_in_one_line_before_anything_runs(backend: str, tmp_path) -> None:
    installed = _everything(backend)
    installed["keras"] = None
    session = FakeSession([noxfile.PREINSTALLED], installed, str(tmp_path))
    with pytest.raises(SessionError) as raised:
        _parity_gpu(session, backend)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("parity_gpu: error: --preinstalled, but /usr/bin/python3 lacks keras==")
    assert "--no-venv" in message
    assert session.installs == [] and session.commands == []


def test_preinstalled_other_versions_are_warned_not_refused(tmp_path) -> None:
    """The H200's own stack (results/gpu/README.md): jax 0.11.2 with a CUDA 13 plugin against the pinned 0.10.2."""
    installed = _everything("jax") | {"jax": "0.11.2"}
    session = FakeSession([noxfile.PREINSTALLED], installed, str(tmp_path))
    _parity_gpu(session, "jax")
    assert any(line.startswith("parity_gpu: warning: jax 0.11.2 (pyproject.toml: jax[cuda12]==0.10.2)") for line in session.logs)
    assert session.commands


def test_without_the_flag_the_session_installs_the_cuda_builds(tmp_path) -> None:
    session = FakeSession([], {}, str(tmp_path))
    _parity_gpu(session, "torch")
    assert session.installs == [("-e", ".", *noxfile.gpu_requirements("torch"))]


def test_preinstalled_problems() -> None:
    requirements = [Requirement("keras==3.15.1"), Requirement("torch===2.13.0"), Requirement("numpy>=1.26")]
    assert noxfile.preinstalled_problems(requirements, {"keras": "3.15.1", "torch": "2.13.0+cu130", "numpy": "2.5.2"}) == ([], [])
    missing, differing = noxfile.preinstalled_problems(requirements, {"keras": "3.16.0", "torch": None, "numpy": "1.20"})
    assert missing == ["torch===2.13.0"]
    assert differing == ["keras 3.16.0 (pyproject.toml: keras==3.15.1)", "numpy 1.20 (pyproject.toml: numpy>=1.26)"]


def test_the_installed_check_reads_this_interpreter() -> None:
    done = subprocess.run([sys.executable, "-c", noxfile.INSTALLED_CHECK, "numpy", "no-such-distribution-here"],
                          capture_output=True, text=True, timeout=60, check=True)
    found = json.loads(done.stdout)
    assert found["python"] == sys.executable and found["versions"]["no-such-distribution-here"] is None
    import numpy

    assert found["versions"]["numpy"] == numpy.__version__


# --- the session run by nox itself, in this interpreter (nox --no-venv: what a preinstalled GPU runner does) ---------


def _nox(backend: str, envdir, *posargs: str) -> subprocess.CompletedProcess[str]:
    import os

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"  # 'python' is this interpreter
    return subprocess.run([sys.executable, "-m", "nox", "--no-venv", "--envdir", str(envdir), "-s", f"parity_gpu(backend='{backend}')",
                           "--", *posargs], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_preinstalled_session_names_the_missing_backend(session_backend: str, tmp_path) -> None:
    """This interpreter has one backend: asking for another fails in one line naming it, and nothing is installed."""
    other = next(b for b in noxfile.BACKENDS if b != session_backend)
    done = _nox(other, tmp_path, noxfile.PREINSTALLED)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    wanted = {"tensorflow": "tensorflow[and-cuda]", "jax": "jax[cuda12]", "torch": "torch==="}[other]
    assert "parity_gpu: error: --preinstalled, but" in output and wanted in output, output
    assert "pip install" not in output and "harness run" not in output


def test_preinstalled_session_checks_the_build_after_the_packages(session_backend: str, tmp_path) -> None:
    """Every pinned package is here (a CPU build): the session goes on to the build check, which refuses a CPU build.
    TensorFlow's CPU build is another distribution (tensorflow-cpu), so there the package check already refuses it,
    naming tensorflow[and-cuda]."""
    done = _nox(session_backend, tmp_path, noxfile.PREINSTALLED)
    output = done.stdout + done.stderr
    assert "pip install" not in output and "harness run" not in output
    if session_backend == "tensorflow":
        assert done.returncode == 1 and "--preinstalled, but" in output and "tensorflow[and-cuda]" in output, output
        return
    assert "--preinstalled, but" not in output
    if "is a CUDA build" not in output:
        assert done.returncode == 1 and "parity_gpu: error:" in output and "build" in output, output
