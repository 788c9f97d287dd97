"""One case on one backend, read from its run record entry and its verdict: ``CaseResult`` and its parts.

The one report module that parses case definitions (``case_kinds``: the cell kinds of a case's layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.case.schema import CaseError, parse_case
from harness.reports.judged import NOT_MEASURED, Judged, read_number, sort_key, worst_judged


VERDICTS = ("pass", "known", "refused", "fail", "error", "timeout", "invalid")
ATTENTION_VERDICTS = ("fail", "error", "timeout", "invalid")
UNMEASURED = ("error", "refused", "timeout", "invalid")


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


def read_item(api: str, output: str, raw: dict[str, Any]) -> Item:
    ratio, error = read_number(raw.get("tolerance_ratio")), read_number(raw.get("max_abs_error"))
    nonfinite_actual = raw.get("nonfinite_actual")
    nonfinite = bool(nonfinite_actual) or any(v is not None and not math.isfinite(v) for v in (ratio, error))
    return Item(
        api=api, output=output, passed=bool(raw.get("passed")), judged=Judged(ratio, error, nonfinite),
        max_rel_error=read_number(raw.get("max_rel_error")), max_ulp=read_number(raw.get("max_ulp")),
        mismatched=raw.get("mismatched"), total=raw.get("total"), mismatch_percent=read_number(raw.get("mismatch_percent")),
        nonfinite_actual=nonfinite_actual, worst_index=_index(raw.get("worst_index")),
        worst_actual=read_number(raw.get("worst_actual")), worst_expected=read_number(raw.get("worst_expected")),
        rtol=read_number(raw.get("rtol")), atol=read_number(raw.get("atol")), dtype=raw.get("dtype"),
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
    difference, bound = read_number(raw.get("max_abs_diff")), read_number(raw.get("bound"))
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


def read_case_result(backend: str, raw: dict[str, Any], verdict: dict[str, Any] | None) -> CaseResult:
    items = tuple(
        read_item(api, output, item)
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
        duration_s=read_number(raw.get("duration_s")),
        explained_by=tuple(verdict.get("explained_by") or ()), applicable=tuple(verdict.get("applicable") or ()),
        unexplained=tuple(str(u) for u in verdict.get("unexplained") or ()),
        possibly_resolved=tuple(verdict.get("possibly_resolved") or ()),
        judged=worst.judged if worst else NOT_MEASURED, worst=worst,
        api_judged=worst_judged(row.judged for row in agreement),
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


def case_kinds(definition: dict[str, Any]) -> str:
    """The cell kinds of a case's recurrent layers, sorted and joined by "+" (the case stage's kind table says what
    each layer wraps); "?" when the definition no longer parses."""
    try:
        case = parse_case(definition, "record")
    except CaseError:
        return "?"
    names = {layer.kind.cell_kind(layer).name for layer in case.layers if layer.kind.recurrent}
    return "+".join(sorted(names)) or "?"
