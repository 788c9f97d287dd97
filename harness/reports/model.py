"""The report model: everything REPORT.md, report.html, WHY.md and the figures show, built once from
the records of a results folder.

``build_report(folder)`` reads the records (run records ``<backend>.json``, verdict files
``<backend>.verdicts.json``, ``cross_backend.json`` and the side records ``<backend>.{probes,growth,
faults,serialization}.json``) and returns a ``Report``: plain frozen dataclasses holding every number,
row, ordering and conclusion the reports print. The renderers (``markdown``, ``html``, ``why``,
``plots``) only turn that model into text or pixels; they compute nothing and import nothing from each
other. Nothing here imports Keras or a backend, and nothing reads anything but JSON records.

Errors are judged by their ratio to the tolerance that judged them (``Judged.ratio``, the record's
``tolerance_ratio``): at most 1 passes. A non-finite ratio or error (NaN, inf: a non-finite output) is
kept as such and shown as non-finite; ``None`` means the record holds no number (nothing was
compared), and only that is shown as "n/a".

The public ``format_*`` helpers at the end are the one place numbers become text, so every report
writes a value the same way.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from harness.case.schema import CaseError, parse_case
from harness.reports.between_versions import BetweenVersions, load_between_versions, load_other_comparisons
from harness.records.header import SCHEMAS
from harness.records.store import RecordError, read_json_file, read_record

RUN_SCHEMA, RUN_SCHEMA_VERSION = SCHEMAS["run"]
VERDICTS_SCHEMA, VERDICTS_SCHEMA_VERSION = SCHEMAS["verdicts"]
CROSS_SCHEMA, CROSS_SCHEMA_VERSION = SCHEMAS["cross_backend"]
CROSS_FILE = "cross_backend.json"
PROBES_SCHEMA = SCHEMAS["probes"][0]
SIDE_SCHEMAS = {kind: SCHEMAS[kind][0] for kind in ("probes", "growth", "faults", "serialization")}

VERDICTS = ("pass", "known", "refused", "fail", "error", "timeout", "invalid")
ATTENTION_VERDICTS = ("fail", "error", "timeout", "invalid")
UNMEASURED = ("error", "refused", "timeout", "invalid")
CLOSE_RATIO = 0.1  # below: comfortably inside the tolerance ("ok"); from here to 1: "close"; above 1: "over"
CLOSEST_CALLS = 10


# ------------------------------------------------------------------------------------------ numbers


def _number(value: Any) -> float | None:
    """A JSON number as a float (NaN and infinities kept); None for a missing or non-numeric value."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def sort_key(ratio: float | None) -> float:
    """Largest first means: a non-finite ratio (NaN) above every number, a missing one (None) below."""
    if ratio is None:
        return -math.inf
    if math.isnan(ratio):
        return math.inf
    return ratio


@dataclass(frozen=True)
class Judged:
    """An error next to the tolerance that judged it: ``ratio`` = error / tolerance (<= 1 passes).

    ``ratio`` and ``abs_error`` are NaN or infinite for non-finite outputs and None when the record
    holds no number."""

    ratio: float | None
    abs_error: float | None
    nonfinite: bool = False  # the output held NaN or inf where the reference is finite

    @property
    def band(self) -> str:
        """'missing' (no number), 'ok' (ratio < 0.1), 'close' (0.1 to 1) or 'over' (> 1 or non-finite)."""
        if self.ratio is None:
            return "missing"
        if not math.isfinite(self.ratio) or self.ratio > 1:
            return "over"
        return "close" if self.ratio >= CLOSE_RATIO else "ok"

    @property
    def key(self) -> float:
        return sort_key(self.ratio)


NOT_MEASURED = Judged(None, None)


def _worst(judged: Iterable[Judged]) -> Judged:
    return max(judged, key=lambda j: (j.key, sort_key(j.abs_error)), default=NOT_MEASURED)


# ------------------------------------------------------------------------------------------ case results


@dataclass(frozen=True)
class Item:
    """One output of one API of a case, compared with the float64 reference."""

    api: str
    output: str
    passed: bool
    judged: Judged
    max_rel_error: float | None
    max_ulp: float | None
    mismatched: int | None
    total: int | None
    mismatch_percent: float | None
    nonfinite_actual: int | None
    worst_index: tuple[int, ...] | None
    worst_actual: float | None
    worst_expected: float | None
    rtol: float | None
    atol: float | None
    dtype: str | None
    expected_dtype: str | None
    message: str


@dataclass(frozen=True)
class ApiAgreement:
    """Two APIs of one case compared output by output; ``judged.ratio`` = difference / bound (a bound of
    0 demands bitwise equality: ratio 0 when equal, inf otherwise)."""

    apis: tuple[str, str]
    output: str
    max_abs_diff: float | None
    bitwise_equal: bool
    bound: float | None
    within: bool
    judged: Judged


@dataclass(frozen=True)
class ErrorInfo:
    """The innermost exception a case raised, as recorded."""

    type: str
    message: str
    summary: str
    api: str | None = None  # the build that raised (None: outside a build, or not recorded)
    raised_in: str | None = None  # the innermost frame's source file, e.g. keras/src/backend/torch/rnn.py
    raised_at: str | None = None  # that file with the line and the function

    @property
    def where(self) -> str:
        """Where it was raised, in words ("in the functional build, at keras/...:12 in f"); "" when not recorded."""
        parts = [f"in the {self.api} build"] if self.api else []
        if self.raised_at or self.raised_in:
            parts.append(f"at {self.raised_at or self.raised_in}")
        return ", ".join(parts)


@dataclass(frozen=True)
class CaseResult:
    """One case on one backend: what was measured and the verdict the classification gave it."""

    backend: str
    case: str
    description: str
    dtype: str
    entry_point: str
    definition: dict[str, Any]
    config: dict[str, Any]
    measured_status: str
    verdict: str  # the verdict file's verdict; the measured status when the backend was not classified
    classified: bool
    problems: tuple[str, ...]
    error: ErrorInfo | None
    items: tuple[Item, ...]
    api_agreement: tuple[ApiAgreement, ...]
    apis: tuple[str, ...]
    duration_s: float | None
    explained_by: tuple[str, ...]
    applicable: tuple[str, ...]
    unexplained: tuple[str, ...]
    possibly_resolved: tuple[str, ...]
    judged: Judged  # the item with the largest ratio (its ratio and its absolute error)
    worst: Item | None
    api_judged: Judged  # the largest API disagreement relative to its bound
    kernel_paths: tuple[tuple[str, str], ...] = ()  # (api, the kernel path its build ran, as observed); a build that raised: "... (raised)"
    kinds: str = "?"  # the cell kinds of its recurrent layers (case_kinds), read once from the recorded definition
    stand_in_calls: int = 0  # kernel = fused_on_cpu: calls of the CPU stand-in kernel over every build

    @property
    def stateful(self) -> bool:
        return _stateful(self.config) or _stateful(self.definition)

    @property
    def max_abs_error(self) -> float | None:
        """The largest absolute error over every API and output (NaN when any is NaN); None when nothing was compared."""
        values = [i.judged.abs_error for i in self.items if i.judged.abs_error is not None]
        return max(values, key=sort_key) if values else None


def _stateful(table: Any) -> bool:
    if isinstance(table, dict):
        for key, value in table.items():
            if key == "stateful" and value is True:
                return True
            if key == "stateful_batches" and isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return True
            if _stateful(value):
                return True
    elif isinstance(table, list):
        return any(_stateful(value) for value in table)
    return False


def _index(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, list):
        return tuple(int(v) for v in value if isinstance(v, (int, float)))
    if isinstance(value, int):
        return (value,)
    return None


def _item(api: str, output: str, raw: dict[str, Any]) -> Item:
    ratio, error = _number(raw.get("tolerance_ratio")), _number(raw.get("max_abs_error"))
    nonfinite_actual = raw.get("nonfinite_actual")
    nonfinite = bool(nonfinite_actual) or any(v is not None and not math.isfinite(v) for v in (ratio, error))
    return Item(
        api=api, output=output, passed=bool(raw.get("passed")), judged=Judged(ratio, error, nonfinite),
        max_rel_error=_number(raw.get("max_rel_error")), max_ulp=_number(raw.get("max_ulp")),
        mismatched=raw.get("mismatched"), total=raw.get("total"), mismatch_percent=_number(raw.get("mismatch_percent")),
        nonfinite_actual=nonfinite_actual, worst_index=_index(raw.get("worst_index")),
        worst_actual=_number(raw.get("worst_actual")), worst_expected=_number(raw.get("worst_expected")),
        rtol=_number(raw.get("rtol")), atol=_number(raw.get("atol")), dtype=raw.get("dtype"),
        expected_dtype=raw.get("expected_dtype"), message=str(raw.get("message") or f"{api}/{output}"),
    )


def _agreement_ratio(difference: float | None, bound: float | None, bitwise: bool) -> float | None:
    if difference is None or bound is None:
        return None
    if math.isnan(difference):
        return math.nan
    if bound > 0:
        return difference / bound
    return 0.0 if bitwise or difference == 0 else math.inf


def _agreement(raw: dict[str, Any]) -> ApiAgreement:
    apis = tuple(raw.get("apis") or ("?", "?"))
    difference, bound = _number(raw.get("max_abs_diff")), _number(raw.get("bound"))
    bitwise = bool(raw.get("bitwise_equal"))
    within = raw.get("within")
    if within is None:
        within = bitwise if bound in (None, 0.0) else (difference is not None and difference <= bound)
    ratio = _agreement_ratio(difference, bound, bitwise)
    nonfinite = difference is not None and not math.isfinite(difference)
    return ApiAgreement(
        apis=(str(apis[0]), str(apis[-1])), output=str(raw.get("output", "?")), max_abs_diff=difference,
        bitwise_equal=bitwise, bound=bound, within=bool(within), judged=Judged(ratio, difference, nonfinite),
    )


def _error(raw: Any) -> ErrorInfo | None:
    if not raw:
        return None
    if isinstance(raw, dict):
        kind, message = str(raw.get("type") or "Error"), str(raw.get("message") or "")
        optional = {field: str(raw[field]) if raw.get(field) else None for field in ("api", "raised_in", "raised_at")}
        return ErrorInfo(kind, message, str(raw.get("summary") or f"{kind}: {message}"), **optional)
    return ErrorInfo("Error", str(raw), str(raw))


def _case_result(backend: str, raw: dict[str, Any], verdict: dict[str, Any] | None) -> CaseResult:
    items = tuple(
        _item(api, output, item)
        for api, result in (raw.get("apis") or {}).items()
        for output, item in (result.get("items") or {}).items()
    )
    agreement = tuple(_agreement(row) for row in raw.get("api_agreement") or [])
    worst = max(items, key=lambda i: (i.judged.key, sort_key(i.judged.abs_error)), default=None)
    measured = str(raw.get("status"))
    verdict = verdict or {}
    return CaseResult(
        backend=backend, case=str(raw["case"]), description=str(raw.get("description") or ""),
        dtype=str(raw.get("dtype") or "?"), entry_point=str(raw.get("entry_point") or "?"),
        definition=dict(raw.get("definition") or {}), config=dict(raw.get("config") or {}),
        measured_status=measured, verdict=str(verdict.get("verdict") or measured), classified=bool(verdict),
        problems=tuple(str(p) for p in raw.get("problems") or []), error=_error(raw.get("error")),
        items=items, api_agreement=agreement, apis=tuple(raw.get("apis") or {}),
        duration_s=_number(raw.get("duration_s")),
        explained_by=tuple(verdict.get("explained_by") or ()), applicable=tuple(verdict.get("applicable") or ()),
        unexplained=tuple(str(u) for u in verdict.get("unexplained") or ()),
        possibly_resolved=tuple(verdict.get("possibly_resolved") or ()),
        judged=worst.judged if worst else NOT_MEASURED, worst=worst,
        api_judged=_worst(row.judged for row in agreement),
        kernel_paths=_kernel_paths(raw), kinds=case_kinds(dict(raw.get("definition") or {})),
        stand_in_calls=sum(int((entry.get("stand_in") or {}).get("stand_in_calls") or 0)
                           for entry in (raw.get("apis") or {}).values() if isinstance(entry, dict)),
    )


def _kernel_paths(raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """(api, kernel path) of every build the run recorded a path for; the build that raised keeps what it tried."""
    paths = [(str(api), str(result["kernel_path"])) for api, result in (raw.get("apis") or {}).items()
             if isinstance(result, dict) and result.get("kernel_path")]
    at_error = raw.get("kernel_at_error")
    if isinstance(at_error, dict) and at_error.get("kernel_path"):
        paths.append((str(at_error.get("api") or "?"), f"{at_error['kernel_path']} (raised)"))
    return tuple(paths)


# ------------------------------------------------------------------------------------------ loading


def _check_run_record(path: Path, data: dict[str, Any]) -> None:
    """What the report needs beyond store.read_record's checks: the file is named after its backend,
    and every case entry names its case and status."""
    if data["backend"] != path.stem:
        raise RecordError(f"{path} holds a record of backend {data['backend']!r}; expected {path.stem!r}")
    if not isinstance(data["cases"], list):
        raise RecordError(f"{path}: 'cases' is not a list")
    for index, case in enumerate(data["cases"]):
        if not isinstance(case, dict) or "case" not in case or "status" not in case:
            raise RecordError(f"{path}: case entry {index} lacks 'case' or 'status'")


def load_run_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Every run record ``<backend>.json`` in ``folder``, keyed by backend, in name order.

    RecordError (one line) for a missing folder, a folder without run records, or a record that is
    corrupt, of another schema or schema version, or lacks what the reports read."""
    if not folder.is_dir():
        raise RecordError(f"{folder} is not a folder of results")
    loaded: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        if "." in path.stem or path.name == CROSS_FILE:
            continue
        data = read_json_file(path)
        schema = data.get("schema")
        if schema != RUN_SCHEMA:
            if isinstance(schema, str) and schema.startswith("keras-parity/"):
                continue  # another kind of keras-parity record
            raise RecordError(f"{path} is not a keras-parity run record (no \"schema\": \"{RUN_SCHEMA}\")")
        data = read_record(path)
        _check_run_record(path, data)
        loaded[data["backend"]] = data
    if not loaded:
        raise RecordError(f"{folder} holds no run records (<backend>.json); run 'python -m harness run' first")
    return loaded


def _load_verdicts(folder: Path, backend: str) -> dict[str, Any] | None:
    path = folder / f"{backend}.verdicts.json"
    if not path.exists():
        return None
    data = read_json_file(path)
    if data.get("schema") != VERDICTS_SCHEMA:
        raise RecordError(f"{path} is not a keras-parity verdicts record (no \"schema\": \"{VERDICTS_SCHEMA}\")")
    if data.get("schema_version") != VERDICTS_SCHEMA_VERSION:
        raise RecordError(f"{path} has schema_version {data.get('schema_version')!r}; this report reads version {VERDICTS_SCHEMA_VERSION}")
    if not isinstance(data.get("cases"), dict):
        raise RecordError(f"{path} is a verdicts record without a 'cases' table")
    return data


def _load_optional(path: Path, schema: str, notes: list[str]) -> dict[str, Any] | None:
    """A record that may be absent; an unreadable one becomes a note, not a failure of the whole report."""
    try:
        data = read_json_file(path)
    except RecordError as error:
        notes.append(f"ignored: {error}")
        return None
    if data.get("schema") != schema:
        notes.append(f"ignored: {path} is not a keras-parity record of schema {schema!r}")
        return None
    return data


def _load_side_records(folder: Path, kind: str, notes: list[str]) -> dict[str, dict[str, Any]]:
    loaded = {}
    for path in sorted(folder.glob(f"*.{kind}.json")):
        data = _load_optional(path, SIDE_SCHEMAS[kind], notes)
        if data is not None:
            loaded[str(data.get("backend") or path.name.split(".")[0])] = data
    return loaded


# ------------------------------------------------------------------------------------------ sections


@dataclass(frozen=True)
class BackendSummary:
    backend: str
    device: str
    device_class: str
    cases: int
    counts: dict[str, int]  # verdict -> number of cases, every verdict of VERDICTS present
    wall_time_s: float | None
    fault: str | None
    classified: bool


@dataclass(frozen=True)
class KindRow:
    """The verdicts of the cases whose recurrent layers are of these cell kinds ("gru", or "gru+lstm" for a mixed
    stack; a Bidirectional or branches counts as the kind it wraps), per backend: verdict -> number of cases."""

    kinds: str
    counts: dict[str, dict[str, int]]  # backend -> verdict -> cases

    def cases(self, backend: str) -> int:
        return sum(self.counts.get(backend, {}).values())


@dataclass(frozen=True)
class Coverage:
    configurations: int
    model_runs: int
    axes: tuple[tuple[str, int], ...]  # (axis, number of distinct values), by axis name

    @property
    def values(self) -> int:
        return sum(count for _, count in self.axes)


@dataclass(frozen=True)
class CrossPair:
    """One output of one case measured on two backends (cross_backend.json): a measurement, not a verdict.
    judged.ratio is the difference in units of the sum of the two sides' tolerances, judged.abs_error the largest
    absolute difference; both None when the shapes differ."""

    case: str
    backends: tuple[str, str]
    output: str
    max_abs_diff: float | None
    max_rel_diff: float | None
    verdicts: tuple[str, str]  # each side's verdict on this case (pass, known, fail, ...)
    judged: Judged
    shapes_differ: bool = False

    @property
    def key(self) -> float:
        """Largest difference first: differing shapes or a non-finite disagreement above every number."""
        return math.inf if self.shapes_differ else sort_key(self.max_abs_diff)


@dataclass(frozen=True)
class CrossRow:
    """The output of one case with the largest difference between one pair of backends, and the known divergences
    of this case on either backend."""

    case: str
    backends: tuple[str, str]
    worst: CrossPair
    outputs: int
    explained_by: tuple[str, ...]  # known divergences of this case on either backend

    @property
    def verdicts(self) -> tuple[str, str]:
        return self.worst.verdicts

    @property
    def both_pass(self) -> bool:
        return self.worst.verdicts == ("pass", "pass")


@dataclass(frozen=True)
class PairSummary:
    backends: tuple[str, str]
    compared: int  # cases measured on both
    both_pass: int  # of those, cases that pass on both (their distance is within the summed tolerances by construction)
    largest: CrossRow | None  # the largest difference of any compared case
    largest_both_pass: CrossRow | None  # the largest difference of a case that passes on both


@dataclass(frozen=True)
class AcceptanceRow:
    """A case refused on some backends and run on others (cross_backend.json ``acceptance``), judged against the
    acceptance claims: explained (``explained_by``) or a finding (``unexplained``)."""

    case: str
    refused_on: tuple[str, ...]
    ran_on: tuple[str, ...]
    explained_by: tuple[str, ...]
    unexplained: tuple[str, ...]


@dataclass(frozen=True)
class CrossBackend:
    ran: bool
    rows: tuple[CrossRow, ...]  # every (case, pair) measured, largest absolute difference first
    pairs: tuple[PairSummary, ...]
    skipped: tuple[tuple[str, tuple[str, ...], str], ...]  # (case, backends, reason): no numbers on a side
    missing: tuple[tuple[str, tuple[str, ...], str], ...] = ()  # (case, backends, raw output): named by a record, absent
    never_compared: tuple[str, ...] = ()  # cases measured on no pair of backends
    acceptance: tuple[AcceptanceRow, ...] = ()  # cases refused on some backends and run on others
    # (claim, case, backend): an acceptance claim on a case no backend refuses any more
    acceptance_resolved: tuple[tuple[str, str, str], ...] = ()

    @property
    def unexplained_acceptance(self) -> tuple[AcceptanceRow, ...]:
        return tuple(row for row in self.acceptance if row.unexplained)


@dataclass(frozen=True)
class Failure:
    """A case on one backend whose verdict needs attention, with everything the records say about why."""

    result: CaseResult
    failing_items: tuple[Item, ...]
    other_problems: tuple[str, ...]  # problem lines that are not a failing item's message
    api_disagreements: tuple[ApiAgreement, ...]
    cross_distances: tuple[CrossRow, ...]  # this case's distance to the other backends (measurements)


@dataclass(frozen=True)
class Claim:
    """A known divergence (from the verdict files) and where it explained a case in this run."""

    id: str
    kind: str
    when: str
    backends: tuple[str, ...]
    versions: dict[str, str]
    observed: str
    reference: str
    upstream: str
    reproducer: str
    checks: str  # what the classification checks, in words (the claimed semantics, exception or bound)
    described: bool  # False: a verdict names it but no verdict file describes it
    explained: dict[str, tuple[CaseResult, ...]]  # backend -> cases it explained
    possibly_resolved: dict[str, tuple[str, ...]]  # backend -> passing cases it applies to
    study: "ClaimStudyRow | None" = None  # the claim under injected faults (claims.json), when the claim study ran

    @property
    def seen(self) -> bool:
        return any(self.explained.values())

    @property
    def kinds(self) -> tuple[str, ...]:
        """The layer kinds of the cases it explained, on any backend (``case_kinds``), sorted."""
        return tuple(sorted({case.kinds for cases in self.explained.values() for case in cases}))

    def impact(self, backend: str) -> "ClaimImpact":
        cases = self.explained.get(backend, ())
        raises = sum(1 for c in cases if c.measured_status in UNMEASURED)
        return ClaimImpact(len(cases), raises, _worst(c.judged for c in cases if c.judged.ratio is not None or c.judged.abs_error is not None))


@dataclass(frozen=True)
class ClaimImpact:
    cases: int
    raised: int  # explained cases that raised instead of computing
    worst: Judged


@dataclass(frozen=True)
class ResolvedCandidate:
    claim: str
    backend: str
    cases: tuple[str, ...]


@dataclass(frozen=True)
class CaseRow:
    """One case across backends, for the table against the reference."""

    case: str
    dtype: str
    entry_point: str
    cells: dict[str, CaseResult | None]
    judged: Judged  # the worst over backends


@dataclass(frozen=True)
class ApiRow:
    case: str
    apis: tuple[str, ...]
    cells: dict[str, CaseResult | None]
    judged: Judged  # the worst API disagreement over backends, relative to its bound
    bitwise: bool  # every comparison on every backend bitwise equal


@dataclass(frozen=True)
class ApiSummary:
    backend: str
    cases: int  # cases built in more than one API with at least one comparison
    bitwise: int
    within: int  # within the bound (bitwise included)
    outside: tuple[str, ...]
    not_bitwise: tuple[str, ...]


@dataclass(frozen=True)
class SerializationRow:
    saved_on: str
    loaded_on: str
    models: int
    passed: int
    judged: Judged  # worst against the reference
    largest_difference: float | None  # from the saving backend's own outputs
    failures: tuple[str, ...]


@dataclass(frozen=True)
class GrowthPoint:
    backend: str
    time: int
    units: int
    status: str  # measured | error
    output_error: float | None
    tightest_bound: float | None
    judged: Judged  # worst over output, h and c


@dataclass(frozen=True)
class Growth:
    backends: tuple[str, ...]
    points: tuple[GrowthPoint, ...]
    keys: tuple[tuple[int, int], ...]  # (time, units), by units then time
    float32_atol: float | None
    worst: Judged

    def point(self, backend: str, time: int, units: int) -> GrowthPoint | None:
        return next((p for p in self.points if p.backend == backend and p.time == time and p.units == units), None)


@dataclass(frozen=True)
class FaultCell:
    status: str  # detected | undetected | error | not run
    flagged: int
    runs: int
    worst_error: float | None


@dataclass(frozen=True)
class FaultRow:
    name: str
    description: str
    cells: dict[str, FaultCell]


@dataclass(frozen=True)
class SweepRow:
    dtype: str
    case: str
    cells: dict[str, str]  # backend -> smallest detected perturbation, or why there is none


@dataclass(frozen=True)
class FaultDetection:
    backend: str
    detected: int
    total: int
    errors: int
    false_alarms: tuple[str, ...]
    blind_sweeps: tuple[str, ...] = ()  # "dtype: why" for every sweep that detected no perturbation at all
    precision: str = ""  # where and at which precision the study ran: "gpu_tf32, precision default"
    missed: tuple[str, ...] = ()  # what this precision cannot see: undetected faults, then "sweep:<dtype>" that detected nothing


@dataclass(frozen=True)
class FaultCaseRow:
    """One case of one fault: per backend, how it was judged (verdict after claims, against the clean run)."""
    fault: str
    case: str
    cells: dict[str, str]  # backend -> "detected (fail vs clean pass; generic)", "missed (known vs clean known; ...)", ...


@dataclass(frozen=True)
class Faults:
    backends: tuple[str, ...]
    detection: tuple[FaultDetection, ...]
    rows: tuple[FaultRow, ...]
    sweep: tuple[SweepRow, ...]
    cases: tuple[FaultCaseRow, ...] = ()


@dataclass(frozen=True)
class ToleranceRow:
    dtype: str
    quantity: str
    rtol: float | None
    atol: float | None
    rel_floor: float | None
    measured: bool | None
    reason: str


@dataclass(frozen=True)
class VerdictSource:
    file: str
    sha256: str
    classified: str
    run_started: str
    matches_run: bool  # classified the run record beside it (same start time)


@dataclass(frozen=True)
class Environment:
    """What one record was made with, as its header says."""

    kind: str  # run | probes | growth | faults | serialization
    backend: str
    device: str
    device_class: str
    versions: dict[str, str]
    settings: dict[str, Any]
    seed: Any
    command: str
    fault: str | None
    started: str
    finished: str
    wall_time_s: float | None
    verdicts: VerdictSource | None = None
    precision_mode: str = "not recorded"  # settings["precision_mode"]: default | highest
    device_details: tuple[tuple[str, str], ...] = ()  # the record's device_details, flattened to (name, value)


@dataclass(frozen=True)
class ProbeCell:
    ran: bool
    max_abs_diff: float | None
    bitwise: bool
    error: str | None


@dataclass(frozen=True)
class ProbeRow:
    probe: str
    cells: dict[str, ProbeCell]
    outcome: str  # bitwise (on every backend probed) | rounding (within the float32 output atol) | differs | error | not run


@dataclass(frozen=True)
class Why:
    """What WHY.md reads: the probes, the seeded-weight comparison and conclusions computed from records."""

    backends: tuple[str, ...]
    devices: dict[str, str]  # backend -> recorded device (run record, else probe record)
    keras_versions: tuple[str, ...]
    api: tuple[ApiSummary, ...]
    api_outcome: str  # bitwise | within | outside | none
    probes: tuple[ProbeRow, ...]
    probe_backends: tuple[str, ...]
    float32_atol: float | None
    seed_weights: tuple[tuple[str, str, float], ...]
    stateful: dict[str, tuple[int, int]]  # backend -> (stateful cases in several APIs, bitwise among them)


FUSED_STEPS = ("fused", "bidirectional_fused")


@dataclass(frozen=True)
class KernelSummary:
    """One backend's builds by the kernel path they ran (harness.execute.kernels), from its run record."""

    backend: str
    precision_mode: str
    builds: int  # builds with a recorded path
    unrecorded: int  # builds that measured outputs without a recorded path (a record made before paths were observed)
    raised: int  # builds that raised, with the path they had tried
    paths: tuple[tuple[str, int], ...]  # (kernel path, builds), most builds first
    fused_cases: tuple[str, ...]  # cases with a build that ran a fused (cuDNN) kernel
    failed_cases: tuple[str, ...]  # cases with a build whose fused kernel was called and failed


@dataclass(frozen=True)
class FusedOnCpu:
    """One backend's kernel = fused_on_cpu cases (Keras's fused-path code through the backend's CPU stand-in
    kernel), against the same configurations as shipped (their twins: the same definition, kernel aside)."""

    backend: str
    cases: int
    verdicts: tuple[tuple[str, int], ...]  # (verdict, cases)
    ran_fused: int  # cases where every build ran the stand-in kernel to completion (observed path fused)
    reached_kernel: int  # cases where the stand-in kernel was called at least once (TensorFlow: the recorder)
    never_reached: int  # cases whose fused entry point declined before any kernel (e.g. masks on JAX, PyTorch)
    not_passing: tuple[tuple[str, str, str], ...]  # (case, verdict, the claims that explain it or "unexplained")
    worst_fused: float | None  # the largest max abs error against the reference among passing fused cases
    worst_twin: float | None  # the same among their as-shipped twins


@dataclass(frozen=True)
class KernelRow:
    """One case's kernel paths across backends: the path when every build ran the same, else per API."""

    case: str
    cells: dict[str, str]


@dataclass(frozen=True)
class Report:
    folder: str
    backends: tuple[str, ...]
    summaries: tuple[BackendSummary, ...]
    coverage: Coverage
    kind_rows: tuple[KindRow, ...]  # the verdicts per layer kind, side by side per backend
    results: dict[str, dict[str, CaseResult]]  # backend -> case -> result
    failures: tuple[Failure, ...]  # verdict fail/error/timeout/invalid, by backend then ratio
    claims: tuple[Claim, ...]  # seen first, then by id
    possibly_resolved: tuple[ResolvedCandidate, ...]
    closest_calls: tuple[CaseResult, ...]
    case_rows: tuple[CaseRow, ...]  # largest ratio first
    api_rows: tuple[ApiRow, ...]  # cases in several APIs, largest disagreement first
    api_summaries: tuple[ApiSummary, ...]
    cross: CrossBackend
    serialization: tuple[SerializationRow, ...] | None
    growth: Growth | None
    faults: Faults | None
    tolerances: tuple[ToleranceRow, ...]
    tolerance_differences: tuple[str, ...]
    environments: tuple[Environment, ...]  # run records first, then side records
    warnings: tuple[str, ...]  # things a reader must know before trusting the numbers
    notes: tuple[str, ...]  # records that could not be read
    why: Why
    kernels: tuple[KernelSummary, ...] = ()  # backends whose record holds observed kernel paths
    kernel_rows: tuple[KernelRow, ...] = ()
    fused_on_cpu: tuple[FusedOnCpu, ...] = ()  # backends that ran kernel = fused_on_cpu cases
    between_versions: BetweenVersions | None = None  # between_versions.json: this Keras version against another
    # comparisons stored in subfolders that name this folder as a side (Keras 2 in tf-keras/ against this Keras 3)
    other_between_versions: tuple[BetweenVersions, ...] = ()
    gradients: "GradientsAndTraining | None" = None  # <backend>.gradients.json / .training.json, when run
    training_mode: "TrainingMode | None" = None  # <backend>.training_mode.json, when run
    claim_study: "ClaimStudy | None" = None  # claims.json: each known-divergence claim under injected faults, when run
    # records that do not say what they are (unfinished, mixed commits, statuses their raw outputs contradict):
    # shown as a banner at the top; record_failures counts the contradicted statuses
    record_flags: tuple[str, ...] = ()
    record_failures: int = 0

    @property
    def attention_count(self) -> int:
        return len(self.failures) + len(self.cross.missing) + len(self.cross.unexplained_acceptance) + self.record_failures


# ------------------------------------------------------------------------------------------ builders


def _summaries(records: dict[str, dict[str, Any]], results: dict[str, dict[str, CaseResult]], classified: dict[str, bool]) -> tuple[BackendSummary, ...]:
    summaries = []
    for backend, record in records.items():
        verdicts = [result.verdict for result in results[backend].values()]
        counts = {verdict: verdicts.count(verdict) for verdict in VERDICTS}
        for verdict in verdicts:
            counts.setdefault(verdict, verdicts.count(verdict))
        summaries.append(BackendSummary(
            backend=backend, device=str(record.get("device")), device_class=str(record.get("device_class") or "?"),
            cases=len(verdicts), counts=counts, wall_time_s=_number(record.get("wall_time_s")),
            fault=record.get("fault") or None, classified=classified[backend],
        ))
    return tuple(summaries)


def case_kinds(definition: dict[str, Any]) -> str:
    """The cell kinds of a case's recurrent layers, sorted and joined by "+" (the case stage's kind table says what
    each layer wraps); "?" when the definition no longer parses."""
    try:
        case = parse_case(definition, "record")
    except CaseError:
        return "?"
    names = {layer.kind.cell_kind(layer).name for layer in case.layers if layer.kind.recurrent}
    return "+".join(sorted(names)) or "?"


def kind_cell(row: KindRow, backend: str) -> str:
    """One backend's verdicts of a kind's cases: "12: 10 pass, 2 known" (every verdict present, by count)."""
    counts = row.counts.get(backend, {})
    if not counts:
        return "-"
    parts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    return f"{row.cases(backend)}: {parts}"


def _kind_rows(backends: tuple[str, ...], results: dict[str, dict[str, CaseResult]]) -> tuple[KindRow, ...]:
    """Per kind (single kinds first, then mixed stacks), each backend's verdict counts."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for backend in backends:
        for result in results[backend].values():
            per_backend = counts.setdefault(result.kinds, {}).setdefault(backend, {})
            per_backend[result.verdict] = per_backend.get(result.verdict, 0) + 1
    order = sorted(counts, key=lambda kinds: ("+" in kinds, kinds))
    return tuple(KindRow(kinds, counts[kinds]) for kinds in order)


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [pair for key, inner in value.items() for pair in _flatten(f"{prefix}.{key}" if prefix else str(key), inner)]
    return [(prefix, repr(value))]


def _axis_values(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(axis, value) pairs of a case's configuration; layer options are named after their layer type."""
    pairs: list[tuple[str, str]] = []
    for key, value in config.items():
        if key in ("batch", "time", "features"):
            continue
        if key == "layers" and isinstance(value, list):
            for spec in value:
                if not isinstance(spec, dict):
                    continue
                kind = str(spec.get("type", "layer"))
                for option, option_value in spec.items():
                    if option == "layer" and isinstance(option_value, dict):
                        inner = str(option_value.get("type", "layer"))
                        pairs += [(f"{kind}.{inner}.{k}", repr(v)) for k, v in option_value.items() if k != "type"]
                    elif option not in ("type", "units"):
                        pairs += _flatten(f"{kind}.{option}", option_value)
                pairs.append(("layer", kind))
        else:
            pairs += _flatten(key, value)
    return pairs


def _coverage(results: dict[str, dict[str, CaseResult]]) -> Coverage:
    configurations: set[tuple[tuple[str, str], ...]] = set()
    axes: dict[str, set[str]] = {}
    model_runs = 0
    for per_case in results.values():
        for result in per_case.values():
            model_runs += len(result.apis)
            if not result.config:
                continue
            pairs = _axis_values(result.config)
            configurations.add(tuple(sorted(pairs)))
            for axis, value in pairs:
                axes.setdefault(axis, set()).add(value)
    return Coverage(len(configurations), model_runs, tuple((axis, len(values)) for axis, values in sorted(axes.items())))


def _cross_backend(folder: Path, results: dict[str, dict[str, CaseResult]], notes: list[str]) -> CrossBackend:
    data = _load_optional(folder / CROSS_FILE, CROSS_SCHEMA, notes) if (folder / CROSS_FILE).exists() else None
    if data is None:
        return CrossBackend(False, (), (), ())

    def verdict_of(backend: str, case: str, recorded: Any) -> str:
        if recorded:
            return str(recorded)
        result = results.get(backend, {}).get(case)
        return result.verdict if result is not None else "?"

    grouped: dict[tuple[str, tuple[str, str]], list[CrossPair]] = {}
    for raw in data.get("pairs") or []:
        backends = tuple(str(b) for b in raw.get("backends") or ("?", "?"))
        backends = (backends[0], backends[-1])
        case = str(raw.get("case"))
        difference, relative = _number(raw.get("max_abs_diff")), _number(raw.get("max_rel_diff"))
        ratio = _number(raw.get("summed_tolerance_ratio", raw.get("ratio")))  # "ratio": records before the measurements
        shapes_differ = raw.get("shapes") is not None
        nonfinite = bool(raw.get("nonfinite_disagreements")) or any(v is not None and not math.isfinite(v) for v in (ratio, difference))
        recorded = list(raw.get("verdicts") or (None, None))
        pair = CrossPair(case, backends, str(raw.get("output", "?")), difference, relative,
                         (verdict_of(backends[0], case, recorded[0]), verdict_of(backends[1], case, recorded[-1])),
                         Judged(ratio, difference, nonfinite), shapes_differ)
        grouped.setdefault((pair.case, pair.backends), []).append(pair)
    rows = []
    for (case, backends), pairs in grouped.items():
        worst = max(pairs, key=lambda p: (p.key, p.judged.key))
        explained = tuple(sorted({
            claim for backend in backends
            for claim in (results.get(backend, {}).get(case).explained_by if results.get(backend, {}).get(case) else ())
        }))
        rows.append(CrossRow(case, backends, worst, len(pairs), explained))
    rows.sort(key=lambda r: (-r.worst.key, -r.worst.judged.key, r.case, r.backends))
    summaries = []
    for backends in sorted({row.backends for row in rows}):
        mine = [row for row in rows if row.backends == backends]
        passing = [row for row in mine if row.both_pass]
        summaries.append(PairSummary(backends, len(mine), len(passing), mine[0] if mine else None, passing[0] if passing else None))
    skipped = tuple(
        (str(s.get("case")), tuple(str(b) for b in s.get("backends") or ()), str(s.get("reason") or ""))
        for s in (data.get("not_compared") if "not_compared" in data else data.get("skipped")) or []
    )
    missing = tuple((str(m.get("case")), tuple(str(b) for b in m.get("backends") or ()), str(m.get("raw_output") or ""))
                    for m in data.get("missing") or [])
    acceptance = tuple(AcceptanceRow(str(a.get("case")), tuple(str(b) for b in a.get("refused_on") or ()),
                                     tuple(str(b) for b in a.get("ran_on") or ()), tuple(str(c) for c in a.get("explained_by") or ()),
                                     tuple(str(u) for u in a.get("unexplained") or ()))
                       for a in data.get("acceptance") or [])
    acceptance_resolved = tuple((str(r.get("divergence")), str(r.get("case")), str(r.get("backend")))
                                for r in data.get("acceptance_possibly_resolved") or [])
    return CrossBackend(True, tuple(rows), tuple(summaries), skipped, missing, tuple(str(c) for c in data.get("never_compared") or ()),
                        acceptance, acceptance_resolved)


def _failures(results: dict[str, dict[str, CaseResult]], cross: CrossBackend) -> tuple[Failure, ...]:
    failures = []
    for backend, per_case in results.items():
        failing = [r for r in per_case.values() if r.verdict in ATTENTION_VERDICTS]
        failing.sort(key=lambda r: (ATTENTION_VERDICTS.index(r.verdict), -r.judged.key, r.case))
        for result in failing:
            items = tuple(sorted((i for i in result.items if not i.passed), key=lambda i: -i.judged.key))
            messages = {item.message for item in items}
            failures.append(Failure(
                result=result, failing_items=items,
                other_problems=tuple(p for p in result.problems if p not in messages),
                api_disagreements=tuple(row for row in result.api_agreement if not row.within),
                cross_distances=tuple(row for row in cross.rows if row.case == result.case and backend in row.backends),
            ))
    return tuple(failures)


def _accepted(claim_id: str, cross: CrossBackend, results: dict[str, dict[str, CaseResult]]) -> dict[str, tuple[CaseResult, ...]]:
    """Backend -> the cases an acceptance claim explained there: run on that backend while others refused them."""
    accepted: dict[str, list[CaseResult]] = {}
    for row in cross.acceptance:
        if claim_id in row.explained_by:
            for backend in row.ran_on:
                if row.case in results.get(backend, {}):
                    accepted.setdefault(backend, []).append(results[backend][row.case])
    return {backend: tuple(cases) for backend, cases in accepted.items()}


def _claims(verdict_files: dict[str, dict[str, Any]], results: dict[str, dict[str, CaseResult]],
            cross: CrossBackend) -> tuple[Claim, ...]:
    described: dict[str, dict[str, Any]] = {}
    for data in verdict_files.values():
        for entry in data.get("divergences") or []:
            if isinstance(entry, dict) and entry.get("id"):
                described.setdefault(str(entry["id"]), entry)
    named = {claim for per_case in results.values() for r in per_case.values() for claim in (*r.explained_by, *r.possibly_resolved)}
    claims = []
    for claim_id in sorted(set(described) | named):
        entry = described.get(claim_id, {})
        explained = {
            backend: tuple(r for r in per_case.values() if r.verdict == "known" and claim_id in r.explained_by)
            for backend, per_case in results.items()
        }
        resolved = {
            backend: tuple(r.case for r in per_case.values() if claim_id in r.possibly_resolved)
            + tuple(case for claim, case, where in cross.acceptance_resolved if claim == claim_id and where == backend)
            for backend, per_case in results.items()
        }
        if entry.get("kind") == "acceptance":  # it explains what the backends accept, judged across them
            explained = _accepted(claim_id, cross, results)
        versions = entry.get("versions") or {}
        claims.append(Claim(
            id=claim_id, kind=str(entry.get("kind") or "?"), when=" ".join(str(entry.get("when") or "").split()),
            backends=tuple(entry.get("backends") or ()),
            versions={str(k): str(v) for k, v in versions.items()} if isinstance(versions, dict) else {},
            observed=" ".join(str(entry.get("observed") or "").split()),
            reference=" ".join(str(entry.get("reference") or "").split()),
            upstream=str(entry.get("upstream") or ""), reproducer=str(entry.get("reproducer") or ""),
            checks=_claim_checks(entry), described=bool(entry),
            explained={b: cases for b, cases in explained.items() if cases},
            possibly_resolved={b: cases for b, cases in resolved.items() if cases},
        ))
    claims.sort(key=lambda c: (not c.seen, c.id))
    return tuple(claims)


def _claim_checks(entry: dict[str, Any]) -> str:
    kind = entry.get("kind")
    if kind == "semantics" and isinstance(entry.get("semantics"), dict) and entry["semantics"]:
        return "every output matches the reference computed with " + ", ".join(f"{k}={v}" for k, v in entry["semantics"].items())
    if kind == "crash" and entry.get("exception"):
        return f"the innermost exception is {entry['exception']}" + (f" with a message matching {entry['message']!r}" if entry.get("message") else "")
    if kind == "acceptance" and entry.get("exception"):
        return (f"the backends it names run the case while the others refuse it with {entry['exception']}"
                + (f" matching {entry['message']!r}" if entry.get("message") else ""))
    if kind == "bound" and entry.get("outputs"):
        bound = _number(entry.get("max_abs_error"))
        outputs = [str(o) for o in entry["outputs"]]
        which = "the mismatching outputs are finite" if "*" in outputs else f"only {', '.join(outputs)} mismatch"
        return which + (f" and off by at most {bound:g}" if bound is not None else "")
    return ""


def _case_rows(backends: tuple[str, ...], results: dict[str, dict[str, CaseResult]]) -> tuple[CaseRow, ...]:
    names = list(dict.fromkeys(name for per_case in results.values() for name in per_case))
    rows = []
    for name in names:
        cells = {backend: results[backend].get(name) for backend in backends}
        some = next(cell for cell in cells.values() if cell is not None)
        rows.append(CaseRow(name, some.dtype, some.entry_point, cells, _worst(c.judged for c in cells.values() if c is not None)))
    rows.sort(key=lambda r: (-r.judged.key, -sort_key(r.judged.abs_error)))
    return tuple(rows)


def _api_rows(backends: tuple[str, ...], results: dict[str, dict[str, CaseResult]]) -> tuple[ApiRow, ...]:
    names = list(dict.fromkeys(name for per_case in results.values() for name in per_case))
    rows = []
    for name in names:
        cells = {backend: results[backend].get(name) for backend in backends}
        present = [c for c in cells.values() if c is not None and c.api_agreement]
        if not present:
            continue
        apis = tuple(dict.fromkeys(api for c in present for api in c.apis))
        bitwise = all(row.bitwise_equal for c in present for row in c.api_agreement)
        rows.append(ApiRow(name, apis, cells, _worst(c.api_judged for c in present), bitwise))
    rows.sort(key=lambda r: (-r.judged.key, -sort_key(r.judged.abs_error)))
    return tuple(rows)


def _api_summaries(results: dict[str, dict[str, CaseResult]]) -> tuple[ApiSummary, ...]:
    summaries = []
    for backend, per_case in results.items():
        compared = [r for r in per_case.values() if r.api_agreement]
        bitwise = [r for r in compared if all(row.bitwise_equal for row in r.api_agreement)]
        within = [r for r in compared if all(row.within for row in r.api_agreement)]
        summaries.append(ApiSummary(
            backend, len(compared), len(bitwise), len(within),
            tuple(r.case for r in compared if r not in within), tuple(r.case for r in compared if r not in bitwise),
        ))
    return tuple(summaries)


def _serialization(studies: dict[str, dict[str, Any]]) -> tuple[SerializationRow, ...] | None:
    loads = [(backend, entry) for backend, data in studies.items() for entry in data.get("loads") or [] if isinstance(entry, dict)]
    if not loads:
        return None
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for loaded_on, entry in loads:
        grouped.setdefault((str(entry.get("saved_on")), loaded_on), []).append(entry)
    rows = []
    for (saved_on, loaded_on), entries in sorted(grouped.items()):
        judged = []
        differences = []
        failures = []
        passed = 0
        for entry in entries:
            status = str(entry.get("verdict") or entry.get("status"))
            passed += status == "pass"
            for name, item in (entry.get("items") or {}).items():
                judged.append(_item("loaded", name, item).judged)
            differences += [_number(v.get("max_abs_diff")) for v in (entry.get("vs_saving_backend") or {}).values()]
            if status != "pass":
                claims = entry.get("explained_by") or entry.get("known_divergences") or []
                failures.append(f"{entry.get('case')} ({status}" + (f": {', '.join(claims)}" if claims else "") + ")")
        differences = [d for d in differences if d is not None]
        largest = max(differences, key=sort_key) if differences else None
        rows.append(SerializationRow(saved_on, loaded_on, len(entries), passed, _worst(judged), largest, tuple(failures)))
    return tuple(rows)


def _growth(studies: dict[str, dict[str, Any]]) -> Growth | None:
    points = []
    atol = None
    for backend, record in studies.items():
        entry = ((record.get("tolerances") or {}).get("float32") or {}).get("outputs")
        if atol is None and isinstance(entry, dict):
            atol = _number(entry.get("atol"))
        for raw in record.get("points") or []:
            quantities = raw.get("quantities")
            if not isinstance(quantities, dict) or not quantities:
                points.append(GrowthPoint(backend, int(raw.get("time", 0)), int(raw.get("units", 0)), "error", None, None, NOT_MEASURED))
                continue
            judged = []
            for quantity in quantities.values():
                error = _number(quantity.get("max_abs_error"))
                ratio = _number(quantity.get("tolerance_ratio"))
                if ratio is None:
                    headroom = _number(quantity.get("headroom"))
                    if headroom is not None:
                        ratio = 0.0 if math.isinf(headroom) else (math.inf if headroom == 0 else 1.0 / headroom)
                judged.append(Judged(ratio, error, error is not None and not math.isfinite(error)))
            output = quantities.get("output") or {}
            points.append(GrowthPoint(
                backend, int(raw.get("time", 0)), int(raw.get("units", 0)), "measured",
                _number(output.get("max_abs_error")), _number(output.get("tightest_bound")), _worst(judged),
            ))
    if not points:
        return None
    keys = tuple(sorted({(p.time, p.units) for p in points}, key=lambda k: (k[1], k[0])))
    return Growth(tuple(studies), tuple(points), keys, atol, _worst(p.judged for p in points if p.status == "measured"))


def _faults(studies: dict[str, dict[str, Any]]) -> Faults | None:
    if not studies:
        return None
    backends = tuple(studies)
    names = list(dict.fromkeys(name for data in studies.values() for name in (data.get("faults") or {})))
    detection = []
    rows = []
    for backend in backends:
        entries = studies[backend].get("faults") or {}
        statuses = [_fault_status(entry) for entry in entries.values()]
        clean = studies[backend].get("clean") or {}
        # The fault study marks a clean case that did not pass and that no known divergence explains.
        alarms = tuple(
            name for name, entry in clean.items()
            if (entry["false_alarm"] if "false_alarm" in entry else str(entry.get("verdict") or entry.get("status")) not in ("pass", "known"))
        )
        blind = _blind_sweeps(studies[backend].get("sweep") or {})
        settings = studies[backend].get("settings") or {}
        precision = f"{studies[backend].get('device_class') or '?'}, precision {settings.get('precision_mode') or 'not recorded'}"
        missed = tuple(name for name, entry in entries.items() if _fault_status(entry) == "undetected")
        missed += tuple(f"sweep:{line.split(':', 1)[0]}" for line in blind)
        detection.append(FaultDetection(backend, statuses.count("detected"), len(statuses), statuses.count("error"), alarms, blind, precision, missed))
    for name in names:
        cells = {}
        description = ""
        for backend in backends:
            entry = (studies[backend].get("faults") or {}).get(name)
            if entry is None:
                cells[backend] = FaultCell("not run", 0, 0, None)
                continue
            description = description or str(entry.get("description") or "")
            runs = entry.get("runs") or {}
            errors = [_number(run.get("max_abs_error")) for run in runs.values()]
            errors = [e for e in errors if e is not None]
            cells[backend] = FaultCell(
                _fault_status(entry), len(entry.get("flagged_cases") or []), len(runs),
                max(errors, key=sort_key) if errors else None,
            )
        rows.append(FaultRow(name, description, cells))
    sweep = []
    dtypes = list(dict.fromkeys(dtype for data in studies.values() for dtype in (data.get("sweep") or {})))
    for dtype in dtypes:
        cells = {}
        case = ""
        for backend in backends:
            entry = (studies[backend].get("sweep") or {}).get(dtype) or {}
            case = case or str(entry.get("case") or "")
            clean = entry.get("clean_status")
            known = ", ".join(entry.get("known_divergence") or [])
            if entry.get("error"):
                cells[backend] = f"ERROR: {entry['error']}"
            elif clean is None:
                cells[backend] = "not run"
            elif entry.get("skipped"):  # a record from before the sweep ran on claimed cases
                cells[backend] = f"n/a (unmodified case: {clean})"
            elif entry.get("smallest_detected") is None:
                cells[backend] = "NONE DETECTED"
            else:
                cells[backend] = f"{entry['smallest_detected']:g}" + (f" (unmodified case known: {known})" if known else "")
        sweep.append(SweepRow(dtype, case, cells))
    return Faults(backends, tuple(detection), tuple(rows), tuple(sweep), _fault_cases(studies, backends, names))


def _blind_sweeps(sweep: dict[str, Any]) -> tuple[str, ...]:
    """"dtype: why" for every sweep that ran and detected no perturbation (the fault study's undetected_sweeps)."""
    return tuple(
        f"{dtype}: {entry.get('no_detection') or 'no perturbation detected on ' + str(entry.get('case'))}" for dtype, entry in sweep.items()
        if not entry.get("error") and not entry.get("skipped") and entry.get("clean_status") is not None and entry.get("smallest_detected") is None
    )


def _fault_cases(studies: dict[str, dict[str, Any]], backends: tuple[str, ...], names: list[str]) -> tuple[FaultCaseRow, ...]:
    """The per-case detection table: every (fault, case) run, per backend its verdict, the faulted run's verdict after
    claims against the clean verdict, and the kernel paths its builds ran."""
    rows = []
    for name in names:
        case_names = list(dict.fromkeys(case for data in studies.values() for case in ((data.get("faults") or {}).get(name) or {}).get("runs") or {}))
        for case in case_names:
            cells = {}
            for backend in backends:
                run = (((studies[backend].get("faults") or {}).get(name) or {}).get("runs") or {}).get(case)
                if run is None:
                    cells[backend] = "not run"
                    continue
                verdict = {"undetected": "MISSED", "error": "ERROR"}.get(str(run.get("verdict")), str(run.get("verdict")))
                judged = f"{run['after_claims']} vs clean {run.get('clean_verdict')}" if "after_claims" in run else f"status {run.get('status')}"
                paths = ", ".join(dict.fromkeys(str(path) for path in (run.get("kernel_paths") or {}).values()))
                reason = str(run.get("reason") or "")
                cells[backend] = f"{verdict} ({judged}" + (f"; {paths}" if paths else "") + ")" + (f": {reason}" if reason else "")
            rows.append(FaultCaseRow(name, case, cells))
    return tuple(rows)


def _fault_status(entry: dict[str, Any]) -> str:
    status = entry.get("status")
    if status in ("detected", "undetected", "error"):
        return status
    return "detected" if entry.get("detected") else "undetected"


def _tolerances(records: dict[str, dict[str, Any]]) -> tuple[tuple[ToleranceRow, ...], tuple[str, ...]]:
    tables = {backend: record.get("tolerances") or {} for backend, record in records.items()}
    first_backend = next(iter(tables))
    rows = []
    for dtype, quantities in tables[first_backend].items():
        for quantity, tol in (quantities or {}).items():
            rows.append(ToleranceRow(
                dtype, quantity, _number(tol.get("rtol")), _number(tol.get("atol")), _number(tol.get("rel_floor")),
                tol.get("measured") if isinstance(tol.get("measured"), bool) else None,
                " ".join(str(tol.get("reason") or "").split()),
            ))
    differences = tuple(
        f"{backend} judged with other tolerances than {first_backend}"
        for backend, table in tables.items() if backend != first_backend and table != tables[first_backend]
    )
    return tuple(rows), differences


def _environment(kind: str, record: dict[str, Any], verdicts: dict[str, Any] | None = None) -> Environment:
    source = None
    if verdicts is not None:
        source = VerdictSource(
            file=str(verdicts.get("divergences_file") or "?"), sha256=str(verdicts.get("divergences_sha256") or "?"),
            classified=str(verdicts.get("classified") or "?"), run_started=str(verdicts.get("run_started") or "?"),
            matches_run=verdicts.get("run_started") == record.get("started"),
        )
    return Environment(
        kind=kind, backend=str(record.get("backend")), device=str(record.get("device") or "?"),
        device_class=str(record.get("device_class") or "?"), versions=dict(record.get("versions") or {}),
        settings=dict(record.get("settings") or {}), seed=record.get("seed"), command=str(record.get("command") or "?"),
        fault=record.get("fault") or None, started=str(record.get("started") or "?"),
        finished=str(record.get("finished") or "?"),
        wall_time_s=_number(record.get("wall_time_s", record.get("duration_s"))), verdicts=source,
        precision_mode=str((record.get("settings") or {}).get("precision_mode") or "not recorded"),
        device_details=tuple(_details(record.get("device_details"))),
    )


def _details(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A record's device_details as (name, value) pairs; nested tables (the host beside a GPU) as host.name."""
    if not isinstance(value, dict):
        return []
    pairs = []
    for key, inner in value.items():
        name = f"{prefix}{key}"
        if isinstance(inner, dict):
            pairs += _details(inner, f"{name}.")
        else:
            pairs.append((name, "unknown" if inner is None else str(inner)))
    return pairs


def _record_flags(records: dict[str, dict[str, Any]], verdict_files: dict[str, dict[str, Any] | None]) -> tuple[tuple[str, ...], int]:
    """The integrity flags ``classify`` put in each verdict file (an unfinished record is flagged from the record
    itself when its verdicts predate them), each once; and how many are failures of a record."""
    from harness.records.integrity import FAILING_FLAGS

    flags: list[str] = []
    failures = 0
    for backend, record in records.items():
        integrity = (verdict_files.get(backend) or {}).get("integrity")
        if integrity is None:
            if not record.get("finished"):
                flags.append(f"unfinished: {backend}.json is unfinished: the run never finished (no 'finished' time), "
                             f"it holds {len(record.get('cases', []))} cases")
            continue
        for flag in integrity.get("flags", []):
            line = f"{flag['kind'].replace('_', ' ')}: {flag['message']}"
            if line not in flags:
                flags.append(line)
                failures += flag["kind"] in FAILING_FLAGS
    return tuple(flags), failures


def _warnings(records: dict[str, dict[str, Any]], verdict_files: dict[str, dict[str, Any] | None],
              environments: list[Environment], faults: Faults | None) -> tuple[str, ...]:
    warnings = []
    for backend, record in records.items():
        if record.get("fault"):
            warnings.append(f"{backend}: the run record was made with fault {record['fault']!r} injected; its numbers are not the library's.")
        if verdict_files.get(backend) is None:
            warnings.append(f"{backend}: no {backend}.verdicts.json: the cases are shown with their measured status, unclassified (no known divergence applied).")
    for env in environments:
        if env.kind == "run" and env.verdicts is not None and not env.verdicts.matches_run:
            warnings.append(
                f"{env.backend}: the verdicts classify the run started {env.verdicts.run_started}, but the run record "
                f"beside them started {env.started}: re-run the classification."
            )
    hashes = {env.verdicts.sha256 for env in environments if env.verdicts is not None}
    if len(hashes) > 1:
        warnings.append("the backends were classified against different divergence files (see the hashes under Environment).")
    if faults is not None:
        for entry in faults.detection:
            missed = [row.name for row in faults.rows if row.cells.get(entry.backend, FaultCell("not run", 0, 0, None)).status == "undetected"]
            if missed:
                warnings.append(f"{entry.backend}: fault{'s' if len(missed) > 1 else ''} not detected by the tolerances at {entry.precision}: {', '.join(missed)}.")
            if entry.false_alarms:
                warnings.append(f"{entry.backend}: unmodified runs of the fault study did not pass: {', '.join(entry.false_alarms)}.")
            if entry.blind_sweeps:
                warnings.append(f"{entry.backend}: the fault study's sweep detected no perturbation: {'; '.join(entry.blind_sweeps)}.")
    return tuple(warnings)


def _why(report_backends: tuple[str, ...], records: dict[str, dict[str, Any]], probes: dict[str, dict[str, Any]],
         api: tuple[ApiSummary, ...], results: dict[str, dict[str, CaseResult]], float32_atol: float | None) -> Why:
    probe_backends = tuple(sorted(probes))
    backends = tuple(sorted(set(report_backends) | set(probe_backends)))
    devices = {b: str((records.get(b) or probes.get(b) or {}).get("device") or "?") for b in backends}
    keras = tuple(sorted({str((r.get("versions") or {}).get("keras")) for r in (*records.values(), *probes.values()) if (r.get("versions") or {}).get("keras")}))
    names = list(dict.fromkeys(n for data in probes.values() for n in (data.get("probes") or {}) if n != "seeded_initial_weights"))
    rows = []
    for name in names:
        cells = {}
        for backend in probe_backends:
            entry = (probes[backend].get("probes") or {}).get(name)
            if entry is None:
                cells[backend] = ProbeCell(False, None, False, None)
            else:
                cells[backend] = ProbeCell(True, _number(entry.get("max_abs_diff")), bool(entry.get("bitwise_equal")),
                                           str(entry["error"]) if entry.get("error") else None)
        ran = [c for c in cells.values() if c.ran and c.error is None]
        if not ran:
            outcome = "error" if any(c.error for c in cells.values()) else "not run"
        elif all(c.bitwise for c in ran):
            outcome = "bitwise"
        elif float32_atol is not None and all(c.max_abs_diff is not None and c.max_abs_diff <= float32_atol for c in ran):
            outcome = "rounding"
        else:
            outcome = "differs"
        rows.append(ProbeRow(name, cells, outcome))
    weights = {
        backend: ((data.get("probes") or {}).get("seeded_initial_weights") or {}).get("weights")
        for backend, data in probes.items()
    }
    weights = {b: w for b, w in weights.items() if w}
    seed_pairs = []
    for first, second in itertools.combinations(sorted(weights), 2):
        differences = [
            max((abs(x - y) for x, y in zip(a, b)), default=0.0)
            for a, b in zip(weights[first], weights[second])
        ]
        seed_pairs.append((first, second, max(differences, default=0.0)))
    if not any(s.cases for s in api):
        outcome = "none"
    elif all(s.bitwise == s.cases for s in api):
        outcome = "bitwise"
    elif all(s.within == s.cases for s in api):
        outcome = "within"
    else:
        outcome = "outside"
    stateful = {}
    for backend, per_case in results.items():
        cases = [r for r in per_case.values() if r.stateful and r.api_agreement]
        stateful[backend] = (len(cases), sum(all(row.bitwise_equal for row in r.api_agreement) for r in cases))
    return Why(backends, devices, keras, api, outcome, tuple(rows), probe_backends, float32_atol, tuple(seed_pairs), stateful)


def build_report(folder: Path) -> Report:
    """Read every record in ``folder`` once and build the model every report renders.

    RecordError (one line) when the run records or verdict files cannot be used; unreadable side
    records are left out and named in ``Report.notes``."""
    folder = Path(folder)
    records = load_run_records(folder)
    backends = tuple(records)
    notes: list[str] = []
    verdict_files = {backend: _load_verdicts(folder, backend) for backend in backends}
    results: dict[str, dict[str, CaseResult]] = {}
    for backend, record in records.items():
        verdicts = (verdict_files[backend] or {}).get("cases") or {}
        results[backend] = {}
        for raw in record["cases"]:
            results[backend][str(raw["case"])] = _case_result(backend, raw, verdicts.get(raw["case"]))
    cross = _cross_backend(folder, results, notes)
    side = {kind: _load_side_records(folder, kind, notes) for kind in SIDE_SCHEMAS}
    faults = _faults(side["faults"])
    environments = [_environment("run", record, verdict_files[backend]) for backend, record in records.items()]
    environments += [_environment(kind, data) for kind, studies in side.items() for data in studies.values()]
    tolerances, tolerance_differences = _tolerances(records)
    float32_atol = next((row.atol for row in tolerances if row.dtype == "float32" and row.quantity == "outputs"), None)
    api_summaries = _api_summaries(results)
    claims = _claims({b: v for b, v in verdict_files.items() if v is not None}, results, cross)
    claim_study = claim_study_summary(folder, notes)
    if claim_study is not None:
        studied = {row.claim: row for row in claim_study.rows}
        claims = tuple(replace(claim, study=studied.get(claim.id)) for claim in claims)
    passing = [r for per_case in results.values() for r in per_case.values() if r.verdict == "pass" and r.judged.ratio is not None]
    passing.sort(key=lambda r: (-r.judged.key, r.case, r.backend))
    resolved = tuple(
        ResolvedCandidate(claim.id, backend, cases)
        for claim in claims for backend, cases in claim.possibly_resolved.items()
    )
    between_versions = load_between_versions(folder, notes)
    other_between_versions = load_other_comparisons(folder, notes)
    record_flags, record_failures = _record_flags(records, verdict_files)
    return Report(
        folder=str(folder.name or folder),
        backends=backends,
        summaries=_summaries(records, results, {b: verdict_files[b] is not None for b in backends}),
        coverage=_coverage(results),
        kind_rows=_kind_rows(backends, results),
        results=results,
        failures=_failures(results, cross),
        claims=claims,
        possibly_resolved=resolved,
        closest_calls=tuple(passing[:CLOSEST_CALLS]),
        case_rows=_case_rows(backends, results),
        api_rows=_api_rows(backends, results),
        api_summaries=api_summaries,
        cross=cross,
        serialization=_serialization(side["serialization"]),
        growth=_growth(side["growth"]),
        faults=faults,
        tolerances=tolerances,
        tolerance_differences=tolerance_differences,
        environments=tuple(environments),
        warnings=_warnings(records, verdict_files, environments, faults),
        record_flags=record_flags,
        record_failures=record_failures,
        notes=tuple(notes),
        why=_why(backends, records, side["probes"], api_summaries, results, float32_atol),
        kernels=_kernel_summaries(records, results),
        kernel_rows=_kernel_rows(backends, results),
        fused_on_cpu=_fused_on_cpu(results),
        between_versions=between_versions,
        other_between_versions=other_between_versions,
        gradients=gradients_and_training(folder, notes),
        training_mode=training_mode_summary(folder, notes),
        claim_study=claim_study,
    )


def ran_fused(path: str) -> bool:
    """Whether a build's kernel path (paths joined by ", ", steps by "->") ended in a fused kernel somewhere."""
    return any(segment.split("->")[-1].removesuffix(" (raised)") in FUSED_STEPS for segment in path.split(", "))


def _kernel_summaries(records: dict[str, dict[str, Any]], results: dict[str, dict[str, CaseResult]]) -> tuple[KernelSummary, ...]:
    summaries = []
    for backend, per_case in results.items():
        counts: dict[str, int] = {}
        raised = unrecorded = 0
        fused, failed = [], []
        for result in per_case.values():
            recorded = dict(result.kernel_paths)
            unrecorded += sum(1 for api in result.apis if api not in recorded)
            for api, path in result.kernel_paths:
                if path.endswith(" (raised)"):
                    raised += 1
                counts[path] = counts.get(path, 0) + 1
            if any(ran_fused(path) for _, path in result.kernel_paths):
                fused.append(result.case)
            if any("fused_failed" in path for _, path in result.kernel_paths):
                failed.append(result.case)
        if not counts:
            continue
        settings = records[backend].get("settings") or {}
        summaries.append(KernelSummary(
            backend=backend, precision_mode=str(settings.get("precision_mode") or "not recorded"),
            builds=sum(counts.values()), unrecorded=unrecorded, raised=raised,
            paths=tuple(sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))),
            fused_cases=tuple(fused), failed_cases=tuple(failed),
        ))
    return tuple(summaries)


def _without_kernel(definition: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in definition.items() if key not in ("name", "kernel")}


def _fused_on_cpu(results: dict[str, dict[str, CaseResult]]) -> tuple[FusedOnCpu, ...]:
    summaries = []
    for backend, per_case in results.items():
        fused = [r for r in per_case.values() if r.config.get("kernel") == "fused_on_cpu"]
        if not fused:
            continue
        shipped = {json.dumps(_without_kernel(r.definition), sort_keys=True): r for r in per_case.values()
                   if r.config.get("kernel", "as_shipped") == "as_shipped"}
        verdicts: dict[str, int] = {}
        not_passing, fused_errors, twin_errors = [], [], []
        for result in fused:
            verdicts[result.verdict] = verdicts.get(result.verdict, 0) + 1
            if result.verdict != "pass":
                not_passing.append((result.case, result.verdict, ", ".join(result.explained_by) or "unexplained"))
                continue
            twin = shipped.get(json.dumps(_without_kernel(result.definition), sort_keys=True))
            if twin is not None and twin.verdict == "pass" and result.max_abs_error is not None and twin.max_abs_error is not None:
                fused_errors.append(result.max_abs_error)
                twin_errors.append(twin.max_abs_error)
        summaries.append(FusedOnCpu(
            backend=backend, cases=len(fused), verdicts=tuple(sorted(verdicts.items())),
            ran_fused=sum(1 for r in fused if r.stand_in_calls > 0 and all(ran_fused(path) for _, path in r.kernel_paths)),
            reached_kernel=sum(1 for r in fused if r.stand_in_calls > 0),
            never_reached=sum(1 for r in fused if r.stand_in_calls == 0),
            not_passing=tuple(not_passing),
            worst_fused=max(fused_errors, key=sort_key) if fused_errors else None,
            worst_twin=max(twin_errors, key=sort_key) if twin_errors else None,
        ))
    return tuple(summaries)


def _kernel_cell(result: CaseResult | None) -> str:
    if result is None:
        return "not run"
    if not result.kernel_paths:
        return "not recorded"
    distinct = list(dict.fromkeys(path for _, path in result.kernel_paths))
    if len(distinct) == 1:
        return distinct[0]
    return "; ".join(f"{api}: {path}" for api, path in result.kernel_paths)


def _kernel_rows(backends: tuple[str, ...], results: dict[str, dict[str, CaseResult]]) -> tuple[KernelRow, ...]:
    names = list(dict.fromkeys(name for per_case in results.values() for name in per_case))
    rows = []
    for name in names:
        cells = {backend: results[backend].get(name) for backend in backends}
        if any(cell is not None and cell.kernel_paths for cell in cells.values()):
            rows.append(KernelRow(name, {backend: _kernel_cell(cell) for backend, cell in cells.items()}))
    return tuple(rows)


# ------------------------------------------------------------------------------------------ formatting


def format_names(cases: tuple[str, ...], shown: int = 8) -> str:
    """Case names, or their count and the first few when there are many."""
    if not cases:
        return "none"
    if len(cases) <= shown:
        return ", ".join(cases)
    return f"{len(cases)} cases: " + ", ".join(cases[:shown]) + ", ..."


def format_number(value: float | None, digits: int = 2) -> str:
    """Scientific notation; 'NaN' / 'inf' for non-finite values; 'n/a' only when there is no number."""
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}e}"


def format_tolerance(value: float | None) -> str:
    """A tolerance exactly as written in the table (1.5e-03 stays 1.5e-03; never rounded)."""
    return "n/a" if value is None else f"{value:g}"


def format_short(value: float | None) -> str:
    """Two significant digits, '0 (bitwise equal)' for an exact zero."""
    if value is None:
        return "n/a"
    if not math.isfinite(value):
        return format_number(value)
    return "0 (bitwise equal)" if value == 0 else f"{value:.2g}"


def format_ratio(judged: Judged) -> str:
    """The ratio to the tolerance: '0.034', '2.1e+03', 'non-finite (NaN)', or 'n/a' when nothing was measured."""
    ratio = judged.ratio
    if ratio is None:
        return "n/a"
    if not math.isfinite(ratio):
        if judged.nonfinite:
            return f"non-finite ({format_number(ratio)})"
        return "inf (bound 0)" if ratio > 0 else format_number(ratio)
    if ratio == 0:
        return "0"
    if ratio < 1e-3 or ratio >= 1e5:
        return f"{ratio:.1e}"
    return f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.2g}"


def format_judged(judged: Judged) -> str:
    """'ratio 0.034 (abs 3.1e-08)': the ratio first, the absolute error beside it."""
    if judged.ratio is None and judged.abs_error is None:
        return "n/a"
    return f"{format_ratio(judged)} (abs {format_number(judged.abs_error, 1)})"


def format_seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} s"


def format_case(result: CaseResult | None) -> str:
    """A case on one backend in a table cell: its verdict, then the ratio and absolute error or what it raised."""
    if result is None:
        return "not run"
    if result.error is not None and not result.items:
        return f"{result.verdict}: {result.error.type}"
    if not result.items:
        return result.verdict
    return f"{result.verdict} {format_judged(result.judged)}"


def format_agreement(judged: Judged, bitwise: bool) -> str:
    """An API (or backend) comparison: 'bitwise equal', or the ratio to its bound and the difference."""
    if bitwise:
        return "bitwise equal"
    return format_judged(judged)


# ------------------------------------------------------------------------------------------ gradients and training


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
                     tuple(float(value) for value in check.get("bound") or ()), _number(check.get("worst_ratio")),
                     None if not check else bool(check.get("passed")), _number(scaling.get("scale")) if scaling.get("active") else None,
                     error.get("summary") if isinstance(error, dict) else None, check.get("rule"),
                     str(entry["known"].get("reason", "")).strip() or "known" if isinstance(entry.get("known"), dict) else None)


def _gradient_row(backend: str, raw: dict[str, Any]) -> GradientRow:
    worst, where = Judged(None, None), ""
    for api, entry in raw.get("apis", {}).items():
        for key, item in entry.get("items", {}).items():
            judged = Judged(_number(item.get("tolerance_ratio")), _number(item.get("max_abs_error")))
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
    gradients = {path.name.split(".")[0]: _load_optional(path, "keras-parity/gradients", notes) for path in sorted(folder.glob("*.gradients.json"))}
    training = {path.name.split(".")[0]: _load_optional(path, "keras-parity/training", notes) for path in sorted(folder.glob("*.training.json"))}
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
            ratios = [_number(item.get("tolerance_ratio")) for item in (pair.get("items") or {}).values() if isinstance(item, dict)]
            ratios = [ratio for ratio in ratios if ratio is not None]
            shares = [float(v) for k, v in (pair.get("items") or {}).items() if k.endswith(":branch_a_share") and v is not None]
            shares = [min(share, 1 - share) for share in shares]
            pairs.append((backend, str(pair["shared"]), str(pair["separate"]), bool(pair.get("passed")), max(ratios) if ratios else None,
                          min(shares) if shares else None))
    cross = _load_optional(folder / "gradients_cross_backend.json", "keras-parity/gradients-cross-backend", notes) \
        if (folder / "gradients_cross_backend.json").exists() else None
    runs = []
    long_runs = []
    drift: list[DriftLine] = []
    for backend, data in training.items():
        for entry in data.get("runs", []):
            ratios = [(_number(item.get("tolerance_ratio")), _number(item.get("max_abs_error"))) for item in entry.get("items", {}).values()]
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


# ------------------------------------------------------------------------------------------ training mode (dropout)


@dataclass(frozen=True)
class TrainingModeRow:
    """One training-mode case on one backend (harness/studies/training_mode.py)."""

    backend: str
    case: str
    verdict: str  # pass, known, fail, error
    worst_ratio: float  # the largest tolerance ratio over its compared quantities (nan when none ran)
    detail: str  # the known claim and its reproducer, or the first problem / error


@dataclass(frozen=True)
class TrainingMode:
    backends: tuple[str, ...]
    rows: tuple[TrainingModeRow, ...]
    faults: tuple[tuple[str, str], ...]  # (backend, fault) of records made with a fault injected, listed apart


def training_mode_summary(folder: Path, notes: list[str]) -> TrainingMode | None:
    """The training-mode records of ``folder`` (None when the study did not run)."""
    records = {path.name.split(".")[0]: _load_optional(path, "keras-parity/training-mode", notes)
               for path in sorted(folder.glob("*.training_mode.json"))}
    records = {backend: data for backend, data in records.items() if data is not None}
    if not records:
        return None
    faults = tuple((backend, str(data["fault"])) for backend, data in records.items() if data.get("fault"))
    rows = []
    for backend, data in records.items():
        if data.get("fault"):
            continue
        for entry in data.get("cases", []):
            ratios = [float(item["tolerance_ratio"]) for item in entry.get("items", {}).values()]
            errors = [f"{name}: {stage['error']['summary']}" for name, stage in entry.get("stages", {}).items() if stage.get("error")]
            if entry.get("known"):
                detail = f"{entry['known']['id']} ({entry['known']['reproducer']})"
            else:
                detail = (errors + list(entry.get("problems", [])) + [""])[0][:200]
            rows.append(TrainingModeRow(backend, entry["case"], entry["verdict"], max(ratios, default=float("nan")), detail))
    return TrainingMode(backends=tuple(sorted(records)), rows=tuple(rows), faults=faults)


@dataclass(frozen=True)
class ClaimStudyRow:
    """One known-divergence claim under injected faults (harness/studies/claim_study.py)."""

    claim: str
    kind: str
    backends: tuple[str, ...]
    cases: int  # (case, backend) results the claim explains
    faults_tried: int
    faults_absorbed: int  # faulted results the claim still explained
    largest_explained_error: float | None  # the largest error of a recorded result it explains (None: crashes only)
    largest_absorbed_error: float | None  # it absorbs no fault larger than this (output error the fault added)
    ratio: float | None  # largest_absorbed_error / largest_explained_error
    passed: bool
    reasons: tuple[str, ...]
    gradient_cases: int = 0  # gradient results it explains (DIR/<backend>.gradients.json)
    largest_absorbed_gradient_scale: float | None = None  # it absorbs no kernel gradient scaled by more than 1 + this
    largest_absorbed_gradient_error: float | None = None  # the gradient error that scaling adds
    largest_explained_gradient_error: float | None = None
    not_explained_now: tuple[str, ...] = ()  # "case@backend: reason" for records it explained that it no longer explains

    def bound_line(self) -> str:
        """What the claim absorbs, in words: the largest fault (and kernel-gradient scaling) it absorbs, or why none."""
        parts = []
        if self.cases:
            if self.largest_absorbed_error is not None:
                parts.append(f"absorbs no fault larger than {format_number(self.largest_absorbed_error)} in its outputs "
                             f"({format_number(self.ratio)}x the largest error it explains, {format_number(self.largest_explained_error)})")
            else:
                parts.append(f"absorbs no injected fault on its {self.cases} case{'s' if self.cases != 1 else ''}")
        if self.gradient_cases:
            if self.largest_absorbed_gradient_scale is not None:
                parts.append(f"absorbs no kernel gradient scaled by more than 1 + {format_number(self.largest_absorbed_gradient_scale)} "
                             f"(adding {format_number(self.largest_absorbed_gradient_error)}; the largest gradient error it explains is "
                             f"{format_number(self.largest_explained_gradient_error)}) and no zeroed kernel gradient")
            else:
                parts.append("absorbs no injected gradient fault")
        if not parts:
            parts.append("explains none of its recorded cases now, so nothing was injected")
        return "; ".join(parts) + ("" if self.passed else ": TOO LOOSE (" + "; ".join(self.reasons) + ")")


@dataclass(frozen=True)
class ClaimStudy:
    factor: float  # a claim fails when it absorbs a fault more than this many times the error it explains
    passed: bool
    rows: tuple[ClaimStudyRow, ...]


def claim_study_summary(folder: Path, notes: list[str]) -> ClaimStudy | None:
    """``folder/claims.json`` (None when the claim study did not run)."""
    path = folder / "claims.json"
    if not path.exists():
        return None
    data = _load_optional(path, SCHEMAS["claims"][0], notes)
    if data is None:
        return None
    rows = tuple(
        ClaimStudyRow(claim=str(entry["claim"]), kind=str(entry["kind"]), backends=tuple(entry["backends"]), cases=int(entry["cases"]),
                      faults_tried=int(entry["faults_tried"]), faults_absorbed=int(entry["faults_absorbed"]),
                      largest_explained_error=_number(entry.get("largest_explained_error")),
                      largest_absorbed_error=_number(entry.get("largest_absorbed_error")), ratio=_number(entry.get("ratio")),
                      passed=bool(entry["passed"]), reasons=tuple(entry.get("reasons", ())),
                      gradient_cases=int(entry.get("gradient_cases") or 0),
                      largest_absorbed_gradient_scale=_number(entry.get("largest_absorbed_gradient_scale")),
                      largest_absorbed_gradient_error=_number(entry.get("largest_absorbed_gradient_error")),
                      largest_explained_gradient_error=_number(entry.get("largest_explained_gradient_error")),
                      not_explained_now=tuple(f"{line.get('case')}@{line.get('backend')} ({line.get('study')}, now "
                                              f"{line.get('verdict')}): {line.get('reason')}"
                                              for line in entry.get("not_explained_now") or ()))
        for entry in data.get("claims", [])
    )
    return ClaimStudy(factor=float(data["factor"]), passed=bool(data["passed"]), rows=rows)
