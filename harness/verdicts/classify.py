"""Verdicts: a measured result judged against the known-divergence claims.

A run record keeps the raw measured status of every case (pass, fail, invalid, error, timeout,
refused). Classification is a separate, repeatable step: ``classify_result`` turns one measured
result into a verdict, and ``classify_record`` does it for a whole record from the record and its raw
outputs alone (no Keras), naming the divergence file's hash in what it writes.

A claim that applies to a case (its conditions, backend and version range hold) explains the case
only when what it says is exactly what was observed:
- semantics: every output of every build agrees, within the case's tolerance and with the promised
  dtype, with the alternative the reference computes for the claim (or, when several semantic
  claims apply, with all their alternatives at once); the builds must still agree with each other;
- crash: the innermost exception has the claimed type, its whole message matches the claimed pattern
  (re.fullmatch), it was raised in the claimed source file when the claim names one (raised_in), inside
  a build; the builds that ran before the one that raised match the reference and agree (a crash
  explains only the build that raised);
- bound: every mismatching output is one the claim names, finite, and within the claimed bound.
Anything else stays a fail or an error, even on a case the claim covers. A claim that applies to a
case that passes is reported as possibly resolved when the claim was checkable there: the
alternative semantics would have differed from the documented ones, or a crash or mismatch was
claimed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from harness.case.divergences import DIVERGENCES_FILE, Divergence, device_kind, load_divergences
from harness.case.schema import Case, parse_case
from harness.case.semantics import Semantics
from harness.case.tolerances import Tolerances, load_tolerances, quantity_of
from harness.case.weights import make_case_data
from harness.records import store
from harness.records.header import SCHEMAS, file_sha256, now
from harness.records.integrity import record_integrity
from harness.truth.compare import compare
from harness.truth.expected import DOCUMENTED, expected_outputs, float32_matmul_scales

FAILING = ("fail", "error", "timeout", "invalid")
VERDICTS = ("pass", "known", "refused", "fail", "error", "timeout", "invalid")


def classify_result(
    case: Case,
    backend: str,
    versions: dict[str, str],
    result: dict[str, Any],
    arrays: dict[tuple[str, str], np.ndarray],
    tolerances: Tolerances,
    divergences: list[Divergence],
    seed: int,
    device: str = "cpu",
) -> dict[str, Any]:
    """The verdict on one measured case result. ``arrays`` holds its raw outputs by (api, output);
    ``device`` ("cpu" or "gpu") is where it was measured, for claims that name the device."""
    status = result["status"]
    every_applicable = [d for d in divergences if d.applies_to(case, backend, versions, device)]
    verdict: dict[str, Any] = {
        "measured_status": status, "verdict": status, "explained_by": [], "applicable": [d.id for d in every_applicable],
        "unexplained": [], "possibly_resolved": [],
    }
    # An acceptance claim says this backend runs the case (judged across backends); it explains no numbers and no
    # crash. Here it can only be contradicted: the backend now refuses the case, as the others do.
    accepting = [d for d in every_applicable if d.kind == "acceptance"]
    applicable = [d for d in every_applicable if d.kind != "acceptance"]
    if status == "refused":
        verdict["possibly_resolved"] = [d.id for d in accepting]
    if not applicable or status in ("refused", "timeout", "invalid"):
        return verdict
    if status == "pass":
        verdict["possibly_resolved"] = [d.id for d in applicable if _checkable(d, case, tolerances, seed)]
        return verdict

    explained: list[str] = []
    for divergence in applicable:
        reason = _mismatch(divergence, case, result, arrays, tolerances, seed)
        if reason is None:
            explained = [divergence.id]
            break
        verdict["unexplained"].append(f"{divergence.id}: {reason}")
    semantic = [d for d in applicable if d.kind == "semantics"]
    if not explained and len(semantic) > 1 and status == "fail":
        combined = Semantics()
        for divergence in semantic:
            combined = combined.merged(divergence.semantics)
        reason = _semantics_mismatch(combined, case, result, arrays, tolerances, seed, max(d.ulps for d in semantic))
        if reason is None:
            explained = [d.id for d in semantic]
        else:
            verdict["unexplained"].append(f"{' + '.join(d.id for d in semantic)} together: {reason}")
    if explained:
        verdict.update(verdict="known", explained_by=explained, unexplained=[])
    return verdict


def _mismatch(divergence: Divergence, case: Case, result: dict[str, Any], arrays: dict[tuple[str, str], np.ndarray],
              tolerances: Tolerances, seed: int) -> str | None:
    """Why the claim does not describe the measured result; None when it does."""
    status = result["status"]
    if divergence.kind == "crash":
        return _crash_mismatch(divergence, case, result)
    if status != "fail":
        return f"claims different numbers, but the case raised {result['error']['type'] if result.get('error') else status}"
    if divergence.kind == "semantics":
        return _semantics_mismatch(divergence.semantics, case, result, arrays, tolerances, seed, divergence.ulps)
    return _bound_mismatch(divergence, result)


def exception_mismatch(divergence: Divergence, error: dict[str, Any]) -> str | None:
    """Why a recorded exception is not the one a crash claim names; None when it is: the claimed type, a whole
    message matching the claimed pattern, and the claimed raising file when the claim names one. The one rule
    for every study that judges a crash (the case verdicts, the gradient study)."""
    message = str(error.get("message", ""))
    if error.get("type") != divergence.exception:
        return f"claims {divergence.exception}, got {error.get('type')}: {message[:200]}"
    if not re.fullmatch(divergence.message, message):
        return f"claims a {divergence.exception} whose whole message matches {divergence.message!r}, got: {message[:200]}"
    if divergence.raised_in:
        raised_in = error.get("raised_in")
        if raised_in is None:
            return f"claims a {divergence.exception} raised in {divergence.raised_in}, but the record does not say where it was raised"
        if raised_in != divergence.raised_in:
            return f"claims a {divergence.exception} raised in {divergence.raised_in}, but it was raised in {error.get('raised_at') or raised_in}"
    return None


def _crash_mismatch(divergence: Divergence, case: Case, result: dict[str, Any]) -> str | None:
    """A crash claim explains the build that raised, and only it: the innermost exception has the claimed type,
    its whole message matches the claimed pattern, it was raised in the claimed file (when the claim names
    one), inside a build (not while the harness made the data or the reference), and every build that ran
    before it matches the reference and agrees with the others."""
    status = result["status"]
    if status != "error":
        return f"claims a {divergence.exception} but the case ran ({status})"
    error = result["error"]
    mismatch = exception_mismatch(divergence, error)
    if mismatch is not None:
        return mismatch
    # Records from before the raising build was recorded: the builds run in the case's order, so it is the first
    # one without a result.
    ran = [api for api in case.apis if api in result.get("apis", {})]
    raising_api = error["api"] if "api" in error else (case.apis[len(ran)] if len(ran) < len(case.apis) else None)
    if raising_api is None:
        return f"the {error['type']} was raised outside any build (while the data or the reference was made), which no crash claim explains"
    for api, entry in result.get("apis", {}).items():
        failing = [item["message"] for item in entry["items"].values() if not item["passed"]]
        if failing:
            return f"the {api} build ran before {raising_api} raised and does not match the reference, which a crash does not explain: {failing[0]}"
    for row in result.get("api_agreement", []):
        if not row["within"]:
            return (f"the builds that ran before {raising_api} raised disagree ({row['apis'][0]} vs {row['apis'][1]} on {row['output']}), "
                    "which a crash does not explain")
    return None


def _semantics_mismatch(semantics: Semantics, case: Case, result: dict[str, Any], arrays: dict[tuple[str, str], np.ndarray],
                        tolerances: Tolerances, seed: int, ulps: float = 0.0) -> str | None:
    """Why the outputs are not the alternative ``semantics``; None when every output of every build agrees with
    it within the case's tolerance, plus ``ulps`` float32 ulps of the modelled matmul's scale per element
    (float32_matmul_scales: the summation order of a float32 kernel) when the claim states them."""
    disagreement = builds_disagree(result)
    if disagreement:
        return disagreement
    data = make_case_data(case, seed)
    alternative = expected_outputs(case, data, semantics)
    scales = float32_matmul_scales(case, data, semantics) if ulps else {}
    return alternative_mismatch(case, result, arrays, alternative, tolerances, semantics, ulps=ulps, scales=scales)


def builds_disagree(result: dict[str, Any]) -> str | None:
    """The first pair of builds that disagree beyond the API bound, which no alternative semantics explains."""
    disagreements = [row for row in result.get("api_agreement", []) if not row["within"]]
    if not disagreements:
        return None
    row = disagreements[0]
    return f"the builds disagree ({row['apis'][0]} vs {row['apis'][1]} on {row['output']}), which no semantics explains"


def alternative_mismatch(case: Case, result: dict[str, Any], arrays: dict[tuple[str, str], np.ndarray],
                         alternative: dict[str, np.ndarray], tolerances: Tolerances, semantics: Semantics, *,
                         what: str = "output", failure: str = "not the claimed behaviour", ulps: float = 0.0,
                         scales: dict[str, np.ndarray] | None = None) -> str | None:
    """Why some recorded item (an output, or a gradient: ``what``) of some build is not ``alternative``, the
    reference under ``semantics``; None when every one has its promised dtype and agrees within the case's
    tolerance (after ``ulps`` float32 ulps of ``scales`` per element, when given). The one item check of every
    study that judges a semantics claim (the case verdicts, the gradient study)."""
    for api, entry in result["apis"].items():
        for name, item in entry["items"].items():
            if (api, name) not in arrays:
                return f"the raw {what} {api}/{name} was not recorded, so the alternative cannot be checked"
            if item["dtype"] != item["expected_dtype"]:
                return f"{api}/{name} has dtype {item['dtype']}, not the promised {item['expected_dtype']}"
            tolerance = tolerances.for_case(case, quantity_of(name))
            measured = arrays[(api, name)]
            if ulps:
                # What the summation order may add is taken off each element's difference (never past zero), so
                # the rest is held to the case's tolerance as any semantics claim is.
                allowed = ulps * scales[name]
                measured = np.asarray(measured, dtype=np.float64)
                difference = measured - alternative[name]
                with np.errstate(invalid="ignore"):
                    measured = np.where(np.abs(difference) <= allowed, alternative[name],
                                        measured - np.sign(difference) * allowed)
            comparison = compare(measured, alternative[name], tolerance, case.compute_dtype, case.allow_nonfinite)
            if not comparison.passed:
                within = f" and {ulps:g} float32 ulps of the matmul's scale" if ulps else ""
                return f"{failure}: " + comparison.message(f"{api}/{name} against {_describe(semantics)}{within}")
    return None


def _bound_mismatch(divergence: Divergence, result: dict[str, Any]) -> str | None:
    for api, entry in result["apis"].items():
        for name, item in entry["items"].items():
            if item["passed"]:
                continue
            if item["dtype"] != item["expected_dtype"]:
                return f"{api}/{name} has dtype {item['dtype']}, not the promised {item['expected_dtype']}"
            if "*" not in divergence.outputs and name not in divergence.outputs:
                return f"{api}/{name} mismatches, but the claim names only {', '.join(divergence.outputs)}"
            error = item["max_abs_error"]
            if not np.isfinite(error) or error > divergence.max_abs_error:
                return f"{api}/{name} is off by {error:.3g}, beyond the claimed bound {divergence.max_abs_error:g}"
    for row in result.get("api_agreement", []):
        if row["within"]:
            continue
        allowed = divergence.api_max_abs_diff
        if allowed is None:
            return f"the builds disagree ({row['apis'][0]} vs {row['apis'][1]} on {row['output']}), which the claim does not describe"
        if not np.isfinite(row["max_abs_diff"]) or row["max_abs_diff"] > allowed:
            return (f"the builds disagree ({row['apis'][0]} vs {row['apis'][1]} on {row['output']}) by {row['max_abs_diff']:.3g}, "
                    f"beyond the claimed {allowed:g}")
    return None


def _checkable(divergence: Divergence, case: Case, tolerances: Tolerances, seed: int) -> bool:
    """Whether a passing case shows that the claim no longer holds: the claim predicts a crash or a
    mismatch, or alternative numbers that differ from the documented ones beyond tolerance."""
    if divergence.kind != "semantics":
        return True
    data = make_case_data(case, seed)
    documented = expected_outputs(case, data, DOCUMENTED)
    alternative = expected_outputs(case, data, divergence.semantics)
    for name, value in documented.items():
        tolerance = tolerances.for_case(case, quantity_of(name))
        if not compare(alternative[name], value, tolerance, case.compute_dtype, case.allow_nonfinite).passed:
            return True
    return False


def _describe(semantics: Semantics) -> str:
    return "the alternative (" + ", ".join(f"{k}={v}" for k, v in semantics.changes().items()) + ")"


def divergence_summary(divergences: list[Divergence]) -> list[dict[str, Any]]:
    """The claims as recorded beside the verdicts, so a report needs no access to the divergence file."""
    return [
        {"id": d.id, "kind": d.kind, "when": d.when(), "backends": list(d.backends), "versions": dict(d.versions),
         "observed": d.observed, "reference": d.reference, "upstream": d.upstream, "reproducer": d.reproducer,
         "semantics": d.semantics.changes(), "exception": d.exception, "message": d.message, "raised_in": d.raised_in,
         "outputs": list(d.outputs), "max_abs_error": d.max_abs_error, "api_max_abs_diff": d.api_max_abs_diff,
         "change": d.change}
        for d in divergences
    ]


def new_verdict_record(run_record: dict[str, Any], divergences: list[Divergence], divergences_path: Path) -> dict[str, Any]:
    schema, version = SCHEMAS["verdicts"]
    return {
        "schema": schema, "schema_version": version, "backend": run_record["backend"],
        "run_started": run_record.get("started"), "divergences_file": str(divergences_path.name),
        "divergences_sha256": file_sha256(divergences_path), "classified": now(), "cases": {}, "counts": {},
        "possibly_resolved": [], "divergences": divergence_summary(divergences),
    }


def add_verdict(record: dict[str, Any], case_name: str, verdict: dict[str, Any]) -> None:
    """Put one case's verdict into a verdict record and keep its counts and possibly-resolved list current."""
    record["cases"][case_name] = verdict
    record["counts"] = {name: 0 for name in VERDICTS}
    for entry in record["cases"].values():
        record["counts"][entry["verdict"]] += 1
    record["possibly_resolved"] = [
        {"divergence": divergence, "case": name}
        for name, entry in record["cases"].items() for divergence in entry["possibly_resolved"]
    ]


def verdicts_path(folder: Path, backend: str) -> Path:
    return folder / f"{backend}.verdicts.json"


def classify_record(folder: Path, backend: str, divergences_path: Path = DIVERGENCES_FILE) -> dict[str, Any]:
    """Re-judge ``folder/<backend>.json`` against the divergence file, from the record and its raw
    outputs alone, and write ``folder/<backend>.verdicts.json``. Its ``integrity`` holds the record's flags
    (``harness.records.integrity``: unfinished, mixed commits, statuses its raw outputs contradict)."""
    run = store.read_record(folder / f"{backend}.json")
    if run.get("fault"):
        raise store.RecordError(f"{folder / (backend + '.json')} was measured with the fault {run['fault']!r} injected; "
                                "fault runs are not classified against known divergences")
    raw = store.read_arrays(folder / f"{backend}.npz")
    divergences = load_divergences(divergences_path)
    tolerances = load_tolerances(run.get("device_class", "cpu"), backend)
    record = new_verdict_record(run, divergences, divergences_path)
    for result in run["cases"]:
        case = parse_case(result["definition"], f"{backend}.json")
        arrays = store.result_arrays(result, raw)
        add_verdict(record, case.name, classify_result(case, backend, run["versions"], result, arrays, tolerances, divergences, run["seed"],
                                                         device_kind(run.get("device_class", "cpu"))))
    record["integrity"] = record_integrity(folder, backend, run, raw, tolerances)
    store.write_json(verdicts_path(folder, backend), record)
    return record
