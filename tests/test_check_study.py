"""The check study's handling of its backend subprocesses (harness.studies.check), without Keras: each backend's
"interpreter" here is a small script that answers as harness.execute.capture would (a capture, a bad input, the model
raising, a crash), so that what the parent makes of each answer is tested on every backend's CI session."""

from __future__ import annotations

import json
import sys
import zipfile

import numpy as np
import pytest

from harness.studies.check import CheckProblem, check

# Answers as ``python -m harness.execute.capture --backend B --model M --out DIR ...`` does, as FAKE_CAPTURE says:
# "capture" (two Dense layers, float32 outputs from NumPy; FAKE_OFF offsets the second layer's output on FAKE_OFF_ON),
# "bad_input", "model_error", "crash".
FAKE = r'''
import json, os, sys
import numpy as np
args = sys.argv[1:]
out, backend = args[args.index("--out") + 1], args[args.index("--backend") + 1]
mode = os.environ["FAKE_CAPTURE"]
def write(name, content):
    with open(os.path.join(out, name), "w") as stream:
        json.dump(content, stream)
if mode == "bad_input":
    write(f"{backend}.error.json", {"kind": "bad_input", "problem": "input x has shape (2, 3); the model takes x (None, 4) float32"})
    sys.exit(2)
if mode == "model_error":
    write(f"{backend}.error.json", {"kind": "model_error", "problem": f"the model raised on {backend}: ValueError: no"})
    sys.exit(3)
if mode == "crash":
    print("Traceback (most recent call last):\nRuntimeError: the capture broke", file=sys.stderr)
    sys.exit(4)
rng = np.random.default_rng(0)
x = rng.standard_normal((3, 4)).astype(np.float32)
w1, b1 = (rng.standard_normal((4, 6)) * 0.5).astype(np.float32), rng.standard_normal(6).astype(np.float32)
w2, b2 = (rng.standard_normal((6, 2)) * 0.4).astype(np.float32), rng.standard_normal(2).astype(np.float32)
h = np.tanh(x @ w1 + b1).astype(np.float32)
off = float(os.environ.get("FAKE_OFF", "0")) if os.environ.get("FAKE_OFF_ON") == backend else 0.0
y = (np.tanh(h @ w2 + b2) + np.float32(off)).astype(np.float32)
def call(index, name, start):
    return {"name": name, "layer": name, "parent": None, "class": "Dense", "container": False,
            "config": {"name": name, "units": 6 if index == 0 else 2, "activation": "tanh", "use_bias": True},
            "compute_dtype": "float32", "start": start, "end": start + 1, "inputs": [f"call/{index}/in/0"],
            "initial_state": [], "mask": None, "outputs": [f"call/{index}/out/0"],
            "weights": [f"weight/{name}/0", f"weight/{name}/1"]}
np.savez(os.path.join(out, f"{backend}.npz"), **{"input/x": x, "call/0/in/0": x, "call/0/out/0": h, "call/1/in/0": h,
         "call/1/out/0": y, "weight/first/0": w1, "weight/first/1": b1, "weight/second/0": w2, "weight/second/1": b2})
write(f"{backend}.json", {"backend": backend, "versions": {"keras": "fake", backend: "fake"}, "device_class": "cpu",
                          "inputs": [{"name": "x", "shape": [None, 4], "dtype": "float32"}],
                          "calls": [call(0, "first", 0), call(1, "second", 2)]})
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """(model, interpreters): a model file that passes the parent's checks, and the fake capture for two backends."""
    script = tmp_path / "fake_python"
    script.write_text(f"#!{sys.executable}\n{FAKE}")
    script.chmod(0o755)
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("config.json", "{}")
    return model, {"jax": str(script), "torch": str(script)}


def test_two_backends_captured_at_once_judged_against_the_reference_and_each_other(fake, monkeypatch, tmp_path):
    model, python = fake
    monkeypatch.setenv("FAKE_CAPTURE", "capture")
    result = check(model, backends=["jax", "torch"], python=python, workdir=tmp_path / "work")
    assert result.passed and result.exit_code == 0 and result.backends == ["jax", "torch"]
    assert [row.name for row in result.layers] == ["first", "second"]
    assert all(row.cross and row.cross[0]["backends"] == ["jax", "torch"] for row in result.layers)
    assert result.interpreters == python and result.versions["torch"]["keras"] == "fake"
    assert "PASS: every layer within tolerance on jax, torch and across them" in result.table()
    # each backend's log, manifest and arrays are kept in the work folder
    assert sorted(path.name for path in (tmp_path / "work").iterdir()) == [
        "jax.json", "jax.log", "jax.npz", "torch.json", "torch.log", "torch.npz"]


def test_one_backend_off_fails_at_that_layer_against_the_reference_and_the_other_backend(fake, monkeypatch, tmp_path):
    model, python = fake
    monkeypatch.setenv("FAKE_CAPTURE", "capture")
    monkeypatch.setenv("FAKE_OFF", "1e-4")
    monkeypatch.setenv("FAKE_OFF_ON", "torch")
    result = check(model, backends=["jax", "torch"], python=python)
    assert result.exit_code == 1 and result.first_divergent == "second"
    second = result.layer("second")
    assert second.backends["jax"].status == "pass" and second.backends["torch"].status == "fail"
    assert not second.cross[0]["passed"] and "jax and torch differ by" in second.cross[0]["reason"]
    from harness.studies.check import write_json

    write_json(result, tmp_path / "out.json")
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["exit_code"] == 1 and written["first_divergent"] == "second"
    assert [layer["status"] for layer in written["layers"]] == ["pass", "fail"]
    assert not list(tmp_path.glob(".out.json.*"))  # the temporary file of the atomic write is gone


def test_a_model_raising_on_one_backend_fails_the_check(fake, monkeypatch):
    model, python = fake
    monkeypatch.setenv("FAKE_CAPTURE", "model_error")
    result = check(model, backends=["jax"], python=python)
    assert result.exit_code == 1 and result.model_errors == {"jax": "the model raised on jax: ValueError: no"}
    assert "jax: the model raised on jax: ValueError: no" in result.table()


def test_bad_input_found_by_a_capture_and_a_crashed_capture_are_one_line(fake, monkeypatch):
    model, python = fake
    monkeypatch.setenv("FAKE_CAPTURE", "bad_input")
    with pytest.raises(CheckProblem, match=r"^jax: input x has shape \(2, 3\); the model takes x \(None, 4\) float32$"):
        check(model, backends=["jax"], python=python)
    monkeypatch.setenv("FAKE_CAPTURE", "crash")
    with pytest.raises(CheckProblem, match=r"^the jax capture crashed \(exit 4\) in .*: RuntimeError: the capture broke$"):
        check(model, backends=["jax"], python=python)


def test_a_fault_goes_to_the_one_backend_it_names(fake, monkeypatch, tmp_path):
    """The test-only fault variable reaches only the backend the fault names, and no stray one from the caller."""
    model, python = fake
    monkeypatch.setenv("FAKE_CAPTURE", "capture")
    monkeypatch.setenv("KERAS_PARITY_CHECK_FAULT", "stray:weight0:1")
    from harness.studies.check import _environment

    assert "KERAS_PARITY_CHECK_FAULT" not in _environment("jax", None)
    assert _environment("torch", ("torch", "second:weight1:1e-5"))["KERAS_PARITY_CHECK_FAULT"] == "second:weight1:1e-5"
    assert "KERAS_PARITY_CHECK_FAULT" not in _environment("jax", ("torch", "second:weight1:1e-5"))
    assert _environment("jax", None)["KERAS_BACKEND"] == "jax"
    assert np.isfinite(check(model, backends=["jax"], python=python).layer("first").backends["jax"].amplification)
