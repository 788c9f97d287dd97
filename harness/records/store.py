"""Run records: a versioned JSON file per backend plus an .npz of raw outputs, written atomically.

A record is rewritten (to a temporary file, then renamed over the old one) after every case, so an
interrupted run keeps everything it had measured and a reader never sees a half-written file.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.records.header import SCHEMAS

SCHEMA, SCHEMA_VERSION = SCHEMAS["run"]


class RecordError(ValueError):
    """A results file is missing, corrupt, or not a keras-parity record of a version we read."""


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
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
