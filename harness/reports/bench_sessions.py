"""The nox timings the benchmark report reads: one JSON per nox session and one for the whole main job.

``noxfile.py`` writes, beside the benchmark records of DIR (``results/bench``):

- ``DIR/sessions/<slug>.json``, one per nox session: ``session`` (its nox name), ``started`` and ``finished``
  (ISO times), ``wall_s``, ``cpu_s`` (user + system time of its child processes), ``peak_rss_mib`` (the largest
  resident set of any child process), ``status`` (``success`` or ``failed``), ``commands`` (each ``argv`` with its
  ``wall_s``), ``jobs`` (the ``nox --parallel`` value), ``cpu_count`` and ``commit``;
- ``DIR/main_job.json``: ``started``, ``finished``, ``wall_s``, ``sessions`` (slugs), ``jobs``, ``cpu_count``,
  ``clean_clone`` (whether it ran from a fresh clone, installs included), ``commit`` and ``command``.

Either may be absent (a run that did not time its sessions): ``read_sessions`` then returns an empty tuple and
``read_main_job`` None, and the report says "not measured in this run". A file that is there but unreadable or
lacks a field is bad input: ``RecordError`` with one line naming the file and the field.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.records.store import RecordError, read_json_file

SESSIONS_FOLDER = "sessions"
MAIN_JOB_FILE = "main_job.json"
STATUSES = ("success", "failed")


@dataclass(frozen=True)
class CommandTiming:
    argv: tuple[str, ...]
    wall_s: float

    @property
    def text(self) -> str:
        return " ".join(shlex.quote(part) for part in self.argv)

    def harness_subcommand(self) -> str | None:
        """The harness command this runs (``run``, ``probe``...) when it is ``python -m harness ...``; else None."""
        for index, part in enumerate(self.argv[:-1]):
            if part == "-m" and self.argv[index + 1] == "harness":
                rest = self.argv[index + 2:]
                return rest[0] if rest else None
        return None

    def option(self, name: str) -> str | None:
        """The value of ``--name VALUE`` or ``--name=VALUE`` in the argv; None when absent."""
        for index, part in enumerate(self.argv):
            if part == name and index + 1 < len(self.argv):
                return self.argv[index + 1]
            if part.startswith(name + "="):
                return part[len(name) + 1:]
        return None


@dataclass(frozen=True)
class SessionTiming:
    slug: str
    session: str
    started: str
    finished: str
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    status: str
    commands: tuple[CommandTiming, ...]
    jobs: int
    cpu_count: int
    commit: str

    def parameter(self, name: str) -> str | None:
        """A nox parameter of the session name: ``backend`` of ``parity(keras='release', backend='jax')`` is 'jax'."""
        match = re.search(rf"\b{re.escape(name)}\s*=\s*['\"]([^'\"]*)['\"]", self.session)
        return match.group(1) if match else None


@dataclass(frozen=True)
class MainJob:
    started: str
    finished: str
    wall_s: float
    sessions: tuple[str, ...]
    jobs: int
    cpu_count: int
    clean_clone: bool
    commit: str
    command: str


def _field(path: Path, data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in data:
        raise RecordError(f"{path} has no {name!r} field")
    value = data[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise RecordError(f"{path}: {name!r} is {value!r}, not a {names}")
    return value


def _seconds(path: Path, data: dict[str, Any], name: str) -> float:
    value = float(_field(path, data, name, (int, float)))
    if not math.isfinite(value) or value < 0:
        raise RecordError(f"{path}: {name!r} is {value!r}, not a finite number of seconds (or MiB) >= 0")
    return value


def _command(path: Path, index: int, entry: Any) -> CommandTiming:
    if not isinstance(entry, dict):
        raise RecordError(f"{path}: commands[{index}] is not an object with 'argv' and 'wall_s'")
    argv = _field(path, entry, "argv", list)
    if not all(isinstance(part, str) for part in argv):
        raise RecordError(f"{path}: commands[{index}].argv holds a value that is not a string")
    return CommandTiming(tuple(argv), _seconds(path, entry, "wall_s"))


def read_session(path: Path) -> SessionTiming:
    """One ``sessions/<slug>.json``; RecordError with one line when it is unreadable or a field is missing or wrong."""
    data = read_json_file(path)
    status = _field(path, data, "status", str)
    if status not in STATUSES:
        raise RecordError(f"{path}: 'status' is {status!r}, not one of {', '.join(STATUSES)}")
    commands = _field(path, data, "commands", list)
    return SessionTiming(
        slug=path.stem, session=_field(path, data, "session", str), started=_field(path, data, "started", str),
        finished=_field(path, data, "finished", str), wall_s=_seconds(path, data, "wall_s"), cpu_s=_seconds(path, data, "cpu_s"),
        peak_rss_mib=_seconds(path, data, "peak_rss_mib"), status=status,
        commands=tuple(_command(path, index, entry) for index, entry in enumerate(commands)),
        jobs=_field(path, data, "jobs", int), cpu_count=_field(path, data, "cpu_count", int), commit=_field(path, data, "commit", str),
    )


def read_sessions(folder: Path) -> tuple[SessionTiming, ...]:
    """Every ``folder/sessions/*.json``, in the order they started (then by slug); empty when there is none."""
    sessions_folder = Path(folder) / SESSIONS_FOLDER
    if not sessions_folder.is_dir():
        return ()
    sessions = [read_session(path) for path in sorted(sessions_folder.glob("*.json"))]
    return tuple(sorted(sessions, key=lambda session: (session.started, session.slug)))


def read_main_job(folder: Path) -> MainJob | None:
    """``folder/main_job.json``; None when it does not exist."""
    path = Path(folder) / MAIN_JOB_FILE
    if not path.exists():
        return None
    data = read_json_file(path)
    slugs = _field(path, data, "sessions", list)
    if not all(isinstance(slug, str) for slug in slugs):
        raise RecordError(f"{path}: 'sessions' holds a value that is not a string")
    return MainJob(
        started=_field(path, data, "started", str), finished=_field(path, data, "finished", str),
        wall_s=_seconds(path, data, "wall_s"), sessions=tuple(slugs), jobs=_field(path, data, "jobs", int),
        cpu_count=_field(path, data, "cpu_count", int), clean_clone=_field(path, data, "clean_clone", bool),
        commit=_field(path, data, "commit", str), command=_field(path, data, "command", str),
    )


def failed_sessions(sessions: tuple[SessionTiming, ...], slugs: tuple[str, ...] | None = None) -> list[str]:
    """The slugs of the sessions (of ``slugs`` only, when given) whose status is ``failed``."""
    return [session.slug for session in sessions if session.status == "failed" and (slugs is None or session.slug in slugs)]


def parity_run_seconds(sessions: tuple[SessionTiming, ...], backend: str) -> tuple[float, str, SessionTiming] | None:
    """The wall time of ``python -m harness run`` in the release parity session of ``backend`` (the default matrix,
    start-up included), where it came from and the session; None when no such session was timed."""
    for session in sessions:
        if not session.session.startswith("parity(") or session.parameter("backend") != backend:
            continue
        if session.parameter("keras") != "release":
            continue
        runs = [command for command in session.commands if command.harness_subcommand() == "run"]
        if runs:
            return sum(command.wall_s for command in runs), f"session {session.session}: {runs[0].text}", session
    return None
