"""The console shows the harness; the backend's own log goes to DIR/<backend>.log (harness/execute/console.py).

The capture itself is checked without a backend (a subprocess writes to fd 2, warns, logs, and
prints the way the harness does); then real commands run on the session's backend, and their stderr
must hold the harness's lines and none of TensorFlow's, absl's or XLA's.
"""

import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_harness

# What the backends print on their own: TensorFlow / XLA / absl C++ log prefixes and messages.
NOISE = ("I0000", "W0000", "E0000", "oneDNN", "cuda", "absl::InitializeLog", "cpu_feature_guard", "WARNING:absl")

CAPTURE_SCRIPT = r"""
import logging, os, sys, warnings
from pathlib import Path
from harness.execute import console

path = Path(sys.argv[1])
assert console.capture_backend_output() is None  # nothing armed: a no-op
size = path.stat().st_size if path.exists() else None
with console.backend_log(path, "python -m harness demo"):
    print("harness: before the backend", file=sys.stderr, flush=True)
    assert (path.stat().st_size if path.exists() else None) == size  # nothing written before a backend is activated
    assert console.capture_backend_output() == path
    os.write(2, b"I0000 00:00:1 port.cc:153] C++ noise on fd 2\n")
    warnings.warn("python warning noise")
    logging.getLogger("absl").warning("absl noise")
    logging.getLogger("tensorflow").warning("tensorflow logger noise")
    print("harness: progress line", file=sys.stderr, flush=True)
print("harness: after the command", file=sys.stderr, flush=True)
os.write(2, b"fd 2 is the console again\n")
"""


def _run_capture(path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-c", CAPTURE_SCRIPT, str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_backend_output_goes_to_the_log_and_harness_lines_to_the_console(tmp_path):
    path = tmp_path / "out" / "demo.log"
    completed = _run_capture(path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.splitlines() == [
        "harness: before the backend", "harness: progress line", "harness: after the command", "fd 2 is the console again",
    ]
    log = path.read_text()
    assert log.startswith("==== ") and log.splitlines()[0].endswith(" python -m harness demo")
    for said in ("C++ noise on fd 2", "python warning noise", "absl noise", "tensorflow logger noise"):
        assert said in log


def test_the_log_is_appended_per_command(tmp_path):
    path = tmp_path / "demo.log"
    path.write_text("line from an earlier command without a newline")
    assert _run_capture(path).returncode == 0
    assert _run_capture(path).returncode == 0
    lines = path.read_text().splitlines()
    assert lines[0] == "line from an earlier command without a newline"
    assert sum(line.startswith("==== ") for line in lines) == 2
    assert sum("C++ noise on fd 2" in line for line in lines) == 2


def _noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(marker in line for marker in NOISE)]


@pytest.mark.backend
def test_run_console_has_progress_and_no_backend_noise(session_backend, tmp_path):
    cases = "lstm_last_step,lstm_sequences,lstm_dense_head,lstm_return_state"  # more than 3: progress lines
    completed = run_harness("run", "--backend", session_backend, "--cases", cases, "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    progress = [line for line in completed.stderr.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] + "]" for line in progress] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"], completed.stderr
    assert _noise(completed.stderr) == []
    assert "cases passed" in completed.stdout
    log = tmp_path / f"{session_backend}.log"
    assert log.exists()
    text = log.read_text()
    assert text.startswith("==== ") and f"run --backend {session_backend}" in text.splitlines()[0]
    if session_backend == "tensorflow":
        assert len(text.splitlines()) > 1 and _noise(text)  # what TensorFlow said is kept, not silenced


@pytest.mark.backend
def test_save_writes_its_log_beside_the_models(session_backend, tmp_path):
    models = tmp_path / "models"
    completed = run_harness("save", "--backend", session_backend, "--cases", "lstm_last_step", "--models", str(models))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert _noise(completed.stderr) == [] and completed.stderr.strip() == ""
    assert f"{session_backend}: saved 1 models" in completed.stdout
    text = (models / f"{session_backend}.log").read_text()
    assert f"save --backend {session_backend}" in text.splitlines()[0]
    if session_backend == "tensorflow":
        assert "oneDNN" in text or "I0000" in text


def test_a_refused_command_writes_no_log(tmp_path):
    out = tmp_path / "out"
    completed = run_harness("run", "--backend", "jax", "--cases", "nosuchkind_*", "--out", str(out))
    assert completed.returncode == 2
    assert not out.exists()
