"""The fault study: every fault in the catalogue through the normal harness, on the active backend.

For each fault it runs the cases the fault names with the fault injected. A fault counts as detected
only through a numeric mismatch: a case whose status is "fail" with at least one compared output
beyond tolerance. Anything else that goes wrong is an error of the study, not a detection, and is
recorded with its reason:

- the fault cannot be applied (what it patches does not exist in this Keras);
- its patch is never called during the case (the case does not reach the patched code);
- its patch raises, or the case cannot run at all under it (status error, timeout, ...).

It runs the same cases unmodified to show there is no false alarm: a case that does not pass there
is a false alarm unless a known divergence of this backend explains it
(``harness.verdicts.classify.classify_result``). Fault runs are never classified: they are judged by
what was measured alone. And it sweeps the
size of a bias perturbation to find, per dtype, the smallest one the tolerances detect.

The gradient and optimizer faults (``harness.execute.gradients.GRADIENT_FAULTS`` and ``OPTIMIZER_FAULTS``) are
entries of the same record with the same verdicts, each judged by the machinery that exists to catch it: a
wrong gradient by the gradient measure step (``run_gradient_case``) on gradient cases (``GRADIENT_FAULT_CASES``),
a wrong optimizer step by the training study's runs against the NumPy loop (``training.run_one``, train_on_batch
and fit, for the optimizers of ``OPTIMIZER_FAULT_RUNS``). Their unmodified runs are in ``clean`` under
``gradients/<case>`` and ``training/<optimizer>/<entry point>``; every entry says which kind it is (``kind``:
forward, gradient or optimizer).

``exit_code(record)``: 2 when any fault (or sweep step) errored, 1 when a fault went undetected or
the unmodified run has a false alarm, 0 otherwise. Imported after the backend is active.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.case.divergences import Divergence, device_kind, load_divergences
from harness.case.schema import Case, select_cases
from harness.case.tolerances import Tolerances, load_tolerances
from harness.execute import faults
from harness.execute.backends import BackendInfo
from harness.execute.measure import run_case
from harness.records import store as records
from harness.records.header import make_header, now
from harness.verdicts.classify import classify_result

SWEEP_FAULT = "forget_gate_bias_offset"
# One case per dtype for the sensitivity sweep, and the perturbation sizes tried (largest first).
SWEEP_CASES = {"float32": "lstm_sequences", "float64": "lstm_float64_call", "float16": "dtype_float16_none", "bfloat16": "dtype_bfloat16_none"}
SWEEP_MAGNITUDES = tuple(10.0 ** -k for k in range(0, 12))
CASE_TIMEOUT_S = 300
# The gradient cases that judge each wrong gradient (an LSTM alone, and a masked go_backwards LSTM with a random
# initial state: its h0 gradient runs through the recurrent term), and the optimizers that judge each wrong step.
GRADIENT_FAULT_CASES = {
    "recurrent_term_dropped": ("lstm_last_step", "mask_holes_argument_backon_unrolloff_initrandom"),
    "recurrent_kernel_gradient_scaled": ("lstm_last_step", "mask_holes_argument_backon_unrolloff_initrandom"),
}
OPTIMIZER_FAULT_RUNS = {"adam_without_bias_correction": ("adam",)}
TRAINING_STEPS = 3  # optimizer steps per training run (Adam's bias correction matters most in the first steps)
EXIT_OK, EXIT_FOUND, EXIT_COULD_NOT_RUN = 0, 1, 2


def mismatched_outputs(result: dict[str, Any]) -> list[str]:
    """``api/output`` for every compared output with elements beyond tolerance in a case result (not a
    dtype or API-agreement problem: those are not the numeric mismatch a fault must cause)."""
    return [
        f"{api}/{name}"
        for api, entry in result.get("apis", {}).items()
        for name, item in entry.get("items", {}).items()
        if not item.get("passed", True) and item.get("mismatched", 1) > 0
    ]


def error_text(error: Any) -> str:
    """A case result's error as one line (an error record's summary, or the text itself)."""
    if isinstance(error, dict):
        return str(error.get("summary") or error.get("message") or error.get("type") or "")
    return "" if error is None else str(error)


def judge_fault_run(result: dict[str, Any] | None, injection: faults.Injection | None, not_applicable: str | None = None) -> tuple[str, str | None]:
    """(verdict, reason) of one case run with a fault: "detected", "undetected" or "error".

    Only a numeric mismatch detects a fault; a patch that raised, that was never called or that
    could not be applied, and a case that could not run under the fault, are errors of the study."""
    if not_applicable is not None:
        return "error", f"the fault cannot be applied: {not_applicable}"
    assert result is not None and injection is not None
    never_called = f"the patched function ({', '.join(injection.calls) or 'none'}) was never called during the case"
    if injection.errors:
        return "error", "the patch raised: " + "; ".join(injection.errors)
    status = result["status"]
    if status not in ("pass", "fail"):
        detail = error_text(result.get("error"))
        reason = f"the case could not run under the fault: {status}" + (f" ({detail})" if detail else "")
        return "error", reason + ("" if injection.applied else f"; {never_called}")
    if not injection.applied:
        return "error", never_called
    if status == "fail":
        if mismatched_outputs(result):
            return "detected", None
        return "error", "status fail without a compared output beyond tolerance: " + "; ".join(result.get("problems") or [])
    return "undetected", None


def _run_fields(result: dict[str, Any], patch_calls: dict[str, int]) -> dict[str, Any]:
    """What the record keeps of a case, gradient or training result run with (or without) a fault."""
    return {"status": result["status"], "error": error_text(result.get("error")) or None,
            "max_abs_error": records.worst_item(result, "max_abs_error"), "mismatched": mismatched_outputs(result),
            "patch_calls": dict(patch_calls)}


def _status_of(runs: dict[str, dict[str, Any]], what: str) -> tuple[str, str | None, list[str]]:
    """(status, reason, flagged) of a fault from its judged runs: an error of any run is an error of the study;
    else detected when a run mismatched, else undetected (``what``: case or run, for the reason)."""
    errors = [f"{name}: {run['reason']}" for name, run in runs.items() if run["verdict"] == "error"]
    flagged = [name for name, run in runs.items() if run["verdict"] == "detected"]
    if errors:
        return "error", "; ".join(errors), flagged
    if flagged:
        return "detected", None, flagged
    return "undetected", f"no {what} mismatched the reference with the fault injected", flagged


def _false_alarm_fields(status: str, known: list[str]) -> dict[str, Any]:
    """An unmodified run that does not pass is a false alarm unless a known divergence explains it."""
    return {"known_divergence": known if status != "pass" else [], "false_alarm": status != "pass" and not known}


def _run(case: Case, seed: int, tolerances: Tolerances, fault: str | None, magnitude: float) -> dict[str, Any]:
    """One case, with ``fault`` injected (None: unmodified); the run entry of the record, with its verdict."""
    arrays: dict[tuple[str, str], Any] = {}
    try:
        with faults.injected(fault, magnitude) as injection:
            result = run_case(case, seed, tolerances, arrays, timeout_s=CASE_TIMEOUT_S)
    except faults.FaultNotApplicable as error:
        verdict, reason = judge_fault_run(None, None, str(error))
        return {"status": None, "error": None, "max_abs_error": None, "patch_calls": {}, "verdict": verdict, "reason": reason}
    entry = _run_fields(result, injection.calls)
    if fault is not None:
        entry["verdict"], entry["reason"] = judge_fault_run(result, injection)
    entry["_result"], entry["_arrays"] = result, arrays
    return entry


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if not key.startswith("_")}


def _known_divergence(case: Case, backend: BackendInfo, entry: dict[str, Any], tolerances: Tolerances,
                      divergences: list[Divergence], seed: int) -> list[str]:
    """The known divergences that explain an unmodified case that does not pass (empty: none does).

    Only the unmodified run is classified: fault runs are judged by what was measured alone."""
    verdict = classify_result(case, backend.name, backend.versions, entry["_result"], entry["_arrays"], tolerances, divergences, seed,
                              device_kind(backend.device_class))
    return list(verdict["explained_by"]) if verdict["verdict"] == "known" else []


def _clean_entry(case: Case, backend: BackendInfo, seed: int, tolerances: Tolerances, divergences: list[Divergence]) -> dict[str, Any]:
    entry = _run(case, seed, tolerances, None, 0.0)
    known = [] if entry["status"] == "pass" else _known_divergence(case, backend, entry, tolerances, divergences, seed)
    return _public(entry) | _false_alarm_fields(entry["status"], known)


def _fault_entry(name: str, fault: faults.Fault, cases: list[Case], seed: int, tolerances: Tolerances) -> dict[str, Any]:
    try:
        selected = select_cases(cases, ",".join(fault.cases))
    except Exception as error:  # a fault naming no existing case cannot be judged
        return {"description": fault.description, "cases": list(fault.cases), "runs": {}, "status": "error",
                "reason": f"its cases cannot be selected: {error}", "detected": False, "flagged_cases": []}
    runs = {case.name: _public(_run(case, seed, tolerances, name, faults.DEFAULT_MAGNITUDE)) for case in selected}
    status, reason, flagged = _status_of(runs, "case")
    return {
        "description": fault.description, "cases": [case.name for case in selected], "runs": runs,
        "status": status, "reason": reason, "detected": status == "detected", "flagged_cases": flagged,
    }


def _sweep_entry(case: Case, backend: BackendInfo, seed: int, tolerances: Tolerances, divergences: list[Divergence]) -> dict[str, Any]:
    clean = _run(case, seed, tolerances, None, 0.0)
    entry: dict[str, Any] = {"case": case.name, "clean_status": clean["status"], "detected": {}, "smallest_detected": None, "error": None}
    if clean["status"] != "pass":
        known = _known_divergence(case, backend, clean, tolerances, divergences, seed)
        entry["known_divergence"] = known
        entry["skipped"] = f"the unmodified case does not pass ({clean['status']}" + (f"; known: {', '.join(known)})" if known else ")")
        return entry
    for magnitude in SWEEP_MAGNITUDES:
        run = _run(case, seed, tolerances, SWEEP_FAULT, magnitude)
        if run["verdict"] == "error":
            entry["error"] = f"{magnitude:g}: {run['reason']}"
            break
        flagged = run["verdict"] == "detected"
        entry["detected"][f"{magnitude:g}"] = {"flagged": flagged, "max_abs_error": run["max_abs_error"]}
        if not flagged:
            break  # smaller perturbations are smaller still
        entry["smallest_detected"] = magnitude
    return entry


def _judged(name: str, result: dict[str, Any], calls: int) -> dict[str, Any]:
    """A gradient or training run with fault ``name`` in force, judged like a forward fault run (judge_fault_run):
    ``calls`` is how often the fault's patched code ran during it."""
    label = f"harness.execute.gradients.injected({name})"
    injection = faults.Injection(name, [label])
    injection.calls[label] = calls
    verdict, reason = judge_fault_run(result, injection)
    return _run_fields(result, injection.calls) | {"verdict": verdict, "reason": reason}


def _training_result(run: dict[str, Any]) -> dict[str, Any]:
    """A training run (training.run_one) in the shape of a case result: its items under its entry point."""
    return {"status": run["status"], "error": run.get("error"), "problems": run.get("problems") or [],
            "apis": {run["entry_point"]: {"items": run.get("items") or {}}}}


def _verdict_entry(description: str, kind: str, judged_by: str, cases: list[str], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    status, reason, flagged = ("error", "no run selected", []) if not runs else _status_of(runs, "run")
    return {"description": description, "kind": kind, "judged_by": judged_by, "cases": cases, "runs": runs,
            "status": status, "reason": reason, "detected": status == "detected", "flagged_cases": flagged}


def _not_applicable(description: str, kind: str, judged_by: str, cases: list[str], why: str) -> dict[str, Any]:
    return {"description": description, "kind": kind, "judged_by": judged_by, "cases": cases, "runs": {}, "status": "error",
            "reason": why, "detected": False, "flagged_cases": []}


def _gradient_fault_entry(name: str, case_names: tuple[str, ...], by_name: dict[str, Case], seed: int,
                          tolerances: Tolerances) -> dict[str, Any]:
    """A wrong gradient through the gradient measure step on ``case_names``."""
    from harness.execute.gradients import GRADIENT_FAULTS, injected, run_gradient_case

    judged_by = "the gradient measure step (harness.execute.gradients.run_gradient_case)"
    description = GRADIENT_FAULTS.get(name, "")
    missing = [case for case in case_names if case not in by_name]
    if missing:
        return _not_applicable(description, "gradient", judged_by, list(case_names), f"its cases cannot be selected: no case named {missing}")
    runs = {}
    try:
        with injected(name) as fault:
            for case_name in case_names:
                before = fault.calls
                result = run_gradient_case(by_name[case_name], seed, tolerances, {}, CASE_TIMEOUT_S, fault.backend_gradients)
                runs[case_name] = _judged(name, result, fault.calls - before)
    except Exception as error:  # the fault's patch cannot be made on this Keras (or the name is unknown)
        return _not_applicable(description, "gradient", judged_by, list(case_names), f"the fault cannot be applied: {error_text(str(error))}")
    return _verdict_entry(description, "gradient", judged_by, list(case_names), runs)


def _optimizer_fault_entry(name: str, optimizers: tuple[str, ...], seed: int, tolerances: Tolerances,
                           setup: dict[str, Any]) -> dict[str, Any]:
    """A wrong optimizer step through the training study's runs (train_on_batch and fit) against the NumPy loop."""
    from harness.execute.gradients import OPTIMIZER_FAULTS, injected
    from harness.studies import training

    judged_by = f"the training study against the NumPy loop (harness.studies.training.run_one, {TRAINING_STEPS} steps)"
    description = OPTIMIZER_FAULTS.get(name, "")
    chosen = [optimizer for optimizer in setup["optimizers"] if optimizer["name"] in optimizers]
    labels = [f"{optimizer['name']}/{entry_point}" for optimizer in chosen for entry_point in training.ENTRY_POINTS]
    if len(chosen) != len(optimizers):
        return _not_applicable(description, "optimizer", judged_by, labels, f"the training setup lacks an optimizer of {list(optimizers)}")
    case = setup["case"]
    data, batches = training.make_batches(case, TRAINING_STEPS, seed)
    runs = {}
    try:
        with injected(name) as fault:
            for optimizer in chosen:
                reference = training.numpy_loop(case, data, batches, optimizer, TRAINING_STEPS)
                for entry_point in training.ENTRY_POINTS:
                    before = fault.calls
                    run = training.run_one(case, data, batches, optimizer, TRAINING_STEPS, entry_point, tolerances, reference)
                    runs[f"{optimizer['name']}/{entry_point}"] = _judged(name, _training_result(run), fault.calls - before)
    except Exception as error:
        return _not_applicable(description, "optimizer", judged_by, labels, f"the fault cannot be applied: {error_text(str(error))}")
    return _verdict_entry(description, "optimizer", judged_by, labels, runs)


def _clean_from(result: dict[str, Any], known: list[str]) -> dict[str, Any]:
    return _run_fields(result, {}) | _false_alarm_fields(result["status"], known)


def _clean_gradient_entry(case: Case, backend: BackendInfo, seed: int, tolerances: Tolerances, divergences: list[Divergence]) -> dict[str, Any]:
    """The unmodified gradient case; a failure a known forward divergence applies to is no false alarm (the
    gradient study's rule, harness.studies.gradients)."""
    from harness.execute.gradients import run_gradient_case
    from harness.studies.gradients import _judge

    raw: dict[tuple[str, str], Any] = {}
    result = _judge(run_gradient_case(case, seed, tolerances, raw, CASE_TIMEOUT_S), case, backend, divergences, raw, seed, tolerances)
    return _clean_from(result, list(result["forward_divergences"]) if result["verdict"] == "known" else [])


def _clean_training_entries(optimizers: tuple[str, ...], seed: int, tolerances: Tolerances, setup: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from harness.studies import training

    case = setup["case"]
    data, batches = training.make_batches(case, TRAINING_STEPS, seed)
    entries = {}
    for optimizer in [optimizer for optimizer in setup["optimizers"] if optimizer["name"] in optimizers]:
        reference = training.numpy_loop(case, data, batches, optimizer, TRAINING_STEPS)
        for entry_point in training.ENTRY_POINTS:
            run = training.run_one(case, data, batches, optimizer, TRAINING_STEPS, entry_point, tolerances, reference)
            entries[f"training/{optimizer['name']}/{entry_point}"] = _clean_from(_training_result(run), [])
    return entries


GENERIC_PATH_ON_GPU = ("on a GPU an as-shipped LSTM takes the fused (cuDNN) kernel, which bypasses the LSTMCell code the "
                       "faults patch (measured: 'the patched function was never called' on JAX); the study runs every case "
                       "with kernel = 'generic' (use_cudnn=False) there, so the faults meet Keras's generic loop on the GPU")


def generic_path_twin(case: Case) -> Case:
    """``case`` with kernel = "generic" (every LSTM built with use_cudnn=False), where the schema allows it: an
    as-shipped case of plain layers that does not insist on use_cudnn=True; any other case unchanged."""
    from dataclasses import replace

    from harness.case.schema import recurrent_lstm_options

    if case.kernel != "as_shipped" or case.layer_form != "layer" or any(options["use_cudnn"] is True for options in recurrent_lstm_options(case)):
        return case
    return replace(case, kernel="generic")


def run_fault_study(
    cases: list[Case],
    backend: BackendInfo,
    out_dir: Path,
    seed: int,
    *,
    command: str = "",
    catalogue: dict[str, faults.Fault] | None = None,
    sweep_cases: dict[str, str] | None = None,
    gradient_faults: dict[str, tuple[str, ...]] | None = None,
    optimizer_faults: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """Run every fault of ``catalogue`` (default: the whole catalogue), the gradient faults on their cases
    (default ``GRADIENT_FAULT_CASES``), the optimizer faults on their optimizers (default ``OPTIMIZER_FAULT_RUNS``)
    and the sweep over ``sweep_cases`` (default ``SWEEP_CASES``); {} for none of a kind. Write and return
    ``out_dir/<backend>.faults.json``, rewritten after every fault."""
    catalogue = faults.FAULTS if catalogue is None else catalogue
    sweep_cases = SWEEP_CASES if sweep_cases is None else sweep_cases
    gradient_faults = GRADIENT_FAULT_CASES if gradient_faults is None else gradient_faults
    optimizer_faults = OPTIMIZER_FAULT_RUNS if optimizer_faults is None else optimizer_faults
    tolerances = load_tolerances(backend.device_class)
    divergences = load_divergences()
    record: dict[str, Any] = make_header("faults", backend, seed=seed, command=command) | {"faults": {}, "clean": {}, "sweep": {}}
    if device_kind(backend.device_class) == "gpu":
        cases = [generic_path_twin(case) for case in cases]
        record["generic_path_on_gpu"] = GENERIC_PATH_ON_GPU
    path = Path(out_dir) / f"{backend.name}.faults.json"
    by_name = {case.name: case for case in cases}
    for name, fault in catalogue.items():
        entry = {**_fault_entry(name, fault, cases, seed, tolerances), "kind": "forward"}
        for case_name in entry["cases"]:
            if case_name not in record["clean"]:
                record["clean"][case_name] = _clean_entry(by_name[case_name], backend, seed, tolerances, divergences)
        record["faults"][name] = entry
        records.write_json(path, record)
    for name, case_names in gradient_faults.items():
        record["faults"][name] = _gradient_fault_entry(name, case_names, by_name, seed, tolerances)
        for case_name in case_names:
            if case_name in by_name and f"gradients/{case_name}" not in record["clean"]:
                record["clean"][f"gradients/{case_name}"] = _clean_gradient_entry(by_name[case_name], backend, seed, tolerances, divergences)
        records.write_json(path, record)
    if optimizer_faults:
        from harness.studies.training import training_setup

        setup = training_setup()
        for name, optimizers in optimizer_faults.items():
            record["faults"][name] = _optimizer_fault_entry(name, optimizers, seed, tolerances, setup)
            record["clean"].update({key: value for key, value in _clean_training_entries(optimizers, seed, tolerances, setup).items()
                                    if key not in record["clean"]})
            records.write_json(path, record)
    for dtype, case_name in sweep_cases.items():
        case = by_name.get(case_name)
        if case is None:
            record["sweep"][dtype] = {"case": case_name, "clean_status": None, "detected": {}, "smallest_detected": None,
                                      "error": f"no case named {case_name!r}"}
        else:
            record["sweep"][dtype] = _sweep_entry(case, backend, seed, tolerances, divergences)
        records.write_json(path, record)
    record["finished"] = now()
    records.write_json(path, record)
    return record


def errored_faults(record: dict[str, Any]) -> dict[str, str]:
    """Fault (or ``sweep:<dtype>``) -> why the study could not judge it."""
    errors = {name: entry.get("reason") or "" for name, entry in record["faults"].items() if entry["status"] == "error"}
    errors |= {f"sweep:{dtype}": entry["error"] for dtype, entry in record.get("sweep", {}).items() if entry.get("error")}
    return errors


def undetected_faults(record: dict[str, Any]) -> list[str]:
    return [name for name, entry in record["faults"].items() if entry["status"] == "undetected"]


def false_alarms(record: dict[str, Any]) -> list[str]:
    return [name for name, entry in record["clean"].items() if entry.get("false_alarm")]


def exit_code(record: dict[str, Any]) -> int:
    """2: a fault or sweep step errored (the study could not judge it); 1: a fault went undetected or
    the unmodified run has a false alarm; 0: every fault detected, no false alarm."""
    if errored_faults(record):
        return EXIT_COULD_NOT_RUN
    if undetected_faults(record) or false_alarms(record):
        return EXIT_FOUND
    return EXIT_OK


def summary(record: dict[str, Any]) -> str:
    """One line: what was detected, what errored, the false alarms and where the record is."""
    total = len(record["faults"])
    detected = sum(entry["status"] == "detected" for entry in record["faults"].values())
    return (
        f"{record['backend']}: {detected} of {total} faults detected, {len(undetected_faults(record))} undetected, "
        f"{len(errored_faults(record))} errors of the study, {len(false_alarms(record))} false alarms on the unmodified backend"
    )
