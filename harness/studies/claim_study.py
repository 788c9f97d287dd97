"""The claim study: each known-divergence claim shown not to absorb a bug (issue 15).

A claim turns a failing case into a known one. A claim that is too loose would also turn a real bug into
a known case, and nobody would see it. For every case a claim explains on a backend, this study replays
the case's recorded result with faults injected IN NUMPY and judges each faulted result with the real
judging code (``harness.verdicts.classify.classify_result``), then records whether the verdict turns to a
failure. Record-only: no Keras, no backend; it reads ``DIR/<backend>.json``, ``.npz`` and
``.verdicts.json`` and writes ``DIR/claims.json``.

The faults:
- ``forget_bias_offset``: the first LSTM's forget-gate bias moved by ``d``. The faulted result is the
  measured result plus what the offset changes in the reference: ``measured + (reference(faulted weights)
  - reference(clean weights))``, computed under the semantics the explaining claims describe (so the fault
  sits on top of the behaviour the claim says happens). ``d`` starts at 1000 x the case's output tolerance,
  goes up until the fault is detected, then down by sqrt(10) until it is not, then is bisected: the largest
  undetected offset, and the output error it adds, are recorded.
- ``gate_swap``: the input and forget gate columns of the first LSTM's kernel swapped.
- ``other_output``: for a claim that names its outputs, an error in an output it does not name, as large as
  the error the claim explains on that case (at least twice the tolerance there).
- ``other_exception`` / ``other_message``: for a crash claim, the recorded exception replaced by another
  type with the same message, and by the same type with another message.

Gradient faults, over ``DIR/<backend>.gradients.json`` and ``.gradients.npz`` (every gradient case a claim explains,
re-judged with the gradient study's own judging, ``harness.studies.gradients._judge``):
- ``zeroed_kernel_gradient``: the first recurrent layer's kernel gradient set to zero in every build. A claim
  that absorbs it fails the study (a gradient that is not computed at all must never be known).
- ``kernel_gradient_scaled``: that gradient scaled by ``1 + k`` in every build, ``k`` from 1 down by sqrt(10)
  until the claim absorbs it, then bisected: the largest absorbed ``k`` is the claim's gradient bound, and the
  error it adds is held to the same ABSORBED_ERROR_FACTOR against the largest gradient error the claim explains.
- a gradient run that raised: ``other_exception`` / ``other_message`` as above.

A case whose record was known by a claim (its verdict file, or the gradient record) that the claim no longer
explains when re-judged is listed in ``not_explained_now`` with the reason (for instance a crash claim that names
the file that raised, over records measured before errors recorded ``raised_in``): not studied, stated.

Every faulted result's items (passed, max_abs_error, ...), API agreement and status are recomputed from the
faulted arrays with the measure stage's own comparison (``harness.truth.compare.compare``,
``harness.execute.measure.api_agreement`` and ``measured_status``).

A claim fails the study when it absorbs (the faulted verdict is known, explained by the claim) a fault whose
output error is more than ABSORBED_ERROR_FACTOR times the largest error the claim was measured to explain,
or absorbs a fault that is not numeric (another exception, another message, an output it does not name).
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.case.divergences import BACKENDS, DIVERGENCES_FILE, Divergence, device_kind, load_divergences
from harness.case.schema import Case, name_matches, parse_case
from harness.case.semantics import DOCUMENTED, Semantics
from harness.case.tolerances import Tolerances, load_tolerances, quantity_of
from harness.case.weights import CaseData, make_case_data
from harness.execute.measure import api_agreement, measured_status
from harness.records import store
from harness.records.header import SCHEMAS, file_sha256, now
from harness.truth.compare import compare
from harness.truth.expected import expected_outputs
from harness.verdicts.classify import FAILING, classify_result

# The gradient study's judging, record-only (these modules import Keras only inside their functions).
from harness.execute.backends import BackendInfo
from harness.execute.gradients import LOSS_KEY, rounded_targets
from harness.studies.gradients import _judge as judge_gradient_result
from harness.studies.gradients import arrays_path as gradient_arrays_path
from harness.studies.gradients import gradients_path, read_gradients
from harness.truth.expected_gradients import GradientNotSupported, gradient_keys

SCHEMA, SCHEMA_VERSION = SCHEMAS["claims"]
CLAIMS_FILE = "claims.json"
# A claim may absorb a fault only when the fault's output error is within this factor of the largest error
# the claim was measured to explain. A claim sized to what it explains (a bound a little above the measured
# error, a semantics claim at the case's tolerance) absorbs at most about its own error plus the tolerance;
# a factor above 3 means the claim allows errors it has never been seen to need, room a real bug can hide in.
ABSORBED_ERROR_FACTOR = 3.0
# The forget-gate bias offset sweep: start at 1000 x the case's output tolerance, step by sqrt(10), then
# bisect the last step (in log space) this many times; never beyond MAX_OFFSET (a bias offset of 10 saturates
# the gate, so a fault that large is not detected only when the case does not depend on the gate at all).
SWEEP_START_TOLERANCES = 1e3
SWEEP_STEP = math.sqrt(10.0)
SWEEP_BISECTIONS = 3
MAX_OFFSET = 10.0
MAX_SWEEP_STEPS = 40
STRUCTURAL_FAULTS = ("gate_swap", "other_output", "other_exception", "other_message", "zeroed_kernel_gradient")
# The kernel-gradient scaling sweep: 1 + k with k from GRADIENT_SCALE_START down by SWEEP_STEP until absorbed (never
# below MIN_GRADIENT_SCALE, far under float32's resolution), then SWEEP_BISECTIONS bisections.
GRADIENT_SCALE_START = 1.0
MIN_GRADIENT_SCALE = 1e-12


class ClaimStudyError(store.RecordError):
    """The folder cannot be studied (no classified run record); the message says what is missing."""


def _first_lstm_arrays(case: Case, data: CaseData) -> tuple[int, int] | None:
    """(layer index, units) of the first recurrent layer; its first weight group starts with that LSTM's
    kernel, recurrent kernel and (with use_bias) bias."""
    for index, layer in enumerate(case.layers):
        if layer.kind.recurrent:
            recurrent_kernel = data.layer_weights[index][0][1]
            return index, int(recurrent_kernel.shape[0])
    return None


def _with_first_lstm(data: CaseData, index: int, arrays: list[np.ndarray]) -> CaseData:
    """``data`` with the first three arrays of layer ``index``'s first weight group replaced by ``arrays``."""
    group = data.layer_weights[index][0]
    new_group = tuple(arrays) + tuple(group[len(arrays):])
    layer = (new_group,) + tuple(data.layer_weights[index][1:])
    layer_weights = data.layer_weights[:index] + (layer,) + data.layer_weights[index + 1:]
    return replace(data, layer_weights=layer_weights)


def forget_bias_offset(case: Case, data: CaseData, offset: float) -> CaseData | None:
    """The case data with the first LSTM's forget-gate bias (Keras gate order i, f, c, o) moved by ``offset``;
    None when that LSTM has no bias."""
    located = _first_lstm_arrays(case, data)
    if located is None:
        return None
    index, units = located
    group = data.layer_weights[index][0]
    bias = np.asarray(group[2], dtype=np.float64).copy() if len(group) in (3, 6) else None
    if bias is None or bias.shape != (4 * units,):
        return None
    bias[units:2 * units] += offset
    return _with_first_lstm(data, index, [np.asarray(group[0], np.float64), np.asarray(group[1], np.float64), bias])


def input_forget_swap(case: Case, data: CaseData) -> CaseData | None:
    """The case data with the first two gate blocks of the first recurrent layer's kernel swapped (an LSTM's input and
    forget gates, a GRU's update and reset gates); None for a kernel of one block (a SimpleRNN has no gates)."""
    located = _first_lstm_arrays(case, data)
    if located is None:
        return None
    index, units = located
    kernel = np.asarray(data.layer_weights[index][0][0], dtype=np.float64).copy()
    if kernel.shape[1] < 2 * units:
        return None
    kernel[:, :units], kernel[:, units:2 * units] = kernel[:, units:2 * units].copy(), kernel[:, :units].copy()
    return _with_first_lstm(data, index, [kernel])


def faulted_result(case: Case, result: dict[str, Any], arrays: dict[tuple[str, str], np.ndarray],
                   faulted_arrays: dict[tuple[str, str], np.ndarray], documented: dict[str, np.ndarray],
                   tolerances: Tolerances) -> dict[str, Any]:
    """The recorded ``result`` as it would have been measured with ``faulted_arrays``: every item, the API
    agreement and the status recomputed the way the measure stage computes them."""
    faulted = copy.deepcopy(result)
    by_api: dict[str, dict[str, np.ndarray]] = {}
    for api, entry in faulted["apis"].items():
        by_api[api] = {}
        for name, item in entry["items"].items():
            actual = faulted_arrays.get((api, name), arrays.get((api, name)))
            if actual is None:
                continue
            by_api[api][name] = actual
            tolerance = tolerances.for_case(case, quantity_of(name))
            comparison = compare(actual, documented[name], tolerance, case.compute_dtype, case.allow_nonfinite)
            dtype_ok = item["dtype"] == item["expected_dtype"]
            entry["items"][name] = comparison.to_json() | {
                "passed": comparison.passed and dtype_ok, "dtype": item["dtype"], "expected_dtype": item["expected_dtype"],
                "tolerance_row": tolerance.row, "message": comparison.message(f"{api}/{name}"),
            }
        entry["passed"] = all(item["passed"] for item in entry["items"].values())
    faulted["api_agreement"] = api_agreement(by_api, tolerances.api_max_abs_diff)
    faulted["status"], faulted["problems"] = measured_status(faulted)
    faulted["error"] = None
    return faulted


def _added_error(arrays: dict[tuple[str, str], np.ndarray], faulted_arrays: dict[tuple[str, str], np.ndarray]) -> float:
    """The largest difference a fault made to any recorded output."""
    largest = 0.0
    for key, value in faulted_arrays.items():
        difference = np.abs(np.asarray(value, np.float64) - np.asarray(arrays[key], np.float64))
        largest = max(largest, float(np.nanmax(difference)) if difference.size else 0.0)
    return largest


def _shifted(arrays: dict[tuple[str, str], np.ndarray], change: dict[str, np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
    """Every recorded output plus the change the fault makes to that output, kept in the recorded array's dtype."""
    return {(api, name): (np.asarray(value, np.float64) + change[name]).astype(value.dtype)
            for (api, name), value in arrays.items() if name in change}


class _CaseJudge:
    """One explained case on one backend: its data, reference and the judging of faulted results."""

    def __init__(self, case: Case, backend: str, run: dict[str, Any], result: dict[str, Any],
                 arrays: dict[tuple[str, str], np.ndarray], tolerances: Tolerances, divergences: list[Divergence],
                 claims: list[Divergence]) -> None:
        self.case, self.backend, self.run, self.result, self.arrays = case, backend, run, result, arrays
        self.tolerances, self.divergences, self.claims = tolerances, divergences, claims
        self.semantics = DOCUMENTED
        for claim in claims:
            if claim.kind == "semantics":
                self.semantics = self.semantics.merged(claim.semantics)
        self._data: CaseData | None = None
        self._clean: dict[str, np.ndarray] | None = None
        self._documented: dict[str, np.ndarray] | None = None

    def verdict(self, faulted: dict[str, Any], faulted_arrays: dict[tuple[str, str], np.ndarray]) -> dict[str, Any]:
        return classify_result(self.case, self.backend, self.run["versions"], faulted, faulted_arrays, self.tolerances,
                               self.divergences, self.run["seed"], device_kind(self.run.get("device_class", "cpu")))

    @property
    def data(self) -> CaseData:
        if self._data is None:
            self._data = make_case_data(self.case, self.run["seed"])
        return self._data

    def clean_reference(self) -> dict[str, np.ndarray]:
        if self._clean is None:
            self._clean = expected_outputs(self.case, self.data, self.semantics)
        return self._clean

    def documented_reference(self) -> dict[str, np.ndarray]:
        if self._documented is None:
            self._documented = expected_outputs(self.case, self.data, DOCUMENTED)
        return self._documented

    def judge_arrays(self, faulted_arrays: dict[tuple[str, str], np.ndarray]) -> tuple[dict[str, Any], float]:
        """The verdict on the result measured as ``faulted_arrays``, and the error the fault added."""
        merged = {**self.arrays, **faulted_arrays}
        faulted = faulted_result(self.case, self.result, self.arrays, merged, self.documented_reference(), self.tolerances)
        return self.verdict(faulted, merged), _added_error(self.arrays, faulted_arrays)

    def judge_weights(self, faulted_data: CaseData) -> tuple[dict[str, Any], float]:
        """The verdict when the backend had computed with ``faulted_data``'s weights (its change to the reference
        added to the measured outputs)."""
        clean = self.clean_reference()
        changed = expected_outputs(self.case, faulted_data, self.semantics)
        change = {name: changed[name] - clean[name] for name in clean}
        return self.judge_arrays(_shifted(self.arrays, change))


def _point(name: str, verdict: dict[str, Any], output_error: float | None, claim_id: str, size: float | None = None) -> dict[str, Any]:
    return {
        "fault": name, "size": size, "output_error": output_error, "verdict": verdict["verdict"],
        "explained_by": list(verdict["explained_by"]), "detected": verdict["verdict"] in FAILING,
        "absorbed": verdict["verdict"] == "known" and claim_id in verdict["explained_by"],
    }


def _offset_sweep(judge: _CaseJudge, claim_id: str) -> dict[str, Any] | None:
    """The forget-gate bias sweep: the smallest offset detected and the largest one not detected."""
    if forget_bias_offset(judge.case, judge.data, 0.0) is None:
        return None
    tolerance = judge.tolerances.for_case(judge.case, "outputs")
    points: list[dict[str, Any]] = []

    def judged(offset: float) -> dict[str, Any]:
        verdict, error = judge.judge_weights(forget_bias_offset(judge.case, judge.data, offset))
        point = _point("forget_bias_offset", verdict, error, claim_id, offset)
        points.append(point)
        return point

    offset = SWEEP_START_TOLERANCES * (tolerance.atol + tolerance.rtol)
    point = judged(offset)
    while not point["detected"] and offset < MAX_OFFSET and len(points) < MAX_SWEEP_STEPS:
        offset = min(offset * SWEEP_STEP, MAX_OFFSET)
        point = judged(offset)
    detected = point if point["detected"] else None
    undetected = None if point["detected"] else point
    while detected is not None and undetected is None and len(points) < MAX_SWEEP_STEPS:
        point = judged(detected["size"] / SWEEP_STEP)
        if point["detected"]:
            detected = point
        else:
            undetected = point
    if detected is not None and undetected is not None:
        for _ in range(SWEEP_BISECTIONS):
            point = judged(math.sqrt(detected["size"] * undetected["size"]))
            if point["detected"]:
                detected = point
            else:
                undetected = point
    return {"fault": "forget_bias_offset", "tolerance_atol": tolerance.atol, "tolerance_rtol": tolerance.rtol,
            "smallest_detected": detected, "largest_undetected": undetected, "steps": len(points),
            "absorbed": any(p["absorbed"] for p in points)}


def _other_output_fault(judge: _CaseJudge, claim: Divergence, explained_error: float) -> dict[str, Any] | None:
    """An error, as large as the one the claim explains on this case, in an output the claim does not name."""
    if claim.kind != "bound" or "*" in claim.outputs:
        return None
    names = sorted({name for (_, name) in judge.arrays if name not in claim.outputs})
    if not names:
        return None
    name = names[0]
    reference = judge.documented_reference()[name]
    tolerance = judge.tolerances.for_case(judge.case, quantity_of(name))
    first = (0,) * reference.ndim
    size = max(explained_error, 2.0 * (tolerance.atol + tolerance.rtol * abs(float(reference[first]))))
    change = np.zeros_like(reference)
    change[first] = size
    verdict, error = judge.judge_arrays(_shifted({key: value for key, value in judge.arrays.items() if key[1] == name}, {name: change}))
    return _point("other_output", verdict, error, claim.id, size) | {"output": name}


def _crash_faults(judge: "_CaseJudge | _GradientJudge", claim: Divergence) -> list[dict[str, Any]]:
    """The recorded exception replaced by another type, and by the same type with another message (where the
    build that raised and the file are recorded, they are kept: only the exception changes)."""
    error = judge.result["error"]
    other_type = "ValueError" if error["type"] == "RuntimeError" else "RuntimeError"
    other_message = "an unrelated failure injected by the claim study"
    points = []
    for name, replacement in (("other_exception", {"type": other_type, "message": error["message"]}),
                              ("other_message", {"type": error["type"], "message": other_message})):
        faulted = copy.deepcopy(judge.result)
        faulted["error"] = error | replacement | {"summary": f"{replacement['type']}: {replacement['message']}"}
        points.append(_point(name, judge.verdict(faulted, {}), None, claim.id))
    return points


def explained_error(result: dict[str, Any]) -> float | None:
    """The largest error of the recorded result against the documented reference (None for a crash)."""
    return store.worst_item(result, "max_abs_error") if result["status"] == "fail" else None


def study_case(judge: _CaseJudge, claim: Divergence) -> dict[str, Any]:
    """Every fault that applies to one case a claim explains, judged."""
    error = explained_error(judge.result)
    entry: dict[str, Any] = {"claim": claim.id, "backend": judge.backend, "case": judge.case.name,
                             "explained_error": error, "faults": [], "not_applicable": []}
    if judge.result["status"] == "error":
        entry["faults"] += _crash_faults(judge, claim)
        return entry
    sweep = _offset_sweep(judge, claim.id)
    if sweep is None:
        entry["not_applicable"].append("forget_bias_offset: the first LSTM has no bias")
    else:
        entry["sweep"] = sweep
    swapped = input_forget_swap(judge.case, judge.data)
    if swapped is not None:
        verdict, added = judge.judge_weights(swapped)
        entry["faults"].append(_point("gate_swap", verdict, added, claim.id))
    other = _other_output_fault(judge, claim, error or 0.0)
    if other is not None:
        entry["faults"].append(other)
    elif claim.kind == "bound":
        entry["not_applicable"].append("other_output: the claim names every output of the case")
    return entry


def _absorbed_points(entry: dict[str, Any]) -> list[dict[str, Any]]:
    points = [point for point in entry["faults"] if point["absorbed"]]
    sweep = entry.get("sweep")
    if sweep is not None and sweep["largest_undetected"] is not None and sweep["largest_undetected"]["absorbed"]:
        points.append(sweep["largest_undetected"])
    return points


def summarize_claim(claim: Divergence, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per claim: faults tried, absorbed, the largest absorbed error against the largest explained error."""
    explained = [entry["explained_error"] for entry in entries if entry["explained_error"] is not None]
    largest_explained = max(explained) if explained else None
    absorbed = [point | {"backend": entry["backend"], "case": entry["case"]} for entry in entries for point in _absorbed_points(entry)]
    structural = [point for point in absorbed if point["fault"] in STRUCTURAL_FAULTS and point["fault"] != "gate_swap"]
    numeric = [point for point in absorbed if point["output_error"] is not None]
    largest_absorbed = max((point["output_error"] for point in numeric), default=None)
    worst = max(numeric, key=lambda point: point["output_error"], default=None)
    ratio = None
    if largest_absorbed is not None and largest_explained:
        ratio = largest_absorbed / largest_explained
    too_loose = ratio is not None and ratio > ABSORBED_ERROR_FACTOR
    tried = sum(len(entry["faults"]) + (entry["sweep"]["steps"] if "sweep" in entry else 0) for entry in entries)
    reasons = []
    if too_loose:
        reasons.append(f"absorbs a fault adding {largest_absorbed:.3g} ({worst['fault']} on {worst['case']}@{worst['backend']}), "
                       f"{ratio:.3g}x the largest error it explains ({largest_explained:.3g}); allowed {ABSORBED_ERROR_FACTOR:g}x")
    reasons += [f"absorbs {point['fault']} on {point['case']}@{point['backend']}" for point in structural]
    return {
        "claim": claim.id, "kind": claim.kind, "backends": sorted({entry["backend"] for entry in entries}),
        "cases": len(entries), "faults_tried": tried, "faults_absorbed": len(absorbed),
        "largest_explained_error": largest_explained, "largest_absorbed_error": largest_absorbed,
        "ratio": ratio, "passed": not reasons, "reasons": reasons,
        "smallest_detected_error": min((entry["sweep"]["smallest_detected"]["output_error"] for entry in entries
                                        if entry.get("sweep") and entry["sweep"]["smallest_detected"]), default=None),
    }


class _GradientJudge:
    """One gradient case a claim explains on one backend, judged by the gradient study's own ``_judge``."""

    def __init__(self, case: Case, record: dict[str, Any], result: dict[str, Any], arrays: dict[tuple[str, str], np.ndarray],
                 tolerances: Tolerances, divergences: list[Divergence]) -> None:
        self.case, self.record, self.result, self.arrays = case, record, result, arrays
        self.tolerances, self.divergences = tolerances, divergences
        self.backend = record["backend"]
        self.info = BackendInfo(name=record["backend"], device=str(record.get("device", "cpu")), versions=record["versions"],
                                settings={}, device_class=record.get("device_class", "cpu"))
        self._documented: dict[str, np.ndarray] | None = None

    def verdict(self, faulted: dict[str, Any], faulted_arrays: dict[tuple[str, str], np.ndarray]) -> dict[str, Any]:
        return judge_gradient_result(copy.deepcopy(faulted), self.case, self.info, self.divergences, faulted_arrays,
                                     self.record["seed"], self.tolerances)

    def documented_reference(self) -> dict[str, np.ndarray]:
        """The reference gradients (and the loss) the gradient study judged against: seeded targets rounded to the
        compute dtype, float64 backward pass."""
        if self._documented is None:
            loss, expected, _ = rounded_targets(self.case, make_case_data(self.case, self.record["seed"]), self.record["seed"])
            self._documented = dict(expected, **{LOSS_KEY: np.asarray(loss)})
        return self._documented

    def judge_arrays(self, faulted_arrays: dict[tuple[str, str], np.ndarray]) -> tuple[dict[str, Any], float]:
        merged = {**self.arrays, **faulted_arrays}
        faulted = faulted_result(self.case, self.result, self.arrays, merged, self.documented_reference(), self.tolerances)
        return self.verdict(faulted, merged), _added_error(self.arrays, faulted_arrays)


def kernel_gradient_key(case: Case) -> str | None:
    """The gradient key of the first recurrent layer's first kernel (``grad/lstm_0/kernel``, the forward kernel of
    a Bidirectional, branch a's kernel); None when the case has no recurrent layer or no reference gradient."""
    try:
        keys = gradient_keys(case)
    except GradientNotSupported:
        return None
    for index, layer in enumerate(case.layers):
        if layer.kind.recurrent:
            return keys[index][0][0]
    return None


def _scaled(arrays: dict[tuple[str, str], np.ndarray], key: str, factor: float) -> dict[tuple[str, str], np.ndarray]:
    """Every build's gradient ``key`` multiplied by ``factor`` (in float64, kept in the recorded dtype)."""
    return {(api, name): (np.asarray(value, np.float64) * factor).astype(value.dtype)
            for (api, name), value in arrays.items() if name == key}


def _gradient_scale_sweep(judge: _GradientJudge, claim_id: str, key: str) -> dict[str, Any]:
    """The kernel gradient scaled by 1 + k, k stepped down from GRADIENT_SCALE_START until the claim absorbs it and
    bisected against the smallest k still detected: the largest absorbed k is the claim's gradient bound."""
    points: list[dict[str, Any]] = []

    def judged(scale: float) -> dict[str, Any]:
        verdict, error = judge.judge_arrays(_scaled(judge.arrays, key, 1.0 + scale))
        point = _point("kernel_gradient_scaled", verdict, error, claim_id, scale)
        points.append(point)
        return point

    scale = GRADIENT_SCALE_START
    point = judged(scale)
    detected = point if point["detected"] else None
    while not point["absorbed"] and scale > MIN_GRADIENT_SCALE and len(points) < MAX_SWEEP_STEPS:
        scale /= SWEEP_STEP
        point = judged(scale)
        if point["detected"]:
            detected = point
    absorbed = point if point["absorbed"] else None
    if absorbed is not None and detected is not None:
        for _ in range(SWEEP_BISECTIONS):
            point = judged(math.sqrt(detected["size"] * absorbed["size"]))
            if point["absorbed"]:
                absorbed = point
            elif point["detected"]:
                detected = point
            else:  # neither (a pass, or known by another claim): the boundary is not this claim's
                break
    return {"fault": "kernel_gradient_scaled", "key": key, "largest_absorbed": absorbed, "smallest_detected": detected,
            "steps": len(points), "absorbed": any(p["absorbed"] for p in points)}


def study_gradient_case(judge: _GradientJudge, claim: Divergence) -> dict[str, Any]:
    """Every gradient fault that applies to one gradient case a claim explains, judged by the gradient study."""
    error = explained_error(judge.result)
    entry: dict[str, Any] = {"claim": claim.id, "backend": judge.backend, "case": judge.case.name, "study": "gradients",
                             "explained_error": error, "faults": [], "not_applicable": []}
    if judge.result["status"] == "error":
        entry["faults"] += _crash_faults(judge, claim)
        return entry
    key = kernel_gradient_key(judge.case)
    recorded = {name: value for name, value in judge.arrays.items() if name[1] == key}
    if key is None or not recorded:
        entry["not_applicable"].append(f"gradient faults: no recorded kernel gradient ({key or 'no recurrent layer'})")
        return entry
    zeroed = {name: np.zeros_like(value) for name, value in recorded.items()}
    verdict, added = judge.judge_arrays(zeroed)
    entry["faults"].append(_point("zeroed_kernel_gradient", verdict, added, claim.id) | {"key": key})
    entry["scale_sweep"] = _gradient_scale_sweep(judge, claim.id, key)
    return entry


def summarize_gradients(claim: Divergence, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per claim, over the gradient cases it explains: faults tried and absorbed, the largest absorbed kernel-gradient
    scaling (its bound) and the error it adds against the largest gradient error the claim explains."""
    explained = [entry["explained_error"] for entry in entries if entry["explained_error"] is not None]
    largest_explained = max(explained) if explained else None
    absorbed = [point | {"backend": entry["backend"], "case": entry["case"]} for entry in entries
                for point in entry["faults"] if point["absorbed"]]
    scaled = [sweep["largest_absorbed"] | {"backend": entry["backend"], "case": entry["case"]} for entry in entries
              for sweep in [entry.get("scale_sweep")] if sweep is not None and sweep["largest_absorbed"] is not None]
    never_absorbed = [f"{entry['case']}@{entry['backend']}" for entry in entries
                      if entry.get("scale_sweep") is not None and entry["scale_sweep"]["largest_absorbed"] is None]
    worst = max(scaled, key=lambda point: point["output_error"], default=None)
    largest_scale = max((point["size"] for point in scaled), default=None)
    ratio = None
    if worst is not None and largest_explained:
        ratio = worst["output_error"] / largest_explained
    reasons = [f"absorbs {point['fault']} in the gradients of {point['case']}@{point['backend']}" for point in absorbed]
    if ratio is not None and ratio > ABSORBED_ERROR_FACTOR:
        reasons.append(f"absorbs a kernel gradient scaled by 1 + {worst['size']:.3g} (adding {worst['output_error']:.3g} on "
                       f"{worst['case']}@{worst['backend']}), {ratio:.3g}x the largest gradient error it explains "
                       f"({largest_explained:.3g}); allowed {ABSORBED_ERROR_FACTOR:g}x")
    tried = sum(len(entry["faults"]) + (entry["scale_sweep"]["steps"] if entry.get("scale_sweep") else 0) for entry in entries)
    return {
        "gradient_cases": len(entries), "gradient_faults_tried": tried, "gradient_faults_absorbed": len(absorbed) + len(scaled),
        "largest_explained_gradient_error": largest_explained,
        "largest_absorbed_gradient_scale": largest_scale,
        "largest_absorbed_gradient_error": None if worst is None else worst["output_error"],
        "gradient_ratio": ratio, "gradient_scale_never_absorbed": never_absorbed, "gradient_reasons": reasons,
    }


def _not_explained(claim_ids: list[str], backend: str, case: str, study: str, verdict: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per claim a record said explained the case that does not explain it when re-judged, with the reason."""
    lines = []
    for claim_id in claim_ids:
        if claim_id in verdict["explained_by"]:
            continue
        reasons = [line.split(": ", 1)[1] for line in verdict.get("unexplained", []) if line.startswith(f"{claim_id}: ")]
        if claim_id not in verdict.get("applicable", verdict.get("forward_divergences", [])):
            reasons = reasons or ["does not apply to this case, backend and versions now"]
        lines.append({"claim": claim_id, "backend": backend, "case": case, "study": study, "verdict": verdict["verdict"],
                      "reason": (reasons or ["not explained"])[0]})
    return lines


def _study_gradients(folder: Path, backend: str, claims: list[Divergence], by_id: dict[str, Divergence], cases: str | None,
                     skipped: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(gradient entries, records no longer explained) for ``folder/<backend>.gradients.json``, when there is one."""
    path = gradients_path(folder, backend)
    if not path.is_file():
        return [], []
    record = read_gradients(path)
    if record.get("fault"):
        skipped.append(f"{backend} gradients: measured with the fault {record['fault']!r} injected")
        return [], []
    raw = store.read_arrays(gradient_arrays_path(folder, backend)) if gradient_arrays_path(folder, backend).is_file() else {}
    tolerances = load_tolerances(record.get("device_class", "cpu"), record.get("backend"))
    entries: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    for result in record["cases"]:
        if cases is not None and not name_matches(result["case"], cases):
            continue
        if result["status"] not in ("fail", "error"):
            continue
        case = parse_case(result["definition"], path.name)
        arrays = store.result_arrays(result, raw)
        judge = _GradientJudge(case, record, result, arrays, tolerances, claims)
        clean = judge.verdict(result, arrays)
        stale += _not_explained(list(result.get("explained_by") or []), backend, case.name, "gradients", clean)
        if clean["verdict"] != "known":
            continue
        entries += [study_gradient_case(judge, by_id[claim_id]) for claim_id in clean["explained_by"]]
    return entries, stale


def _backends_in(folder: Path) -> list[str]:
    return [backend for backend in BACKENDS
            if (folder / f"{backend}.json").is_file() and (folder / f"{backend}.verdicts.json").is_file()]


def study_folder(folder: Path, divergences_path: Path = DIVERGENCES_FILE, divergences: list[Divergence] | None = None,
                 cases: str | None = None) -> dict[str, Any]:
    """The claim study over every classified backend record in ``folder``; writes and returns ``folder/claims.json``.

    ``divergences`` (default: the divergence file) are the claims judged. A case is studied under the claims
    that explain its recorded result now (re-judged, so a verdict file made with other claims does not matter).
    ``cases`` is an optional glob on case names."""
    folder = Path(folder)
    backends = _backends_in(folder)
    if not backends:
        raise ClaimStudyError(f"{folder} holds no classified run record (<backend>.json with <backend>.verdicts.json); "
                              "run 'python -m harness classify' first")
    claims = divergences if divergences is not None else load_divergences(divergences_path)
    by_id = {claim.id: claim for claim in claims}
    entries: list[dict[str, Any]] = []
    gradient_entries: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    skipped: list[str] = []
    for backend in backends:
        found, no_longer = _study_gradients(folder, backend, claims, by_id, cases, skipped)
        gradient_entries += found
        stale += no_longer
        run = store.read_record(folder / f"{backend}.json")
        if run.get("fault"):
            skipped.append(f"{backend}: measured with the fault {run['fault']!r} injected")
            continue
        recorded = store.read_json_file(folder / f"{backend}.verdicts.json").get("cases") or {}
        raw = store.read_arrays(folder / f"{backend}.npz")
        tolerances = load_tolerances(run.get("device_class", "cpu"), run.get("backend"))
        for result in run["cases"]:
            if cases is not None and not name_matches(result["case"], cases):
                continue
            if result["status"] not in ("fail", "error"):
                continue
            case = parse_case(result["definition"], f"{backend}.json")
            arrays = store.result_arrays(result, raw)
            clean = classify_result(case, backend, run["versions"], result, arrays, tolerances, claims, run["seed"],
                                    device_kind(run.get("device_class", "cpu")))
            was = (recorded.get(result["case"]) or {}).get("explained_by") or []
            stale += _not_explained(list(was), backend, case.name, "outputs", clean)
            if clean["verdict"] != "known":
                continue
            explaining = [by_id[claim_id] for claim_id in clean["explained_by"]]
            judge = _CaseJudge(case, backend, run, result, arrays, tolerances, claims, explaining)
            entries += [study_case(judge, claim) for claim in explaining]
    summaries = []
    for claim in claims:
        mine = [entry for entry in entries if entry["claim"] == claim.id]
        gradients = [entry for entry in gradient_entries if entry["claim"] == claim.id]
        lost = [line for line in stale if line["claim"] == claim.id]
        if not (mine or gradients or lost):
            continue
        summary = summarize_claim(claim, mine)
        if gradients:
            summary |= summarize_gradients(claim, gradients)
            summary["faults_tried"] += summary["gradient_faults_tried"]
            summary["faults_absorbed"] += summary["gradient_faults_absorbed"]
            summary["reasons"] += summary["gradient_reasons"]
            summary["passed"] = not summary["reasons"]
            summary["backends"] = sorted(set(summary["backends"]) | {entry["backend"] for entry in gradients})
        summary["not_explained_now"] = lost
        summaries.append(summary)
    record = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": now(), "folder": str(folder),
        "divergences_file": divergences_path.name if divergences is None else "(given claims)",
        "divergences_sha256": file_sha256(divergences_path) if divergences is None else None,
        "factor": ABSORBED_ERROR_FACTOR, "backends": backends, "skipped": skipped,
        "passed": all(summary["passed"] for summary in summaries), "claims": summaries, "entries": entries,
        "gradient_entries": gradient_entries, "not_explained_now": stale,
    }
    store.write_json(folder / CLAIMS_FILE, record)
    return record
