"""Reading the records of a results folder: the run records (checked), the verdict files, and the optional
records whose absence or corruption becomes a note instead of a failure of the whole report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.records.header import SCHEMAS
from harness.records.store import RecordError, read_json_file, read_record

RUN_SCHEMA, RUN_SCHEMA_VERSION = SCHEMAS["run"]
VERDICTS_SCHEMA, VERDICTS_SCHEMA_VERSION = SCHEMAS["verdicts"]
CROSS_SCHEMA, CROSS_SCHEMA_VERSION = SCHEMAS["cross_backend"]
CROSS_FILE = "cross_backend.json"
PROBES_SCHEMA = SCHEMAS["probes"][0]
SIDE_SCHEMAS = {kind: SCHEMAS[kind][0] for kind in ("probes", "growth", "faults", "serialization")}


def _check_run_record(path: Path, data: dict[str, Any]) -> None:
    """What the report needs beyond store.read_record's checks: the file is named after its backend,
    and every case entry names its case and status."""
    if data["backend"] != path.stem:
        raise RecordError(f"{path} holds a record of backend {data['backend']!r}; expected {path.stem!r}")
    if not isinstance(data["cases"], list):
        raise RecordError(f"{path}: 'cases' is not a list")
    for index, case in enumerate(data["cases"]):
        if not isinstance(case, dict) or "case" not in case or "status" not in case:
            raise RecordError(f"{path}: case entry {index} lacks 'case' or 'status'")


def load_run_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Every run record ``<backend>.json`` in ``folder``, keyed by backend, in name order.

    RecordError (one line) for a missing folder, a folder without run records, or a record that is
    corrupt, of another schema or schema version, or lacks what the reports read."""
    if not folder.is_dir():
        raise RecordError(f"{folder} is not a folder of results")
    loaded: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        if "." in path.stem or path.name == CROSS_FILE:
            continue
        data = read_json_file(path)
        schema = data.get("schema")
        if schema != RUN_SCHEMA:
            if isinstance(schema, str) and schema.startswith("keras-parity/"):
                continue  # another kind of keras-parity record
            raise RecordError(f"{path} is not a keras-parity run record (no \"schema\": \"{RUN_SCHEMA}\")")
        data = read_record(path)
        _check_run_record(path, data)
        loaded[data["backend"]] = data
    if not loaded:
        raise RecordError(f"{folder} holds no run records (<backend>.json); run 'python -m harness run' first")
    return loaded


def load_verdicts(folder: Path, backend: str) -> dict[str, Any] | None:
    path = folder / f"{backend}.verdicts.json"
    if not path.exists():
        return None
    data = read_json_file(path)
    if data.get("schema") != VERDICTS_SCHEMA:
        raise RecordError(f"{path} is not a keras-parity verdicts record (no \"schema\": \"{VERDICTS_SCHEMA}\")")
    if data.get("schema_version") != VERDICTS_SCHEMA_VERSION:
        raise RecordError(f"{path} has schema_version {data.get('schema_version')!r}; this report reads version {VERDICTS_SCHEMA_VERSION}")
    if not isinstance(data.get("cases"), dict):
        raise RecordError(f"{path} is a verdicts record without a 'cases' table")
    return data


def load_optional(path: Path, schema: str, notes: list[str]) -> dict[str, Any] | None:
    """A record that may be absent; an unreadable one becomes a note, not a failure of the whole report."""
    try:
        data = read_json_file(path)
    except RecordError as error:
        notes.append(f"ignored: {error}")
        return None
    if data.get("schema") != schema:
        notes.append(f"ignored: {path} is not a keras-parity record of schema {schema!r}")
        return None
    return data


def load_side_records(folder: Path, kind: str, notes: list[str]) -> dict[str, dict[str, Any]]:
    loaded = {}
    for path in sorted(folder.glob(f"*.{kind}.json")):
        data = load_optional(path, SIDE_SCHEMAS[kind], notes)
        if data is not None:
            loaded[str(data.get("backend") or path.name.split(".")[0])] = data
    return loaded
