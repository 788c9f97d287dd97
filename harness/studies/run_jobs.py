"""``python -m harness run --jobs N``: one run's cases measured by N processes at once, merged into one record.

The N jobs are N ``python -m harness run ... --shard K/N`` processes (K = 1 .. N: the deterministic, balanced split
that machines use, ``harness.case.shard``), each writing into its own folder ``OUT/.<backend>.jobs/K`` with its
output in ``job.log`` there. When all have finished, their folders are merged exactly as ``python -m harness merge``
merges shards (``harness.records.merge``: every consistency check included), and the merged ``<backend>.json``,
``<backend>.npz`` and ``<backend>.log`` replace OUT's (each file atomically). The records are the same as one
process's, case for case: each case is measured in isolation (compiler caches reset), so which process ran it does
not change its numbers; ``merged_from`` names the N shards, and the record's ``wall_time_s`` is the sum of the
jobs' (``merge``'s rule), while the summary line prints the wall time the command took.

The parent holds OUT's lock for the backend for the whole command (a second writer is refused, as for a run).
A job that exits with 2 (it could not run) or is killed stops the command with one line naming it and its log;
the job folders are then kept, so nothing already measured is lost (each job's own record is written
incrementally), and a later ``python -m harness merge`` can still combine them. On success they are removed.
``--resume`` and ``--shard`` are refused with ``--jobs`` above 1: a job folder is not resumable from OUT's record,
and a shard of shards is not a split machines can reproduce.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.records import store
from harness.records.merge import merge_folders

JOB_EXIT_FAILED_CASES = 1  # a job whose cases ran and some failed: still a measurement, merged and judged


class JobsFailed(store.RecordError):
    """A job could not run; the one-line message names it and where its output is."""


def jobs_folder(out: Path, backend: str) -> Path:
    return Path(out) / f".{backend}.jobs"


def job_argv(args: argparse.Namespace, shard: int, jobs: int, folder: Path) -> list[str]:
    """The ``python -m harness run`` command of job ``shard`` of ``jobs``: the same selection, seed, fault, time
    limit, precision and Keras API as the parent, into ``folder``."""
    argv = [sys.executable, "-m", "harness", "run", "--backend", args.backend, "--out", str(folder),
            "--shard", f"{shard}/{jobs}", "--quiet", "--case-timeout", str(args.case_timeout), "--precision", args.precision]
    for flag, value in (("--cases", args.cases), ("--case-file", args.case_file), ("--seed", args.seed),
                        ("--inject-fault", args.inject_fault), ("--keras-api", args.keras_api)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def refusal(args: argparse.Namespace) -> str | None:
    """Why these arguments cannot run as jobs (one line), or None."""
    if args.jobs < 1:
        return f"--jobs must be 1 or more, not {args.jobs}"
    if args.jobs > 1 and args.resume:
        return "--resume cannot be combined with --jobs above 1 (a job's folder is not resumable from OUT's record); use --jobs 1"
    if args.jobs > 1 and args.shard is not None:
        return "--shard cannot be combined with --jobs above 1; run the shard with --jobs 1, or --jobs N without --shard"
    return None


def run_jobs(args: argparse.Namespace, command: str) -> tuple[dict[str, Any], float]:
    """Run the jobs, merge them into ``args.out`` (module docstring): (the merged run record, seconds taken).
    JobsFailed when a job could not run; merge's MergeError when their records cannot be merged."""
    started = time.perf_counter()
    root = jobs_folder(args.out, args.backend)
    if root.exists():
        shutil.rmtree(root)
    folders = [root / str(shard) for shard in range(1, args.jobs + 1)]
    processes = []
    for shard, folder in enumerate(folders, start=1):
        folder.mkdir(parents=True)
        with open(folder / "job.log", "wb") as log:
            processes.append(subprocess.Popen(job_argv(args, shard, args.jobs, folder), stdout=log, stderr=subprocess.STDOUT))
    codes = [process.wait() for process in processes]
    for shard, (folder, code) in enumerate(zip(folders, codes), start=1):
        if code not in (0, JOB_EXIT_FAILED_CASES):
            last = (folder / "job.log").read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise JobsFailed(f"job {shard}/{args.jobs} exited with {code}: {last[0]} (its output: {folder / 'job.log'}; "
                             f"the job folders are kept in {root})")
    merged_folder = root / "merged"
    merged = merge_folders(merged_folder, folders, command)[args.backend]
    names = [f"{args.backend}.npz", f"{args.backend}.json", f"{args.backend}.log"]
    for name in names:  # the arrays first: a record is never visible without its arrays
        if (merged_folder / name).is_file():
            os.replace(merged_folder / name, Path(args.out) / name)
    shutil.rmtree(root)
    return merged.record, time.perf_counter() - started
