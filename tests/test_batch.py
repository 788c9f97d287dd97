"""'harness batch': several commands of one backend in one process (issue 16), and JAX's compilation cache.

Batching and the cache exist to save time; neither may change a number. So the records a batch writes are
compared, array by array and bitwise, with the records of the same command run alone, after another command has
run in the same process and left its models and settings behind."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_harness

CASES = "lstm_initial_state,stacked_lstm"  # unequal sizes, two layers, initial states


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _assert_same_record(batched, alone, backend: str) -> None:
    batched_arrays, alone_arrays = _arrays(batched / f"{backend}.npz"), _arrays(alone / f"{backend}.npz")
    assert sorted(batched_arrays) == sorted(alone_arrays) and batched_arrays
    for key, value in alone_arrays.items():
        assert np.array_equal(batched_arrays[key], value, equal_nan=True), key
    verdicts = [json.loads((folder / f"{backend}.verdicts.json").read_text())["cases"] for folder in (batched, alone)]
    assert {name: entry["verdict"] for name, entry in verdicts[0].items()} == {name: entry["verdict"] for name, entry in verdicts[1].items()}


def test_a_batched_run_records_bitwise_what_the_run_alone_records(session_backend, tmp_path):
    """gradients first (it builds models and trains nothing), then the run: the run's record equals the record
    of the run alone in a fresh process, array by array; the timings file names both commands."""
    batched, alone, timings = tmp_path / "batched", tmp_path / "alone", tmp_path / "timings.json"
    done = run_harness("batch", "--backend", session_backend, "--timings", str(timings),
                       f"gradients --backend {session_backend} --out {batched} --cases lstm_initial_state",
                       f"run --backend {session_backend} --out {batched} --cases {CASES} --quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert run_harness("run", "--backend", session_backend, "--out", str(alone), "--cases", CASES, "--quiet").returncode == 0
    _assert_same_record(batched, alone, session_backend)
    record = json.loads(timings.read_text())
    assert [entry["argv"][3] for entry in record["commands"]] == ["gradients", "run"]
    assert all(entry["exit_code"] == 0 and entry["wall_s"] > 0 for entry in record["commands"])


def test_a_batch_runs_every_command_and_exits_with_the_worst_code(session_backend, tmp_path):
    """'load' with no saved models cannot measure (2); the run after it still runs; the batch exits 2, not 0."""
    out = tmp_path / "out"
    done = run_harness("batch", "--backend", session_backend,
                       f"load --backend {session_backend} --models {tmp_path / 'no-models'} --out {out}",
                       f"run --backend {session_backend} --out {out} --cases lstm_last_step --quiet")
    assert done.returncode == 2, done.stderr[-2000:]
    assert (out / f"{session_backend}.json").is_file()
    assert f"batch: load --backend {session_backend}" in done.stderr and ": exit 2 in" in done.stderr


@pytest.mark.parametrize("command, words", [
    ("classify results", "batch runs only run, probe, growth"),
    ("run --backend {other} --out {out}", "every batched command must name --backend {backend}"),
    # models.py binds its Keras on first import: a Keras-2 run after a Keras-3 one would build with Keras 3
    ("run --backend {backend} --keras-api tf_keras --out {out}", "every batched command must build with the same Keras"),
])
def test_a_batch_with_a_bad_command_measures_nothing(session_backend, tmp_path, command, words):
    """Every command parses before the first runs: a bad last command stops the batch before it measures."""
    other = "torch" if session_backend != "torch" else "jax"
    out = tmp_path / "out"
    done = run_harness("batch", "--backend", session_backend,
                       f"run --backend {session_backend} --out {out} --cases lstm_last_step",
                       command.format(other=other, out=out, backend=session_backend))
    assert done.returncode == 2
    assert words.format(backend=session_backend) in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_the_reset_between_commands_restores_keras_global_state(session_backend):
    """What one command sets (a mixed policy, float64 floatx) is gone before the next: run in a fresh process."""
    script = (
        "import keras\n"
        "from harness.execute.backends import reset_keras_state\n"
        "keras.config.set_dtype_policy('mixed_float16'); keras.config.set_floatx('float64')\n"
        "keras.layers.Dense(2, name='dense_named')\n"
        "reset_keras_state()\n"
        "print(keras.config.dtype_policy().name, keras.config.floatx(), keras.layers.Dense(2).name)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KERAS_BACKEND=session_backend))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["float32", "float32", "dense"]  # 'dense', not 'dense_1': the name counters reset too


def test_the_reset_undoes_a_precision_mode_and_the_seeded_global_generators(session_backend):
    """A command run with --precision highest, then keras.utils.set_random_seed(42) (the probe study calls it): after
    the reset, the next command's precision settings read back what a fresh process reads, and Python's and NumPy's
    global generators no longer replay seed 42 (Keras draws its default seeds from Python's: the training-mode study's
    captured dropout masks would be the same in every batch, never as they are alone)."""
    script = (
        "import random, numpy\n"
        "from harness.execute.backends import activate, reset_keras_state\n"
        "fresh = activate(BACKEND, precision='default').settings\n"
        "highest = activate(BACKEND, precision='highest').settings\n"
        "import keras\n"
        "keras.utils.set_random_seed(42); seeded = (random.random(), float(numpy.random.rand()))\n"
        "keras.utils.set_random_seed(42)\n"
        "reset_keras_state()\n"
        "again = activate(BACKEND, precision='default').settings\n"
        "after = (random.random(), float(numpy.random.rand()))\n"
        "print('precision', 'same' if again == fresh else f'differs {again} {fresh}')\n"
        "print('highest', 'differs' if highest != fresh else 'same')\n"
        "print('python', 'replayed' if after[0] == seeded[0] else 'fresh')\n"
        "print('numpy', 'replayed' if after[1] == seeded[1] else 'fresh')\n"
    ).replace("BACKEND", repr(session_backend))
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KERAS_BACKEND=session_backend, CUDA_VISIBLE_DEVICES=""))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines()[-4:])
    assert lines["precision"] == "same"
    assert lines["python"] == "fresh" and lines["numpy"] == "fresh"
    if session_backend == "torch":  # on CPU only PyTorch reads its TF32 flags back: the leak shows in the record
        assert lines["highest"] == "differs"


def test_jax_compilation_cache_changes_no_number(session_backend, tmp_path):
    """The same cases with the cache off, cold and warm: bitwise the same arrays; the cache folder fills, the
    record states the setting."""
    if session_backend != "jax":
        pytest.skip("the persistent compilation cache is JAX's")
    cache = tmp_path / "cache"
    folders = {"off": (tmp_path / "off", ""), "cold": (tmp_path / "cold", str(cache)), "warm": (tmp_path / "warm", str(cache))}
    for name, (out, cache_dir) in folders.items():
        done = subprocess.run([sys.executable, "-m", "harness", "run", "--backend", "jax", "--out", str(out), "--cases", CASES, "--quiet"],
                              cwd=ROOT, capture_output=True, text=True, timeout=900,
                              env=dict(os.environ, KERAS_PARITY_JAX_CACHE=cache_dir, CUDA_VISIBLE_DEVICES=""))
        assert done.returncode == 0, done.stderr[-2000:]
        settings = json.loads((out / "jax.json").read_text())["settings"]
        assert settings["jax_compilation_cache"] == ("off" if name == "off" else "persistent")
        if name == "cold":
            assert any(cache.iterdir())
    _assert_same_record(folders["cold"][0], folders["off"][0], "jax")
    _assert_same_record(folders["warm"][0], folders["off"][0], "jax")
