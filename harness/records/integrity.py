"""Records that say what they are: checks a run record must pass before its verdicts mean anything.

``record_integrity`` is run by ``classify_record`` on every run record, from the record, its raw outputs
and the other records of its folder alone (no Keras). It returns flags, each ``{"kind", "message"}``:

- ``unfinished``: the run never wrote ``finished`` (it was killed, timed out, or is still running), so the
  record may hold fewer cases than were selected;
- ``mixed_commits``: the folder's records (or the runs one record was resumed or merged from) were
  measured by different commits of the harness;
- ``status_mismatch``: a case's recorded status is not the one its raw outputs give when they are judged
  again against the float64 reference with the tolerance table (a pass, fail or invalid is recomputed from
  the outputs; an error, timeout or refusal must carry its exception and cannot be recomputed);
- ``statuses_unchecked``: the record was judged with another tolerance table than the current one, so its
  statuses are not recomputed; or it holds refusals measured before error records named their raising file, so
  they cannot be checked against Keras's refusal (``refusal_status``).

Only ``status_mismatch`` is a failure of the record (``FAILING_FLAGS``): the record says something its
own outputs contradict. The others are warnings a report shows as a banner.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.case.schema import CaseError, parse_case
from harness.case.tolerances import Tolerances, quantity_of, tolerance_extras_json, tolerance_table_json
from harness.case.weights import make_case_data
from harness.execute.measure import (CUDNN_REFUSAL_MESSAGE, CUDNN_REFUSAL_TYPE, cudnn_refusal_sources, api_agreement,
                                     measured_status)
from harness.truth.compare import compare
from harness.truth.expected import expected_outputs

FAILING_FLAGS = ("status_mismatch",)
# The header fields that say how a record's cases were judged: the tolerance rows, overrides, API bound.
TOLERANCE_KEYS = ("tolerances", "tolerance_overrides", "api_agreement_bound", "unmeasured_tolerance_rows")
RECOMPUTABLE = ("pass", "fail", "invalid")  # statuses computed from the outputs alone
RAISED = ("error", "timeout", "refused")  # statuses of a case that raised: its exception is recorded


def tolerance_fields(tolerances: Tolerances) -> dict[str, Any]:
    """The tolerance table as a record's header holds it."""
    return {"tolerances": tolerance_table_json(tolerances), **tolerance_extras_json(tolerances)}


def tolerance_sha256(fields: dict[str, Any]) -> str:
    """A hash of the tolerance fields of a record header (or of ``tolerance_fields``), to name a table in one line."""
    text = json.dumps({key: fields.get(key) for key in TOLERANCE_KEYS}, sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stored_dtype(array: np.ndarray, recorded: str) -> str:
    """The dtype an output had when measured: bfloat16 is stored as float32 (exactly), everything else as it was."""
    return "bfloat16" if recorded == "bfloat16" and array.dtype.name == "float32" else array.dtype.name


# A stateful case run through evaluate, fit or train_on_batch gives Keras's states but no per-batch outputs
# (harness.execute.models._run_stateful): the only outputs of the reference a record may leave out.
OUTPUTLESS_STATEFUL_ENTRY_POINTS = ("evaluate", "fit", "train_on_batch")


def recorded_output_names(case: Any, expected: dict[str, Any]) -> set[str]:
    """The outputs every build of ``case`` must record: all the reference gives, but the per-batch outputs of a
    stateful case whose entry point returns none."""
    if case.stateful and case.entry_point in OUTPUTLESS_STATEFUL_ENTRY_POINTS:
        return {name for name in expected if not name.startswith("output@")}
    return set(expected)


# Why a refusal measured before error records named their raising file cannot be checked: listed as unchecked, not as a
# mismatch (the record claims nothing it contradicts; it only cannot show where Keras raised).
UNLOCATED_REFUSAL = "recorded refused; the record does not say where the exception was raised (measured before raised_in was recorded)"
# The harness's own refusals by design (harness.execute.backends.KernelModeRefused and its Keras 2 subclass).
HARNESS_REFUSALS = ("KernelModeRefused", "NotExpressible")


def refusal_status(result: dict[str, Any]) -> tuple[str | None, str]:
    """A recorded refusal checked against the one rule that makes a case refused (``measure.refused_by_design``):
    the harness's own refusal, or Keras's use_cudnn=True refusal with its exact type and message, raised in
    Keras's LSTM before any build ran, on a case that asks use_cudnn=True. A crash recorded as refused is an
    error; an older record that does not say where it raised cannot be checked."""
    error = result["error"]
    if error.get("type") in HARNESS_REFUSALS:
        return "refused", ""
    try:
        case = parse_case(result["definition"], "the record")
    except (CaseError, KeyError) as problem:
        return None, f"its definition cannot be read ({problem})"
    sources = cudnn_refusal_sources(case)
    if not sources:
        return "error", f"recorded refused, but the case does not ask use_cudnn=True ({error.get('type')}: {str(error.get('message'))[:120]})"
    if error.get("type") != CUDNN_REFUSAL_TYPE.__name__ or error.get("message") != CUDNN_REFUSAL_MESSAGE:
        return "error", f"recorded refused, but {error.get('type')}: {str(error.get('message'))[:160]} is not Keras's use_cudnn=True refusal"
    if "raised_in" not in error:
        return None, UNLOCATED_REFUSAL
    if error["raised_in"] not in sources or error.get("api") not in (None, case.apis[0]):
        return "error", (f"recorded refused, but the refusal was raised in {error['raised_in']} by build {error.get('api')}, "
                         f"not in {' or '.join(sorted(sources))} before any build ran")
    return "refused", ""


def recomputed_status(result: dict[str, Any], raw: dict[tuple[str, str], np.ndarray], tolerances: Tolerances,
                      seed: int) -> tuple[str | None, str]:
    """The status a case result's raw outputs give, judged again against the reference (None when it cannot
    be recomputed), and why it differs from or cannot check the recorded one ("" when it agrees)."""
    recorded = result.get("status")
    if recorded in RAISED:
        if not result.get("error"):
            return None, f"recorded {recorded} without the exception that makes it one"
        if recorded == "refused":
            return refusal_status(result)
        return recorded, ""
    if recorded not in RECOMPUTABLE:
        return None, f"unknown status {recorded!r}"
    if result.get("error"):
        return "error", f"recorded {recorded}, but the result holds an exception ({result['error'].get('type')})"
    try:
        case = parse_case(result["definition"], "the record")
    except (CaseError, KeyError) as error:
        return None, f"its definition cannot be read ({error})"
    if sorted(result.get("apis", {})) != sorted(case.apis):
        return None, f"the record holds the builds {sorted(result.get('apis', {}))}, the case has {sorted(case.apis)}"
    expected = expected_outputs(case, make_case_data(case, seed))
    items: dict[str, dict[str, dict[str, Any]]] = {}
    actual_by_api: dict[str, dict[str, np.ndarray]] = {}
    for api, entry in result["apis"].items():
        recorded_outputs = sorted(entry.get("items", {}))
        # Exactly the outputs the build gives: one left out (a failing state, say) would not be judged at all.
        if set(recorded_outputs) != recorded_output_names(case, expected):
            return None, (f"{api} records the outputs {recorded_outputs}, the build gives "
                          f"{sorted(recorded_output_names(case, expected))}")
        items[api], actual_by_api[api] = {}, {}
        for name, item in entry["items"].items():
            if (api, name) not in raw:
                return None, f"the raw output {api}/{name} was not recorded"
            actual = raw[(api, name)]
            comparison = compare(actual, expected[name], tolerances.for_case(case, quantity_of(name)), case.compute_dtype,
                                 case.allow_nonfinite)
            dtype_ok = _stored_dtype(actual, item.get("dtype", "")) == case.compute_dtype
            items[api][name] = comparison.to_json() | {"passed": comparison.passed and dtype_ok,
                                                        "message": comparison.message(f"{api}/{name}")}
            actual_by_api[api][name] = actual
    judged = {"apis": {api: {"items": by_name} for api, by_name in items.items()},
              "api_agreement": api_agreement(actual_by_api, tolerances.api_max_abs_diff)}
    status, problems = measured_status(judged)
    if status != recorded:
        return status, f"recorded {recorded}, its raw outputs give {status}" + (f" ({problems[0][:200]})" if problems else "")
    return status, ""


def status_check(run: dict[str, Any], raw: dict[str, np.ndarray], tolerances: Tolerances) -> dict[str, Any]:
    """Every case's recorded status against the one recomputed from its raw outputs (``raw`` as read from the
    record's .npz). Not recomputed when the record was judged with another tolerance table."""
    from harness.records.store import result_arrays

    recorded_table, current_table = tolerance_sha256(run), tolerance_sha256(tolerance_fields(tolerances))
    check: dict[str, Any] = {"recorded_table_sha256": recorded_table, "current_table_sha256": current_table,
                             "recomputed": 0, "agreeing": 0, "raised": 0, "mismatches": [], "unchecked": []}
    if recorded_table != current_table:
        check["skipped"] = (f"judged with another tolerance table (sha256 {recorded_table[:12]}) than the current one "
                            f"({current_table[:12]}); statuses not recomputed")
        return check
    for result in run["cases"]:
        status, reason = recomputed_status(result, result_arrays(result, raw), tolerances, run["seed"])
        if result.get("status") in RAISED and not reason:
            check["raised"] += 1
            continue
        if reason == UNLOCATED_REFUSAL:
            check["raised"] += 1
            check["unchecked"].append({"case": result.get("case"), "recorded": result.get("status"), "reason": reason})
            continue
        check["recomputed"] += 1
        if reason:
            check["mismatches"].append({"case": result.get("case"), "recorded": result.get("status"), "recomputed": status,
                                        "reason": reason})
        else:
            check["agreeing"] += 1
    return check


def record_commits(record: dict[str, Any]) -> list[str]:
    """The harness commits a record names: its own, and those of the runs it was resumed or merged from."""
    commits = [record.get("commit")]
    for entry in record.get("resumed", []) + record.get("merged_from", []):
        commits += [entry.get("commit")] + [resumed.get("commit") for resumed in entry.get("resumed", [])]
    return sorted({commit for commit in commits if commit})


def folder_commits(folder: Path) -> dict[str, list[str]]:
    """File name -> the commits it names, for every keras-parity record in ``folder`` that names one."""
    named: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and str(record.get("schema", "")).startswith("keras-parity/"):
            commits = record_commits(record)
            if commits:
                named[path.name] = commits
    return named


def record_integrity(folder: Path, backend: str, run: dict[str, Any], raw: dict[str, np.ndarray],
                     tolerances: Tolerances) -> dict[str, Any]:
    """The flags on ``folder/<backend>.json`` (see the module's docstring) and its status check."""
    name = f"{backend}.json"
    flags: list[dict[str, str]] = []
    if not run.get("finished"):
        flags.append({"kind": "unfinished", "message": f"{name} is unfinished: the run never finished (no 'finished' time), "
                                                       f"it holds {len(run['cases'])} cases"})
    by_file = folder_commits(folder)
    distinct = sorted({commit for commits in by_file.values() for commit in commits})
    if len(distinct) > 1:
        listing = "; ".join(f"{file} at {', '.join(commit[:12] for commit in commits)}" for file, commits in by_file.items())
        flags.append({"kind": "mixed_commits", "message": f"{folder}'s records were measured by {len(distinct)} commits of the "
                                                          f"harness: {listing}"})
    check = status_check(run, raw, tolerances)
    if "skipped" in check:
        flags.append({"kind": "statuses_unchecked", "message": f"{name}: {check['skipped']}"})
    if check["unchecked"]:
        flags.append({"kind": "statuses_unchecked", "message": f"{name}: {len(check['unchecked'])} refusal(s) cannot be checked "
                                                               f"({check['unchecked'][0]['case']}, ...): {UNLOCATED_REFUSAL}"})
    for mismatch in check["mismatches"]:
        flags.append({"kind": "status_mismatch", "message": f"{name}: {mismatch['case']}: {mismatch['reason']}"})
    return {"flags": flags, "status_check": check,
            "failing": sum(flag["kind"] in FAILING_FLAGS for flag in flags)}
