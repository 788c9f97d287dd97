"""The gradient and training studies (<backend>.gradients.json, .training.json, gradients_cross_backend.json)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.reports.judged import Judged, read_number
from harness.reports.loading import load_optional


@dataclass(frozen=True)
class GradientRow:
    """One gradient case on one backend: its verdict and largest ratio of error to tolerance over every key and API."""

    backend: str
    case: str
    verdict: str
    judged: Judged
    where: str  # api/key of the largest ratio
    forward_divergences: tuple[str, ...]


@dataclass(frozen=True)
class TrainingRun:
    backend: str
    optimizer: str
    entry_point: str
    status: str
    judged: Judged
    keras_losses: tuple[float, ...]
    numpy_losses: tuple[float, ...]
    error: str | None


@dataclass(frozen=True)
class DriftLine:
    """One long train_on_batch run: per step its largest weight difference to the float64 NumPy trajectory, under a dtype
    policy (float32 or mixed), and the bound it is judged by (empty in schema-1 records, which judged no drift)."""

    backend: str
    optimizer: str
    policy: str
    distances: tuple[float, ...]
    bound: tuple[float, ...]
    worst_ratio: float | None
    passed: bool | None  # None: not judged
    loss_scale: float | None  # the LossScaleOptimizer's scale at the end; None: no loss scaling
    error: str | None
    rule: str | None = None
    known: str | None = None  # the reason of the [[training.known_drift]] claim a failed check is known under


@dataclass(frozen=True)
class GradientsAndTraining:
    backends: tuple[str, ...]
    rows: tuple[GradientRow, ...]  # by case, then backend
    # (backend, shared, separate, passed, largest ratio, the smaller share of the gradient norm one instance carries)
    shared_pairs: tuple[tuple[str, str, str, bool, float | None, float | None], ...]
    cross_compared: int | None  # outputs measured between backends (gradients_cross_backend.json); None: not written
    cross_largest: tuple[tuple[str, dict[str, Any]], ...]  # ("a vs b", the measurement with the largest difference) per pair
    cross_missing: tuple[dict[str, Any], ...]  # gradients a record names but its arrays lack
    training: tuple[TrainingRun, ...]
    long_runs: tuple[tuple[str, str, tuple[float, ...]], ...]  # (backend, optimizer, max abs weight difference per step)
    faults: tuple[tuple[str, str], ...]  # (backend, fault) of records made with a fault injected: not measurements
    drift: tuple[DriftLine, ...] = ()  # the long runs, float32 then the mixed policies (.training.json long_runs, precision_runs)


def _drift_line(backend: str, entry: dict[str, Any]) -> DriftLine:
    check = entry.get("drift_check") or {}
    error = entry.get("error")
    scaling = entry.get("loss_scale") or {}
    return DriftLine(backend, str(entry["optimizer"]["name"]), str(entry.get("policy", "float32")),
                     tuple(float(value) for value in entry.get("max_abs_weight_difference") or ()),
                     tuple(float(value) for value in check.get("bound") or ()), read_number(check.get("worst_ratio")),
                     None if not check else bool(check.get("passed")), read_number(scaling.get("scale")) if scaling.get("active") else None,
                     error.get("summary") if isinstance(error, dict) else None, check.get("rule"),
                     str(entry["known"].get("reason", "")).strip() or "known" if isinstance(entry.get("known"), dict) else None)


def _gradient_row(backend: str, raw: dict[str, Any]) -> GradientRow:
    worst, where = Judged(None, None), ""
    for api, entry in raw.get("apis", {}).items():
        for key, item in entry.get("items", {}).items():
            judged = Judged(read_number(item.get("tolerance_ratio")), read_number(item.get("max_abs_error")))
            if where == "" or judged.key > worst.key:
                worst, where = judged, f"{api}/{key}"
    return GradientRow(backend, str(raw["case"]), str(raw.get("verdict", raw.get("status"))), worst, where,
                       tuple(raw.get("forward_divergences", ())))


def _gradient_cross_largest(cross: dict[str, Any] | None) -> tuple[tuple[str, dict[str, Any]], ...]:
    """Per pair of backends, the gradient measurement with the largest difference (a record before the measurements
    holds only the worst ratio of all pairs)."""
    if cross is None:
        return ()
    if "largest_by_pair" in cross:
        return tuple(sorted((str(name), row) for name, row in (cross.get("largest_by_pair") or {}).items()))
    worst = cross.get("worst")
    return ((" vs ".join(worst.get("backends") or ()), worst),) if worst else ()


def gradients_and_training(folder: Path, notes: list[str]) -> GradientsAndTraining | None:
    """The gradient and training records of ``folder`` (None when neither study ran)."""
    gradients = {path.name.split(".")[0]: load_optional(path, "keras-parity/gradients", notes) for path in sorted(folder.glob("*.gradients.json"))}
    training = {path.name.split(".")[0]: load_optional(path, "keras-parity/training", notes) for path in sorted(folder.glob("*.training.json"))}
    gradients = {backend: data for backend, data in gradients.items() if data is not None}
    training = {backend: data for backend, data in training.items() if data is not None}
    if not gradients and not training:
        return None
    faults = tuple((backend, str(data["fault"])) for records in (gradients, training) for backend, data in records.items() if data.get("fault"))
    gradients = {backend: data for backend, data in gradients.items() if not data.get("fault")}
    training = {backend: data for backend, data in training.items() if not data.get("fault")}
    rows = sorted((_gradient_row(backend, raw) for backend, data in gradients.items() for raw in data.get("cases", [])),
                  key=lambda row: (row.case, row.backend))
    pairs = []
    for backend, data in gradients.items():
        for pair in data.get("shared_pairs", []):
            ratios = [read_number(item.get("tolerance_ratio")) for item in (pair.get("items") or {}).values() if isinstance(item, dict)]
            ratios = [ratio for ratio in ratios if ratio is not None]
            shares = [float(v) for k, v in (pair.get("items") or {}).items() if k.endswith(":branch_a_share") and v is not None]
            shares = [min(share, 1 - share) for share in shares]
            pairs.append((backend, str(pair["shared"]), str(pair["separate"]), bool(pair.get("passed")), max(ratios) if ratios else None,
                          min(shares) if shares else None))
    cross = load_optional(folder / "gradients_cross_backend.json", "keras-parity/gradients-cross-backend", notes) \
        if (folder / "gradients_cross_backend.json").exists() else None
    runs = []
    long_runs = []
    drift: list[DriftLine] = []
    for backend, data in training.items():
        for entry in data.get("runs", []):
            ratios = [(read_number(item.get("tolerance_ratio")), read_number(item.get("max_abs_error"))) for item in entry.get("items", {}).values()]
            judged = max((Judged(ratio, error) for ratio, error in ratios), key=lambda j: j.key, default=Judged(None, None))
            error = entry.get("error")
            runs.append(TrainingRun(backend, str(entry["optimizer"]["name"]), str(entry["entry_point"]), str(entry["status"]), judged,
                                    tuple(entry.get("keras_losses", ())), tuple(entry.get("numpy_losses", ())),
                                    error.get("summary") if isinstance(error, dict) else None))
        for entry in data.get("long_runs", []):
            long_runs.append((backend, str(entry["optimizer"]["name"]), tuple(entry.get("max_abs_weight_difference") or ())))
        drift += [_drift_line(backend, entry) for entry in data.get("long_runs", []) + data.get("precision_runs", [])]
    return GradientsAndTraining(
        backends=tuple(sorted(set(gradients) | set(training))), rows=tuple(rows), shared_pairs=tuple(pairs),
        cross_compared=None if cross is None else int(cross.get("compared_outputs", 0)),
        cross_largest=_gradient_cross_largest(cross), cross_missing=tuple(cross.get("missing", ())) if cross else (),
        training=tuple(runs), long_runs=tuple(long_runs), faults=faults, drift=tuple(drift),
    )
