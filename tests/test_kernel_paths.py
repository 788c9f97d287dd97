"""Which kernel path each build ran (harness/execute/kernels.py), and the precision modes.

The path is observed by wrapping the functions Keras calls while a build runs, never inferred from
Keras's rules. On CPU (what CI has) no cuDNN kernel can run, so the backend tests pin what each
backend really does there, and force the fused kernel (a stand-in kernel where the backend would run
cuDNN) to show that the wrappers see it:

- TensorFlow and JAX: the LSTM calls the fused entry point ``backend.lstm``, which declines
  (NotImplementedError, no kernel called), then Keras's generic loop ``backend.rnn``:
  ``fused_declined->generic``; ``use_cudnn=True`` is refused.
- PyTorch: ``backend.lstm`` never tries cuDNN on CPU and returns through its own loop
  (``_fallback_lstm``), so an unmasked LSTM never reaches the generic loop: ``fallback_loop``, even
  with ``use_cudnn=True`` (which is therefore not refused); with a mask it declines first.

The path bookkeeping itself (declined, failed, swallowed failures, shape inference) is checked on
stand-in functions without Keras.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_harness
from harness.execute import kernels

CASES = "lstm_last_step,cudnn_auto_impl2,cudnn_on_impl2"


# ------------------------------------------------------------------ the bookkeeping, without Keras


@pytest.fixture
def observation(monkeypatch) -> kernels.KernelObservation:
    monkeypatch.setattr(kernels, "_in_symbolic_scope", lambda: False)
    return kernels.KernelObservation()


def _decline(*args, **kwargs):
    raise NotImplementedError


def test_a_declined_fused_call_chains_onto_the_generic_loop(observation):
    lstm, rnn = observation.wrap("lstm", _decline), observation.wrap("rnn", lambda: "outputs")
    for _ in range(2):  # two LSTM layers, as Keras's LSTM.inner_loop calls them
        with pytest.raises(NotImplementedError):
            lstm()
        assert rnn() == "outputs"
    record = observation.record()
    assert record["kernel_path"] == "fused_declined->generic"
    assert record["kernel"] == {"paths": {"fused_declined->generic": 2},
                                "calls": {"lstm": {"declined": 2}, "rnn": {"returned": 2}}}


def test_a_kernel_failure_the_backend_swallows_is_still_seen(observation):
    """PyTorch's lstm catches any exception from _cudnn_lstm and runs _fallback_lstm instead."""
    def cudnn():
        raise RuntimeError("CUDNN_STATUS_NOT_SUPPORTED")

    cudnn, fallback = observation.wrap("cudnn", cudnn), observation.wrap("fallback_loop", lambda: "fallback")

    def torch_like_lstm():
        try:
            return cudnn()
        except Exception:
            pass
        return fallback()

    assert observation.wrap("lstm", torch_like_lstm)() == "fallback"
    assert observation.record()["kernel_path"] == "fused_failed->fallback_loop"
    assert observation.calls == {"cudnn": {"raised": 1}, "fallback_loop": {"returned": 1}, "lstm": {"returned": 1}}


def test_a_kernel_error_turned_into_not_implemented_is_a_failure(observation):
    """TensorFlow and JAX re-raise a cuDNN error as NotImplementedError (inside the except block, or
    'from' it); Keras then runs the generic loop."""
    def tf_like_lstm():
        try:
            raise ValueError("cuDNN op not found")
        except ValueError:
            raise NotImplementedError

    def jax_like_bidirectional():
        raise NotImplementedError("cuDNN bidirectional LSTM failed") from RuntimeError("no GPU")

    rnn = observation.wrap("rnn", lambda: None)
    for role, function in (("lstm", tf_like_lstm), ("bidirectional_lstm", jax_like_bidirectional)):
        with pytest.raises(NotImplementedError):
            observation.wrap(role, function)()
        rnn()
    assert observation.paths() == ["fused_failed->generic", "bidirectional_fused_failed->generic"]


def test_a_returned_fused_call_is_fused_and_shape_inference_is_only_counted(observation, monkeypatch):
    kernel = observation.wrap("cudnn", lambda: "cudnn output")
    lstm = observation.wrap("lstm", lambda: kernel())
    monkeypatch.setattr(kernels, "_in_symbolic_scope", lambda: True)  # Functional construction, compute_output_spec
    lstm()
    monkeypatch.setattr(kernels, "_in_symbolic_scope", lambda: False)
    lstm()
    record = observation.record()
    assert record["kernel_path"] == "fused"
    assert record["kernel"]["calls"] == {"cudnn": {"shape_inference": 1, "returned": 1}, "lstm": {"shape_inference": 1, "returned": 1}}


def test_an_attempt_nothing_followed_is_kept(observation):
    with pytest.raises(NotImplementedError):
        observation.wrap("lstm", _decline)()
    assert observation.record()["kernel_path"] == "fused_declined"
    assert kernels.KernelObservation().record()["kernel_path"] == "none observed"


# ------------------------------------------------------------------ precision modes, without Keras


def test_unknown_precision_mode_is_refused(tmp_path):
    from harness.execute.backends import activate

    with pytest.raises(ValueError, match="unknown precision mode 'bogus'; accepted: default, highest"):
        activate("jax", precision="bogus")
    completed = run_harness("run", "--backend", "jax", "--precision", "bogus", "--out", str(tmp_path / "out"))
    assert completed.returncode == 2, completed.stdout + completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--precision" in lines[0] and "'bogus'" in lines[0], completed.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ on the session's backend


@pytest.fixture(scope="module")
def highest_run(tmp_path_factory):
    backend = os.environ.get("KERAS_BACKEND")
    if backend is None:
        pytest.skip("KERAS_BACKEND is not set: run through 'nox -s tests'")
    out = tmp_path_factory.mktemp("highest")
    completed = run_harness("run", "--backend", backend, "--cases", CASES, "--precision", "highest", "--out", str(out))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    record = json.loads((out / f"{backend}.json").read_text())
    return backend, record, {case["case"]: case for case in record["cases"]}


@pytest.mark.backend
def test_every_build_records_the_path_it_ran_on_cpu(highest_run):
    backend, _, cases = highest_run
    expected = "fallback_loop" if backend == "torch" else "fused_declined->generic"
    for name in ("lstm_last_step", "cudnn_auto_impl2"):
        apis = cases[name]["apis"]
        assert set(apis) == {"sequential", "functional", "subclassed"}
        for api, entry in apis.items():
            assert entry["kernel_path"] == expected, (name, api, entry["kernel"])
            calls = entry["kernel"]["calls"]
            assert "cudnn" not in calls, calls  # no cuDNN kernel is ever called on CPU
            if backend == "torch":
                # Keras calls the fused entry point; it returns through PyTorch's own loop, not the generic one.
                assert calls["lstm"]["returned"] >= 1 and calls["fallback_loop"]["returned"] >= 1 and "rnn" not in calls
            else:
                assert calls["lstm"]["declined"] == calls["rnn"]["returned"] >= 1
                assert set(calls["lstm"]) <= {"declined", "shape_inference"}


@pytest.mark.backend
def test_use_cudnn_true_on_cpu_shows_what_the_backend_did(highest_run):
    backend, _, cases = highest_run
    case = cases["cudnn_on_impl2"]
    if backend == "torch":
        # Not refused: PyTorch's lstm runs its non-cuDNN loop and returns, so use_cudnn=True proves nothing.
        assert case["status"] == "pass"
        assert {entry["kernel_path"] for entry in case["apis"].values()} == {"fallback_loop"}
    else:
        assert case["status"] == "refused" and case["apis"] == {}
        assert case["kernel_at_error"]["kernel_path"] == "fused_declined"
        assert case["kernel_at_error"]["api"] == "sequential"


@pytest.mark.backend
def test_highest_precision_is_recorded_as_read_back(highest_run):
    backend, record, _ = highest_run
    settings = record["settings"]
    assert settings["precision_mode"] == "highest"
    if backend == "tensorflow":
        assert settings["tf32_execution"] is False
    elif backend == "jax":
        assert settings["jax_default_matmul_precision"] == "highest" and settings["jax_enable_x64"] is True
    else:
        assert settings["tf32_matmul"] is False and settings["tf32_cudnn"] is False
        assert settings["fp32_precision_cudnn_rnn"] != "tf32"
    assert record["device_class"] == "cpu"
    assert record["device_details"]["kind"] == "cpu" and record["device_details"]["machine"]


PROBE_SCRIPT = r'''
import importlib, json, sys, types
import numpy as np
from harness.execute.backends import activate, backend_module
name = sys.argv[1]
info = activate(name)
import keras
from harness.execute import kernels
rnn = importlib.import_module(f"keras.src.backend.{name}.rnn")
module = backend_module(name)
out = {"settings": info.settings, "device_class": info.device_class, "device_details": info.device_details}
x = np.random.default_rng(0).standard_normal((2, 4, 5)).astype("float32")
zeros = lambda *shape: np.zeros(shape, "float32")

def layer_call():
    return keras.ops.convert_to_numpy(keras.layers.LSTM(3)(x))

with kernels.observe() as seen:  # the fused entry point, called directly
    try:
        rnn.lstm(x, zeros(2, 3), zeros(2, 3), None, zeros(5, 12), zeros(3, 12), zeros(12), keras.activations.tanh, keras.activations.sigmoid)
    except NotImplementedError:
        pass
out["direct"] = seen.record()
with kernels.observe() as seen:
    layer_call()
out["eager"] = seen.record()

def forced(kernel_module, kernel_name, kernel, available):
    """Make the fused path reachable on CPU and put a stand-in where the cuDNN kernel is."""
    saved = [(kernel_module, kernel_name, getattr(kernel_module, kernel_name))] + [(rnn, a, getattr(rnn, a)) for a in available]
    setattr(kernel_module, kernel_name, kernel)
    for attribute in available:
        setattr(rnn, attribute, lambda *args, **kwargs: True)
    try:
        with kernels.observe() as seen:
            layer_call()
        return seen.record()
    finally:
        for owner, attribute, value in saved:
            setattr(owner, attribute, value)

if name == "tensorflow":
    import tensorflow as tf

    def fake_cudnn(inputs, h, c, *args):
        return h, tf.expand_dims(h, 1), [h, c]

    def broken_cudnn(*args):
        raise tf.errors.InvalidArgumentError(None, None, "stand-in: no CudnnRNNV3 kernel")

    out["forced"] = forced(rnn, "_cudnn_lstm", fake_cudnn, ["cudnn_ok"])
    out["forced_failing"] = forced(rnn, "_cudnn_lstm", broken_cudnn, ["cudnn_ok"])
elif name == "jax":
    import jax.experimental.rnn as jax_rnn
    import jax.numpy as jnp

    def fake_cudnn(inputs, h0, c0, *args, **kwargs):
        return jnp.zeros(inputs.shape[:2] + (h0.shape[-1],), inputs.dtype), h0, c0

    def broken_cudnn(*args, **kwargs):
        raise RuntimeError("stand-in: cuDNN unavailable")

    out["forced"] = forced(jax_rnn, "lstm", fake_cudnn, ["_is_gpu_available"])
    out["forced_failing"] = forced(jax_rnn, "lstm", broken_cudnn, ["_is_gpu_available"])
else:
    import torch
    # Its cuDNN branch needs CUDA tensors; the kernel function itself runs torch._VF.lstm, which CPU has.
    with kernels.observe() as seen:
        rnn._cudnn_lstm(*(torch.zeros(*s) for s in ((2, 4, 5), (2, 3), (2, 3), (5, 12), (3, 12), (12,))), return_sequences=True, device="cpu")
    out["forced"] = seen.record()

# The device class follows the settings read back, on a (pretended) GPU.
classes = {}
if name == "tensorflow":
    import tensorflow as tf
    listing = tf.config.list_logical_devices
    tf.config.list_logical_devices = lambda kind=None: [types.SimpleNamespace(name="/device:GPU:0")] if kind == "GPU" else listing(kind)
    for flag in (True, False):
        tf.config.experimental.enable_tensor_float_32_execution(flag)
        classes[str(flag)] = module.device_class()
    tf.config.list_logical_devices = listing
elif name == "jax":
    import jax
    devices = jax.devices
    jax.devices = lambda *args: [types.SimpleNamespace(platform="gpu", device_kind="stand-in")]
    for precision in (None, "highest"):
        jax.config.update("jax_default_matmul_precision", precision)
        classes[str(precision)] = module.device_class()
    jax.devices = devices
else:
    import torch
    available = torch.cuda.is_available
    torch.cuda.is_available = lambda: True
    for flag in (True, False):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = flag
        classes[str(flag)] = module.device_class()
    torch.cuda.is_available = available
out["classes"] = classes
print("PROBE " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def probe():
    backend = os.environ.get("KERAS_BACKEND")
    if backend is None:
        pytest.skip("KERAS_BACKEND is not set: run through 'nox -s tests'")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), CUDA_VISIBLE_DEVICES="")
    completed = subprocess.run([sys.executable, "-c", PROBE_SCRIPT, backend], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("PROBE "))
    return backend, json.loads(line[len("PROBE "):])


@pytest.mark.backend
def test_the_wrappers_see_the_fused_entry_point_called_directly(probe):
    backend, out = probe
    calls = out["direct"]["kernel"]["calls"]
    if backend == "torch":
        assert out["direct"]["kernel_path"] == "fallback_loop"
        assert calls == {"lstm": {"returned": 1}, "fallback_loop": {"returned": 1}}
    else:
        assert out["direct"]["kernel_path"] == "fused_declined"
        assert calls == {"lstm": {"declined": 1}}
    assert out["eager"]["kernel_path"] == ("fallback_loop" if backend == "torch" else "fused_declined->generic")


@pytest.mark.backend
def test_a_forced_fused_kernel_is_observed(probe):
    backend, out = probe
    assert out["forced"]["kernel_path"] == "fused"
    assert out["forced"]["kernel"]["calls"]["cudnn"] == {"returned": 1}
    if backend != "torch":
        assert out["forced"]["kernel"]["calls"]["lstm"] == {"returned": 1} and "rnn" not in out["forced"]["kernel"]["calls"]
        failing = out["forced_failing"]
        assert failing["kernel_path"] == "fused_failed->generic"
        assert failing["kernel"]["calls"]["cudnn"] == {"raised": 1} and failing["kernel"]["calls"]["lstm"] == {"failed": 1}


@pytest.mark.backend
def test_default_precision_and_device_class_follow_the_settings_read_back(probe):
    backend, out = probe
    settings = out["settings"]
    assert settings["precision_mode"] == "default" and out["device_class"] == "cpu"
    assert out["device_details"]["kind"] == "cpu"
    if backend == "tensorflow":
        assert isinstance(settings["tf32_execution"], bool)
        assert out["classes"] == {"True": "gpu_tf32", "False": "gpu_highest"}
    elif backend == "jax":
        assert settings["jax_default_matmul_precision"] is None  # JAX's default: TF32 on GPUs
        assert out["classes"] == {"None": "gpu_tf32", "highest": "gpu_highest"}
    else:
        assert settings["tf32_matmul"] is False and settings["tf32_cudnn"] is True  # PyTorch's defaults
        assert out["classes"] == {"True": "gpu_tf32", "False": "gpu_highest"}


@pytest.mark.backend
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "torch", reason="torch.compile only")
def test_the_observation_is_traced_by_torch_compile_without_a_graph_break():
    """jit_compile=True on PyTorch traces the wrappers. Recording into a dict that existed before tracing made dynamo
    break at the next mappingproxy read, which Keras does on every layer call (CallSpec: inspect.Signature.bind);
    inside Keras's name_scope the break is not resumable, whole frames fell back to eager and were recompiled one by
    one (measured on 2 shared cores: a jit_compile case 51-144 s, 14-72 s with a list; outputs bitwise the same).
    fullgraph=True raises on any break."""
    import torch

    observation = kernels.KernelObservation()
    wrapped = observation.wrap("lstm", lambda x: x * 2.0)
    signature = inspect.signature(lambda inputs, training=None: None)

    def step(x):
        y = wrapped(x)
        signature.bind(y, training=False)  # what the next Keras layer call does
        return wrapped(y)

    torch._dynamo.reset()
    out = torch.compile(step, backend="eager", fullgraph=True)(torch.ones(3))
    assert out.tolist() == [4.0, 4.0, 4.0]
    assert observation.calls == {"lstm": {"returned": 2}}
    assert observation.record()["kernel"]["calls"] == {"lstm": {"returned": 2}}
