"""The console shows the harness; the backend's own log goes to a file beside the records.

TensorFlow, XLA and absl write their C++ logs straight to file descriptor 2, and Keras, TensorFlow,
JAX and PyTorch speak through Python's ``warnings`` and ``logging``. None of that is the harness's
progress or findings, and none of it should be lost either. For a backend command, ``cli.py`` wraps
the command in ``backend_log(path, command)``; the capture itself starts when the backend is
activated (``harness.execute.backends.activate`` calls ``capture_backend_output`` just before Keras
and the backend are imported), so a command refused for bad input writes no file at all. From then
until the command ends:

- fd 2 is the log file (appended, one header line per command: time and command), so whatever the
  C++ side writes lands there;
- ``sys.stderr`` is a stream on a duplicate of the original fd 2: the harness's own messages (progress
  lines, findings, one-line errors, tracebacks) still reach the console;
- Python warnings (``logging.captureWarnings``) and every ``logging`` record that reaches the root
  logger (absl's included) are written to the log file, at the levels the libraries chose: nothing
  is silenced, only moved.

Nothing here imports Keras or a backend.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterator

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_path(folder: Path, backend: str) -> Path:
    """Where the backend log of a command writing to ``folder`` goes: ``folder/<backend>.log``."""
    return Path(folder) / f"{backend}.log"


class _Capture:
    """One command's redirection: armed by ``backend_log``, started by ``capture_backend_output``."""

    def __init__(self, path: Path, command: str) -> None:
        self.path = Path(path)
        self.command = command
        self.started = False
        self._log: IO[str] | None = None
        self._saved_fd: int | None = None
        self._console: IO[str] | None = None
        self._previous_stderr = None
        self._handler: logging.Handler | None = None
        self._last_resort: logging.Handler | None = None
        self._previous_last_resort: logging.Handler | None = None
        self._captured_warnings = False

    def start(self) -> None:
        if self.started:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
        if log.tell() > 0 and not _ends_with_newline(self.path):
            log.write("\n")  # the previous command's last C++ line may lack one
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        log.write(f"==== {stamp} {self.command}\n")
        log.flush()
        self._log = log
        for stream in (sys.stdout, sys.stderr, sys.__stderr__):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.flush()
        self._saved_fd = os.dup(2)
        self._previous_stderr = sys.stderr
        if _writes_to_fd2(sys.stderr):
            # The harness's messages go through sys.stderr: keep it on the console (the saved fd 2).
            encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
            self._console = io.TextIOWrapper(
                io.FileIO(os.dup(self._saved_fd), "w", closefd=True), encoding=encoding,
                errors="backslashreplace", line_buffering=True, write_through=True,
            )
            sys.stderr = self._console
        os.dup2(log.fileno(), 2)
        self._handler = logging.StreamHandler(log)
        self._handler.setFormatter(logging.Formatter(_FORMAT))
        logging.getLogger().addHandler(self._handler)
        # A logger that does not propagate and has no handler falls back to logging.lastResort, which
        # writes to sys.stderr (the console): point it at the file too, at its usual WARNING level.
        self._last_resort = logging.StreamHandler(log)
        self._last_resort.setLevel(logging.WARNING)
        self._last_resort.setFormatter(logging.Formatter(_FORMAT))
        self._previous_last_resort = logging.lastResort
        logging.lastResort = self._last_resort
        if getattr(logging, "_warnings_showwarning", None) is None:  # not already routed to logging
            logging.captureWarnings(True)
            self._captured_warnings = True
        self.started = True

    def stop(self) -> None:
        if not self.started:
            return
        if self._captured_warnings:
            logging.captureWarnings(False)
        logging.lastResort = self._previous_last_resort
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
        if self._log is not None:
            with contextlib.suppress(Exception):
                self._log.flush()
        with contextlib.suppress(Exception):
            sys.__stderr__.flush()
        assert self._saved_fd is not None
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        if self._console is not None:
            with contextlib.suppress(Exception):
                self._console.flush()
            if sys.stderr is self._console:
                sys.stderr = self._previous_stderr
            # Left open: a handler created meanwhile may hold it, and it still points at the console.
        if self._log is not None:
            self._log.close()
        self._captured_warnings = False
        self.started = False


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as stream:
        stream.seek(-1, os.SEEK_END)
        return stream.read(1) == b"\n"


def _writes_to_fd2(stream) -> bool:
    try:
        return stream is not None and stream.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


_armed: _Capture | None = None


@contextlib.contextmanager
def backend_log(path: Path, command: str) -> Iterator[Path]:
    """Within the block, once the backend is activated, the backend's output goes to ``path``.

    Restores fd 2, ``sys.stderr``, logging and warnings on exit. Nests as a no-op."""
    global _armed
    if _armed is not None:
        yield _armed.path
        return
    capture = _Capture(path, command)
    _armed = capture
    try:
        yield capture.path
    finally:
        _armed = None
        capture.stop()


def capture_backend_output() -> Path | None:
    """Start the capture armed by ``backend_log`` (called just before a backend is imported); returns
    the log file, or None when no command armed one (a script, a test calling ``activate``)."""
    if _armed is None:
        return None
    _armed.start()
    return _armed.path
