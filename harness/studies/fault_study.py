"""The fault study: every fault in the catalogue through the normal harness, on the active backend.

For each fault it runs every case the fault names twice: unmodified (the clean run) and with the fault
injected. Both runs are judged as a real run would be, after classification against the known-divergence
claims (``harness.verdicts.classify.classify_result``). A faulted case counts as detected only when

- its verdict after claims is failing (a claim that explains the faulted numbers makes it "known": a
  real run would not flag it, so it is missed), with at least one compared output beyond tolerance;
- the clean run of the same case is not failing (pass or known), and the faulted outputs differ from
  the clean outputs (a failure the fault did not cause proves nothing);
- the fault computed the outputs: a patch ran, and every build's observed kernel path
  (``harness.execute.kernels``) ends in a step a called patch computes
  (``harness.execute.faults.Injection.unreached_builds``): PyTorch calling ``_fallback_lstm`` once while it
  infers shapes, then computing the outputs in cuDNN, is not an applied fault.

Anything else that goes wrong is an error of the study, not a detection, and is recorded with its reason:
the fault cannot be applied (what it patches does not exist in this Keras); its patch is never called, or
the kernel path a build ran is not the faulted one; its patch raises, or the case cannot run under it; the
clean run of the case fails too. Every faulted run keeps its verdict after claims (``after_claims``) and
the clean verdict it was judged against (``clean_verdict``), so the record holds a per-case detection table.

A clean run that does not pass is a false alarm unless a known divergence of this backend explains it.
And the study sweeps the size of a bias perturbation to find, per dtype, the smallest one the tolerances
detect, by the same rule (a case whose clean run is explained by a claim is swept: what the claim hides is
the blind spot to measure); a sweep that detects no perturbation at all is a finding (``no_detection``).

The gradient and optimizer faults (``harness.execute.gradients.GRADIENT_FAULTS`` and ``OPTIMIZER_FAULTS``) are
entries of the same record with the same verdicts, each judged by the machinery that exists to catch it: a
wrong gradient by the gradient measure step (``run_gradient_case``) on gradient cases (``GRADIENT_FAULT_CASES``),
a wrong optimizer step by the training study's runs against the NumPy loop (``training.run_one``, train_on_batch
and fit, for the optimizers of ``OPTIMIZER_FAULT_RUNS``). Their unmodified runs are in ``clean`` under
``gradients/<case>`` and ``training/<optimizer>/<entry point>``; every entry says which kind it is (``kind``:
forward, gradient or optimizer).

``exit_code(record)``: 2 when any fault (or sweep step) errored, 1 when a fault went undetected, a sweep
detected no perturbation, or the unmodified run has a false alarm, 0 otherwise. Imported after the backend is
active.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.case.divergences import Divergence, device_kind, load_divergences
from harness.case.schema import Case, select_cases
from harness.case.tolerances import Tolerances, load_tolerances
from harness.execute import faults
from harness.execute.backends import BackendInfo
from harness.execute.measure import run_case
from harness.records import store as records
from harness.records.header import make_header, now
from harness.verdicts.classify import FAILING, classify_result

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


@dataclass(frozen=True)
class CleanRun:
    """The unmodified run of one case, judged as a real run would be: what its faulted runs are compared with."""

    verdict: str  # after classification against the claims: pass, known, fail, error, ...
    explained_by: tuple[str, ...]  # the claims that explain it (verdict "known")
    outputs: dict[str, Any]  # its raw outputs by "api/output" (arrays; a training run: its reported numbers)


def outputs_differ(clean: dict[str, Any], faulted: dict[str, Any]) -> bool:
    """Whether two runs' raw outputs differ at all (another set of outputs, or one element not bit-equal)."""
    if set(clean) != set(faulted):
        return True
    for key, clean_value in clean.items():
        clean_array, faulted_array = np.asarray(clean_value), np.asarray(faulted[key])
        if clean_array.shape != faulted_array.shape or clean_array.dtype != faulted_array.dtype:
            return True
        if not np.array_equal(clean_array, faulted_array, equal_nan=clean_array.dtype.kind in "fc"):
            return True
    return False


def judge_fault_run(result: dict[str, Any] | None, injection: faults.Injection | None, not_applicable: str | None = None, *,
                    after_claims: dict[str, Any] | None = None, clean: CleanRun | None = None,
                    faulted_outputs: dict[str, Any] | None = None) -> tuple[str, str | None]:
    """(verdict, reason) of one case run with a fault: "detected", "undetected" or "error".

    ``after_claims`` is the faulted run's verdict after classification (classify_result: "verdict", "explained_by"),
    ``clean`` the unmodified run of the same case, ``faulted_outputs`` the faulted run's raw outputs. Detected only
    when the faulted verdict is failing with an output beyond tolerance, the clean verdict is not failing, the
    outputs differ from the clean ones, and the faulted code computed every build's outputs. A patch that raised,
    that was never called, that did not compute the outputs or that could not be applied, a case that could not
    run under the fault, and a case whose clean run fails too, are errors of the study."""
    if not_applicable is not None:
        return "error", f"the fault cannot be applied: {not_applicable}"
    if result is None or injection is None:
        raise ValueError("judge_fault_run needs the faulted result and its injection (or not_applicable)")
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
    unreached = injection.unreached_builds(result)
    if unreached:
        computed = sorted({step for label, count in injection.calls.items() if count > 0 for step in (injection.computes.get(label) or ())})
        return "error", (f"the faulted code did not compute the outputs: {'; '.join(unreached)} (the called patch computes "
                         f"only the {', '.join(computed)} path; counted calls: {injection.calls})")
    if after_claims is None or clean is None or faulted_outputs is None:
        raise ValueError("judge_fault_run needs after_claims, clean and faulted_outputs for a run the fault reached")
    if clean.verdict in FAILING:
        return "error", f"the unmodified case fails too (verdict {clean.verdict}): the fault cannot be judged on it"
    verdict = str(after_claims["verdict"])
    if verdict in FAILING:
        if not mismatched_outputs(result):
            return "error", "status fail without a compared output beyond tolerance: " + "; ".join(result.get("problems") or [])
        if not outputs_differ(clean.outputs, faulted_outputs):
            return "error", "the faulted outputs equal the unmodified run's, yet it fails: the failure is not the fault's"
        return "detected", None
    if verdict == "known":
        return "undetected", ("a known divergence explains the faulted outputs (" + ", ".join(after_claims.get("explained_by") or [])
                              + "): a real run would call it known")
    if not outputs_differ(clean.outputs, faulted_outputs):
        return "undetected", "the faulted outputs equal the unmodified run's: the fault changes nothing on this case"
    return "undetected", None


def _run_fields(result: dict[str, Any], patch_calls: dict[str, int]) -> dict[str, Any]:
    """What the record keeps of a case, gradient or training result run with (or without) a fault."""
    return {"status": result["status"], "error": error_text(result.get("error")) or None,
            "max_abs_error": records.worst_item(result, "max_abs_error"), "mismatched": mismatched_outputs(result),
            "patch_calls": dict(patch_calls)}


def _kernel_paths(result: dict[str, Any]) -> dict[str, str]:
    """api -> the kernel path its build ran, as observed (builds that recorded none are left out)."""
    return {api: str(build["kernel_path"]) for api, build in (result.get("apis") or {}).items()
            if isinstance(build, dict) and build.get("kernel_path")}


def _status_of(runs: dict[str, dict[str, Any]], what: str) -> tuple[str, str | None, list[str]]:
    """(status, reason, flagged) of a fault from its judged runs: an error of any run is an error of the study;
    else detected when a run was detected, else undetected (``what``: case or run, for the reason)."""
    errors = [f"{name}: {run['reason']}" for name, run in runs.items() if run["verdict"] == "error"]
    flagged = [name for name, run in runs.items() if run["verdict"] == "detected"]
    if errors:
        return "error", "; ".join(errors), flagged
    if flagged:
        return "detected", None, flagged
    return "undetected", f"no {what} failed against a passing unmodified run with the fault injected", flagged


def _false_alarm_fields(status: str, known: list[str]) -> dict[str, Any]:
    """An unmodified run that does not pass is a false alarm unless a known divergence explains it."""
    return {"known_divergence": known if status != "pass" else [], "false_alarm": status != "pass" and not known}


def _raw_outputs(arrays: dict[tuple[str, str], Any]) -> dict[str, Any]:
    return {f"{api}/{name}": value for (api, name), value in arrays.items()}


def _after_claims(case: Case, backend: BackendInfo, result: dict[str, Any], arrays: dict[tuple[str, str], Any],
                  tolerances: Tolerances, divergences: list[Divergence], seed: int) -> dict[str, Any]:
    """A case result's verdict after classification against the claims, as a real run would judge it."""
    verdict = classify_result(case, backend.name, backend.versions, result, arrays, tolerances, divergences, seed,
                              device_kind(backend.device_class))
    return {"verdict": str(verdict["verdict"]), "explained_by": list(verdict["explained_by"])}


def _clean_run(case: Case, backend: BackendInfo, seed: int, tolerances: Tolerances, divergences: list[Divergence]) -> tuple[dict[str, Any], CleanRun]:
    """The unmodified case: its record entry (with its verdict after claims) and what its faulted runs are judged against."""
    arrays: dict[tuple[str, str], Any] = {}
    result = run_case(case, seed, tolerances, arrays, timeout_s=CASE_TIMEOUT_S)
    claims = _after_claims(case, backend, result, arrays, tolerances, divergences, seed)
    known = claims["explained_by"] if claims["verdict"] == "known" else []
    entry = _run_fields(result, {}) | {"verdict": claims["verdict"], "kernel_paths": _kernel_paths(result)} | _false_alarm_fields(result["status"], known)
    return entry, CleanRun(claims["verdict"], tuple(known), _raw_outputs(arrays))


def _faulted_run(case: Case, backend: BackendInfo, seed: int, tolerances: Tolerances, divergences: list[Divergence],
                 fault: str, magnitude: float, clean: CleanRun) -> dict[str, Any]:
    """One case with ``fault`` injected, judged after claims against its clean run: the run entry of the record."""
    arrays: dict[tuple[str, str], Any] = {}
    try:
        with faults.injected(fault, magnitude) as injection:
            result = run_case(case, seed, tolerances, arrays, timeout_s=CASE_TIMEOUT_S)
    except faults.FaultNotApplicable as error:
        verdict, reason = judge_fault_run(None, None, str(error))
        return {"status": None, "error": None, "max_abs_error": None, "patch_calls": {}, "verdict": verdict, "reason": reason}
    claims = _after_claims(case, backend, result, arrays, tolerances, divergences, seed)
    verdict, reason = judge_fault_run(result, injection, after_claims=claims, clean=clean, faulted_outputs=_raw_outputs(arrays))
    return _run_fields(result, injection.calls) | {
        "after_claims": claims["verdict"], "explained_by": claims["explained_by"], "clean_verdict": clean.verdict,
        "kernel_paths": _kernel_paths(result), "verdict": verdict, "reason": reason,
    }


class _CleanRuns:
    """The clean run of every case, made once (on first use) and written into the record's ``clean``."""

    def __init__(self, record: dict[str, Any], backend: BackendInfo, seed: int, tolerances: Tolerances, divergences: list[Divergence]) -> None:
        self.record, self.backend, self.seed, self.tolerances, self.divergences = record, backend, seed, tolerances, divergences
        self.runs: dict[str, CleanRun] = {}

    def of(self, case: Case) -> CleanRun:
        if case.name not in self.runs:
            entry, clean = _clean_run(case, self.backend, self.seed, self.tolerances, self.divergences)
            self.record["clean"][case.name] = entry
            self.runs[case.name] = clean
        return self.runs[case.name]


def _fault_entry(name: str, fault: faults.Fault, cases: list[Case], clean_runs: _CleanRuns) -> dict[str, Any]:
    try:
        selected = select_cases(cases, ",".join(fault.cases))
    except Exception as error:  # a fault naming no existing case cannot be judged
        return {"description": fault.description, "cases": list(fault.cases), "runs": {}, "status": "error",
                "reason": f"its cases cannot be selected: {error}", "detected": False, "flagged_cases": []}
    runs = {}
    for case in selected:
        clean = clean_runs.of(case)
        runs[case.name] = _faulted_run(case, clean_runs.backend, clean_runs.seed, clean_runs.tolerances, clean_runs.divergences,
                                       name, faults.DEFAULT_MAGNITUDE, clean)
    status, reason, flagged = _status_of(runs, "case")
    return {
        "description": fault.description, "cases": [case.name for case in selected], "runs": runs,
        "status": status, "reason": reason, "detected": status == "detected", "flagged_cases": flagged,
    }


def _sweep_entry(case: Case, clean_runs: _CleanRuns) -> dict[str, Any]:
    """The bias perturbation, largest first, until one is missed; judged like every faulted run (after claims, against
    the clean run). A clean run a claim explains is swept (what the claim hides is measured); a failing one cannot be."""
    clean = clean_runs.of(case)
    entry: dict[str, Any] = {"case": case.name, "clean_status": clean_runs.record["clean"][case.name]["status"], "clean_verdict": clean.verdict,
                             "known_divergence": list(clean.explained_by), "detected": {}, "smallest_detected": None, "error": None,
                             "no_detection": None}
    if clean.verdict in FAILING:
        entry["error"] = f"the unmodified case fails (verdict {clean.verdict}): no perturbation can be judged on it"
        return entry
    missed_reason = None
    for magnitude in SWEEP_MAGNITUDES:
        run = _faulted_run(case, clean_runs.backend, clean_runs.seed, clean_runs.tolerances, clean_runs.divergences, SWEEP_FAULT, magnitude, clean)
        if run["verdict"] == "error":
            entry["error"] = f"{magnitude:g}: {run['reason']}"
            break
        flagged = run["verdict"] == "detected"
        entry["detected"][f"{magnitude:g}"] = {"flagged": flagged, "max_abs_error": run["max_abs_error"],
                                               "after_claims": run["after_claims"], "reason": run["reason"]}
        if not flagged:
            missed_reason = run["reason"] or f"verdict after claims: {run['after_claims']}"
            break  # smaller perturbations are smaller still
        entry["smallest_detected"] = magnitude
    if entry["error"] is None and entry["smallest_detected"] is None:
        entry["no_detection"] = (f"no perturbation detected: the largest, {SWEEP_MAGNITUDES[0]:g}, was missed on {case.name}"
                                 + (f" ({missed_reason})" if missed_reason else ""))
    return entry


def _judged(name: str, result: dict[str, Any], calls: int, after_claims: dict[str, Any], clean: CleanRun,
            faulted_outputs: dict[str, Any]) -> dict[str, Any]:
    """A gradient or training run with fault ``name`` in force, judged like a forward fault run (judge_fault_run):
    ``calls`` is how often the fault's patched code ran during it."""
    label = f"harness.execute.gradients.injected({name})"
    injection = faults.Injection(name, [label])
    injection.calls[label] = calls
    verdict, reason = judge_fault_run(result, injection, after_claims=after_claims, clean=clean, faulted_outputs=faulted_outputs)
    return _run_fields(result, injection.calls) | {"after_claims": after_claims["verdict"], "explained_by": after_claims["explained_by"],
                                                   "clean_verdict": clean.verdict, "verdict": verdict, "reason": reason}


def _training_result(run: dict[str, Any]) -> dict[str, Any]:
    """A training run (training.run_one) in the shape of a case result: its items under its entry point."""
    return {"status": run["status"], "error": run.get("error"), "problems": run.get("problems") or [],
            "apis": {run["entry_point"]: {"items": run.get("items") or {}}}}


def _training_outputs(run: dict[str, Any]) -> dict[str, Any]:
    """What a training run reported, to tell a faulted run from the clean one: its losses and each compared item's error."""
    outputs: dict[str, Any] = {"keras_losses": np.asarray(run.get("keras_losses") or [], dtype=np.float64)}
    for key, item in (run.get("items") or {}).items():
        outputs[key] = np.asarray([item.get("max_abs_error", np.nan)], dtype=np.float64)
    return outputs


def _verdict_entry(description: str, kind: str, judged_by: str, cases: list[str], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    status, reason, flagged = ("error", "no run selected", []) if not runs else _status_of(runs, "run")
    return {"description": description, "kind": kind, "judged_by": judged_by, "cases": cases, "runs": runs,
            "status": status, "reason": reason, "detected": status == "detected", "flagged_cases": flagged}


def _not_applicable(description: str, kind: str, judged_by: str, cases: list[str], why: str) -> dict[str, Any]:
    return {"description": description, "kind": kind, "judged_by": judged_by, "cases": cases, "runs": {}, "status": "error",
            "reason": why, "detected": False, "flagged_cases": []}


def _gradient_run(case: Case, backend: BackendInfo, seed: int, tolerances: Tolerances, divergences: list[Divergence],
                  backend_gradients: Any = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(result, verdict after claims, raw gradients) of one gradient case, judged by the gradient study's rule
    (harness.studies.gradients._judge: a failure a claim explains is known)."""
    from harness.execute.gradients import run_gradient_case
    from harness.studies.gradients import _judge

    arrays: dict[tuple[str, str], Any] = {}
    result = _judge(run_gradient_case(case, seed, tolerances, arrays, CASE_TIMEOUT_S, backend_gradients), case, backend, divergences,
                    arrays, seed, tolerances)
    known = list(result["explained_by"]) if result["verdict"] == "known" else []
    return result, {"verdict": str(result["verdict"]), "explained_by": known}, _raw_outputs(arrays)


def _gradient_fault_entry(name: str, case_names: tuple[str, ...], by_name: dict[str, Case], clean_runs: _CleanRuns) -> dict[str, Any]:
    """A wrong gradient through the gradient measure step on ``case_names``, each against its clean gradient run."""
    from harness.execute.gradients import GRADIENT_FAULTS, injected

    judged_by = "the gradient measure step (harness.execute.gradients.run_gradient_case)"
    description = GRADIENT_FAULTS.get(name, "")
    missing = [case for case in case_names if case not in by_name]
    if missing:
        return _not_applicable(description, "gradient", judged_by, list(case_names), f"its cases cannot be selected: no case named {missing}")
    backend, seed, tolerances, divergences = clean_runs.backend, clean_runs.seed, clean_runs.tolerances, clean_runs.divergences
    cleans = {}
    for case_name in case_names:
        key = f"gradients/{case_name}"
        if key not in clean_runs.runs:
            result, claims, outputs = _gradient_run(by_name[case_name], backend, seed, tolerances, divergences)
            clean_runs.record["clean"][key] = _run_fields(result, {}) | {"verdict": claims["verdict"]} | _false_alarm_fields(result["status"], claims["explained_by"])
            clean_runs.runs[key] = CleanRun(claims["verdict"], tuple(claims["explained_by"]), outputs)
        cleans[case_name] = clean_runs.runs[key]
    runs = {}
    try:
        with injected(name) as fault:
            for case_name in case_names:
                before = fault.calls
                result, claims, outputs = _gradient_run(by_name[case_name], backend, seed, tolerances, divergences, fault.backend_gradients)
                runs[case_name] = _judged(name, result, fault.calls - before, claims, cleans[case_name], outputs)
    except Exception as error:  # the fault's patch cannot be made on this Keras (or the name is unknown)
        return _not_applicable(description, "gradient", judged_by, list(case_names), f"the fault cannot be applied: {error_text(str(error))}")
    return _verdict_entry(description, "gradient", judged_by, list(case_names), runs)


def _optimizer_fault_entry(name: str, optimizers: tuple[str, ...], clean_runs: _CleanRuns, setup: dict[str, Any]) -> dict[str, Any]:
    """A wrong optimizer step through the training study's runs (train_on_batch and fit) against the NumPy loop, each
    against its clean training run (no claim covers training: the verdict is the measured status)."""
    from harness.execute.gradients import OPTIMIZER_FAULTS, injected
    from harness.studies import training

    seed, tolerances = clean_runs.seed, clean_runs.tolerances
    judged_by = f"the training study against the NumPy loop (harness.studies.training.run_one, {TRAINING_STEPS} steps)"
    description = OPTIMIZER_FAULTS.get(name, "")
    chosen = [optimizer for optimizer in setup["optimizers"] if optimizer["name"] in optimizers]
    labels = [f"{optimizer['name']}/{entry_point}" for optimizer in chosen for entry_point in training.ENTRY_POINTS]
    if len(chosen) != len(optimizers):
        return _not_applicable(description, "optimizer", judged_by, labels, f"the training setup lacks an optimizer of {list(optimizers)}")
    case = setup["case"]
    data, batches = training.make_batches(case, TRAINING_STEPS, seed)
    references = {optimizer["name"]: training.numpy_loop(case, data, batches, optimizer, TRAINING_STEPS) for optimizer in chosen}
    for optimizer in chosen:
        for entry_point in training.ENTRY_POINTS:
            key = f"training/{optimizer['name']}/{entry_point}"
            if key not in clean_runs.runs:
                run = training.run_one(case, data, batches, optimizer, TRAINING_STEPS, entry_point, tolerances, references[optimizer["name"]])
                clean_runs.record["clean"][key] = _run_fields(_training_result(run), {}) | {"verdict": run["status"]} | _false_alarm_fields(run["status"], [])
                clean_runs.runs[key] = CleanRun(run["status"], (), _training_outputs(run))
    runs = {}
    try:
        with injected(name) as fault:
            for optimizer in chosen:
                for entry_point in training.ENTRY_POINTS:
                    before = fault.calls
                    run = training.run_one(case, data, batches, optimizer, TRAINING_STEPS, entry_point, tolerances, references[optimizer["name"]])
                    runs[f"{optimizer['name']}/{entry_point}"] = _judged(
                        name, _training_result(run), fault.calls - before, {"verdict": run["status"], "explained_by": []},
                        clean_runs.runs[f"training/{optimizer['name']}/{entry_point}"], _training_outputs(run))
    except Exception as error:
        return _not_applicable(description, "optimizer", judged_by, labels, f"the fault cannot be applied: {error_text(str(error))}")
    return _verdict_entry(description, "optimizer", judged_by, labels, runs)


GENERIC_PATH_ON_GPU = ("on a GPU an as-shipped LSTM takes the fused (cuDNN) kernel, which bypasses the LSTMCell code the "
                       "faults patch (measured: 'the patched function was never called' on JAX); the study runs every case "
                       "with kernel = 'generic' (use_cudnn=False) there, so the faults meet Keras's generic loop on the GPU")


def generic_path_twin(case: Case) -> Case:
    """``case`` with kernel = "generic" (every LSTM built with use_cudnn=False), where the schema allows it: an
    as-shipped case of plain layers that does not insist on use_cudnn=True; any other case unchanged."""
    from dataclasses import replace

    from harness.case.schema import recurrent_options

    if case.kernel != "as_shipped" or case.layer_form != "layer" or any(options.get("use_cudnn") is True for options in recurrent_options(case)):
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
    and the sweep over ``sweep_cases`` (default ``SWEEP_CASES``); {} for none of a kind. Every case runs clean
    first, once. Write and return ``out_dir/<backend>.faults.json``, rewritten after every fault."""
    catalogue = faults.FAULTS if catalogue is None else catalogue
    sweep_cases = SWEEP_CASES if sweep_cases is None else sweep_cases
    gradient_faults = GRADIENT_FAULT_CASES if gradient_faults is None else gradient_faults
    optimizer_faults = OPTIMIZER_FAULT_RUNS if optimizer_faults is None else optimizer_faults
    tolerances = load_tolerances(backend.device_class, backend.name)
    divergences = load_divergences()
    record: dict[str, Any] = make_header("faults", backend, seed=seed, command=command) | {"faults": {}, "clean": {}, "sweep": {}}
    if device_kind(backend.device_class) == "gpu":
        cases = [generic_path_twin(case) for case in cases]
        record["generic_path_on_gpu"] = GENERIC_PATH_ON_GPU
    path = Path(out_dir) / f"{backend.name}.faults.json"
    by_name = {case.name: case for case in cases}
    clean_runs = _CleanRuns(record, backend, seed, tolerances, divergences)
    for name, fault in catalogue.items():
        record["faults"][name] = {**_fault_entry(name, fault, cases, clean_runs), "kind": "forward"}
        records.write_json(path, record)
    for name, case_names in gradient_faults.items():
        record["faults"][name] = _gradient_fault_entry(name, case_names, by_name, clean_runs)
        records.write_json(path, record)
    if optimizer_faults:
        from harness.studies.training import training_setup

        setup = training_setup()
        for name, optimizers in optimizer_faults.items():
            record["faults"][name] = _optimizer_fault_entry(name, optimizers, clean_runs, setup)
            records.write_json(path, record)
    for dtype, case_name in sweep_cases.items():
        case = by_name.get(case_name)
        if case is None:
            record["sweep"][dtype] = {"case": case_name, "clean_status": None, "detected": {}, "smallest_detected": None,
                                      "error": f"no case named {case_name!r}", "no_detection": None}
        else:
            record["sweep"][dtype] = _sweep_entry(case, clean_runs)
        records.write_json(path, record)
    record["missed_at_this_precision"] = missed_at_this_precision(record)
    record["finished"] = now()
    records.write_json(path, record)
    return record


def precision_label(record: dict[str, Any]) -> str:
    """Where and at which precision a record was measured: its device class and precision mode ("gpu_tf32, precision
    default"); a fault missed there may be caught at another precision, and the other way round."""
    settings = record.get("settings") or {}
    return f"{record.get('device_class') or '?'}, precision {settings.get('precision_mode') or 'not recorded'}"


def missed_at_this_precision(record: dict[str, Any]) -> dict[str, Any]:
    """What this device and precision cannot see: the faults it missed, the sweeps that detected nothing, and the
    smallest perturbation it detected per dtype, under its precision label."""
    return {"precision": precision_label(record), "faults": undetected_faults(record), "sweeps": sorted(undetected_sweeps(record)),
            "smallest_detected": {dtype: entry.get("smallest_detected") for dtype, entry in (record.get("sweep") or {}).items()}}


def study_subset(only: str | None, sweep: str | None) -> dict[str, Any]:
    """run_fault_study's catalogue, gradient_faults, optimizer_faults and sweep_cases for the faults named in ``only``
    and the dtypes named in ``sweep`` (comma-separated; None: all; sweep "none": no sweep). FaultNotApplicable names
    an unknown fault or dtype."""
    subset: dict[str, Any] = {}
    if only is not None:
        names = [name.strip() for name in only.split(",") if name.strip()]
        known = list(faults.FAULTS) + list(GRADIENT_FAULT_CASES) + list(OPTIMIZER_FAULT_RUNS)
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise faults.FaultNotApplicable(f"--only: unknown fault {', '.join(unknown) or '(none named)'}; accepted: {', '.join(known)}")
        subset["catalogue"] = {name: faults.FAULTS[name] for name in names if name in faults.FAULTS}
        subset["gradient_faults"] = {name: GRADIENT_FAULT_CASES[name] for name in names if name in GRADIENT_FAULT_CASES}
        subset["optimizer_faults"] = {name: OPTIMIZER_FAULT_RUNS[name] for name in names if name in OPTIMIZER_FAULT_RUNS}
    if sweep is not None:
        dtypes = [dtype.strip() for dtype in sweep.split(",") if dtype.strip()]
        unknown = [dtype for dtype in dtypes if dtype not in SWEEP_CASES and dtype != "none"]
        if unknown or not dtypes:
            raise faults.FaultNotApplicable(f"--sweep: unknown dtype {', '.join(unknown) or '(none named)'}; accepted: {', '.join(SWEEP_CASES)}, none")
        subset["sweep_cases"] = {dtype: SWEEP_CASES[dtype] for dtype in dtypes if dtype != "none"}
    return subset


def errored_faults(record: dict[str, Any]) -> dict[str, str]:
    """Fault (or ``sweep:<dtype>``) -> why the study could not judge it."""
    errors = {name: entry.get("reason") or "" for name, entry in record["faults"].items() if entry["status"] == "error"}
    errors |= {f"sweep:{dtype}": entry["error"] for dtype, entry in record.get("sweep", {}).items() if entry.get("error")}
    return errors


def undetected_faults(record: dict[str, Any]) -> list[str]:
    return [name for name, entry in record["faults"].items() if entry["status"] == "undetected"]


def undetected_sweeps(record: dict[str, Any]) -> dict[str, str]:
    """dtype -> why, for every sweep that ran and detected no perturbation at all (not even the largest)."""
    missed = {}
    for dtype, entry in (record.get("sweep") or {}).items():
        if entry.get("error") or entry.get("skipped") or entry.get("clean_status") is None or entry.get("smallest_detected") is not None:
            continue
        missed[dtype] = entry.get("no_detection") or f"no perturbation detected on {entry.get('case')}"
    return missed


def false_alarms(record: dict[str, Any]) -> list[str]:
    return [name for name, entry in record["clean"].items() if entry.get("false_alarm")]


def exit_code(record: dict[str, Any]) -> int:
    """2: a fault or sweep step errored (the study could not judge it); 1: a fault went undetected, a sweep detected
    no perturbation, or the unmodified run has a false alarm; 0: every fault detected, every sweep detected one, no
    false alarm."""
    if errored_faults(record):
        return EXIT_COULD_NOT_RUN
    if undetected_faults(record) or undetected_sweeps(record) or false_alarms(record):
        return EXIT_FOUND
    return EXIT_OK


def summary(record: dict[str, Any]) -> str:
    """One line: what was detected, what errored, the sweeps that detected nothing and the false alarms."""
    total = len(record["faults"])
    detected = sum(entry["status"] == "detected" for entry in record["faults"].values())
    blind = undetected_sweeps(record)
    missed = undetected_faults(record)
    return (
        f"{record['backend']}: {detected} of {total} faults detected, {len(missed)} undetected, "
        f"{len(errored_faults(record))} errors of the study, {len(false_alarms(record))} false alarms on the unmodified backend"
        + (f"; sweeps that detected no perturbation: {', '.join(blind)}" if blind else "")
        + (f"; missed at {precision_label(record)}: {', '.join(missed + [f'sweep:{dtype}' for dtype in blind])}" if missed or blind else "")
    )
