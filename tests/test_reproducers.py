"""Every reproducer in results/repro/ runs where it applies and refuses, with exit 2 and one line, where it cannot.

A reproducer declares where it can run (``REQUIRES``: the Keras backends, the modules it imports, a GPU, float64 on
JAX). Run in this session's backend environment, on the CPU:
- where its preconditions do not hold, it must exit 2 printing one line that starts "cannot run here" (a missing
  module or another backend used to exit 1 through a traceback, which reads exactly like "bug present");
- where they hold, it must exit 1 exactly where a claim that names it applies to this backend and these versions
  (the bug is present), 0 elsewhere, and never through an uncaught exception.
Reproducers no claim names (found by the between-versions view or by fuzzing) say where they are present in
``UNCLAIMED_PRESENT_ON`` below.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.case.divergences import load_divergences

ROOT = Path(__file__).resolve().parents[1]
REPRO = ROOT / "results" / "repro"
BACKENDS = ("tensorflow", "jax", "torch")
TIME_LIMIT_S = 600

# Reproducers of findings that are not claims about the pinned release: where each is present, by backend and the
# Keras version it was found on. Elsewhere (the pinned release included) it must exit 0.
UNCLAIMED_PRESENT_ON = {
    # the between-versions view: keras-nightly 3.16.0.dev2026102704 only (the release passes these cases)
    "nightly_stacked_lstm_mask_not_propagated": {"keras": ("3.16.0.dev2026102704",), "backends": BACKENDS},
    "nightly_torch_float64_dense_output_is_float32": {"keras": ("3.16.0.dev2026102704",), "backends": ("torch",)},
    # fuzz --gradients: keras.ops.mean computes float64 in float32 on PyTorch (torch 2.13.0); this test found it on JAX
    # too (jax 0.10.2). Keras 3.15.1.
    "float64_mean_in_float32": {"keras": ("3.15.1",), "backends": ("torch", "jax")},
    # jit_compile cases' run time on PyTorch (torch 2.13.0): a dict mutated inside torch.compile breaks Keras's graph at
    # the next layer call (dynamo's mappingproxy check); a torch behaviour, found through the harness's own kernel
    # observation. Keras 3.15.1.
    "torch_compile_dict_mutation_breaks_keras_graph": {"keras": ("3.15.1",), "backends": ("torch",)},
    # TensorFlow 2.21.0 on an x86 CPU with AVX: its float32 matmuls round by the instruction set oneDNN is allowed
    # (found when recact_linear failed on an AMD EPYC and passed on an Intel Xeon). Keras 3.15.1.
    "tensorflow_float32_rounding_follows_cpu_isa": {"keras": ("3.15.1",), "backends": ("tensorflow",)},
    # GPU-only measurements (H200); never present on a CPU
    "jax_gpu_gradients_against_cpu": {"keras": (), "backends": ()},
    "jax_gpu_fused_float64_wrong": {"keras": (), "backends": ()},
}


def reproducers() -> list[Path]:
    return sorted(REPRO.glob("*.py"))


def requires_of(path: Path) -> dict:
    """The literal REQUIRES dict a reproducer declares."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "REQUIRES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name} declares no REQUIRES")


def installed_versions(backend: str) -> dict[str, str]:
    import keras

    return {"keras": keras.__version__, backend: importlib.import_module(backend).__version__}


def named_reproducers() -> set[str]:
    """Every reproducer path a claim names, in any claim format."""
    names = {divergence.reproducer for divergence in load_divergences()}
    cases = tomllib.loads((ROOT / "harness/case/training_mode_cases.toml").read_text())
    names |= {claim["reproducer"] for claim in cases.get("known", [])}
    gradients = tomllib.loads((ROOT / "harness/case/gradient_cases.toml").read_text())
    names |= {drift["reproducer"] for drift in gradients.get("training", {}).get("known_drift", [])}
    return names


def claimed_backends(reproducer: str, versions: dict[str, str]) -> set[str]:
    """The backends on which a claim naming this reproducer holds for these versions (every claim format)."""
    relative = f"results/repro/{reproducer}.py"
    backends: set[str] = set()
    for divergence in load_divergences():
        if divergence.reproducer == relative and divergence.versions_match(versions):
            backends |= set(divergence.backends)
    cases = tomllib.loads((ROOT / "harness/case/training_mode_cases.toml").read_text())
    for claim in cases.get("known", []):
        if claim["reproducer"] == relative and versions["keras"] in claim["keras"]:
            backends |= set(claim["backends"])
    gradients = tomllib.loads((ROOT / "harness/case/gradient_cases.toml").read_text())
    for drift in gradients.get("training", {}).get("known_drift", []):
        if drift["reproducer"] == relative:
            backends.add(drift["backend"])
    return backends


def expected_presence(reproducer: str, backend: str, versions: dict[str, str]) -> bool:
    if reproducer in UNCLAIMED_PRESENT_ON:
        where = UNCLAIMED_PRESENT_ON[reproducer]
        return backend in where["backends"] and versions["keras"] in where["keras"]
    return backend in claimed_backends(reproducer, versions)


def can_run_here(requires: dict, backend: str) -> bool:
    modules_present = all(importlib.util.find_spec(name) is not None for name in requires["modules"] + [backend])
    return backend in requires["backends"] and modules_present and not requires["gpu"]


def run_reproducer(path: Path, backend: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("JAX_ENABLE_X64", None)
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=TIME_LIMIT_S,
                          cwd=path.parent)


def test_every_reproducer_declares_where_it_runs_and_is_named_by_a_finding():
    for path in reproducers():
        requires = requires_of(path)
        assert set(requires) == {"backends", "modules", "gpu", "x64"}, path.name
        assert set(requires["backends"]) <= set(BACKENDS) and requires["backends"], path.name
        named = f"results/repro/{path.name}" in named_reproducers()
        assert named != (path.stem in UNCLAIMED_PRESENT_ON), f"{path.name}: named by a claim and unclaimed, or by neither"


def test_a_reproducer_outside_its_preconditions_exits_2_with_one_line():
    """Checked from this process's environment for every backend this venv lacks, without Keras."""
    missing_backends = [b for b in BACKENDS if importlib.util.find_spec(b) is None]
    if not missing_backends:
        pytest.skip("every backend is installed here")
    path = REPRO / "masking_layer_ignored_with_initial_state.py"
    result = run_reproducer(path, missing_backends[0])
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.strip().count("\n") == 0 and result.stdout.startswith("cannot run here"), result.stdout


@pytest.mark.backend
@pytest.mark.parametrize("path", reproducers(), ids=lambda path: path.stem)
def test_reproducer_exit_code_matches_its_claim_on_this_backend(path: Path):
    backend = os.environ.get("KERAS_BACKEND")
    if backend not in BACKENDS:
        pytest.skip("needs KERAS_BACKEND")
    requires = requires_of(path)
    result = run_reproducer(path, backend)
    output = result.stdout + result.stderr
    if not can_run_here(requires, backend):
        assert result.returncode == 2, f"{path.name} should refuse to run here:\n{output[-2000:]}"
        assert result.stdout.startswith("cannot run here") and result.stdout.strip().count("\n") == 0, result.stdout
        return
    assert "Traceback" not in result.stderr, f"{path.name} raised:\n{output[-3000:]}"
    present = expected_presence(path.stem, backend, installed_versions(backend))
    assert result.returncode == (1 if present else 0), (
        f"{path.name} on {backend} exited {result.returncode}; a claim says the bug is "
        f"{'present' if present else 'absent'} here:\n{output[-2000:]}")
