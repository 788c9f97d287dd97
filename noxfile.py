"""nox sessions for keras-parity.

    nox                      parity on every backend (each in its own virtualenv), then the report
    nox -s tests             the pytest suite, once per backend (what CI runs)
    nox -s "parity(backend='jax')" -- --cases 'lstm_*'     extra arguments go to 'python -m harness run'

Versions come from pyproject.toml's extras, so the pins live in one place.
"""

from __future__ import annotations

import nox

BACKENDS = ["tensorflow", "jax", "torch"]
RESULTS = "results"

nox.options.sessions = ["parity", "report"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


def _install_backend(session: nox.Session, backend: str, *extras: str) -> None:
    """Install this project with the backend's pinned extra (and any others) into the session's venv."""
    session.install("-e", f".[{','.join((backend, *extras))}]")


@nox.session(python="3.11")
@nox.parametrize("backend", BACKENDS)
def parity(session: nox.Session, backend: str) -> None:
    """Run the default cases on one backend, on CPU, and write results/<backend>.json and .npz."""
    _install_backend(session, backend)
    env = {"KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""}
    session.run("python", "-m", "harness", "probe", "--backend", backend, "--out", RESULTS, env=env)
    session.run("python", "-m", "harness", "run", "--backend", backend, "--out", RESULTS, *session.posargs, env=env)


@nox.session(python="3.11")
def report(session: nox.Session) -> None:
    """Merge every record in results/ into results/REPORT.md and results/WHY.md (reads records only)."""
    session.install("-e", ".")
    session.run("python", "-m", "harness", "report", RESULTS, *session.posargs)


@nox.session(python="3.11")
@nox.parametrize("backend", BACKENDS)
def tests(session: nox.Session, backend: str) -> None:
    """The pytest suite with Keras on one backend; torch's session also checks the reference against torch.nn.LSTM."""
    _install_backend(session, backend, "test")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs,
                env={"KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""})
