"""Train on one backend, serve on another: a model saved as .keras on one backend, loaded on another.

``save_models`` writes the Functional build of each case (weights loaded with set_weights) to
``DIR/<backend>/<case>.keras``. ``load_models`` loads every model saved by the *other* backends,
runs it on the case's inputs, and compares it with the float64 reference and with the outputs the
saving backend produced (its run record's .npz). Imported after the backend is active.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import numpy as np

from harness.execute import models
from harness.records import store as records
from harness.execute.backends import BACKENDS, BackendInfo
from harness.case.schema import Case
from harness.truth.compare import compare, max_difference
from harness.truth.expected import expected_outputs
from harness.case.divergences import classify, load_divergences
from harness.case.tolerances import load_tolerances, quantity_of, tolerance_for
from harness.case.weights import make_case_data

SCHEMA = "keras-parity/serialization"


def serializable(case: Case) -> bool:
    """Cases a saved Functional model can express (stateful models carry run-time state: not saved)."""
    return "functional" in case.apis and not case.stateful


def save_models(cases: list[Case], backend: BackendInfo, models_dir: Path, seed: int) -> list[Path]:
    folder = models_dir / backend.name
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for case in cases:
        if not serializable(case):
            continue
        model, _ = models.build_model("functional", case, make_case_data(case, seed))
        path = folder / f"{case.name}.keras"
        temporary = folder / f".{case.name}.tmp.keras"
        model.save(temporary)
        temporary.replace(path)
        written.append(path)
    return written


def _load_one(path: Path, case: Case, seed: int, tolerances: dict, saved_outputs: dict[str, np.ndarray], saved_on: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"case": case.name, "saved_on": saved_on, "items": {}, "vs_saving_backend": {}}
    try:
        data = make_case_data(case, seed)
        expected = expected_outputs(case, data)
        model = keras.saving.load_model(path)
        actual = models.run_model(model, [], case, data)
        for name, value in actual.items():
            tolerance = tolerance_for(tolerances, case.compute_dtype, quantity_of(name))
            comparison = compare(value, expected[name], tolerance, case.compute_dtype)
            entry["items"][name] = comparison.to_json() | {"message": comparison.message(f"{saved_on}->{name}")}
            saved = saved_outputs.get(records.array_key(case.name, "functional", name))
            if saved is not None:
                difference, bitwise = max_difference(np.asarray(value), saved)
                entry["vs_saving_backend"][name] = {"max_abs_diff": difference, "bitwise_equal": bitwise}
        entry["status"] = "pass" if all(item["passed"] for item in entry["items"].values()) else "fail"
        entry["error"] = None
    except Exception as error:  # a model that does not load is a finding, recorded
        lines = [line for line in str(error).splitlines() if line.strip()]
        entry["status"] = "error"
        entry["error"] = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return entry


def load_models(cases: list[Case], backend: BackendInfo, models_dir: Path, results_dir: Path, seed: int) -> dict[str, Any]:
    """Load every other backend's saved models here; write and return ``<backend>.serialization.json``.

    A load that fails the way a known divergence of the loading backend explains is marked "known"."""
    by_name = {case.name: case for case in cases}
    divergences = load_divergences()
    tolerances = load_tolerances(backend.device_class)
    record: dict[str, Any] = {
        "schema": SCHEMA, "schema_version": 1, "backend": backend.name, "device": backend.device, "device_class": backend.device_class,
        "versions": backend.versions, "settings": backend.settings, "seed": seed,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "loads": [],
    }
    path = results_dir / f"{backend.name}.serialization.json"
    for saved_on in BACKENDS:
        folder = models_dir / saved_on
        if saved_on == backend.name or not folder.is_dir():
            continue
        saved_outputs = records.read_arrays(results_dir / f"{saved_on}.npz")
        for model_path in sorted(folder.glob("*.keras")):
            case = by_name.get(model_path.stem)
            if case is None:
                continue
            entry = _load_one(model_path, case, seed, tolerances, saved_outputs, saved_on)
            classify(entry, backend.name, divergences)
            record["loads"].append(entry)
            records.write_json(path, record)
    records.write_json(path, record)
    return record
