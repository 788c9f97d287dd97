"""The one header every record starts with: what ran, where, with which versions and settings.

Every study (parity run, probes, growth, faults, serialization) writes a record whose header comes
from ``make_header``, so a published result always says which versions, device, device class,
precision settings, seed and command produced it.
"""

from __future__ import annotations

import functools
import hashlib
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.execute.backends import BackendInfo

SCHEMAS = {
    "run": ("keras-parity/run", 2),
    "probes": ("keras-parity/probes", 2),
    "growth": ("keras-parity/growth", 2),
    "faults": ("keras-parity/faults", 2),
    "serialization": ("keras-parity/serialization", 2),
    "verdicts": ("keras-parity/verdicts", 1),
    "cross_backend": ("keras-parity/cross-backend", 1),
    "gradients": ("keras-parity/gradients", 1),
    "training": ("keras-parity/training", 2),  # 2: drift checks (long_runs[].drift_check), precision_runs; 1 still read
    "training_mode": ("keras-parity/training-mode", 1),
    "claims": ("keras-parity/claims", 1),  # harness/studies/claim_study.py: each claim shown not to absorb a fault
    "bench_kernels": ("keras-parity/bench-kernels", 1),  # harness/studies/bench_kernels.py: reference vs backend timings
    "bench_overhead": ("keras-parity/bench-overhead", 1),  # harness/studies/bench_overhead.py: harness cost vs bare Keras calls
    "bench_report": ("keras-parity/bench-report", 1),  # harness/reports/bench_report.py: DIR/bench.json, the targets judged
}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def command_line(argv: list[str] | None = None) -> str:
    """The command that produced a record, as a user would type it."""
    parts = sys.argv[1:] if argv is None else argv
    return "python -m harness " + " ".join(shlex.quote(part) for part in parts)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def harness_commit() -> str | None:
    """The git commit of the harness code that is running ("<sha>+dirty" when tracked files differ from it);
    None outside a git checkout (an installed copy) or without git."""
    checkout = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        changed = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no", "--", "harness", "reference"],
                                 capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return sha.stdout.strip() + ("+dirty" if changed.returncode == 0 and changed.stdout.strip() else "")


def make_header(kind: str, backend: BackendInfo, *, seed: int | None, command: str, fault: str | None = None) -> dict[str, Any]:
    """The header of a ``kind`` record measured on ``backend``."""
    schema, version = SCHEMAS[kind]
    return {
        "schema": schema,
        "schema_version": version,
        "backend": backend.name,
        "device": backend.device,
        "device_class": backend.device_class,
        "device_details": dict(backend.device_details),
        "versions": dict(backend.versions),
        "settings": dict(backend.settings),
        "command": command,
        "commit": harness_commit(),
        "seed": seed,
        "fault": fault,
        "started": now(),
        "finished": None,
    }
