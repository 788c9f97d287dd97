"""``python -m harness run --jobs N`` (harness/studies/run_jobs.py): N shard processes merged into one record.

The records of a run in jobs must be the records of the same run in one process (arrays bitwise, verdicts equal),
a failing case must still fail the command, a job that cannot run must stop it with one line (its folder kept),
and arguments that cannot run as jobs are refused before anything runs.
"""

import argparse
import json
import sys

import numpy as np
import pytest

from conftest import run_harness
from harness.studies import run_jobs

CASES = "lstm_last_step,lstm_sequences,stacked_lstm,lstm_dense_head,lstm_return_state"


def _verdicts(folder, backend):
    return {name: entry["verdict"] for name, entry in json.loads((folder / f"{backend}.verdicts.json").read_text())["cases"].items()}


def test_jobs_give_the_records_of_one_process(tmp_path, session_backend):
    one, two = tmp_path / "one", tmp_path / "two"
    alone = run_harness("run", "--backend", session_backend, "--out", str(one), "--cases", CASES, "--quiet")
    jobs = run_harness("run", "--backend", session_backend, "--out", str(two), "--cases", CASES, "--jobs", "2")
    assert alone.returncode == 0, alone.stderr
    assert jobs.returncode == 0, jobs.stderr
    assert f"{session_backend} on cpu (2 jobs): " in jobs.stdout
    with np.load(one / f"{session_backend}.npz") as first, np.load(two / f"{session_backend}.npz") as second:
        assert sorted(first.files) == sorted(second.files) and first.files
        for key in first.files:
            assert np.array_equal(first[key], second[key], equal_nan=True), key
    assert _verdicts(one, session_backend) == _verdicts(two, session_backend)
    record = json.loads((two / f"{session_backend}.json").read_text())
    assert [run["shard"] for run in record["merged_from"]] == ["1/2", "2/2"]
    assert "--jobs 2" in record["command"]
    assert not run_jobs.jobs_folder(two, session_backend).exists()  # removed after a successful merge


def test_a_failing_case_fails_the_jobs_command(tmp_path, session_backend):
    """A fault that breaks the LSTM must come out failed through the jobs as it does in one process (exit 1)."""
    completed = run_harness("run", "--backend", session_backend, "--out", str(tmp_path), "--cases", CASES, "--jobs", "2",
                            "--inject-fault", "swap_input_forget_gates")
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "lstm_last_step: fail" in completed.stderr


@pytest.mark.parametrize("extra, message", [
    (["--jobs", "0"], "--jobs must be 1 or more, not 0"),
    (["--jobs", "2", "--resume"], "--resume cannot be combined with --jobs above 1"),
    (["--jobs", "2", "--shard", "1/2"], "--shard cannot be combined with --jobs above 1"),
    (["--jobs", "3", "--cases", "lstm_last_step,lstm_sequences"], "--jobs 3 is more than the 2 selected case(s)"),
])
def test_arguments_that_cannot_run_as_jobs_are_one_line_exit_2(tmp_path, extra, message):
    completed = run_harness("run", "--backend", "torch", "--out", str(tmp_path), *extra)
    assert completed.returncode == 2
    assert message in completed.stderr and len(completed.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


def test_a_job_that_cannot_run_stops_the_command_and_keeps_the_folders(tmp_path, monkeypatch):
    def broken_job(args, shard, jobs, folder):
        return [sys.executable, "-c", f"import sys; print('job {shard} could not start'); sys.exit(2 if {shard} == 2 else 0)"]

    monkeypatch.setattr(run_jobs, "job_argv", broken_job)
    args = argparse.Namespace(out=tmp_path, backend="torch", jobs=2)
    with pytest.raises(run_jobs.JobsFailed, match=r"job 2/2 exited with 2: job 2 could not start \(its output: .*job.log"):
        run_jobs.run_jobs(args, "python -m harness run --jobs 2")
    assert (run_jobs.jobs_folder(tmp_path, "torch") / "1" / "job.log").is_file()
    assert not (tmp_path / "torch.json").exists()
