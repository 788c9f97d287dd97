"""Between Keras versions: what changed, per case and backend, from one results folder (the pinned
release, ``results/``) to another (keras-nightly, ``results/keras-nightly/``). Reads records only
(run records, their raw outputs and verdicts); writes ``between_versions.json`` into the first folder.

Each case measured on the same backend in both folders, under the same definition, is one of:

- fixed: a known divergence (or an unexplained failure) on the first version that passes on the
  second; the upstream change is named when the claim's ``upstream`` text names a fix. A claim of
  ``change = "definition"`` (the first version defines the op differently, e.g. Keras 2's hard_sigmoid)
  makes the case changed instead: nothing was fixed, the definition moved;
- regression: passes on the first version, fails, errors, times out or is invalid on the second.
  The second record is judged with its own versions, so a claim observed on 3.15.1 never absorbs a
  failure measured on 3.16.0.dev...;
- still present: a known divergence on the first version that fails on the second only because its
  claim's version range stops at the first version: the same claim, range ignored, describes the
  second measurement exactly (widen the range once confirmed);
- changed: both self-consistent but the semantics moved: a known divergence that now fails in a way
  its claim does not describe, known under a different claim, a verdict that becomes or stops being
  refused or known, another output dtype, another set of outputs or builds;
- drift: the same verdict (both pass), but an output moved by more than the two records' tolerances
  added (``|a - b| > (atol_a + atol_b) + (rtol_a + rtol_b) * max(|a|, |b|)``, the rule of
  ``cross_backend``), with the largest absolute difference. Checked for every build and output of a case
  whose verdict holds on both sides: both pass, both known under the same claims, or still present (two
  passing sides can only drift when their tolerances differ: each is within its own of the reference).

Anything else (the same verdict, numbers within the bound) is unchanged and only counted.

The same classification compares Keras 2 with Keras 3 (``between-versions results/tf-keras results``: the first
folder measured with ``harness run --keras-api tf_keras``, whose records say ``versions["keras_api"] = "tf_keras"``):
a regression then passes on Keras 2 and fails on Keras 3. The report of a folder shows every comparison stored
in it and, from its subfolders, those that name it as a side (``comparisons_for``).
"""

from __future__ import annotations

import dataclasses
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
    tolerances = load_tolerances(new.get("device_class", "cpu"))
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
                 divergences: dict[str, Divergence]) -> dict[str, Any] | None:
    """The change of one case on one backend from the first record to the second (an entry of
    ``between_versions.json``), or None when it is unchanged. ``claims`` are the first verdict file's
    recorded claims by id; ``divergences`` the current divergence file's entries by id."""
    before, after = old_verdict["verdict"], new_verdict["verdict"]
    args = (backend, case_name, old, new, old_result, new_result, old_verdict, new_verdict)
    errors = f"max abs error {_error_text(_max_error(old_result))} -> {_error_text(_max_error(new_result))}"
    if before in ("known", *FAILING) and after == "pass":
        explained = [claims[claim] for claim in old_verdict.get("explained_by", []) if claim in claims]
        change = upstream_change(explained)
        if before == "known" and explained and all(claim.get("change") == "definition" for claim in explained):
            detail = (f"{_label(old)} computes its own definition ({', '.join(old_verdict['explained_by'])}: "
                      f"{' '.join(explained[0].get('observed', '').split())[:300]}); {_label(new)} computes the documented one")
            return _entry("changed", *args, detail=detail, magnitude=errors)
        if before == "known":
            detail = f"known divergence {', '.join(old_verdict['explained_by'])} no longer shows; "
            detail += f"upstream change: {change}" if change else "no upstream change identified"
            reproducers = sorted({claim["reproducer"] for claim in explained if claim.get("reproducer")})
            if reproducers:
                detail += f" (reproducer: {', '.join(reproducers)}, expected to exit 0 on {_label(new)})"
        else:
            detail = f"{before} on {_label(old)} without a claim ({_first_problem(old_result)}); passes on {_label(new)}"
        return _entry("fixed", *args, detail=detail, magnitude=errors, upstream_change=change)
    if before == "pass" and after in FAILING:
        return _entry("regression", *args, detail=_first_problem(new_result) or "; ".join(new_verdict.get("unexplained", [])),
                      magnitude=errors)
    if before == "known" and after in FAILING:
        case = parse_case(new_result["definition"], f"{backend}.json")
        same, why = _still_described(divergences, old_verdict["explained_by"], case, backend, new, new_result,
                                     store.result_arrays(new_result, new_arrays))
        if not same:
            return _entry("changed", *args, detail=f"known as {', '.join(old_verdict['explained_by'])} on {_label(old)}; on "
                          f"{_label(new)} {after} in a way the claim does not describe: {why}", magnitude=errors)
        row = output_drift(case_name, old_result, new_result, old_arrays, new_arrays)
        if row is None:
            return {"kind": "still_present", "backend": backend, "case": case_name, "divergences": list(old_verdict["explained_by"]),
                    "old_verdict": before, "new_verdict": after, "old_max_abs_error": _max_error(old_result),
                    "new_max_abs_error": _max_error(new_result)}
        return _drift_entry(args, row, f"known divergence {', '.join(old_verdict['explained_by'])} still present (its claim's "
                            f"version range stops before {_label(new)}), but ")
    if before != after or (before == "known" and old_verdict.get("explained_by") != new_verdict.get("explained_by")):
        if before == "known" or after == "known":
            detail = (f"{before}{' as ' + ', '.join(old_verdict['explained_by']) if before == 'known' else ''} -> "
                      f"{after}{' as ' + ', '.join(new_verdict['explained_by']) if after == 'known' else ''}")
            if before in FAILING and after == "known":  # e.g. Keras 2 -> Keras 3: was it the same behaviour already?
                case = parse_case(old_result["definition"], f"{backend}.json")
                same, _ = _still_described(divergences, new_verdict["explained_by"], case, backend, old, old_result,
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
        "changes": [], "still_present": [], "unchanged": {}, "only_old": [], "only_new": [], "not_compared": [],
    }
    for backend in BACKENDS:
        if backend not in old_loaded or backend not in new_loaded:
            if (backend in old_loaded or backend in new_loaded) and not _keras_2_only(old_loaded if backend in new_loaded else new_loaded):
                record["not_compared"].append({"backend": backend, "case": "*", "reason": f"only {'the first' if backend in old_loaded else 'the second'} folder has a {backend} record"})
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
                                 claims, divergences)
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
