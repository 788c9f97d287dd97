"""The verdict of ``keras-parity check``: every captured layer call of a user's model (harness.execute.capture) on
every backend, judged against the float64 reference and against the other backends. No Keras here.

Per backend, per layer call, in the order the calls finished:

- **own inputs**: the reference (harness.truth.keras_layers) fed the inputs, initial states and mask that backend
  passed to the layer, each output compared with harness.truth.compare under the tolerance row of the layer's
  compute dtype (harness/case/tolerances.toml; the states row for h and c): the layer judged on its own;
- **chained**: the reference fed the chained reference outputs of the calls that produced its inputs (found by
  value: an input is bitwise the output of an earlier call, or a model input), so that the model is judged from
  its input. A producer without a reference restarts the chain at its actual output;
- **amplification** = (the chained error of the layer's output) / max(the chained error of its inputs, floor), the
  errors being largest absolute differences and the floor the atol of the dtype's outputs row (1e-6 for float32):
  how much this layer grows the error it is given; ``floor`` marks where the floor replaced a smaller input error;
- a NaN or Inf in any output fails, with or without a reference.

Across backends every output of every call is compared pair by pair (harness.verdicts.cross_backend.distance, the
summed tolerance of the two sides): beyond 1 fails. The weights and the model inputs each backend used must be
bitwise equal. A layer the reference lacks is "no reference", judged across backends only; a nested model is a
"container", judged through its layers. The **first divergent layer** is the first call (in execution order)
that fails.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.case.tolerances import Tolerance, Tolerances, quantity_of, tolerance_for
from harness.truth.compare import compare
from harness.truth.keras_layers import layer_spec, reference_outputs
from harness.verdicts.cross_backend import distance

PASS, FAIL, NO_REFERENCE, CONTAINER = "pass", "fail", "no reference", "container"
EXACT = Tolerance(rtol=0.0, atol=0.0, rel_floor=1.0, reason="exact: no tolerance row for this dtype", row="exact")
FLOOR_NOTE = ("amplification = chained error of the layer's output / max(chained error of its inputs, floor), "
              "floor = the atol of the dtype's outputs row")


@dataclass
class Capture:
    """What one backend's capture wrote: its manifest (harness.execute.capture) and arrays."""

    backend: str
    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def calls(self) -> list[dict[str, Any]]:
        return self.manifest["calls"]


@dataclass
class BackendLayer:
    """One layer call on one backend."""

    status: str
    own_ratio: float | None = None  # the largest tolerance ratio of its outputs against the reference of its own inputs
    chained_ratio: float | None = None  # ... against the reference chained from the model input
    chained_error: float | None = None  # the largest absolute error of its outputs, chained
    input_error: float | None = None  # the largest chained error of its inputs
    amplification: float | None = None
    floor_applied: bool = False
    nonfinite: int = 0
    restarted: bool = False  # its chain restarted at an input no reference produced
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class LayerRow:
    """One layer call (a shared layer called twice is two rows: NAME and NAME#2), on every backend."""

    name: str
    class_name: str
    dtype: str
    reference: str  # the kind the reference computes it as, or "no reference: why", or "container"
    status: str
    backends: dict[str, BackendLayer]
    cross: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "class": self.class_name, "dtype": self.dtype, "reference": self.reference,
                "status": self.status, "backends": {name: entry.to_json() for name, entry in self.backends.items()},
                "cross": self.cross, "reasons": self.reasons}


@dataclass
class Verdict:
    rows: list[LayerRow]
    first_divergent: str | None
    problems: list[str]  # findings that are no one layer's: inputs or weights that differ between backends
    floors: dict[str, float]  # dtype -> the amplification floor used

    @property
    def passed(self) -> bool:
        return self.first_divergent is None and not self.problems


def _key(array: np.ndarray) -> tuple[str, tuple[int, ...], str]:
    array = np.ascontiguousarray(array)
    return array.dtype.str, array.shape, hashlib.sha1(array.tobytes()).hexdigest()


def output_tolerance(tolerances: Tolerances, compute_dtype: str, output_name: str, array: np.ndarray) -> tuple[Tolerance, str]:
    """The tolerance row of one output and the dtype it is compared in: the layer's compute dtype's row (states
    for h and c); exact for an integer or bool output or a dtype the table lacks."""
    if array.dtype.kind in "biu":
        return EXACT, "float64"
    dtype = compute_dtype if compute_dtype in tolerances else array.dtype.name
    if dtype not in tolerances:
        return EXACT, "float64"
    return tolerance_for(tolerances, dtype, quantity_of(output_name)), dtype


def _floor(tolerances: Tolerances, dtype: str) -> float:
    return tolerance_for(tolerances, dtype, "outputs").atol if dtype in tolerances else float(np.finfo(np.float32).eps)


def _max_abs(actual: np.ndarray, expected: np.ndarray) -> float:
    if actual.shape != expected.shape:
        return float("inf")
    with np.errstate(invalid="ignore", over="ignore"):
        difference = np.abs(actual.astype(np.float64) - expected)
    if difference.size == 0:
        return 0.0
    return float("nan") if np.isnan(difference).any() else float(difference.max())


def _nonfinite(arrays: list[np.ndarray]) -> int:
    return int(sum((~np.isfinite(a.astype(np.float64))).sum() for a in arrays if a.dtype.kind in "fc"))


class _Chain:
    """Who produced each array (by value), and the chained reference value and error of each produced output."""

    def __init__(self, capture: Capture) -> None:
        self.producers: list[tuple[int, tuple, tuple[str, int], bool]] = []  # (end event, key, (call, output), container)
        self.values: dict[tuple[str, int], np.ndarray] = {}
        self.errors: dict[tuple[str, int], float] = {}
        for entry in capture.manifest["inputs"]:
            array = capture.arrays[f"input/{entry['name']}"]
            source = (f"input:{entry['name']}", 0)
            self.producers.append((-1, _key(array), source, False))
            self.values[source] = array.astype(np.float64)
            self.errors[source] = 0.0

    def source(self, array: np.ndarray, before: int) -> tuple[str, int] | None:
        """The latest output bitwise equal to ``array`` that ended before event ``before`` (a layer's over a container's)."""
        key = _key(array)
        found = [(container, end, source) for end, other, source, container in self.producers if end < before and other == key]
        if not found:
            return None
        return min(found, key=lambda item: (item[0], -item[1]))[2]

    def feed(self, arrays: list[np.ndarray], before: int) -> tuple[list[np.ndarray], float, bool]:
        """The chained values to feed for ``arrays``, the largest chained error among them, whether any restarted."""
        values, error, restarted = [], 0.0, False
        for array in arrays:
            source = self.source(array, before)
            if source is None or source not in self.values:
                values.append(array.astype(np.float64))
                restarted = True
                continue
            values.append(self.values[source])
            error = max(error, self.errors[source]) if not np.isnan(self.errors[source]) else float("nan")
        return values, error, restarted

    def produced(self, call: dict[str, Any], arrays: list[np.ndarray], chained: list[np.ndarray] | None,
                 errors: list[float] | None) -> None:
        for index, array in enumerate(arrays):
            source = (call["name"], index)
            self.producers.append((call["end"], _key(array), source, bool(call["container"])))
            if chained is not None:
                self.values[source] = chained[index]
                self.errors[source] = errors[index]


def judge_backend(capture: Capture, tolerances: Tolerances) -> dict[str, BackendLayer]:
    """Every call of one backend's capture against the reference, in the order the calls finished."""
    arrays = capture.arrays
    chain = _Chain(capture)
    judged: dict[str, BackendLayer] = {}
    for call in sorted(capture.calls, key=lambda entry: entry["end"]):
        outputs = [arrays[key] for key in call["outputs"]]
        if call["container"]:
            judged[call["name"]] = BackendLayer(CONTAINER)
            chain.produced(call, outputs, None, None)
            continue
        entry = BackendLayer(PASS, nonfinite=_nonfinite(outputs))
        if entry.nonfinite:
            entry.reasons.append(f"{entry.nonfinite} non-finite output value(s)")
        spec = layer_spec(call["class"], call["config"])
        if isinstance(spec, str):
            entry.status = FAIL if entry.nonfinite else NO_REFERENCE
            judged[call["name"]] = entry
            chain.produced(call, outputs, None, None)
            continue
        inputs = [arrays[key] for key in call["inputs"]]
        states = [arrays[key] for key in call["initial_state"]]
        mask = arrays[call["mask"]] if call["mask"] else None
        weights = [arrays[key] for key in call["weights"]]
        dtype = call["compute_dtype"]
        try:
            own = reference_outputs(spec, inputs, states, mask, weights, dtype)
            fed, input_error, restarted = chain.feed(inputs + states, call["start"])
            chained = reference_outputs(spec, fed[:len(inputs)], fed[len(inputs):], mask, weights, dtype)
        except ValueError as error:  # the reference refuses what this call passed (shapes it does not take)
            entry.status = FAIL if entry.nonfinite else NO_REFERENCE
            entry.reasons.append(f"the reference cannot take this call: {error}")
            judged[call["name"]] = entry
            chain.produced(call, outputs, None, None)
            continue
        names = spec.output_names
        if len(own) != len(outputs):
            entry.status = FAIL
            entry.reasons.append(f"{len(outputs)} outputs, the reference gives {len(own)} ({', '.join(names)})")
            judged[call["name"]] = entry
            chain.produced(call, outputs, None, None)
            continue
        own_ratios, chained_ratios, chained_errors = [], [], []
        for name, actual, expected, expected_chained in zip(names, outputs, own, chained):
            tolerance, compared_dtype = output_tolerance(tolerances, dtype, name, actual)
            local = compare(actual, expected, tolerance, compared_dtype)
            whole = compare(actual, expected_chained, tolerance, compared_dtype)
            own_ratios.append(local.tolerance_ratio)
            chained_ratios.append(whole.tolerance_ratio)
            chained_errors.append(_max_abs(actual, expected_chained))
            if not local.passed:
                entry.reasons.append(local.message(f"{name} vs the reference of its own inputs"))
            elif not whole.passed:
                entry.reasons.append(whole.message(f"{name} vs the reference chained from the model input"))
            if not (local.passed and whole.passed):
                entry.status = FAIL
        if entry.nonfinite:
            entry.status = FAIL
        floor = _floor(tolerances, dtype)
        entry.own_ratio = _worst(own_ratios)
        entry.chained_ratio = _worst(chained_ratios)
        entry.chained_error = _worst(chained_errors)
        entry.input_error = input_error
        entry.restarted = restarted
        entry.floor_applied = bool(input_error < floor)  # a NaN input error is not floored
        with np.errstate(invalid="ignore", divide="ignore"):
            entry.amplification = float(entry.chained_error / max(input_error, floor)) if not np.isnan(input_error) else float("nan")
        judged[call["name"]] = entry
        chain.produced(call, outputs, chained, chained_errors)
    return judged


def _worst(values: list[float]) -> float:
    if not values:
        return 0.0
    return float("nan") if any(np.isnan(v) for v in values) else float(max(values))


def cross_backend(captures: list[Capture], tolerances: dict[str, Tolerances]) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Per call name, every pair of backends' distance on every output; and the problems that are no layer's (model
    inputs or weights that differ, calls one backend lacks)."""
    by_name = [{call["name"]: call for call in capture.calls} for capture in captures]
    measured: dict[str, list[dict[str, Any]]] = {}
    problems: list[str] = []
    for i, first in enumerate(captures):
        for j in range(i + 1, len(captures)):
            second = captures[j]
            pair = [first.backend, second.backend]
            for key in sorted(k for k in set(first.arrays) | set(second.arrays) if k.startswith(("input/", "weight/"))):
                a, b = first.arrays.get(key), second.arrays.get(key)
                if a is None or b is None or _key(a) != _key(b):
                    problems.append(f"{key} differs between {pair[0]} and {pair[1]} (the same file and inputs must give "
                                    f"bitwise the same {'inputs' if key.startswith('input/') else 'weights'})")
            for name, call in by_name[i].items():
                other = by_name[j].get(name)
                if other is None:
                    measured.setdefault(name, []).append({"backends": pair, "output": None, "passed": False,
                                                          "reason": f"not called on {second.backend}"})
                    continue
                for index, (key_a, key_b) in enumerate(zip(call["outputs"], other["outputs"])):
                    a, b = first.arrays[key_a], second.arrays[key_b]
                    row: dict[str, Any] = {"backends": pair, "output": index}
                    if a.shape != b.shape:
                        row.update(passed=False, reason=f"shapes {list(a.shape)} and {list(b.shape)}")
                    else:
                        tol_a = output_tolerance(tolerances[first.backend], call["compute_dtype"], "output", a)[0]
                        tol_b = output_tolerance(tolerances[second.backend], other["compute_dtype"], "output", b)[0]
                        row.update(distance(a, b, (tol_a.rtol, tol_a.atol), (tol_b.rtol, tol_b.atol)))
                        ratio = row["summed_tolerance_ratio"]
                        row["passed"] = bool(row["nonfinite_disagreements"] == 0 and ratio <= 1.0)
                        if not row["passed"]:
                            row["reason"] = (f"{pair[0]} and {pair[1]} differ by {row['max_abs_diff']:.3g} at "
                                             f"{tuple(row['worst_index'])} ({row['values'][0]!r} vs {row['values'][1]!r}), "
                                             f"{ratio:.3g}x their summed tolerance")
                    measured.setdefault(name, []).append(row)
            for name in by_name[j]:
                if name not in by_name[i]:
                    measured.setdefault(name, []).append({"backends": pair, "output": None, "passed": False,
                                                          "reason": f"not called on {first.backend}"})
    return measured, problems


def judge(captures: list[Capture], tolerances: dict[str, Tolerances]) -> Verdict:
    """Every backend's capture against the reference and against each other; the first divergent layer."""
    per_backend = {capture.backend: judge_backend(capture, tolerances[capture.backend]) for capture in captures}
    cross, problems = cross_backend(captures, tolerances)
    order: list[dict[str, Any]] = []
    for capture in captures:
        known = {call["name"] for call in order}
        order += [call for call in sorted(capture.calls, key=lambda entry: entry["end"]) if call["name"] not in known]
    rows = []
    floors: dict[str, float] = {}
    for call in order:
        spec = layer_spec(call["class"], call["config"])
        reference = CONTAINER if call["container"] else (f"no reference: {spec}" if isinstance(spec, str) else spec.type)
        backends = {backend: judged[call["name"]] for backend, judged in per_backend.items() if call["name"] in judged}
        row = LayerRow(call["name"], call["class"], call["compute_dtype"], reference, PASS, backends, cross.get(call["name"], []))
        for backend, entry in backends.items():
            row.reasons += [f"{backend}: {reason}" for reason in entry.reasons]
        row.reasons += [pair["reason"] for pair in row.cross if not pair["passed"]]
        statuses = {entry.status for entry in backends.values()}
        if FAIL in statuses or any(not pair["passed"] for pair in row.cross):
            row.status = FAIL
        elif statuses == {CONTAINER}:
            row.status = CONTAINER
        elif NO_REFERENCE in statuses:
            row.status = NO_REFERENCE
        if not call["container"]:
            floors[call["compute_dtype"]] = _floor(next(iter(tolerances.values())), call["compute_dtype"])
        rows.append(row)
    first = next((row.name for row in rows if row.status == FAIL), None)
    return Verdict(rows, first, problems, floors)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _across(row: LayerRow) -> str:
    """The worst pair of backends on this layer: its summed tolerance ratio, "x" when not comparable, "-" alone."""
    if not row.cross:
        return "-"
    if any(pair.get("summed_tolerance_ratio") is None for pair in row.cross):
        return "x"
    return _ratio(_worst([float(pair["summed_tolerance_ratio"]) for pair in row.cross]))


def render_table(verdict: Verdict, backends: list[str]) -> str:
    """The per-layer table: per layer and backend, the tolerance ratio against the reference of its own inputs and
    chained from the model input (at most 1 passes), the amplification, and the status; then the findings."""
    header = f"{'layer':<28} {'class':<15} {'backend':<11} {'own inputs':>10} {'chained':>9} {'amplif.':>9} {'across':>8}  status"
    lines = [header, "-" * len(header)]
    for row in verdict.rows:
        for index, backend in enumerate(backends):
            entry = row.backends.get(backend)
            if entry is None:
                continue
            amplification = "-" if entry.amplification is None else f"{entry.amplification:.3g}" + ("*" if entry.floor_applied else "")
            status = row.status if index == 0 else ""
            if index == 0 and row.status == NO_REFERENCE:
                status = row.reference
            across = _across(row) if index == 0 else ""
            lines.append(f"{row.name if index == 0 else '':<28} {row.class_name if index == 0 else '':<15} {backend:<11} "
                         f"{_ratio(entry.own_ratio):>10} {_ratio(entry.chained_ratio):>9} {amplification:>9} {across:>8}  {status}")
    lines.append("own inputs / chained: largest |error| / tolerance against the float64 reference fed the layer's own "
                 "inputs / fed the reference chained from the model input; across: largest |difference| between two "
                 "backends / their summed tolerance (each: at most 1 passes)")
    floors = ", ".join(f"{dtype}: {value:g}" for dtype, value in sorted(verdict.floors.items()))
    lines.append(f"{FLOOR_NOTE} ({floors}); * the floor applied")
    for problem in verdict.problems:
        lines.append(f"problem: {problem}")
    if verdict.first_divergent is not None:
        row = next(r for r in verdict.rows if r.name == verdict.first_divergent)
        lines.append(f"first divergent layer: {row.name} ({row.class_name})")
        lines += [f"  {reason}" for reason in row.reasons]
    return "\n".join(lines)
