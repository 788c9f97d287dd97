"""Known divergences as checkable claims, kept in a data file (``divergences.toml``).

An entry says *when* it applies, as conditions on a case's configuration (never on its name), on the
backend, and on the package versions it was observed with; and *what* is observed, precisely enough
to check:

- ``kind = "semantics"``: the backend computes a named alternative (``semantics``, a table of
  ``harness.truth.expected.Semantics`` fields); the case is known only when every output of every
  API agrees with that alternative, computed by the reference, within tolerance; with ``ulps`` (optional,
  for an alternative that models a float32 matmul: dense_matmul_in_float32) each element may also differ from
  it by that many float32 ulps of the matmul's scale (harness.truth.expected.float32_matmul_scales), the
  summation order the backend's float32 kernel adds in, which the alternative (rounded once) does not pin down;
- ``kind = "crash"``: the innermost exception has type ``exception`` and its whole message matches the
  regular expression ``message`` (a full match, as if between ^ and $); with ``raised_in`` (optional) the
  innermost traceback frame is in that source file, as records give it (e.g.
  "keras/src/backend/torch/rnn.py"); the builds that ran before the one that raised must pass;
- ``kind = "bound"``: only the outputs named in ``outputs`` mismatch, each by at most ``max_abs_error``;
- ``kind = "acceptance"``: the backends the claim names RUN a configuration that Keras refuses on the other
  backends, which raise ``exception`` with a message matching ``message`` (a full match). It explains no
  numbers (the run is judged against the reference as any case is) and no crash: it explains a difference in
  what the backends accept, judged across backends (``harness.verdicts.acceptance``). On a backend it names,
  a refusal of the case is a sign that it no longer holds (possibly resolved).

This module only reads the file and decides whether an entry applies to a case; checking the claim
against measurements is the verdicts stage's job. Nothing here imports Keras.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from harness.case.kinds import recurrent_fact_options
from harness.case.schema import Case
from harness.case.semantics import Semantics
from harness.case.toml_file import read_toml

DIVERGENCES_FILE = Path(__file__).with_name("divergences.toml")
KINDS = ("semantics", "crash", "bound", "acceptance")
BACKENDS = ("tensorflow", "jax", "torch")
_FIELDS = {"id", "backends", "versions", "when", "kind", "semantics", "exception", "message", "raised_in", "outputs",
           "max_abs_error", "api_max_abs_diff", "ulps", "change", "observed", "reference", "upstream", "reproducer"}
# What a claim's difference is: a bug (the default), or a definition the Keras version chose (Keras 2's
# hard_sigmoid): a version that moves to the documented behaviour then reads as changed, not fixed.
CHANGES = ("bug", "definition")
_REQUIRED = {"id", "backends", "versions", "when", "kind", "observed", "reference", "upstream", "reproducer"}
_KIND_FIELDS = {"semantics": {"semantics"}, "crash": {"exception", "message"}, "bound": {"outputs", "max_abs_error"},
                "acceptance": {"exception", "message"}}
# A bound may also let the builds of one case differ from each other by at most api_max_abs_diff
# (e.g. when two APIs take different kernels); without it, builds that disagree stay unexplained.
# A crash may name the source file its exception is raised in (raised_in), so that a generic message (an
# AttributeError any code could raise) is explained only where the claim says it comes from.
_KIND_OPTIONAL = {"bound": {"api_max_abs_diff"}, "crash": {"raised_in"}, "semantics": {"ulps"}, "acceptance": {"raised_in"}}
_RAISED_IN = re.compile(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*\.py")

# Case-level facts a condition can name; the options of recurrent layers are facts too.
# layer: the types in the stack (bidirectional, dense, ...); cell: the recurrent kinds that compute (lstm, gru,
# simple_rnn), a wrapper counting as the kind it wraps.
_CASE_FACTS = ("dtype", "compute_dtype", "mask", "mask_source", "initial_state", "entry_point", "jit_compile",
               "stateful", "layer", "cell", "kernel", "layer_form")
_LAYER_FACTS = recurrent_fact_options()
# Where the run was measured: "cpu" or "gpu" (from the record's device class; see device_kind). Not a case
# fact: the same case runs on either, and on a GPU an as-shipped case may take the fused (cuDNN) kernel.
_RUN_FACTS = ("device",)
DEVICE_KINDS = ("cpu", "gpu")
FACTS = _CASE_FACTS + _LAYER_FACTS + _RUN_FACTS


def device_kind(device_class: str) -> str:
    """The ``device`` fact of a run from its record's device class (cpu, gpu_tf32, gpu_highest)."""
    return "cpu" if device_class == "cpu" else "gpu"


class DivergenceFileError(ValueError):
    """The divergence file is malformed; the message names the entry, the field and what is accepted."""


def case_facts(case: Case) -> dict[str, set[Any]]:
    """What conditions can test, each as the set of values the case has.

    A layer option holds the values of every recurrent layer in the stack (a condition on it holds
    when any layer satisfies it). Effective values are used: a Bidirectional reads backwards in its
    backward layer (``go_backwards`` holds true and false) and forces ``zero_output_for_mask`` to its
    ``return_sequences``; a ``branches`` layer contributes its inner LSTM."""
    facts: dict[str, set[Any]] = {
        "dtype": {case.dtype},
        "compute_dtype": {case.compute_dtype},
        "mask": {case.mask},
        "mask_source": {case.mask_source if case.mask != "none" else "none"},
        "initial_state": {case.initial_state},
        "entry_point": {case.entry_point},
        "jit_compile": {case.jit_compile},
        "stateful": {case.stateful},
        "layer": {layer.type for layer in case.layers},
        "cell": {layer.kind.cell_kind(layer).name for layer in case.layers if layer.kind.recurrent},
        "kernel": {case.kernel},
        "layer_form": {case.layer_form},
    }
    for name in _LAYER_FACTS:
        facts[name] = set()
    for layer in case.layers:
        if not layer.kind.recurrent:
            continue
        for options in layer.kind.copy_options(layer):
            for name in _LAYER_FACTS:
                if name in options:
                    facts[name].add(options[name])
    return facts


@dataclass(frozen=True)
class Condition:
    """``fact`` holds one of ``values`` (or, with ``negated``, a value outside them)."""

    fact: str
    values: tuple[Any, ...]
    negated: bool = False

    def holds(self, facts: dict[str, set[Any]]) -> bool:
        present = facts.get(self.fact, set())
        if self.negated:
            return any(value not in self.values for value in present)
        return any(_same(value, accepted) for value in present for accepted in self.values)

    def describe(self) -> str:
        shown = ", ".join(repr(v).lower() if isinstance(v, bool) else repr(v) for v in self.values)
        operator = "not in" if self.negated else "in"
        return f"{self.fact} {operator} [{shown}]" if len(self.values) > 1 else f"{self.fact} {'!=' if self.negated else '=='} {shown}"


def _same(value: Any, accepted: Any) -> bool:
    """Equality that keeps True apart from 1 (TOML booleans against integer options)."""
    return type(value) is type(accepted) and value == accepted if isinstance(value, bool) or isinstance(accepted, bool) else value == accepted


@dataclass(frozen=True)
class Divergence:
    id: str
    backends: tuple[str, ...]
    versions: dict[str, str | list[str]]  # package -> a range, or a list of ranges (any of them)
    conditions: tuple[Condition, ...]  # all must hold ...
    kind: str
    observed: str
    reference: str
    upstream: str
    reproducer: str
    semantics: Semantics = Semantics()
    exception: str = ""
    message: str = ""  # matched against the whole message (re.fullmatch)
    raised_in: str = ""  # the source file of the innermost traceback frame; "" when the claim does not say
    outputs: tuple[str, ...] = ()
    max_abs_error: float = 0.0
    api_max_abs_diff: float | None = None
    ulps: float = 0.0  # semantics: float32 ulps of the matmul scale each element may differ from the alternative by
    change: str = "bug"
    # ... or, when ``when`` is a list of tables, all of any one of these (conditions is the first)
    alternatives: tuple[tuple[Condition, ...], ...] = ()

    def applies_to(self, case: Case, backend: str, versions: dict[str, str], device: str = "cpu") -> bool:
        """Whether this entry describes ``case`` on ``backend`` at the given package versions, measured on
        ``device`` ("cpu" or "gpu", see device_kind)."""
        if backend not in self.backends or not self.versions_match(versions):
            return False
        if device not in DEVICE_KINDS:
            raise ValueError(f"unknown device {device!r}; accepted: {', '.join(DEVICE_KINDS)}")
        facts = {**case_facts(case), "device": {device}}
        return any(all(condition.holds(facts) for condition in conditions) for conditions in self.alternatives or (self.conditions,))

    def versions_match(self, versions: dict[str, str]) -> bool:
        """Every package range the entry names holds for the recorded versions (a package the record
        does not list, such as another backend, is not constrained)."""
        for package, specifier in self.versions.items():
            if package not in versions:
                continue
            ranges = [specifier] if isinstance(specifier, str) else specifier
            if not any(SpecifierSet(one).contains(_release(versions[package]), prereleases=True) for one in ranges):
                return False
        return True

    def when(self) -> str:
        """The conditions in words, for reports."""
        parts = [" or ".join("(" + ", ".join(condition.describe() for condition in conditions) + ")"
                             for conditions in self.alternatives)] if len(self.alternatives) > 1 else \
            [condition.describe() for condition in self.conditions]
        parts.append("backend in [" + ", ".join(self.backends) + "]")
        parts += [f"{package} {specifier if isinstance(specifier, str) else ' or '.join(specifier)}"
                  for package, specifier in self.versions.items()]
        return "; ".join(parts)


def _release(version: str) -> Version:
    """A comparable version: '2.13.0+cpu' compares as 2.13.0, nightly '3.16.0.dev2026...' as a pre-release."""
    try:
        return Version(version.split("+")[0])
    except InvalidVersion:
        return Version("0")


def _parse_condition(fact: str, raw: Any, where: str) -> Condition:
    if fact not in FACTS:
        raise DivergenceFileError(f"{where}: condition on {fact!r}, which is not a case fact; accepted: {', '.join(FACTS)}")
    negated = False
    if isinstance(raw, dict):
        if set(raw) != {"not"}:
            raise DivergenceFileError(f"{where}: condition on {fact!r} is a table; the only accepted form is {{ not = VALUE or [VALUES] }}")
        raw, negated = raw["not"], True
    values = tuple(raw) if isinstance(raw, list) else (raw,)
    if not values:
        raise DivergenceFileError(f"{where}: condition on {fact!r} lists no value")
    return Condition(fact=fact, values=values, negated=negated)


def parse_conditions(when: Any, where: str) -> tuple[Condition, ...]:
    """A ``when`` table ({fact = value, fact = [values], fact = { not = value }}) as conditions."""
    if not isinstance(when, dict) or not when:
        raise DivergenceFileError(f"{where}: when must be a non-empty table of conditions, e.g. {{ unroll = true }}")
    return tuple(_parse_condition(fact, raw, where) for fact, raw in when.items())


def _parse_entry(entry: dict[str, Any], index: int, path: Path) -> Divergence:
    where = f"{path.name}: divergence {index} ({entry.get('id', '?')})"
    missing = _REQUIRED - set(entry)
    unknown = set(entry) - _FIELDS
    if missing or unknown:
        problem = f"lacks {', '.join(sorted(missing))}" if missing else f"has unknown field {', '.join(sorted(unknown))}"
        raise DivergenceFileError(f"{where} {problem}; fields: {', '.join(sorted(_FIELDS))}")
    kind = entry["kind"]
    if kind not in KINDS:
        raise DivergenceFileError(f"{where}: kind is {kind!r}; accepted: {', '.join(KINDS)}")
    needed = _KIND_FIELDS[kind]
    if needed - set(entry):
        raise DivergenceFileError(f"{where}: a {kind} claim needs {', '.join(sorted(needed))}")
    stray = (set().union(*_KIND_FIELDS.values(), *_KIND_OPTIONAL.values()) - needed - _KIND_OPTIONAL.get(kind, set())) & set(entry)
    if stray:
        raise DivergenceFileError(f"{where}: {', '.join(sorted(stray))} does not belong to a {kind} claim")
    backends = tuple(entry["backends"])
    if not backends or set(backends) - set(BACKENDS):
        raise DivergenceFileError(f"{where}: backends is {list(backends)!r}; accepted: a non-empty list from {', '.join(BACKENDS)}")
    versions = dict(entry["versions"])
    if "keras" not in versions:
        raise DivergenceFileError(f"{where}: versions must give the keras range the divergence was observed on")
    for package, specifier in versions.items():
        try:
            for one in (specifier if isinstance(specifier, list) and specifier else [specifier]):
                SpecifierSet(one)
        except (InvalidSpecifier, TypeError):
            raise DivergenceFileError(f"{where}: versions.{package} is {specifier!r}; expected a range like '>=3.0,<=3.15.1'") from None
    try:
        semantics = Semantics.from_table(dict(entry.get("semantics", {})))
    except (TypeError, ValueError) as error:
        raise DivergenceFileError(f"{where}: semantics: {error}") from None
    if entry.get("change", "bug") not in CHANGES:
        raise DivergenceFileError(f"{where}: change is {entry['change']!r}; accepted: {', '.join(CHANGES)}")
    if kind in ("crash", "acceptance"):
        if not isinstance(entry["message"], str) or not entry["message"]:
            raise DivergenceFileError(f"{where}: message must be a non-empty regular expression that matches the whole message")
        try:
            re.compile(entry["message"])
        except re.error as error:
            raise DivergenceFileError(f"{where}: message is not a valid regular expression ({error})") from None
        raised_in = entry.get("raised_in", "")
        if "raised_in" in entry and (not isinstance(raised_in, str) or not _RAISED_IN.fullmatch(raised_in) or raised_in.startswith("/")):
            raise DivergenceFileError(f"{where}: raised_in is {raised_in!r}; expected a relative source file as records give it, "
                                      "e.g. 'keras/src/backend/torch/rnn.py'")
    ulps = entry.get("ulps", 0.0)
    if "ulps" in entry and (isinstance(ulps, bool) or not isinstance(ulps, (int, float)) or not 0 < ulps <= 16):
        raise DivergenceFileError(f"{where}: ulps is {ulps!r}; expected a number of float32 ulps above 0 and at most 16")
    if "ulps" in entry and not semantics.dense_matmul_in_float32:
        raise DivergenceFileError(f"{where}: ulps is a tolerance on a modelled float32 matmul; it needs semantics dense_matmul_in_float32")
    when = entry["when"]
    if isinstance(when, list) and when:
        alternatives = tuple(parse_conditions(table, f"{where}, when[{index}]") for index, table in enumerate(when))
    else:
        alternatives = (parse_conditions(when, where),)
    return Divergence(
        id=entry["id"], backends=backends, versions=versions,
        conditions=alternatives[0], alternatives=alternatives,
        kind=kind, observed=entry["observed"].strip(), reference=entry["reference"].strip(),
        upstream=entry["upstream"].strip(), reproducer=entry["reproducer"].strip(), semantics=semantics,
        exception=entry.get("exception", ""), message=entry.get("message", ""), raised_in=entry.get("raised_in", ""),
        outputs=tuple(entry.get("outputs", ())), max_abs_error=float(entry.get("max_abs_error", 0.0)),
        api_max_abs_diff=float(entry["api_max_abs_diff"]) if "api_max_abs_diff" in entry else None,
        ulps=float(ulps), change=entry.get("change", "bug"),
    )


def load_divergences(path: Path = DIVERGENCES_FILE) -> list[Divergence]:
    """Every entry of the file; DivergenceFileError naming the entry and field when one is malformed."""
    raw = read_toml(path, "divergence file", DivergenceFileError)
    entries = [_parse_entry(entry, index, path) for index, entry in enumerate(raw.get("divergence", []))]
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise DivergenceFileError(f"{path.name}: divergence id {entry.id!r} appears twice")
        seen.add(entry.id)
    return entries
