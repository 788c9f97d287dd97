"""Run records: a versioned JSON file per backend plus an .npz of raw outputs, written atomically.

A record is rewritten (to a temporary file, then renamed over the old one) after every case, so an
interrupted run keeps everything it had measured and a reader never sees a half-written file.

One writer per backend and folder: a write of a ``<backend>.*`` file takes the lock ``DIR/.<backend>.lock``
(created atomically, holding the writer's pid, host and command), and a second process that would write
that backend's records into the same folder is refused with ``RecordLocked`` (one line naming the lock
and its holder) before it writes anything. A ``folder_lock`` block (the parity run) holds it throughout;
a ``python -m harness`` command keeps every lock its writes took until it exits, so every study owns its
folder while it runs; a library call outside both holds it only while writing. A lock left by a process
that no longer runs on this host is taken over, with a message.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import math
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.records.header import SCHEMAS

SCHEMA, SCHEMA_VERSION = SCHEMAS["run"]


class RecordError(ValueError):
    """A results file is missing, corrupt, or not a keras-parity record of a version we read."""


class RecordLocked(RecordError):
    """Another process is writing the same backend's records into the same folder."""


# The locks this process holds: lock path -> how many holds it has (a ``folder_lock`` block is one; a write
# outside any block is one that lasts until the process exits); released when it drops to 0.
_held_locks: dict[Path, int] = {}


def lock_path(folder: Path, backend: str) -> Path:
    return folder / f".{backend}.lock"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by someone else
        return True
    return True


def _read_holder(path: Path) -> dict[str, Any] | None:
    """The holder written in a lock file; None when it is gone; {} when it cannot be read."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "a writer whose lock file cannot be read"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} ({holder.get('command')})"


def _acquire(path: Path, command: str) -> None:
    """Create the lock file ``path`` for this process, taking over one whose holder no longer runs on this host;
    RecordLocked when another live process holds it."""
    from harness.records.header import now

    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": now()}
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(me, stream)
        try:
            os.link(temporary, path)  # atomic, and fails when the lock exists: the file appears with its holder written
            return
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
        holder = _read_holder(path)
        if holder is None:  # released meanwhile: try again
            continue
        same_host = holder.get("host") == me["host"] and isinstance(holder.get("pid"), int)
        if same_host and holder["pid"] == me["pid"]:
            return  # ours, from a block that did not release it (this process's pid is the one running)
        if not (same_host and not _pid_running(holder["pid"])):
            raise RecordLocked(f"{path.parent} is being written by another run: {path} is held by {_describe_holder(holder)}; "
                               "wait for it to finish or use another --out folder")
        # A lock left by a process that is gone: move it aside, and take over only if it is still that one.
        aside = path.with_name(f"{path.name}.stale.{me['pid']}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            continue
        if _read_holder(aside) != holder:  # another writer took it over first: give it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
        else:
            print(f"keras-parity: taking over {path}: its holder, {_describe_holder(holder)}, no longer runs", file=sys.stderr)
        aside.unlink(missing_ok=True)
    raise RecordLocked(f"{path} keeps changing hands; another run is writing into {path.parent}")


def _release(path: Path) -> None:
    holder = _read_holder(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)
    _held_locks.pop(path, None)


@atexit.register
def _release_all() -> None:
    for path in list(_held_locks):
        _release(path)


def _hold(path: Path, command: str) -> None:
    if path not in _held_locks:
        _acquire(path, command)
        _held_locks[path] = 0
    _held_locks[path] += 1


@contextlib.contextmanager
def folder_lock(folder: Path, backend: str, command: str = "") -> Iterator[Path]:
    """Hold the lock on writing ``backend``'s records into ``folder`` for the block (released at its end, unless
    this process held it before); RecordLocked when another process holds it."""
    path = lock_path(folder, backend).absolute()
    _hold(path, command or _process_command())
    try:
        yield path
    finally:
        _held_locks[path] -= 1
        if _held_locks[path] == 0:
            _release(path)


def _process_command() -> str:
    return "python -m harness " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("__main__.py") else " ".join(sys.argv)


_locks_last_until_exit = False


def hold_locks_until_exit() -> None:
    """Keep every lock a write takes until the process exits (``python -m harness`` does: a command owns the records
    it writes for as long as it runs). Otherwise a write outside a ``folder_lock`` block holds it only while writing."""
    global _locks_last_until_exit
    _locks_last_until_exit = True


@contextlib.contextmanager
def _write_lock(path: Path) -> Iterator[None]:
    """A write of a ``<backend>.*`` record holds the backend's lock in its folder (see ``hold_locks_until_exit``)."""
    from harness.execute.backends import BACKENDS

    backend = path.name.split(".", 1)[0]
    lock = lock_path(path.parent, backend).absolute()
    if backend not in BACKENDS or lock in _held_locks:
        yield
    elif _locks_last_until_exit:
        _hold(lock, _process_command())
        yield
    else:
        with folder_lock(path.parent, backend):
            yield


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _write_lock(path):
        _write_unlocked(path, payload)


def _write_unlocked(path: Path, payload: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    _write_atomically(path, (json.dumps(data, indent=1, sort_keys=False, allow_nan=True) + "\n").encode("utf-8"))


def write_text(path: Path, text: str) -> None:
    _write_atomically(path, text.encode("utf-8"))


def _storable(array: np.ndarray) -> np.ndarray:
    """bfloat16 (an ml_dtypes type NumPy cannot read back without it) is stored as float32: exact."""
    return array.astype(np.float32) if array.dtype.name == "bfloat16" else array


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{key: _storable(np.asarray(value)) for key, value in arrays.items()})
    _write_atomically(path, buffer.getvalue())


def read_json_file(path: Path) -> dict[str, Any]:
    """Parse a JSON results file; RecordError with a one-line reason when it is missing or corrupt."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RecordError(f"{path} is not valid JSON ({error}); delete it or re-run 'python -m harness run'") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path} is not a keras-parity record (not a JSON object)")
    return data


def read_record(path: Path) -> dict[str, Any]:
    """Load and check one run record; RecordError with a one-line reason when it cannot be used."""
    data = read_json_file(path)
    if data.get("schema") != SCHEMA:
        raise RecordError(f"{path} is not a keras-parity run record (no \"schema\": \"{SCHEMA}\")")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise RecordError(
            f"{path} has schema_version {data.get('schema_version')!r}; this harness reads version {SCHEMA_VERSION}"
        )
    for key in ("backend", "device", "versions", "cases"):
        if key not in data:
            raise RecordError(f"{path} is a keras-parity record without the {key!r} field")
    return data


def worst_item(case: dict[str, Any], field: str) -> float | None:
    """The largest ``field`` (max_abs_error, max_ulp, ...) over a case result's APIs and outputs; None when
    nothing was compared (the case raised before any output)."""
    values = [
        float(item[field])
        for result in case.get("apis", {}).values()
        for item in result.get("items", {}).values()
        if item.get(field) is not None
    ]
    if not values:
        return None
    # NaN is the worst value there is: max() would drop it or keep it depending on its position.
    return float("nan") if any(math.isnan(value) for value in values) else max(values)


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Raw outputs saved beside a record; empty when the file does not exist."""
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise RecordError(f"{path} is not a readable .npz archive ({error})") from None


def array_key(case: str, api: str, output: str) -> str:
    return f"{case}/{api}/{output}"


def result_arrays(result: dict[str, Any], raw: dict[str, np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
    """The raw outputs of one case result, keyed by (api, output), from a record's archive."""
    return {
        (api, name): raw[array_key(result["case"], api, name)]
        for api, entry in result["apis"].items() for name in entry["items"]
        if array_key(result["case"], api, name) in raw
    }
