"""The main job's shape (issue 16): what each parity session runs in its one process, the order the sessions
depend on each other under 'nox --parallel', one virtualenv per backend and Keras version, and the timing records
the sessions write for BENCH.md (read back by the benchmark report's own reader, so the two cannot drift)."""

import json
import os
import shlex
import types

import pytest

from conftest import load_noxfile
from harness.reports import bench_sessions

noxfile = load_noxfile()


def test_each_parity_session_runs_the_cases_first_then_its_studies_in_one_batch():
    for backend in noxfile.BACKENDS:
        release = noxfile.parity_commands("release", backend, ["--cases", "lstm_*"])
        assert release[0] == ["run", "--backend", backend, "--out", "results", "--cases", "lstm_*"]  # extra arguments: the run's
        assert [command[0] for command in release[1:]] == noxfile.RELEASE_STUDIES
        assert ["save", "--backend", backend, "--models", noxfile.MODELS] in release
        assert all("--cases" not in command for command in release[1:])
        nightly = noxfile.parity_commands("nightly", backend, [])
        assert [command[0] for command in nightly] == ["run", "probe", "growth"]
        assert all(command[command.index("--out") + 1] == "results/keras-nightly" for command in nightly)
    assert noxfile.parity_commands("tf_keras", "tensorflow", []) == [
        ["run", "--backend", "tensorflow", "--out", "results/tf-keras", "--keras-api", "tf_keras"]]


def test_every_batched_command_parses_with_the_harness_parser():
    """What the sessions hand to 'harness batch' is valid for it: the same check batch makes before running."""
    from harness.cli import BATCHABLE, build_parser

    parser = build_parser()
    for keras, backend in noxfile.PARITY_RUNS:
        for command in noxfile.parity_commands(keras, backend, []):
            text = " ".join(shlex.quote(part) for part in command)
            assert command[0] in BATCHABLE
            assert parser.parse_args(shlex.split(text)).backend == backend


def _requires(name: str) -> list[str]:
    function = getattr(noxfile, name)
    return list(getattr(function, "requires", None) or [])


def test_sessions_wait_for_what_they_read_and_the_report_alone_waits_for_nothing():
    every_parity = [f"parity(keras={keras!r}, backend={backend!r})" for keras, backend in noxfile.PARITY_RUNS]
    release = [f"parity(keras='release', backend={backend!r})" for backend in noxfile.BACKENDS]
    assert sorted(_requires("serialization")) == sorted(release)  # loads what every release session saved
    assert sorted(_requires("publish")) == sorted(every_parity + [f"serialization(backend={b!r})" for b in noxfile.BACKENDS])
    assert _requires("report") == [] and _requires("bench") == []  # re-merge or benchmark without re-measuring
    assert noxfile.nox.options.sessions == ["parity", "serialization", "publish"]
    assert noxfile.parity.allow_parallel and noxfile.serialization.allow_parallel
    assert not getattr(noxfile.bench, "allow_parallel", False)  # benchmarks never share the cores


def test_the_longest_parity_runs_start_first():
    assert noxfile.PARITY_RUNS[0] == ("release", "jax")
    assert sorted(noxfile.PARITY_RUNS) == sorted([(keras, backend) for keras in ("release", "nightly") for backend in noxfile.BACKENDS]
                                                 + [("tf_keras", "tensorflow")])


def test_the_slug_is_the_virtualenv_folder_nox_makes():
    """release_python finds the release's virtualenv by this name: the one nox gave parity(keras='release', ...)."""
    from nox.sessions import _normalize_path

    for keras, backend in noxfile.PARITY_RUNS:
        name = f"parity(keras={keras!r}, backend={backend!r})"
        assert os.path.basename(_normalize_path("/tmp/envdir", name)) == noxfile._slug(name)


@pytest.mark.parametrize("argv, expected", [
    (["nox"], str(os.cpu_count())), (["nox", "-j", "3"], "3"), (["nox", "--parallel=1"], "1"), (["nox", "--parallel", "auto"], str(os.cpu_count())),
])
def test_the_jobs_a_nox_command_line_asks_for(argv, expected, monkeypatch):
    monkeypatch.delenv("NOX_PARALLEL", raising=False)
    assert noxfile._jobs_asked(argv) == expected


class _FakeSession:
    def __init__(self, name: str, posargs=()):
        self.name, self.posargs, self.ran = name, list(posargs), []

    def run(self, *args, **kwargs):
        self.ran.append(args)
        if "boom" in args:
            raise RuntimeError("the command failed")
        return ""


@pytest.fixture
def job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(noxfile.JOB_ENV, "job-a")
    monkeypatch.setenv(noxfile.JOB_STARTED_ENV, "2026-12-02T10:00:00+00:00")
    monkeypatch.setenv(noxfile.JOB_JOBS_ENV, "2")
    monkeypatch.setenv(noxfile.JOB_CLEAN_ENV, "1")
    monkeypatch.delenv(noxfile.TIMINGS_ENV, raising=False)
    return tmp_path


def test_a_session_record_reads_back_through_the_benchmark_reader(job):
    session = _FakeSession("parity(keras='release', backend='jax')")
    batch = job / "batch.json"
    batch.write_text(json.dumps({"backend": "jax", "commands": [
        {"argv": ["python", "-m", "harness", "run", "--backend", "jax", "--out", "results"], "exit_code": 0, "wall_s": 61.5}]}))
    with noxfile.timed(session) as timer:
        timer.run("python", "-m", "harness", "batch")
        timer.commands.pop()
        timer.add_batch(batch)
    with pytest.raises(RuntimeError):
        with noxfile.timed(_FakeSession("serialization(backend='jax')")) as timer:
            timer.run("python", "boom")
    timings = {timing.session: timing for timing in bench_sessions.read_sessions(job / noxfile.BENCH)}
    parity = timings["parity(keras='release', backend='jax')"]
    assert parity.status == "success" and parity.jobs == 2 and parity.wall_s >= 0
    assert [command.harness_subcommand() for command in parity.commands] == ["run"] and parity.commands[0].wall_s == 61.5
    assert timings["serialization(backend='jax')"].status == "failed"  # a failure is recorded, not lost


def test_no_record_for_a_subset_of_the_cases_or_with_timings_off(job, monkeypatch):
    with noxfile.timed(_FakeSession("parity(keras='release', backend='jax')", posargs=["--cases", "lstm_*"])):
        pass
    monkeypatch.setenv(noxfile.TIMINGS_ENV, "")
    with noxfile.timed(_FakeSession("parity(keras='release', backend='torch')")):
        pass
    assert not (job / noxfile.SESSION_TIMINGS).exists()


def test_the_main_job_counts_only_its_own_sessions(job, monkeypatch):
    """A session record of an earlier nox invocation is neither counted nor left to be read as this one's."""
    with noxfile.timed(_FakeSession("parity(keras='release', backend='jax')")):
        pass
    monkeypatch.setenv(noxfile.JOB_ENV, "job-b")
    with noxfile.timed(_FakeSession("parity(keras='release', backend='torch')")):
        pass
    noxfile._write_main_job()
    main_job = bench_sessions.read_main_job(job / noxfile.BENCH)
    assert main_job is not None and main_job.sessions == ("parity-keras-release-backend-torch",)
    assert main_job.clean_clone and main_job.jobs == 2 and main_job.wall_s > 0
    assert [timing.session for timing in bench_sessions.read_sessions(job / noxfile.BENCH)] == ["parity(keras='release', backend='torch')"]


def test_release_python_refuses_without_the_release_virtualenv(tmp_path):
    class Stop(Exception):
        pass

    def error(message):
        raise Stop(message)

    session = types.SimpleNamespace(venv_backend="virtualenv", virtualenv=types.SimpleNamespace(location=str(tmp_path / "serialization-backend-jax")),
                                    error=error)
    with pytest.raises(Stop, match=r"run nox -s \"parity\(keras='release', backend='jax'\)\" first"):
        noxfile.release_python(session, "jax")
    python = tmp_path / "parity-keras-release-backend-jax" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert noxfile.release_python(session, "jax") == str(python)
