"""Merging results folders (``python -m harness merge OUT DIR...``): the shards of one run, or runs of
different case selections made on many machines, combined into one folder as if one run had made it.

Per backend, the run records (``<backend>.json``) of every input are combined into one, and their raw
outputs (``<backend>.npz``) into one archive. Inputs that did not measure the same thing are refused
with one line (``MergeError``), before anything is written:

- within one backend, a different seed, fault, device class, settings, package versions (Python
  included; the operating system's kernel string, which differs between otherwise identical CI
  runners, is not compared) or tolerance table than the first input that has that backend;
- a case measured twice for one backend (in two inputs, or twice in one);
- a case name defined differently anywhere (within or across backends), or two backends measured with
  different seeds: the cross-backend comparison would compare different computations;
- the same side record (``<backend>.probes.json``, ``.growth.json``, ``.faults.json``,
  ``.serialization.json``) in several inputs with different contents (identical copies are taken once).

The merged header is the first input's with ``command`` the merge command, ``shard`` null, ``started``
the earliest start, ``finished`` the latest finish (null while an input is unfinished), ``wall_time_s``
the sum, and ``merged_from`` one entry per run merged (folder, command, shard, started, finished, device
and harness commit; the entries of an input that was itself a merge are carried over). Cases are ordered by name, so the result
does not depend on how the cases were spread over the inputs or on the order of the inputs. Backend
logs are concatenated in input order (each command's part already starts with its own header line).
Verdicts and ``cross_backend.json`` are not merged: they are recomputed from the merged records (the
CLI runs ``classify_record`` and ``compare_backends`` on OUT), so they name the current divergence file.
Anything else in the inputs (reports, saved models, reproducers) is left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness.execute.backends import BACKENDS
from harness.records import store

SIDE_KINDS = ("probes", "growth", "faults", "serialization")
# Header fields every input of one backend must share: what was measured, and how it was judged.
CONSISTENT_KEYS = ("seed", "fault", "device_class", "settings", "versions", "tolerances", "tolerance_overrides",
                   "api_agreement_bound", "unmeasured_tolerance_rows")


class MergeError(store.RecordError):
    """Inputs that cannot be merged; the one-line message says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(f"cannot merge: {message}")


@dataclass
class MergedBackend:
    """What was written for one backend."""

    backend: str
    record: dict[str, Any] | None = None  # the merged run record; None when only side records were found
    folders: list[Path] = field(default_factory=list)  # the inputs holding its run record
    side_records: list[str] = field(default_factory=list)  # the side-record files written to OUT
    missing_shards: list[str] = field(default_factory=list)  # "K/N" of shards none of the inputs holds
    unfinished: list[Path] = field(default_factory=list)  # inputs whose run had not finished


def _check_folders(out: Path, folders: list[Path]) -> None:
    if not folders:
        raise MergeError("no input folder given")
    seen: dict[Path, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            raise MergeError(f"{folder} is not a folder")
        resolved = folder.resolve()
        if resolved in seen:
            raise MergeError(f"{folder} is given twice")
        seen[resolved] = folder
    if out.resolve() in seen:
        raise MergeError(f"the output folder {out} is also an input")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError(f"the output folder {out} exists and is not empty; merge into a new folder")


def _differing(key: str, first: Any, other: Any) -> tuple[str, str]:
    """``key`` and the two values, narrowed to the first differing entry when both are dicts."""
    if isinstance(first, dict) and isinstance(other, dict):
        for name in sorted(set(first) | set(other)):
            if first.get(name) != other.get(name):
                return f"{key}[{name!r}] {first.get(name)!r}", f"{other.get(name)!r}"
    return f"{key} {first!r}", f"{other!r}"


def _comparable(key: str, value: Any) -> Any:
    """The part of a header field that must agree: versions without the platform string."""
    if key == "versions" and isinstance(value, dict):
        return {name: version for name, version in value.items() if name != "platform"}
    return value


def _check_consistent(backend: str, loaded: list[tuple[Path, dict[str, Any]]]) -> None:
    first_path, first = loaded[0]
    for path, record in loaded[1:]:
        if record.get("backend") != backend:
            raise MergeError(f"{path} holds a record of backend {record.get('backend')!r}, not {backend!r}")
        for key in CONSISTENT_KEYS:
            if _comparable(key, record.get(key)) != _comparable(key, first.get(key)):
                described, value = _differing(key, _comparable(key, first.get(key)), _comparable(key, record.get(key)))
                raise MergeError(f"{first_path} was measured with {described}, {path} with {value}")


def _check_cases(loaded: list[tuple[Path, dict[str, Any]]], definitions: dict[str, tuple[Path, Any]]) -> None:
    """No case twice within a backend; one definition per case name over every input of every backend."""
    where: dict[str, Path] = {}
    for path, record in loaded:
        for result in record["cases"]:
            name = result.get("case")
            if name in where:
                raise MergeError(f"case {name!r} appears in both {where[name]} and {path}; merge each case once")
            where[name] = path
            definition = result.get("definition")
            if name in definitions and definitions[name][1] != definition:
                raise MergeError(f"case {name!r} is defined differently in {definitions[name][0]} and {path}")
            definitions.setdefault(name, (path, definition))


def _timestamp(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise MergeError(f"a record's start or finish time {value!r} is not an ISO timestamp") from None


def _runs(folder: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``merged_from`` entries of one input: its own run, or the runs it was merged from."""
    if record.get("merged_from"):
        return [dict(entry) for entry in record["merged_from"]]
    entry = {"folder": str(folder), "command": record.get("command"), "shard": record.get("shard"),
             "started": record.get("started"), "finished": record.get("finished"), "device": record.get("device"),
             "commit": record.get("commit")}
    if record.get("resumed"):
        entry["resumed"] = record["resumed"]
    return [entry]


def _missing_shards(runs: list[dict[str, Any]]) -> list[str]:
    present: dict[int, set[int]] = {}
    for run in runs:
        match = re.fullmatch(r"(\d+)/(\d+)", str(run.get("shard")))
        if match:
            present.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
    return [f"{k}/{n}" for n in sorted(present) for k in range(1, n + 1) if k not in present[n]]


def _merge_records(loaded: list[tuple[Path, dict[str, Any]]], command: str) -> dict[str, Any]:
    first = loaded[0][1]
    runs = [run for path, record in loaded for run in _runs(path.parent, record)]
    starts = [record["started"] for _, record in loaded if record.get("started")]
    finishes = [record.get("finished") for _, record in loaded]
    merged = {key: value for key, value in first.items() if key not in ("cases", "resumed", "merged_from")}
    merged.update(
        command=command,
        shard=None,
        started=min(starts, key=_timestamp) if starts else None,
        finished=max(finishes, key=_timestamp) if finishes and all(finishes) else None,
        wall_time_s=round(sum(float(record.get("wall_time_s") or 0.0) for _, record in loaded), 1),
        merged_from=runs,
    )
    merged["cases"] = sorted((result for _, record in loaded for result in record["cases"]), key=lambda result: result["case"])
    return merged


def _merge_arrays(folders: list[Path], backend: str) -> dict[str, np.ndarray]:
    merged: dict[str, np.ndarray] = {}
    origin: dict[str, Path] = {}
    for folder in folders:
        path = folder / f"{backend}.npz"
        for key, value in store.read_arrays(path).items():
            if key in merged:
                raise MergeError(f"the raw output {key!r} is in both {origin[key]} and {path}")
            merged[key], origin[key] = value, path
    return merged


def _side_record(name: str, folders: list[Path]) -> str | None:
    """The one content of side record ``name`` over the inputs (None when none has it); MergeError when
    two inputs hold different ones."""
    holders = [folder / name for folder in folders if (folder / name).is_file()]
    if not holders:
        return None
    first = store.read_json_file(holders[0])
    for path in holders[1:]:
        if store.read_json_file(path) != first:
            raise MergeError(f"{holders[0]} and {path} differ; keep one of them (side records are not merged)")
    return holders[0].read_text(encoding="utf-8")


def _merged_log(name: str, folders: list[Path]) -> str | None:
    parts = [(folder / name).read_text(encoding="utf-8", errors="backslashreplace") for folder in folders if (folder / name).is_file()]
    if not parts:
        return None
    return "".join(part if part.endswith("\n") or not part else part + "\n" for part in parts)


def merge_folders(out: Path, folders: list[Path], command: str) -> dict[str, MergedBackend]:
    """Merge the results folders ``folders`` into the new folder ``out``; the merged run records (by
    backend) and what else was written. Everything is checked before anything is written; MergeError
    (one line) when the inputs cannot be merged or one of them cannot be read."""
    try:
        return _merge(out, folders, command)
    except MergeError:
        raise
    except store.RecordError as error:
        raise MergeError(str(error)) from None


def _merge(out: Path, folders: list[Path], command: str) -> dict[str, MergedBackend]:
    _check_folders(out, folders)
    merged: dict[str, MergedBackend] = {}
    runs: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    found_in: dict[Path, int] = {folder: 0 for folder in folders}
    for backend in BACKENDS:
        for folder in folders:
            path = folder / f"{backend}.json"
            if path.is_file():
                runs.setdefault(backend, []).append((path, store.read_record(path)))
                found_in[folder] += 1
    definitions: dict[str, tuple[Path, Any]] = {}
    seeds: dict[Any, Path] = {}
    for backend, loaded in runs.items():
        _check_consistent(backend, loaded)
        _check_cases(loaded, definitions)
        seeds.setdefault(loaded[0][1].get("seed"), loaded[0][0])
    if len(seeds) > 1:
        (seed, path), (other_seed, other_path) = list(seeds.items())[:2]
        raise MergeError(f"{path} was measured with seed {seed!r}, {other_path} with seed {other_seed!r}; "
                         "backends compared against each other must share the seed")

    arrays = {backend: _merge_arrays([path.parent for path, _ in loaded], backend) for backend, loaded in runs.items()}
    side: dict[str, str] = {}
    for backend in BACKENDS:
        for kind in SIDE_KINDS:
            name = f"{backend}.{kind}.json"
            content = _side_record(name, folders)
            if content is not None:
                side[name] = content
                for folder in folders:
                    found_in[folder] += (folder / name).is_file()
    empty = [folder for folder, count in found_in.items() if not count]
    if empty:
        raise MergeError(f"{empty[0]} holds no keras-parity record (<backend>.json or a side record)")

    records = {backend: _merge_records(loaded, command) for backend, loaded in runs.items()}

    out.mkdir(parents=True, exist_ok=True)
    for backend, loaded in runs.items():
        record = records[backend]
        store.write_arrays(out / f"{backend}.npz", arrays[backend])
        store.write_json(out / f"{backend}.json", record)
        merged[backend] = MergedBackend(
            backend, record, folders=[path.parent for path, _ in loaded], missing_shards=_missing_shards(record["merged_from"]),
            unfinished=[path.parent for path, data in loaded if not data.get("finished")],
        )
    for name, content in side.items():
        store.write_text(out / name, content)
        backend = name.split(".", 1)[0]
        merged.setdefault(backend, MergedBackend(backend)).side_records.append(name)
    for backend in BACKENDS:
        log = _merged_log(f"{backend}.log", folders)
        if log is not None:
            store.write_text(out / f"{backend}.log", log)
    return {backend: merged[backend] for backend in BACKENDS if backend in merged}
