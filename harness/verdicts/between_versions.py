"""Between Keras versions: what changed, per case and backend, from one results folder (the pinned
release, ``results/``) to another (keras-nightly, ``results/keras-nightly/``). Reads records only
(run records, their raw outputs and verdicts); writes ``between_versions.json`` into the first folder.

Each case measured on the same backend in both folders, under the same definition, is one of:

- fixed: a known divergence (or an unexplained failure) on the first version that passes on the
  second; the upstream change is named when the claim's ``upstream`` text names a fix. A claim of
  ``change = "definition"`` (the first version defines the op differently, e.g. Keras 2's hard_sigmoid)
  makes the case changed instead: nothing was fixed, the definition moved;
- regression: the case got worse (``regression_reasons``, the one rule ``harness compare`` follows too).
  Verdicts are ordered pass < known < refused < fail = error = timeout = invalid; worse is a verdict
  further down that order (pass -> known, pass -> refused, known -> fail, ...), known under another
  claim, an error larger than on the first version by more than the case's tolerance (``error_grew``),
  an output of the first version missing on the second, or a narrower output dtype (float64 ->
  float32). A worse case is changed instead only when its second verdict is known and every claim that
  explains it is ``change = "definition"`` (the version chose that definition). The second record is
  judged with its own versions, so a claim observed on 3.15.1 never absorbs a failure measured on
  3.16.0.dev...;
- still present: a known divergence on the first version that fails on the second only because its
  claim's version range stops at the first version: the same claim, range ignored, describes the
  second measurement exactly (widen the range once confirmed), and no error grew beyond the tolerance;
- changed: a verdict or output that moved without getting worse: refused -> known, fail -> known,
  fail -> error, an output dtype of the same or a wider width, outputs added; or a worse case that a
  ``change = "definition"`` claim explains;
- drift: the same verdict (both pass), but an output moved by more than the two records' tolerances
  added (``|a - b| > (atol_a + atol_b) + (rtol_a + rtol_b) * max(|a|, |b|)``, the rule of
  ``cross_backend``), with the largest absolute difference. Checked for every build and output of a case
  whose verdict holds on both sides: both pass, both known under the same claims, or still present (two
  passing sides can only drift when their tolerances differ: each is within its own of the reference).

Anything else (the same verdict, numbers within the bound) is unchanged and only counted. A case or a
backend of the first folder that the second lacks is listed (``only_old``, ``removed_backends``) and
counted as ``removed``; ``harness between-versions`` exits 1 on any regression or removal.

The same classification compares Keras 2 with Keras 3 (``between-versions results/tf-keras results``: the first
folder measured with ``harness run --keras-api tf_keras``, whose records say ``versions["keras_api"] = "tf_keras"``):
a regression then passes on Keras 2 and fails on Keras 3. The report of a folder shows every comparison stored
in it and, from its subfolders, those that name it as a side (``comparisons_for``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from harness.case.divergences import DIVERGENCES_FILE, Divergence, device_kind, load_divergences
from harness.case.schema import parse_case
from harness.case.tolerances import load_tolerances
from harness.execute.backends import BACKENDS
from harness.records import store
from harness.records.header import file_sha256, now
from harness.verdicts.classify import FAILING, classify_result, verdicts_path

SCHEMA = ("keras-parity/between-versions", 1)
FILE_NAME = "between_versions.json"
KINDS = ("fixed", "regression", "changed", "drift")
_FIX = re.compile(r"\bfix", re.IGNORECASE)

# One order of verdicts for every comparison between two results (between-versions and compare): a case
# whose verdict moves to a larger rank got worse. Every failing verdict ranks the same: fail -> error is
# another failure, not a worse one.
VERDICT_RANK = {"pass": 0, "known": 1, "refused": 2, **{verdict: 3 for verdict in FAILING}}
# Width of the floating output dtypes: a smaller width on the second side is a narrower (worse) output.
DTYPE_BITS = {"float16": 16, "bfloat16": 16, "float32": 32, "float64": 64}


@dataclasses.dataclass(frozen=True)
class MeasuredOutput:
    """One output of one build of a case as a record holds it: enough to tell whether it got worse."""

    dtype: str | None
    max_abs_error: float | None
    atol: float | None
    rtol: float | None
    worst_expected: float | None  # the reference value where the error is largest


def measured_outputs(result: dict[str, Any]) -> dict[tuple[str, str], MeasuredOutput]:
    """Every (build, output) of a run record's case result."""
    return {
        (api, name): MeasuredOutput(item.get("dtype"), item.get("max_abs_error"), item.get("atol"), item.get("rtol"),
                                    item.get("worst_expected"))
        for api, entry in result.get("apis", {}).items() for name, item in entry.get("items", {}).items()
    }


def verdict_rank(verdict: str) -> int:
    """The verdict's place in VERDICT_RANK (0 is best); ValueError (one line) for a verdict that is not one."""
    if verdict not in VERDICT_RANK:
        raise ValueError(f"unknown verdict {verdict!r}; expected one of {', '.join(VERDICT_RANK)}")
    return VERDICT_RANK[verdict]


def error_grew(before: MeasuredOutput, after: MeasuredOutput) -> bool:
    """Whether the output's largest error against the reference grew by more than the case's tolerance.

    The second side's largest error e2 sits at an element whose reference value is ``worst_expected`` (r);
    the first side's error there was at most its own largest e1, so that element moved away from the
    reference by at least e2 - e1. When that exceeds the tolerance at that element (atol + rtol * |r|, the
    amount the case counts as agreement) the second version is measurably further from the truth. A
    non-finite error where the first was finite grew; a non-finite first error cannot grow."""
    old_error, new_error = before.max_abs_error, after.max_abs_error
    if old_error is None or new_error is None:
        return False
    if not math.isfinite(old_error):
        return False
    if not math.isfinite(new_error):
        return True
    atol = after.atol if after.atol is not None else 0.0
    rtol = after.rtol if after.rtol is not None else 0.0
    scale = abs(after.worst_expected) if after.worst_expected is not None and math.isfinite(after.worst_expected) else 0.0
    return new_error - old_error > atol + rtol * scale


def _named(api_output: tuple[str, str]) -> str:
    return f"{api_output[0]}/{api_output[1]}"


def regression_reasons(before: str, after: str, before_claims: list[str] | tuple[str, ...],
                       after_claims: list[str] | tuple[str, ...], before_outputs: dict[tuple[str, str], MeasuredOutput],
                       after_outputs: dict[tuple[str, str], MeasuredOutput], still_described: bool = False) -> list[str]:
    """Why a case got worse from the first result to the second (empty: it did not). ``still_described``: a
    known divergence whose claim, its version range ignored, describes the second measurement exactly (its
    verdict moved only because the range stops at the first version); its errors must still not grow."""
    reasons = []
    if verdict_rank(after) > verdict_rank(before) and not still_described:
        reasons.append(f"verdict {before} -> {after}")
    if before == after == "known" and sorted(before_claims) != sorted(after_claims):
        reasons.append(f"known as {', '.join(before_claims)} -> known as {', '.join(after_claims)}")
    if verdict_rank(after) == verdict_rank(before) or still_described:
        for key in sorted(before_outputs.keys() & after_outputs.keys()):
            old, new = before_outputs[key], after_outputs[key]
            if error_grew(old, new):
                reasons.append(f"{_named(key)} max abs error {_error_text(old.max_abs_error)} -> "
                               f"{_error_text(new.max_abs_error)}, more than the tolerance (atol {new.atol}, rtol {new.rtol}) larger")
    lost = sorted(before_outputs.keys() - after_outputs.keys())
    if lost:
        reasons.append(f"output{'s' if len(lost) > 1 else ''} lost: {', '.join(_named(key) for key in lost)}")
    for key in sorted(before_outputs.keys() & after_outputs.keys()):
        old_dtype, new_dtype = before_outputs[key].dtype, after_outputs[key].dtype
        if old_dtype in DTYPE_BITS and new_dtype in DTYPE_BITS and DTYPE_BITS[new_dtype] < DTYPE_BITS[old_dtype]:
            reasons.append(f"{_named(key)} dtype narrowed {old_dtype} -> {new_dtype}")
    return reasons


def by_definition(after: str, after_claims: list[str] | tuple[str, ...], definition_claims: set[str]) -> bool:
    """Whether the second verdict is known and every claim explaining it is a ``change = "definition"`` claim:
    the version chose that behaviour, so a worse verdict there is changed behaviour, not a regression."""
    return after == "known" and bool(after_claims) and all(claim in definition_claims for claim in after_claims)


def _load(folder: Path) -> dict[str, tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]]:
    """Per backend: the run record, its raw outputs and its verdicts (records made with a fault are left out)."""
    if not folder.is_dir():
        raise store.RecordError(f"{folder} is not a folder; give two results folders (the release's, then nightly's)")
    loaded = {}
    for backend in BACKENDS:
        path = folder / f"{backend}.json"
        if not path.is_file():
            continue
        record = store.read_record(path)
        if record.get("fault"):
            continue
        verdict_path = verdicts_path(folder, backend)
        if not verdict_path.is_file():
            raise store.RecordError(f"{verdict_path} is missing; run 'python -m harness classify {folder}' first")
        loaded[backend] = (record, store.read_arrays(folder / f"{backend}.npz"), store.read_json_file(verdict_path))
    if not loaded:
        raise store.RecordError(f"{folder} holds no run record (<backend>.json); run 'python -m harness run' first")
    return loaded


def _outputs(result: dict[str, Any]) -> dict[tuple[str, str], str]:
    """Every (build, output) of a result and its dtype."""
    return {(api, name): item.get("dtype") for api, entry in result.get("apis", {}).items() for name, item in entry["items"].items()}


def _max_error(result: dict[str, Any]) -> float | None:
    return store.worst_item(result, "max_abs_error")


def _worst_ratio(result: dict[str, Any]) -> float | None:
    return store.worst_item(result, "tolerance_ratio")


def _first_problem(result: dict[str, Any]) -> str:
    if result.get("error"):
        return result["error"].get("summary") or f"{result['error'].get('type')}: {result['error'].get('message', '')[:200]}"
    return result["problems"][0] if result.get("problems") else ""


def _label(record: dict[str, Any]) -> str:
    return f"{record['versions'].get('keras_api', 'keras')} {record['versions'].get('keras', '?')}"


def _api_option(record: dict[str, Any]) -> str:
    api = record["versions"].get("keras_api")
    return f" --keras-api {api}" if api else ""


def reproducer(backend: str, case: str, old: dict[str, Any], new: dict[str, Any], old_verdict: str, new_verdict: str) -> str:
    """One line that measures the case again, naming the versions on each side and what each gave."""
    if old["versions"].get("keras_api") or new["versions"].get("keras_api"):  # Keras 2 on one side: name the API
        versions = [f"{_label(old)} ({old_verdict}) vs {_label(new)} ({new_verdict})"]
    else:
        versions = [f"keras {old['versions'].get('keras')} ({old_verdict}) vs {new['versions'].get('keras')} ({new_verdict})"]
    for package in (backend, "numpy"):
        before, after = old["versions"].get(package), new["versions"].get(package)
        versions.append(f"{package} {before}" if before == after else f"{package} {before} vs {after}")
    options = {_api_option(old), _api_option(new)} - {""}
    api = f" [{' or '.join(sorted(options)).strip()} for {_label(old) if _api_option(old) else _label(new)}]" if options else ""
    return (f"KERAS_BACKEND={backend} python -m harness run --backend {backend} --cases {shlex.quote(case)} --out OUT{api}  "
            f"# {', '.join(versions)}")


def upstream_change(claims: list[dict[str, Any]]) -> str | None:
    """The upstream change a fixed divergence's claims name (their ``upstream`` text when it names a fix), else None."""
    named = [claim["upstream"] for claim in claims if claim.get("upstream") and _FIX.search(claim["upstream"])]
    return "; ".join(named) if named else None


def _still_described(divergences: dict[str, Divergence], claim_ids: list[str], case: Any, backend: str,
                     new: dict[str, Any], result: dict[str, Any], arrays: dict[tuple[str, str], np.ndarray]) -> tuple[bool, str]:
    """Whether the claims that explained the case on the first version, their version ranges ignored,
    explain the second measurement exactly; and why not."""
    missing = [claim for claim in claim_ids if claim not in divergences]
    if missing:
        return False, f"claim {missing[0]} is no longer in the divergence file"
    unranged = [dataclasses.replace(divergences[claim], versions={}) for claim in claim_ids]
    tolerances = load_tolerances(new.get("device_class", "cpu"), new.get("backend"))
    verdict = classify_result(case, backend, new["versions"], result, arrays, tolerances, unranged, new["seed"],
                              device_kind(new.get("device_class", "cpu")))
    if verdict["verdict"] == "known":
        return True, ""
    return False, "; ".join(verdict["unexplained"]) or f"measured {result['status']}"


def output_drift(case: str, old_result: dict[str, Any], new_result: dict[str, Any], old_arrays: dict[str, np.ndarray],
                 new_arrays: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """The output that moved most beyond the sum of the two records' tolerances (the cross-backend rule),
    over every build and output both results recorded; None when every one stayed within."""
    worst = None
    for api, entry in old_result.get("apis", {}).items():
        for output, item in entry["items"].items():
            other = new_result.get("apis", {}).get(api, {}).get("items", {}).get(output)
            key = store.array_key(case, api, output)
            if other is None or key not in old_arrays or key not in new_arrays or item.get("atol") is None or other.get("atol") is None:
                continue
            a, b = old_arrays[key].astype(np.float64), new_arrays[key].astype(np.float64)
            if a.shape != b.shape:
                row = {"api": api, "output": output, "max_abs_diff": float("inf"), "ratio": float("inf")}
            else:
                bound = (item["atol"] + other["atol"]) + (item["rtol"] + other["rtol"]) * np.maximum(np.abs(a), np.abs(b))
                with np.errstate(invalid="ignore"):
                    difference = np.abs(a - b)
                    ratio = difference / bound
                both_nan = np.isnan(a) & np.isnan(b)  # the same NaN on both sides did not move
                ratio = np.where(both_nan, 0.0, ratio)
                difference = np.where(both_nan, 0.0, difference)
                if not ratio.size:
                    continue
                row = {"api": api, "output": output, "max_abs_diff": float(np.nanmax(difference)) if not np.isnan(difference).all() else float("nan"),
                       "ratio": float("inf") if np.isnan(ratio).any() else float(ratio.max())}
            if row["ratio"] > 1.0 and (worst is None or row["ratio"] > worst["ratio"]):
                worst = row
    return worst


def _semantic_change(old_result: dict[str, Any], new_result: dict[str, Any]) -> str:
    """Another set of builds or outputs, or another output dtype; '' when none."""
    before, after = _outputs(old_result), _outputs(new_result)
    if set(before) != set(after):
        gone = sorted(f"{api}/{name}" for api, name in set(before) - set(after))
        added = sorted(f"{api}/{name}" for api, name in set(after) - set(before))
        return "different outputs: " + "; ".join(part for part in (
            f"no longer {', '.join(gone)}" if gone else "", f"now also {', '.join(added)}" if added else "") if part)
    dtypes = [f"{api}/{name} {before[(api, name)]} -> {after[(api, name)]}" for api, name in sorted(before)
              if before[(api, name)] != after[(api, name)]]
    return "output dtype changed: " + ", ".join(dtypes) if dtypes else ""


def _entry(kind: str, backend: str, case: str, old: dict[str, Any], new: dict[str, Any], old_result: dict[str, Any],
           new_result: dict[str, Any], old_verdict: dict[str, Any], new_verdict: dict[str, Any], detail: str,
           magnitude: str, **extra: Any) -> dict[str, Any]:
    entry = {
        "kind": kind, "backend": backend, "case": case,
        "old_verdict": old_verdict["verdict"], "new_verdict": new_verdict["verdict"],
        "old_explained_by": list(old_verdict.get("explained_by", [])), "new_explained_by": list(new_verdict.get("explained_by", [])),
        "old_max_abs_error": _max_error(old_result), "new_max_abs_error": _max_error(new_result),
        "old_ratio": _worst_ratio(old_result), "new_ratio": _worst_ratio(new_result),
        "max_abs_diff": None, "diff_ratio": None, "output": None, "upstream_change": None,
        "magnitude": magnitude, "detail": detail,
        "reproducer": reproducer(backend, case, old, new, old_verdict["verdict"], new_verdict["verdict"]),
    }
    entry.update(extra)
    return entry


def _error_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def compare_case(backend: str, case_name: str, old: dict[str, Any], new: dict[str, Any], old_result: dict[str, Any],
                 new_result: dict[str, Any], old_verdict: dict[str, Any], new_verdict: dict[str, Any],
                 old_arrays: dict[str, np.ndarray], new_arrays: dict[str, np.ndarray], claims: dict[str, dict[str, Any]],
                 divergences: dict[str, Divergence], definition_claims: set[str] | None = None) -> dict[str, Any] | None:
    """The change of one case on one backend from the first record to the second (an entry of
    ``between_versions.json``), or None when it is unchanged. ``claims`` are the first verdict file's
    recorded claims by id; ``divergences`` the current divergence file's entries by id; ``definition_claims``
    the ids of ``change = "definition"`` claims (by default those of ``claims`` and ``divergences``)."""
    if definition_claims is None:
        definition_claims = ({claim_id for claim_id, claim in claims.items() if claim.get("change") == "definition"}
                             | {claim_id for claim_id, claim in divergences.items() if claim.change == "definition"})
    before, after = old_verdict["verdict"], new_verdict["verdict"]
    old_claims, new_claims = list(old_verdict.get("explained_by", [])), list(new_verdict.get("explained_by", []))
    args = (backend, case_name, old, new, old_result, new_result, old_verdict, new_verdict)
    errors = f"max abs error {_error_text(_max_error(old_result))} -> {_error_text(_max_error(new_result))}"
    still_described, why_not = False, ""
    if before == "known" and after in FAILING:
        case = parse_case(new_result["definition"], f"{backend}.json")
        still_described, why_not = _still_described(divergences, old_claims, case, backend, new, new_result,
                                                    store.result_arrays(new_result, new_arrays))
    reasons = regression_reasons(before, after, old_claims, new_claims, measured_outputs(old_result),
                                 measured_outputs(new_result), still_described)
    if reasons:
        if before == "known" and after in FAILING and not still_described:
            reasons.append(f"known as {', '.join(old_claims)} on {_label(old)}; on {_label(new)} {after} in a way the claim "
                           f"does not describe: {why_not}")
        elif still_described:
            reasons.append(f"known divergence {', '.join(old_claims)} still present (its claim's version range stops "
                           f"before {_label(new)})")
        problem = _first_problem(new_result) or "; ".join(new_verdict.get("unexplained", []))
        if after in FAILING and problem and not (before == "known" and not still_described):
            reasons.append(problem)
        if by_definition(after, new_claims, definition_claims):
            return _entry("changed", *args, detail=f"{'; '.join(reasons)}; {_label(new)} defines it so "
                          f"({', '.join(new_claims)}, change = \"definition\"): not a regression", magnitude=errors)
        return _entry("regression", *args, detail="; ".join(reasons), magnitude=errors)
    if before in ("known", *FAILING) and after == "pass":
        explained = [claims[claim] for claim in old_claims if claim in claims]
        change = upstream_change(explained)
        if before == "known" and explained and all(claim.get("change") == "definition" for claim in explained):
            detail = (f"{_label(old)} computes its own definition ({', '.join(old_claims)}: "
                      f"{' '.join(explained[0].get('observed', '').split())[:300]}); {_label(new)} computes the documented one")
            return _entry("changed", *args, detail=detail, magnitude=errors)
        if before == "known":
            detail = f"known divergence {', '.join(old_claims)} no longer shows; "
            detail += f"upstream change: {change}" if change else "no upstream change identified"
            reproducers = sorted({claim["reproducer"] for claim in explained if claim.get("reproducer")})
            if reproducers:
                detail += f" (reproducer: {', '.join(reproducers)}, expected to exit 0 on {_label(new)})"
        else:
            detail = f"{before} on {_label(old)} without a claim ({_first_problem(old_result)}); passes on {_label(new)}"
        return _entry("fixed", *args, detail=detail, magnitude=errors, upstream_change=change)
    if still_described:
        row = output_drift(case_name, old_result, new_result, old_arrays, new_arrays)
        if row is None:
            return {"kind": "still_present", "backend": backend, "case": case_name, "divergences": old_claims,
                    "old_verdict": before, "new_verdict": after, "old_max_abs_error": _max_error(old_result),
                    "new_max_abs_error": _max_error(new_result)}
        return _drift_entry(args, row, f"known divergence {', '.join(old_claims)} still present (its claim's "
                            f"version range stops before {_label(new)}), but ")
    if before != after:  # a move up the order or within the failing verdicts: neither better nor worse
        if before == "known" or after == "known":
            detail = (f"{before}{' as ' + ', '.join(old_claims) if before == 'known' else ''} -> "
                      f"{after}{' as ' + ', '.join(new_claims) if after == 'known' else ''}")
            if before in FAILING and after == "known":  # e.g. Keras 2 -> Keras 3: was it the same behaviour already?
                case = parse_case(old_result["definition"], f"{backend}.json")
                same, _ = _still_described(divergences, new_claims, case, backend, old, old_result,
                                           store.result_arrays(old_result, old_arrays))
                if same:
                    detail += (f"; the claim, its version range ignored, describes {_label(old)}'s measurement exactly: "
                               "the same behaviour on both versions")
        elif "refused" in (before, after):
            detail = f"refused on {_label(old) if before == 'refused' else _label(new)} only: {_first_problem(new_result if after == 'refused' else old_result)}"
        else:
            detail = f"{before} -> {after}: {_first_problem(new_result)}"
        return _entry("changed", *args, detail=detail, magnitude=errors)
    semantic = _semantic_change(old_result, new_result)
    if semantic:
        return _entry("changed", *args, detail=semantic, magnitude=errors)
    if before in ("pass", "known"):
        row = output_drift(case_name, old_result, new_result, old_arrays, new_arrays)
        if row is not None:
            return _drift_entry(args, row, f"still {before}, but ")
    return None


def _drift_entry(args: tuple[Any, ...], row: dict[str, Any], prefix: str) -> dict[str, Any]:
    return _entry("drift", *args, detail=f"{prefix}{row['api']}/{row['output']} moved by {row['max_abs_diff']:.3g}, "
                  f"{row['ratio']:.3g}x the sum of the two tolerances", magnitude=f"max abs difference {row['max_abs_diff']:.3g}",
                  max_abs_diff=row["max_abs_diff"], diff_ratio=row["ratio"], output=f"{row['api']}/{row['output']}")


def _keras_2_only(loaded: dict[str, tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]]) -> bool:
    """Whether every record of a folder was built with Keras 2 (tf_keras), which runs on TensorFlow only: its
    missing backends are not worth a 'not compared' line."""
    return bool(loaded) and all(record["versions"].get("keras_api") == "tf_keras" for record, _, _ in loaded.values())


def _side(folder: Path, loaded: dict[str, tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]]) -> dict[str, Any]:
    return {"folder": str(folder), "versions": {backend: dict(record["versions"]) for backend, (record, _, _) in loaded.items()},
            "divergences_sha256": {backend: verdicts.get("divergences_sha256") for backend, (_, _, verdicts) in loaded.items()}}


def compare_versions(old_folder: Path, new_folder: Path, divergences_path: Path = DIVERGENCES_FILE) -> dict[str, Any]:
    """Compare the classified records of two results folders (first: the release, second: nightly) and
    return the ``between_versions.json`` record (not written; see ``write_between_versions``).

    Raises harness.records.store.RecordError (one line) for a missing folder, record or verdict file."""
    old_loaded, new_loaded = _load(old_folder), _load(new_folder)
    divergences = {d.id: d for d in load_divergences(divergences_path)}
    record: dict[str, Any] = {
        "schema": SCHEMA[0], "schema_version": SCHEMA[1], "compared": now(),
        "old": _side(old_folder, old_loaded), "new": _side(new_folder, new_loaded),
        "divergences_sha256": file_sha256(divergences_path),
        "changes": [], "still_present": [], "unchanged": {}, "only_old": [], "only_new": [], "removed_backends": [],
        "not_compared": [],
    }
    definition_claims = {claim_id for claim_id, claim in divergences.items() if claim.change == "definition"}
    for _, _, verdicts in (*old_loaded.values(), *new_loaded.values()):
        definition_claims |= {claim["id"] for claim in verdicts.get("divergences", []) if claim.get("change") == "definition"}
    for backend in BACKENDS:
        if backend not in old_loaded or backend not in new_loaded:
            if (backend in old_loaded or backend in new_loaded) and not _keras_2_only(old_loaded if backend in new_loaded else new_loaded):
                record["not_compared"].append({"backend": backend, "case": "*", "reason": f"only {'the first' if backend in old_loaded else 'the second'} folder has a {backend} record"})
                if backend in old_loaded:  # a backend measured on the first version and gone on the second
                    record["removed_backends"].append(backend)
            continue
        (old, old_raw, old_verdicts), (new, new_raw, new_verdicts) = old_loaded[backend], new_loaded[backend]
        claims = {claim["id"]: claim for claim in old_verdicts.get("divergences", [])}
        old_cases = {result["case"]: result for result in old["cases"]}
        new_cases = {result["case"]: result for result in new["cases"]}
        record["only_old"] += [{"backend": backend, "case": name} for name in sorted(old_cases.keys() - new_cases.keys())]
        record["only_new"] += [{"backend": backend, "case": name} for name in sorted(new_cases.keys() - old_cases.keys())]
        unchanged = 0
        for name in sorted(old_cases.keys() & new_cases.keys()):
            old_result, new_result = old_cases[name], new_cases[name]
            if old_result.get("definition") != new_result.get("definition"):
                record["not_compared"].append({"backend": backend, "case": name, "reason": "defined differently in the two records"})
                continue
            cannot = next((result["error"]["message"] for result in (old_result, new_result)
                           if (result.get("error") or {}).get("type") == "NotExpressible"), None)
            if cannot is not None:  # a case one Keras API cannot express at all (Keras 2 and kernel modes): no change to report
                record["not_compared"].append({"backend": backend, "case": name, "reason": cannot})
                continue
            old_verdict, new_verdict = old_verdicts["cases"].get(name), new_verdicts["cases"].get(name)
            if old_verdict is None or new_verdict is None:
                record["not_compared"].append({"backend": backend, "case": name, "reason": "no verdict in one of the verdict files: classify again"})
                continue
            entry = compare_case(backend, name, old, new, old_result, new_result, old_verdict, new_verdict, old_raw, new_raw,
                                 claims, divergences, definition_claims)
            if entry is None:
                unchanged += 1
            elif entry["kind"] == "still_present":
                record["still_present"].append(entry)
            else:
                record["changes"].append(entry)
        record["unchanged"][backend] = unchanged
    order = {kind: index for index, kind in enumerate(KINDS)}
    record["changes"].sort(key=lambda entry: (order[entry["kind"]], entry["backend"], entry["case"]))
    record["counts"] = {kind: sum(entry["kind"] == kind for entry in record["changes"]) for kind in KINDS}
    record["counts"]["still_present"] = len(record["still_present"])
    record["counts"]["unchanged"] = sum(record["unchanged"].values())
    record["counts"]["removed"] = len(record["only_old"]) + len(record["removed_backends"])
    return record


def comparisons_for(folder: Path) -> list[Path]:
    """The between-versions files a report of ``folder`` shows: its own, then those stored in its immediate
    subfolders whose comparison names ``folder`` as a side (Keras 2 in results/tf-keras against Keras 3 in results)."""
    folder = Path(folder)
    found = [folder / FILE_NAME] if (folder / FILE_NAME).is_file() else []
    if not folder.is_dir():
        return found
    for sub in sorted(path for path in folder.iterdir() if path.is_dir()):
        path = sub / FILE_NAME
        if not path.is_file():
            continue
        try:
            data = store.read_json_file(path)
        except store.RecordError:
            continue
        sides = [data.get(side, {}).get("folder") for side in ("old", "new")]
        if any(isinstance(side, str) and _same_folder(Path(side), folder, sub) for side in sides):
            found.append(path)
    return found


def _same_folder(side: Path, folder: Path, stored_in: Path) -> bool:
    """Whether a comparison's recorded side (as given on the command line) is ``folder``."""
    try:
        if side.resolve() == folder.resolve():
            return True
        # a relative side recorded from another working directory: the parent of the folder the file is stored in
        return not side.is_absolute() and stored_in.resolve().parent == folder.resolve() and side.name == folder.resolve().name
    except OSError:
        return False


def write_between_versions(old_folder: Path, new_folder: Path, divergences_path: Path = DIVERGENCES_FILE) -> dict[str, Any]:
    """``compare_versions``, written to ``old_folder/between_versions.json``."""
    record = compare_versions(old_folder, new_folder, divergences_path)
    store.write_json(old_folder / FILE_NAME, record)
    return record
