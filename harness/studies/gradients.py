"""Gradient parity: every gradient case's gradients from the active backend's own autodiff, in every API,
against the float64 NumPy backward pass; a layer shared between two branches against two separate
instances; and, from the records alone, the backends against each other.

The cases are data (``harness/case/gradient_cases.toml``: built-in cases selected by name and dtype).
Each is measured by ``harness.execute.gradients.run_gradient_case`` (the forward measure step's builds
and judgement). A case that a known forward divergence (``harness/case/divergences.toml``) applies to on
this backend is still measured, and its gradient result is ``known`` only when the claim describes it
(``explain_gradient_result``): a crash claim when the gradient run raised exactly that exception (type,
and a message matching the claim's pattern); a semantics claim when every gradient (and the loss) of every
build agrees, within tolerance, with the reference backward pass under the claimed alternative
(``harness.truth.expected_gradients.alternative_gradients``; an alternative without a modelled backward
pass explains nothing: "no backward pass for semantics ..."). A bound claim bounds forward outputs and
never explains a gradient. Anything else stays a failure; the result records ``explained_by`` and, per
applicable claim that did not explain it, ``unexplained``.

``DIR/<backend>.gradients.json`` (header from ``harness.records.header``) and ``.gradients.npz`` (the raw
gradients, keyed ``<case>/<api>/<key>``) are rewritten atomically after every case.

Exit codes (``exit_code``): 1 when a gradient fails (not known), errors, or the shared layer's gradient is
not the sum of the two instances'; 2 when nothing was measured; 0 otherwise.
"""

from __future__ import annotations

import time as clock
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.case.divergences import device_kind, load_divergences
from harness.case.schema import Case, CaseError, builtin_cases, select_cases
from harness.case.tolerances import Tolerances, load_tolerances, tolerance_table_json
from harness.case.weights import DEFAULT_SEED, make_case_data
from harness.execute.backends import BACKENDS, BackendInfo
from harness.execute.gradients import LOSS_KEY, model_gradients, rounded_targets, run_gradient_case
from harness.records import store
from harness.records.header import SCHEMAS, make_header, now
from harness.truth.compare import compare
from harness.truth.expected_gradients import GradientNotSupported, alternative_gradients
from harness.verdicts.classify import alternative_mismatch, builds_disagree, exception_mismatch
from harness.verdicts.cross_backend import largest_by_pair, measure_records

GRADIENT_CASE_FILE = Path(__file__).resolve().parents[1] / "case" / "gradient_cases.toml"
SCHEMA, SCHEMA_VERSION = SCHEMAS["gradients"]
EXIT_OK, EXIT_FOUND, EXIT_COULD_NOT_RUN = 0, 1, 2
BAD = ("fail", "error", "timeout", "invalid")


def gradients_path(out_dir: Path, backend: str) -> Path:
    return Path(out_dir) / f"{backend}.gradients.json"


def arrays_path(out_dir: Path, backend: str) -> Path:
    return Path(out_dir) / f"{backend}.gradients.npz"


def gradient_selection(pattern: str | None = None, path: Path = GRADIENT_CASE_FILE) -> tuple[list[Case], list[dict[str, str]]]:
    """(the gradient cases, the shared/separate pairs) from the selection file; ``pattern`` narrows the cases."""
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    selection = raw.get("gradients", {})
    if not selection.get("cases"):
        raise CaseError(f"{path}: [gradients] must list cases")
    dtypes = set(selection.get("dtypes", ["float32"]))
    cases = [case for case in select_cases(builtin_cases(), ",".join(selection["cases"]))
             if case.dtype in dtypes and not case.stateful]
    if pattern is not None:
        cases = select_cases(cases, pattern)
    pairs = [dict(entry) for entry in raw.get("shared_pair", [])]
    names = {case.name for case in builtin_cases()}
    for entry in pairs:
        for role in ("shared", "separate"):
            if entry.get(role) not in names:
                raise CaseError(f"{path}: shared_pair {role} {entry.get(role)!r} is not a built-in case")
    return cases, pairs


def _judge(result: dict[str, Any], case: Case, backend: BackendInfo, divergences: list,
           raw: dict[tuple[str, str], np.ndarray], seed: int, tolerances: Tolerances) -> dict[str, Any]:
    """The verdict of one measured gradient case on ``backend``: its applicable forward claims
    (``forward_divergences``), the ones that explain it (``explained_by``) and why the others do not."""
    applicable = [d for d in divergences if d.applies_to(case, backend.name, backend.versions, device_kind(backend.device_class))]
    result["forward_divergences"] = [d.id for d in applicable]
    explained, unexplained = explain_gradient_result(case, result, raw, applicable, seed, tolerances)
    result["explained_by"], result["unexplained"] = explained, unexplained
    result["verdict"] = "known" if explained else result["status"]
    return result


def explain_gradient_result(case: Case, result: dict[str, Any], raw: dict[tuple[str, str], np.ndarray], applicable: list,
                            seed: int, tolerances: Tolerances) -> tuple[list[str], list[str]]:
    """(the ids of the claims that explain a failed or crashed gradient result, one line per applicable claim that
    does not say why). Only a fail or an error can be explained; ``raw`` holds the raw gradients by (api, key)."""
    status = result["status"]
    if status not in ("fail", "error") or not applicable:
        return [], []
    unexplained: list[str] = []
    for divergence in applicable:
        reason = _gradient_mismatch(divergence, case, result, raw, seed, tolerances)
        if reason is None:
            return [divergence.id], []
        unexplained.append(f"{divergence.id}: {reason}")
    semantic = [d for d in applicable if d.kind == "semantics"]
    if len(semantic) > 1 and status == "fail":
        combined = semantic[0].semantics
        for divergence in semantic[1:]:
            combined = combined.merged(divergence.semantics)
        reason = _semantics_mismatch(combined, case, result, raw, seed, tolerances)
        if reason is None:
            return [d.id for d in semantic], []
        unexplained.append(f"{' + '.join(d.id for d in semantic)} together: {reason}")
    return [], unexplained


def _gradient_mismatch(divergence: Any, case: Case, result: dict[str, Any], raw: dict[tuple[str, str], np.ndarray],
                       seed: int, tolerances: Tolerances) -> str | None:
    """Why the claim does not describe the gradient result; None when it does."""
    status = result["status"]
    if divergence.kind == "acceptance":
        return "an acceptance claim says the backend runs this configuration; it explains no gradient"
    if divergence.kind == "crash":
        if status != "error":
            return f"claims a {divergence.exception}, but the gradient run did not raise ({status})"
        return exception_mismatch(divergence, result.get("error") or {})
    if divergence.kind == "bound":
        return "a bound claim bounds forward outputs; it never explains a gradient"
    if status != "fail":
        return f"claims different numbers, but the gradient run raised {(result.get('error') or {}).get('type', status)}"
    return _semantics_mismatch(divergence.semantics, case, result, raw, seed, tolerances)


def _semantics_mismatch(semantics: Any, case: Case, result: dict[str, Any], raw: dict[tuple[str, str], np.ndarray],
                        seed: int, tolerances: Tolerances) -> str | None:
    """Why the gradients are not the reference backward pass under ``semantics``; None when every one is."""
    disagreement = builds_disagree(result)
    if disagreement:
        return disagreement
    try:
        alternative = alternative_gradients(case, make_case_data(case, seed), seed, semantics, LOSS_KEY)
    except GradientNotSupported as error:
        return str(error)
    return alternative_mismatch(case, result, raw, alternative, tolerances, semantics, what="gradient",
                                failure="not the gradient of the claimed behaviour")


def shared_versus_separate(shared: Case, separate: Case, seed: int, tolerances: Tolerances) -> dict[str, Any]:
    """The shared layer's gradient against two separate instances holding the shared layer's weights, on
    the active backend (Functional builds); never raises."""
    from harness.execute import models

    entry: dict[str, Any] = {"shared": shared.name, "separate": separate.name}
    try:
        data = make_case_data(shared, seed)
        shared_group = data.layer_weights[0][0]
        separate_data = replace(data, layer_weights=((shared_group, shared_group),) + tuple(data.layer_weights[1:]))
        _, _, targets = rounded_targets(shared, data, seed)
        model, blocks = models.build_model("functional", shared, data)
        one = model_gradients(model, blocks, shared, data, targets)
        model, blocks = models.build_model("functional", separate, separate_data)
        two = model_gradients(model, blocks, separate, separate_data, targets)
        tolerance = tolerances.for_case(shared, "gradients")
        items = {}
        for key, value in one.items():
            if key == LOSS_KEY:
                other = two[LOSS_KEY].astype(np.float64)
            elif key.startswith("grad/branches_0/a_"):
                suffix = key[len("grad/branches_0/a_"):]
                a, b = two[key].astype(np.float64), two[f"grad/branches_0/b_{suffix}"].astype(np.float64)
                other = a + b
                items[f"{key}:branch_a_share"] = float(np.linalg.norm(a) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))
            else:
                other = two[key].astype(np.float64)
            comparison = compare(value, other, tolerance, shared.compute_dtype)
            items[key] = {"max_abs_diff": comparison.max_abs_error, "tolerance_ratio": comparison.tolerance_ratio,
                          "passed": comparison.passed, "norm": float(np.linalg.norm(value.astype(np.float64)))}
        entry["items"] = items
        entry["passed"] = all(item["passed"] for item in items.values() if isinstance(item, dict))
        entry["error"] = None
    except Exception as error:  # recorded, never raised
        from harness.execute.measure import error_record

        entry["passed"], entry["error"] = False, error_record(error)
    return entry


def run_gradient_study(cases: list[Case], pairs: list[dict[str, str]], backend: BackendInfo, out_dir: Path,
                       seed: int = DEFAULT_SEED, *, command: str = "", tolerances: Tolerances | None = None,
                       on_case_done: Any = None, fault: str | None = None) -> dict[str, Any]:
    """Measure every case (and pair) on the active backend; write and return the gradients record.

    With ``fault`` (a name of harness.execute.gradients.GRADIENT_FAULTS) the fault is patched into Keras for
    the whole study and the record says so (``fault``; per case ``fault_calls``: how often the patched code ran)."""
    if fault is None:
        return _run(cases, pairs, backend, out_dir, seed, command, tolerances, on_case_done, None)
    from harness.execute.gradients import injected

    with injected(fault) as in_force:
        return _run(cases, pairs, backend, out_dir, seed, command, tolerances, on_case_done, in_force)


def _run(cases, pairs, backend, out_dir, seed, command, tolerances, on_case_done, fault) -> dict[str, Any]:
    if tolerances is None:
        tolerances = load_tolerances(backend.device_class, backend.name)
    out_dir = Path(out_dir)
    path, npz = gradients_path(out_dir, backend.name), arrays_path(out_dir, backend.name)
    header = make_header("gradients", backend, seed=seed, command=command, fault=None if fault is None else fault.name)
    record: dict[str, Any] = header | {
        "loss": "sum over outputs of mean((y - t)^2), seeded targets",
        "tolerances": {dtype: rows for dtype, rows in tolerance_table_json(tolerances).items() if "gradients" in rows},
        "duration_s": None, "cases": [], "shared_pairs": [],
    }
    divergences = load_divergences()
    arrays: dict[str, np.ndarray] = {}
    started = clock.perf_counter()
    store.write_json(path, record)
    for case in cases:
        raw: dict[tuple[str, str], np.ndarray] = {}
        calls = fault.calls if fault is not None else 0
        result = _judge(run_gradient_case(case, seed, tolerances, raw, backend_gradients=fault and fault.backend_gradients),
                        case, backend, divergences, raw, seed, tolerances)
        if fault is not None:
            result["fault_calls"] = fault.calls - calls
        record["cases"].append(result)
        arrays.update({store.array_key(case.name, api, key): value for (api, key), value in raw.items()})
        store.write_arrays(npz, arrays)
        store.write_json(path, record)
        if on_case_done is not None:
            on_case_done(result)
    by_name = {case.name: case for case in builtin_cases()}
    for pair in pairs:
        record["shared_pairs"].append(shared_versus_separate(by_name[pair["shared"]], by_name[pair["separate"]], seed, tolerances))
        store.write_json(path, record)
    record["finished"] = now()
    record["duration_s"] = round(clock.perf_counter() - started, 3)
    store.write_json(path, record)
    if fault is None:
        write_cross_backend(out_dir)
    return record


CROSS_FILE = "gradients_cross_backend.json"


def write_cross_backend(folder: Path) -> dict[str, Any]:
    """``folder/gradients_cross_backend.json``: the backends' gradient records in ``folder`` measured against each
    other (rewritten by every gradient study, so the last backend's run compares all of them). Measurements, not a
    verdict (harness.verdicts.cross_backend says why): every case both sides produced gradients for, pass, known or
    fail alike, and the largest difference per pair of backends."""
    measured = compare_backends(Path(folder))
    backends = sorted({backend for row in measured["pairs"] for backend in row["backends"]})
    record = {"schema": "keras-parity/gradients-cross-backend", "schema_version": 2, "compared": now(), "backends": backends,
              "measurements_only": True, "compared_outputs": len(measured["pairs"]),
              "largest_by_pair": largest_by_pair(measured["pairs"]), **measured}
    store.write_json(Path(folder) / CROSS_FILE, record)
    return record


def read_gradients(path: Path) -> dict[str, Any]:
    data = store.read_json_file(path)
    if data.get("schema") != SCHEMA or data.get("schema_version") != SCHEMA_VERSION:
        raise store.RecordError(f"{path} is not a keras-parity gradients record (schema {SCHEMA} v{SCHEMA_VERSION})")
    return data


def compare_backends(folder: Path) -> dict[str, Any]:
    """Every pair of backends with gradient records in ``folder``, every case both sides produced gradients for:
    harness.verdicts.cross_backend's measurements (pairs, not_compared, missing, never_compared)."""
    loaded = {}
    for backend in BACKENDS:
        path = gradients_path(folder, backend)
        if path.exists():
            record = read_gradients(path)
            if not record.get("fault"):
                loaded[backend] = (record, store.read_arrays(arrays_path(folder, backend)), {})
    return measure_records(loaded)


def worst_ratio(result: dict[str, Any]) -> tuple[float, str] | None:
    """The largest tolerance ratio of a case result and where (api/key)."""
    values = [(item["tolerance_ratio"], f"{api}/{key}") for api, entry in result.get("apis", {}).items()
              for key, item in entry["items"].items()]
    return max(values, key=lambda value: (np.nan_to_num(value[0], nan=np.inf), value[1])) if values else None


def detected_by(record: dict[str, Any]) -> list[str]:
    """With a fault injected: the cases where the fault ran and the gradients no longer pass."""
    return [result["case"] for result in record["cases"] if result.get("fault_calls") and result["status"] != "pass"]


def exit_code(record: dict[str, Any]) -> int:
    """Without a fault: 1 when a gradient fails (not known), errors, or a shared pair disagrees; 2 when nothing
    was measured. With a fault: 0 when it is caught, 1 when it ran and was not caught, 2 when it never ran."""
    if not record["cases"]:
        return EXIT_COULD_NOT_RUN
    if record.get("fault"):
        if not any(result.get("fault_calls") for result in record["cases"]):
            return EXIT_COULD_NOT_RUN
        return EXIT_OK if detected_by(record) else EXIT_FOUND
    if any(result["verdict"] in BAD for result in record["cases"]) or not all(p["passed"] for p in record["shared_pairs"]):
        return EXIT_FOUND
    return EXIT_OK


def summary(record: dict[str, Any]) -> str:
    verdicts = [result["verdict"] for result in record["cases"]]
    if record.get("fault"):
        ran = sum(bool(result.get("fault_calls")) for result in record["cases"])
        caught = detected_by(record)
        return (f"{record['backend']}: fault {record['fault']!r} ran in {ran} of {len(verdicts)} gradient cases and was "
                f"caught in {len(caught)}" + (f" ({', '.join(caught[:4])}{', ...' if len(caught) > 4 else ''})" if caught else ""))
    line = (f"{record['backend']}: gradients of {len(verdicts)} cases: {verdicts.count('pass')} pass, {verdicts.count('known')} known, "
            f"{sum(verdicts.count(bad) for bad in BAD)} failed")
    passing = [(worst_ratio(result), result["case"]) for result in record["cases"]
               if result["verdict"] == "pass" and worst_ratio(result)]
    if passing:
        (ratio, where), name = max(passing, key=lambda value: np.nan_to_num(value[0][0], nan=np.inf))
        line += f"; worst tolerance ratio {ratio:.3g} at {name} {where}"
    pairs = record["shared_pairs"]
    if pairs:
        line += f"; shared layer = sum of two instances: {sum(p['passed'] for p in pairs)} of {len(pairs)}"
    return line
