"""Train on one backend, serve on another: a model saved as .keras on one backend, loaded on another.

``save_models`` writes the Functional build of each case (weights loaded with set_weights) to
``DIR/<backend>/<case>.keras``. ``load_models`` loads every model saved by the *other* backends,
runs it on the case's inputs, and compares it with the float64 reference and with the outputs the
saving backend produced (its run record's .npz). Imported after the backend is active.

A load that does not pass is classified like a run's case (``harness.verdicts.classify``): one that
a known divergence of the loading backend explains is "known". A load that measured nothing (no
model saved by another backend matches a case) is not a result: ``load_models`` then writes no
record, and the command says so and exits 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from harness.execute import models
from harness.records import store as records
from harness.execute.backends import BACKENDS, BackendInfo
from harness.case.schema import Case
from harness.case.divergences import load_divergences
from harness.execute.measure import error_record, judge_outputs, measured_status
from harness.truth.compare import max_difference
from harness.truth.expected import expected_outputs
from harness.case.tolerances import Tolerances, load_tolerances
from harness.case.weights import make_case_data
from harness.records.header import make_header, now
from harness.verdicts.classify import classify_result


def serializable(case: Case) -> bool:
    """Cases a saved Functional model can express (stateful models carry run-time state: not saved), as shipped:
    a kernel mode (fused_on_cpu, generic) is how the harness runs a model, not part of the saved file, so a
    loaded twin would run as shipped and be judged as if it ran in its mode."""
    return "functional" in case.apis and not case.stateful and case.kernel == "as_shipped"


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


def _load_one(path: Path, case: Case, seed: int, tolerances: Tolerances, saved_outputs: dict[str, np.ndarray],
              saved_on: str) -> tuple[dict[str, Any], dict[str, Any], dict[tuple[str, str], np.ndarray]]:
    """The load entry of the record, and the same measurement as a case result (one Functional build)
    with its raw outputs, for classification."""
    entry: dict[str, Any] = {"case": case.name, "saved_on": saved_on, "items": {}, "vs_saving_backend": {}}
    result: dict[str, Any] = {"case": case.name, "apis": {}, "api_agreement": [], "problems": []}
    arrays: dict[tuple[str, str], np.ndarray] = {}
    try:
        data = make_case_data(case, seed)
        expected = expected_outputs(case, data)
        model = keras.saving.load_model(path)
        actual = {name: np.asarray(value) for name, value in models.run_model(model, [], case, data).items()}
        # Judged exactly as a run judges an output: the case's tolerance row or override, and its dtype.
        entry["items"] = judge_outputs(case, actual, expected, tolerances, f"saved on {saved_on}")
        for name, value in actual.items():
            arrays[("functional", name)] = value
            saved = saved_outputs.get(records.array_key(case.name, "functional", name))
            if saved is not None:
                difference, bitwise = max_difference(value, saved)
                entry["vs_saving_backend"][name] = {"max_abs_diff": difference, "bitwise_equal": bitwise}
        result["apis"]["functional"] = {"items": entry["items"], "passed": all(item["passed"] for item in entry["items"].values())}
        result["status"], result["problems"] = measured_status(result)
        result["error"] = None
    except Exception as error:  # a model that does not load is a finding, recorded
        result["status"], result["error"] = "error", error_record(error)
    entry["status"] = result["status"]
    entry["error"] = result["error"]["summary"] if result["error"] else None
    return entry, result, arrays


def saved_by_others(models_dir: Path, backend: str) -> list[tuple[str, Path]]:
    """(saving backend, model path) for every ``.keras`` file other backends saved under ``models_dir``."""
    return [
        (saved_on, path)
        for saved_on in BACKENDS
        if saved_on != backend and (Path(models_dir) / saved_on).is_dir()
        for path in sorted((Path(models_dir) / saved_on).glob("*.keras"))
    ]


def load_models(
    cases: list[Case], backend: BackendInfo, models_dir: Path, results_dir: Path, seed: int, *, command: str = ""
) -> dict[str, Any]:
    """Load every other backend's saved models here; write and return ``<backend>.serialization.json``.

    Nothing is written when no saved model matches a case (the returned record has no loads)."""
    by_name = {case.name: case for case in cases}
    tolerances = load_tolerances(backend.device_class, backend.name)
    divergences = load_divergences()
    record: dict[str, Any] = make_header("serialization", backend, seed=seed, command=command) | {"loads": []}
    path = results_dir / f"{backend.name}.serialization.json"
    saved_outputs: dict[str, dict[str, np.ndarray]] = {}
    for saved_on, model_path in saved_by_others(models_dir, backend.name):
        case = by_name.get(model_path.stem)
        if case is None:
            continue
        if saved_on not in saved_outputs:
            saved_outputs[saved_on] = records.read_arrays(results_dir / f"{saved_on}.npz")
        entry, result, arrays = _load_one(model_path, case, seed, tolerances, saved_outputs[saved_on], saved_on)
        if entry["status"] != "pass":
            # A load that fails the way a known divergence of the loading backend says is "known".
            verdict = classify_result(case, backend.name, backend.versions, result, arrays, tolerances, divergences, seed)
            entry["measured_status"] = entry["status"]
            entry["status"], entry["explained_by"] = verdict["verdict"], verdict["explained_by"]
        record["loads"].append(entry)
        records.write_json(path, record)
    record["finished"] = now()
    if record["loads"]:
        records.write_json(path, record)
    return record
