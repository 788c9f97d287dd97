"""noxfile.py: parity runs per (Keras version, backend), the release and keras-nightly, by default; the
nightly install is derived from pyproject.toml's pins without keras and fails loudly when the venv does
not import keras-nightly. The GPU sessions exist but are not run by default, their CUDA packages are
derived from pyproject.toml's pins, and on a machine without a GPU they fail loudly (or skip when asked to).

The GPU check runs in this test session's interpreter, whose backend (KERAS_BACKEND) is a CPU build
as pinned in pyproject.toml: exactly what a GPU session must refuse.
"""

import functools
import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conftest import ROOT, load_noxfile

DEFAULT_SESSIONS = ["parity", "serialization", "publish"]
CHECK_TIMEOUT_S = 300


noxfile = load_noxfile()


def _pins() -> dict[str, list[Requirement]]:
    """pyproject.toml's extras, read here independently of noxfile.py."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {name: [Requirement(text) for text in requirements] for name, requirements in extras.items()}


def _pinned_version(backend: str, package: str) -> str:
    (requirement,) = [req for req in _pins()[backend] if req.name == package]
    (pin,) = list(requirement.specifier)
    assert pin.operator == "==", f"pyproject.toml pins {package} with {pin.operator}, not =="
    return pin.version


def _listed_sessions() -> dict[str, bool]:
    """``nox -l``: every session's full name, and whether it is selected by default (marked *)."""
    done = subprocess.run([sys.executable, "-m", "nox", "-l"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    sessions = {}
    for line in done.stdout.splitlines():
        if line[:2] in ("* ", "- "):
            sessions[line[2:].split(" -> ")[0]] = line.startswith("*")
    return sessions


def _env(**changes: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # 'python' is this interpreter
    env["KERAS_PARITY_TIMINGS"] = ""  # the sessions these tests start are not the main job: no timing records
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@functools.cache  # one process per distinct check: importing a backend takes seconds
def _gpu_check(backend: str, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", noxfile.GPU_CHECK, *args], capture_output=True, text=True,
                          timeout=CHECK_TIMEOUT_S, env=_env(KERAS_BACKEND=backend, **env))


def _require_cpu_build(backend: str) -> None:
    if _gpu_check(backend, "build", backend).returncode == 0:
        pytest.skip(f"this interpreter has a CUDA build of {backend}: the CPU-build path cannot be shown here")


def _require_no_gpu(backend: str) -> None:
    if _gpu_check(backend, "devices", backend).returncode == 0:
        pytest.skip(f"{backend} sees a GPU here: the no-GPU path cannot be shown")


# --- sessions ---------------------------------------------------------------------------------------


def test_gpu_sessions_are_listed_and_not_run_by_default():
    sessions = _listed_sessions()
    for backend in noxfile.BACKENDS:
        assert sessions[f"parity_gpu(backend='{backend}')"] is False
    assert sessions["report_gpu"] is False
    assert noxfile.nox.options.sessions == DEFAULT_SESSIONS
    selected = {name.split("(")[0] for name, default in sessions.items() if default}
    assert selected == set(DEFAULT_SESSIONS)


def test_parity_runs_every_backend_with_the_release_and_nightly_by_default():
    sessions = _listed_sessions()
    for keras in ("release", "nightly"):
        for backend in noxfile.BACKENDS:
            assert sessions[f"parity(keras='{keras}', backend='{backend}')"] is True
    for name in ("serialization", "faults"):  # release only
        assert all(not session.startswith(f"{name}(keras=") for session in sessions)
    assert all(sessions[f"serialization(backend='{backend}')"] for backend in noxfile.BACKENDS)
    # the fault catalogue runs inside the release's parity session; its own session is for running it alone
    assert not any(sessions[f"faults(backend='{backend}')"] for backend in noxfile.BACKENDS)
    assert all(["faults", "--backend", backend, "--out", "results"] in noxfile.parity_commands("release", backend, [])
               for backend in noxfile.BACKENDS)
    assert noxfile.results_folder("release") == "results"
    assert noxfile.results_folder("nightly") == "results/keras-nightly"
    with pytest.raises(ValueError, match="accepted: release, nightly"):
        noxfile.results_folder("3.15.1")


def test_nightly_requirements_are_the_backend_pins_without_keras():
    for backend in noxfile.BACKENDS:
        expected = [str(req) for req in _pins()[backend] if req.name != "keras"]
        assert noxfile.nightly_requirements(backend) == expected
        assert all(Requirement(text).name != "keras" for text in noxfile.nightly_requirements(backend))
    assert noxfile.pinned_keras() == _pinned_version("jax", "keras")
    with pytest.raises(ValueError, match="no extra 'mlx'"):
        noxfile.nightly_requirements("mlx")
    with pytest.raises(ValueError, match="one exact version"):
        noxfile.pinned_keras({"tensorflow": ["keras==3.15.1"], "jax": ["keras==3.16.0"], "torch": ["keras==3.15.1"]})


NIGHTLY = "3.16.0.dev2026102704"


@pytest.mark.parametrize("imported, distributions, words", [
    ("3.15.1", {"keras": "3.15.1", "keras-nightly": None}, "keras-nightly is not installed"),
    ("3.15.1", {"keras": "3.15.1", "keras-nightly": NIGHTLY}, "not keras-nightly 3.16.0.dev2026102704 (the keras release 3.15.1 is installed"),
    (NIGHTLY, {"keras": "3.15.1", "keras-nightly": NIGHTLY}, "the keras release 3.15.1 is installed beside it"),
    ("3.15.1", {"keras": None, "keras-nightly": NIGHTLY}, "keras imports as 3.15.1, not keras-nightly"),
])
def test_nightly_install_check_fails_on_a_mismatched_version(imported, distributions, words):
    problem = noxfile.keras_install_problem("nightly", imported, distributions, "3.15.1")
    assert problem is not None and words in problem and "remove the session's venv" in problem


def test_install_check_accepts_the_version_asked_for():
    assert noxfile.keras_install_problem("nightly", NIGHTLY, {"keras": None, "keras-nightly": NIGHTLY}, "3.15.1") is None
    assert noxfile.keras_install_problem("release", "3.15.1", {"keras": "3.15.1", "keras-nightly": None}, "3.15.1") is None
    problem = noxfile.keras_install_problem("release", NIGHTLY, {"keras": None, "keras-nightly": NIGHTLY}, "3.15.1")
    assert problem is not None and "expected the pinned release 3.15.1" in problem
    with pytest.raises(ValueError, match="accepted: release, nightly"):
        noxfile.keras_install_problem("latest", NIGHTLY, {}, "3.15.1")


def test_nightly_parity_session_fails_loudly_on_the_release(session_backend, tmp_path):
    """Run in this interpreter (keras 3.15.1, no keras-nightly): the session stops at the check, measuring nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "nox", "--no-venv", "--no-install", "--envdir", str(tmp_path),
         "-s", f"parity(keras='nightly', backend='{session_backend}')"],
        cwd=ROOT, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, env=_env(),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "parity(keras='nightly'): keras-nightly is not installed (keras imports as 3.15.1)" in output
    assert "harness probe" not in output and "harness run" not in output


def test_parity_runs_keras_2_on_tensorflow_only_by_default():
    sessions = _listed_sessions()
    assert sessions["parity(keras='tf_keras', backend='tensorflow')"] is True
    assert [name for name in sessions if "tf_keras" in name] == ["parity(keras='tf_keras', backend='tensorflow')"]
    assert noxfile.results_folder("tf_keras") == "results/tf-keras"
    assert ("tf_keras", "tensorflow") in noxfile.PARITY_RUNS and ("tf_keras", "jax") not in noxfile.PARITY_RUNS


def test_tf_keras_requirements_install_tf_keras_without_its_tensorflow_dependency():
    pins = [str(req) for req in _pins()["tf_keras"]]
    others, tf_keras = noxfile.tf_keras_requirements()
    assert tf_keras == f"tf-keras=={_pinned_version('tf_keras', 'tf-keras')}" and noxfile.pinned_tf_keras() == "2.21.0"
    assert others == [pin for pin in pins if not pin.startswith("tf-keras")]
    # the same TensorFlow build and Keras 3 release as the tensorflow extra: only Keras 2 differs
    assert _pinned_version("tf_keras", "tensorflow-cpu") == _pinned_version("tensorflow", "tensorflow-cpu")
    assert _pinned_version("tf_keras", "keras") == noxfile.pinned_keras()
    with pytest.raises(ValueError, match="no extra 'tf_keras'"):
        noxfile.tf_keras_requirements({"tensorflow": []})
    with pytest.raises(ValueError, match="one exact version"):
        noxfile.tf_keras_requirements({"tf_keras": ["tensorflow-cpu==2.21.0", "tf-keras>=2.21"]})


@pytest.mark.parametrize("distributions, words", [
    ({"keras": "3.15.1", "tf-keras": None, "tensorflow": None}, "tf-keras is not installed"),
    ({"keras": "3.15.1", "tf-keras": "2.20.1", "tensorflow": None}, "tf-keras is 2.20.1, expected the pinned 2.21.0"),
    ({"keras": "3.15.1", "tf-keras": "2.21.0", "tensorflow": "2.21.0"}, "the full tensorflow 2.21.0 distribution is installed"),
])
def test_tf_keras_install_check_fails_on_a_wrong_install(distributions, words):
    problem = noxfile.keras_install_problem("tf_keras", "3.15.1", distributions, "3.15.1")
    assert problem is not None and words in problem and "remove the session's venv" in problem
    assert noxfile.keras_install_problem("tf_keras", "3.15.1", {"keras": "3.15.1", "tf-keras": "2.21.0", "tensorflow": None},
                                         "3.15.1") is None


def test_tf_keras_parity_session_fails_loudly_without_tf_keras(tmp_path):
    """Run in this interpreter (no tf-keras): the session stops at the check, measuring nothing."""
    if importlib.util.find_spec("tf_keras") is not None:
        pytest.skip("tf_keras is installed here: the missing-install path cannot be shown")
    done = subprocess.run(
        [sys.executable, "-m", "nox", "--no-venv", "--no-install", "--envdir", str(tmp_path),
         "-s", "parity(keras='tf_keras', backend='tensorflow')"],
        cwd=ROOT, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, env=_env(),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "parity(keras='tf_keras'): tf-keras is not installed" in output
    assert "harness run" not in output


def test_noxfile_backends_are_the_pyproject_extras():
    assert set(noxfile.BACKENDS) <= set(_pins())


# --- CUDA requirements derived from pyproject.toml ---------------------------------------------------


def test_cuda_requirements_are_derived_from_the_pyproject_pins():
    keras = _pinned_version("tensorflow", "keras")
    assert noxfile.gpu_requirements("tensorflow") == [f"keras=={keras}", f"tensorflow[and-cuda]=={_pinned_version('tensorflow', 'tensorflow-cpu')}"]
    assert noxfile.gpu_requirements("jax") == [f"keras=={keras}", f"jax[cuda12]=={_pinned_version('jax', 'jax')}"]
    assert noxfile.gpu_requirements("torch") == [f"keras=={keras}", f"torch==={_pinned_version('torch', 'torch')}"]
    for backend in noxfile.BACKENDS:
        names = {Requirement(text).name for text in noxfile.gpu_requirements(backend)}
        assert "tensorflow-cpu" not in names
        assert all("cpu" not in Requirement(text).extras for text in noxfile.gpu_requirements(backend))


def test_cuda_requirements_follow_other_pins():
    extras = {
        "tensorflow": ["keras==9.1.0", "tensorflow-cpu==9.2.0"],
        "jax": ["keras==9.1.0", "jax[cpu]==9.3.0"],
        "torch": ["keras==9.1.0", "torch==9.4.0; platform_system == 'Linux'"],
    }
    assert noxfile.gpu_requirements("tensorflow", extras) == ["keras==9.1.0", "tensorflow[and-cuda]==9.2.0"]
    assert noxfile.gpu_requirements("jax", extras) == ["keras==9.1.0", "jax[cuda12]==9.3.0"]
    assert noxfile.gpu_requirements("torch", extras) == ["keras==9.1.0", 'torch===9.4.0; platform_system == "Linux"']
    with pytest.raises(ValueError, match="no extra 'mlx'"):
        noxfile.gpu_requirements("mlx", extras)


def test_torch_requirement_excludes_local_cpu_builds():
    """'torch==X' is satisfied by a find-links 'X+cpu' wheel (and pip prefers it: a local version sorts
    higher); the GPU session's 'torch===X' is satisfied only by the plain X, PyPI's CUDA build."""
    version = _pinned_version("torch", "torch")
    (cpu_pin,) = [req for req in _pins()["torch"] if req.name == "torch"]
    (gpu_pin,) = [Requirement(text) for text in noxfile.gpu_requirements("torch") if text.startswith("torch")]
    assert cpu_pin.specifier.contains(f"{version}+cpu")
    assert not gpu_pin.specifier.contains(f"{version}+cpu")
    assert not gpu_pin.specifier.contains(f"{version}+cu126")
    assert gpu_pin.specifier.contains(version)


@pytest.mark.parametrize("pin", ["torch", "torch>=2.13", "torch==2.13.*", "torch==2.13.0+cu126"])
def test_torch_must_be_pinned_exactly(pin):
    with pytest.raises(ValueError, match="pin torch to one exact version"):
        noxfile.cuda_requirement(pin)


def test_harness_run_accepts_the_gpu_session_arguments():
    """parity_gpu runs 'harness run --backend B --precision P --out results/gpu/P' for every precision, then each of
    GPU_STUDIES with the same arguments."""
    from harness.cli import build_parser

    for backend in noxfile.BACKENDS:
        for precision in noxfile.PRECISIONS:
            args = build_parser().parse_args(["run", "--backend", backend, "--precision", precision,
                                              "--out", f"{noxfile.GPU_RESULTS}/{precision}"])
            assert args.precision == precision
            for study in noxfile.GPU_STUDIES:
                args = build_parser().parse_args([study, "--backend", backend, "--precision", precision,
                                                  "--out", f"{noxfile.GPU_RESULTS}/{precision}"])
                assert args.precision == precision and args.command == study


# --- the GPU check, in this session's interpreter (a CPU build, no GPU) --------------------------------


def test_gpu_check_refuses_a_cpu_build(session_backend):
    _require_cpu_build(session_backend)
    done = _gpu_check(session_backend, "build", session_backend)
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("parity_gpu: error:") and "build" in message
    assert f".nox/parity_gpu-backend-{session_backend}" in message  # how to fix it
    if session_backend == "torch":
        assert "torch.version.cuda is None" in message and "PIP_FIND_LINKS" in message


def test_gpu_check_fails_without_a_gpu(session_backend):
    _require_no_gpu(session_backend)
    done = _gpu_check(session_backend, "devices", session_backend)
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(f"parity_gpu: error: no GPU is visible to {session_backend}")
    assert "--skip-without-gpu" in message and "CUDA_VISIBLE_DEVICES" not in message
    assert noxfile.SKIPPED_MARKER not in done.stdout


def test_gpu_check_names_a_hiding_cuda_visible_devices(session_backend):
    done = _gpu_check(session_backend, "devices", session_backend, CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 1
    assert "CUDA_VISIBLE_DEVICES='' is set" in done.stderr


def test_gpu_check_skips_without_a_gpu_when_asked(session_backend):
    _require_no_gpu(session_backend)
    done = _gpu_check(session_backend, "devices", session_backend, "--skip-without-gpu")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith(noxfile.SKIPPED_MARKER) and f"no GPU is visible to {session_backend}" in line


@pytest.mark.parametrize("args", [[], ["build"], ["devices", "mxnet"], ["probe", "jax"], ["build", "jax", "torch"]])
def test_gpu_check_usage_errors(args):
    done = subprocess.run([sys.executable, "-c", noxfile.GPU_CHECK, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("usage:")


# --- the parity_gpu session itself, run by nox in this interpreter (--no-venv --no-install) -----------


def _nox_parity_gpu(backend: str, envdir: Path, *posargs: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nox", "--no-venv", "--no-install", "--envdir", str(envdir),
         "-s", f"parity_gpu(backend='{backend}')", "--", *posargs],
        cwd=ROOT, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, env=_env(**env),
    )


def test_parity_gpu_session_fails_on_a_cpu_build_even_with_skip(session_backend, tmp_path):
    _require_cpu_build(session_backend)
    done = _nox_parity_gpu(session_backend, tmp_path, "--skip-without-gpu")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "parity_gpu: error:" in output and "build" in output
    assert f"Session parity_gpu(backend='{session_backend}') failed" in output
    assert "harness run" not in output


def _fake_jax_cuda_plugin(folder: Path) -> Path:
    """Metadata of a jax-cuda12-plugin distribution: what the build check looks for."""
    info = folder / "jax_cuda12_plugin-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: jax-cuda12-plugin\nVersion: 0.0.0\n")
    return folder


@pytest.mark.parametrize("skip", [True, False])
def test_parity_gpu_session_without_a_gpu(session_backend, tmp_path, skip):
    """With a CUDA build but no GPU: skipped (nox exits 0) with the flag, failed without it; nothing runs.
    Shown on JAX, whose CUDA build can be faked by a plugin's metadata."""
    if session_backend != "jax":
        pytest.skip("a CUDA build can be faked only for jax (a jax-cuda12-plugin's metadata)")
    _require_no_gpu(session_backend)
    plugin = _fake_jax_cuda_plugin(tmp_path / "plugin")
    done = _nox_parity_gpu(session_backend, tmp_path / "envs", *(["--skip-without-gpu"] if skip else []), PYTHONPATH=str(plugin))
    output = done.stdout + done.stderr
    assert "parity_gpu: jax is a CUDA build" in output
    assert "harness run" not in output
    if skip:
        assert done.returncode == 0, output
        assert "Session parity_gpu(backend='jax') skipped: parity_gpu: skipped: no GPU is visible to jax" in output
    else:
        assert done.returncode == 1, output
        assert "parity_gpu: error: no GPU is visible to jax" in output


def test_a_venv_without_an_importable_keras_is_a_problem_for_every_version():
    for keras in ("release", "nightly", "tf_keras"):
        problem = noxfile.keras_install_problem(keras, None, {"keras": None}, "3.15.1")
        assert problem is not None and "not importable" in problem
