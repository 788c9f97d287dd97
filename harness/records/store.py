"""Run records: a versioned JSON file per backend plus an .npz of raw outputs, written atomically.

Every file is written to a temporary file, then renamed over the old one, so a reader never sees a
half-written file. The parity run writes its whole record once at its start and once at its end (or when
it is interrupted by an exception); in between, each measured case goes into the run's journal, a hidden
folder ``DIR/.<backend>.journal/`` beside the record: ``header.json`` (the header the run measures under,
and the sha256 of the record file the journal continues), then one ``NNNNN.json`` (the case result and
its verdict) and ``NNNNN.npz`` (its raw outputs) per case, in order. A case costs what that case weighs,
however many came before it, and a run killed outright (SIGKILL, power loss) leaves record + journal,
from which ``--resume`` rebuilds everything it had measured (``read_journal``; a torn last entry is
dropped with a message).

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
import re
import shutil
import socket
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
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
    with _backend_lock(path.parent, path.name.split(".", 1)[0]):
        yield


@contextlib.contextmanager
def _backend_lock(folder: Path, backend: str) -> Iterator[None]:
    """Hold ``backend``'s lock in ``folder`` while writing there (nothing to hold for a name that is not a backend)."""
    from harness.execute.backends import BACKENDS

    lock = lock_path(folder, backend).absolute()
    if backend not in BACKENDS or lock in _held_locks:
        yield
    elif _locks_last_until_exit:
        _hold(lock, _process_command())
        yield
    else:
        with folder_lock(folder, backend):
            yield


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _write_lock(path):
        _write_unlocked(path, payload)


def _write_unlocked(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file, flush it to the disk (fsync, so that it also survives an OS crash) and
    rename it over ``path``: a reader sees the old file or the new one, whole."""
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
    _write_atomically(path, _json_payload(data))


def write_text(path: Path, text: str) -> None:
    _write_atomically(path, text.encode("utf-8"))


def _storable(array: np.ndarray) -> np.ndarray:
    """bfloat16 (an ml_dtypes type NumPy cannot read back without it) is stored as float32: exact."""
    return array.astype(np.float32) if array.dtype.name == "bfloat16" else array


def _arrays_payload(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{key: _storable(np.asarray(value)) for key, value in arrays.items()})
    return buffer.getvalue()


def _json_payload(data: dict[str, Any], indent: int | None = 1) -> bytes:
    return (json.dumps(data, indent=indent, sort_keys=False, allow_nan=True) + "\n").encode("utf-8")


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    _write_atomically(path, _arrays_payload(arrays))


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
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
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


# ------------------------------------------------------------------------------------------ the run's journal

JOURNAL_SCHEMA, JOURNAL_SCHEMA_VERSION = "keras-parity/run-journal", 1
JOURNAL_HEADER = "header.json"
_ENTRY_NAME = re.compile(r"^(\d{5,})\.(json|npz)$")


@dataclass
class Journal:
    """What a journal holds: the header it was written under, the sha256 of the record file it continues,
    its complete entries in order (each ``{"index", "result", "verdict"}``), their raw outputs by
    ``array_key``, and one line per file it dropped (a torn or unreadable entry, a temporary file)."""

    folder: Path
    header: dict[str, Any] | None  # None when header.json cannot be read: what it measured cannot be checked
    base_sha256: str | None
    entries: list[dict[str, Any]] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def journal_folder(folder: Path, backend: str) -> Path:
    """The hidden folder where a parity run of ``backend`` journals its cases into ``folder``."""
    return folder / f".{backend}.journal"


def _entry_path(folder: Path, backend: str, index: int, suffix: str) -> Path:
    return journal_folder(folder, backend) / f"{index:05d}.{suffix}"


def start_journal(folder: Path, backend: str, header: dict[str, Any], base_sha256: str) -> Path:
    """Create an empty journal for a run measuring under ``header`` on top of the record file whose sha256 is
    ``base_sha256``. The folder appears whole (built under a temporary name, then renamed), so a journal always
    has its header; RecordError when one is already there (``clear_journal`` it first)."""
    path = journal_folder(folder, backend)
    with _backend_lock(folder, backend):
        if path.exists():
            raise RecordError(f"{path} already exists: an unfinished run's journal must be merged or cleared first")
        folder.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=folder, prefix=f"{path.name}.new-"))
        try:
            os.chmod(building, 0o755)  # mkdtemp creates 0700; like the records, readable by others
            _write_unlocked(building / JOURNAL_HEADER, _json_payload(
                {"schema": JOURNAL_SCHEMA, "schema_version": JOURNAL_SCHEMA_VERSION, "header": header, "base_sha256": base_sha256}))
            os.rename(building, path)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return path


def append_journal(folder: Path, backend: str, index: int, result: dict[str, Any], verdict: dict[str, Any] | None,
                   arrays: dict[str, np.ndarray]) -> int:
    """Journal one case: its raw outputs (``array_key`` -> array) as ``NNNNN.npz``, then its result and verdict as
    ``NNNNN.json``, the entry's commit (each written atomically); returns the bytes written. Costs what this case
    weighs, whatever the journal already holds."""
    entry = {"index": index, "result": result, "verdict": verdict, "arrays": sorted(arrays)}
    arrays_payload, entry_payload = _arrays_payload(arrays), _json_payload(entry, indent=None)
    with _backend_lock(folder, backend):
        _write_unlocked(_entry_path(folder, backend, index, "npz"), arrays_payload)
        _write_unlocked(_entry_path(folder, backend, index, "json"), entry_payload)
    return len(arrays_payload) + len(entry_payload)


def read_journal(folder: Path, backend: str) -> Journal | None:
    """The journal a run left in ``folder`` (None when there is none). An entry whose pair is incomplete or
    unreadable (a run killed while writing it), and any temporary file, is left out with one line in ``dropped``;
    it never raises for a torn entry."""
    path = journal_folder(folder, backend)
    if not path.is_dir():
        return None
    journal = Journal(folder=path, header=None, base_sha256=None)
    try:
        head = json.loads((path / JOURNAL_HEADER).read_text(encoding="utf-8"))
        if head.get("schema") != JOURNAL_SCHEMA or head.get("schema_version") != JOURNAL_SCHEMA_VERSION:
            raise ValueError(f"not a {JOURNAL_SCHEMA} {JOURNAL_SCHEMA_VERSION} header")
        journal.header, journal.base_sha256 = head["header"], head["base_sha256"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        journal.dropped.append(f"{path / JOURNAL_HEADER} cannot be read ({type(error).__name__}: {error})")
    pairs: dict[int, set[str]] = {}
    for item in sorted(path.iterdir()):
        match = _ENTRY_NAME.match(item.name)
        if match:
            pairs.setdefault(int(match.group(1)), set()).add(match.group(2))
        elif item.name != JOURNAL_HEADER:
            journal.dropped.append(f"{item} is not a journal entry (a write cut short): dropped")
    for index in sorted(pairs):
        entry = _read_entry(folder, backend, index, pairs[index], journal.dropped)
        if entry is not None:
            journal.entries.append(entry[0])
            journal.arrays.update(entry[1])
    return journal


def _read_entry(folder: Path, backend: str, index: int, files: set[str], dropped: list[str],
                ) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """One journal entry and its arrays; None (with a line in ``dropped``) when it is torn or unreadable."""
    json_path, npz_path = _entry_path(folder, backend, index, "json"), _entry_path(folder, backend, index, "npz")
    if files != {"json", "npz"}:
        present, missing = (json_path, npz_path) if "json" in files else (npz_path, json_path)
        dropped.append(f"{present} has no {missing.name} beside it (a run killed while writing it): entry {index} dropped")
        return None
    try:
        entry = json.loads(json_path.read_text(encoding="utf-8"))
        if not isinstance(entry, dict) or entry.get("index") != index or not isinstance(entry.get("result"), dict):
            raise ValueError("not a journal entry of this index")
        arrays = read_arrays(npz_path)
        if sorted(arrays) != entry.get("arrays"):
            raise ValueError(f"its arrays are {sorted(arrays)}, the entry names {entry.get('arrays')}")
    except (OSError, ValueError, RecordError) as error:
        dropped.append(f"{json_path} cannot be read ({error}): entry {index} dropped")
        return None
    return entry, arrays


def clear_journal(folder: Path, backend: str) -> None:
    """Remove ``backend``'s journal from ``folder`` (renamed aside first, so it is gone at once even when the removal
    is cut short), and whatever an earlier removal or start left half done."""
    path = journal_folder(folder, backend)
    with _backend_lock(folder, backend):
        for leftover in folder.glob(f"{path.name}.*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
        if path.exists():
            aside = path.with_name(f"{path.name}.discarded-{os.getpid()}")
            os.rename(path, aside)
            shutil.rmtree(aside, ignore_errors=True)
