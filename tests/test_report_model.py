"""harness.reports.model and its renderers on small synthetic results folders in the record format.

The builders at the top write run records (schema 2), verdict files, cross_backend.json and side
records exactly as the harness writes them; test_html_report.py and test_runs_compare.py use them too.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from harness.records.store import RecordError
from harness.reports import markdown, model, why
from harness.reports.model import Judged, build_report, format_judged, format_ratio

STARTED = "2026-11-24T20:31:14+00:00"
UPSTREAM = "https://github.com/keras-team/keras/issues/23223"


# ------------------------------------------------------------------------------------------ record builders


def make_item(api: str = "functional", output: str = "output", *, error: float = 3e-8, ratio: float = 0.03,
              passed: bool | None = None, mismatched: int = 0, total: int = 12, nonfinite: int = 0,
              message: str | None = None, dtype: str = "float32", rtol: float = 1e-5, atol: float = 1e-6) -> dict[str, Any]:
    """One compared output of one API, as harness.execute.measure.judge_outputs records it."""
    passed = (ratio <= 1 and not nonfinite) if passed is None else passed
    if message is None:
        message = (f"{api}/{output}: ok (max abs {error:.3g}, {ratio:.2g} of tolerance)" if passed else
                   f"{api}/{output}: {mismatched} / {total} elements mismatch ({100 * mismatched / total:.1f}%), {nonfinite} non-finite; "
                   f"furthest beyond tolerance at (0, 1): 0.5 vs expected 0.25; max abs error {error:.3g} ({ratio:.3g}x tolerance)")
    return {
        "passed": passed, "max_abs_error": error, "max_rel_error": error, "max_ulp": 12.0, "tolerance_ratio": ratio,
        "mismatched": mismatched, "total": total, "mismatch_percent": 100 * mismatched / total, "nonfinite_actual": nonfinite,
        "worst_index": [0, 1], "worst_actual": 0.5, "worst_expected": 0.25, "rtol": rtol, "atol": atol,
        "dtype": dtype, "expected_dtype": dtype, "message": message,
    }


def make_case(name: str, status: str = "pass", *, items: list[dict[str, Any]] | None = None, error: dict[str, str] | None = None,
              agreement: list[dict[str, Any]] | None = None, problems: list[str] | None = None, dtype: str = "float32",
              config: dict[str, Any] | None = None, ratio: float = 0.03, abs_error: float = 3e-8) -> dict[str, Any]:
    """One case result of a run record. ``items`` default: one functional/output item with ``ratio``."""
    if items is None:
        items = [] if status in ("error", "refused", "timeout") else [make_item(error=abs_error, ratio=ratio)]
    apis: dict[str, Any] = {}
    for item in items:
        api, output = item["message"].split(":")[0].split("/")
        apis.setdefault(api, {"passed": True, "items": {}})["items"][output] = item
        apis[api]["passed"] = apis[api]["passed"] and item["passed"]
    if problems is None:
        problems = [item["message"] for item in items if not item["passed"]]
    return {
        "case": name, "description": f"synthetic {name}", "dtype": dtype, "entry_point": "predict",
        "definition": {"name": name, "dtype": dtype}, "config": config or {"dtype": dtype, "mask": "none", "layers": [{"type": "lstm", "units": 4}]},
        "status": status, "problems": problems, "error": error, "apis": apis, "api_agreement": agreement or [],
        "duration_s": 0.1,
    }


def make_error(kind: str = "AttributeError", message: str = "'tuple' object has no attribute 'shape'") -> dict[str, str]:
    return {"type": kind, "message": message, "summary": f"{kind}: {message}"}


def make_agreement(first: str = "sequential", second: str = "functional", output: str = "output", difference: float = 0.0,
                   bound: float = 0.0) -> dict[str, Any]:
    within = difference == 0 if bound == 0 else difference <= bound
    return {"apis": [first, second], "output": output, "max_abs_diff": difference, "bitwise_equal": difference == 0,
            "bound": bound, "within": within}


def make_run(backend: str, cases: list[dict[str, Any]], *, device: str = "cpu", device_class: str = "cpu",
             keras: str = "3.15.1", version: str = "2.13.0", fault: str | None = None, started: str = STARTED,
             settings: dict[str, str] | None = None) -> dict[str, Any]:
    """A run record <backend>.json (header from harness.records.header.make_header, then the run's fields)."""
    return {
        "schema": "keras-parity/run", "schema_version": 2, "backend": backend, "device": device, "device_class": device_class,
        "versions": {"keras": keras, backend: version, "numpy": "2.4.6", "python": "3.11.7", "platform": "Linux-test"},
        "settings": {"JAX_ENABLE_X64": "1"} if settings is None and backend == "jax" else (settings or {}),
        "command": f"python -m harness run --backend {backend} --out results", "seed": 20261124, "fault": fault,
        "started": started, "finished": "2026-11-24T20:35:14+00:00", "wall_time_s": 240.0,
        "tolerances": {"float32": {
            "outputs": {"rtol": 1e-5, "atol": 1e-6, "rel_floor": 1e-3, "reason": "float32 eps is 1.19e-7 <and> a bit", "measured": True},
            "states": {"rtol": 1e-5, "atol": 1e-6, "rel_floor": 1e-3, "reason": "h and c", "measured": False},
        }},
        "cases": cases,
    }


def make_verdict(measured: str, verdict: str | None = None, *, explained_by: tuple[str, ...] = (), applicable: tuple[str, ...] = (),
                 unexplained: tuple[str, ...] = (), possibly_resolved: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"measured_status": measured, "verdict": verdict or measured, "explained_by": list(explained_by),
            "applicable": list(applicable or explained_by or possibly_resolved), "unexplained": list(unexplained),
            "possibly_resolved": list(possibly_resolved)}


def make_claim(claim_id: str, kind: str = "semantics", backends: tuple[str, ...] = ("jax", "tensorflow", "torch")) -> dict[str, Any]:
    return {
        "id": claim_id, "kind": kind, "when": "mask == 'right_padded'; initial_state != 'none'", "backends": list(backends),
        "versions": {"keras": ">=3.0,<=3.15.1"}, "observed": f"{claim_id}: the mask is dropped.",
        "reference": "The reference applies the mask.", "upstream": f"{UPSTREAM} (open)",
        "reproducer": f"results/repro/{claim_id}.py", "semantics": {"mask_ignored": True} if kind == "semantics" else {},
        "exception": "ValueError" if kind == "crash" else "", "message": "cannot" if kind == "crash" else "",
        "outputs": [], "max_abs_error": 0.0,
    }


def make_verdicts(backend: str, run: dict[str, Any], verdicts: dict[str, dict[str, Any]] | None = None,
                  claims: list[dict[str, Any]] | None = None, run_started: str | None = None) -> dict[str, Any]:
    """A <backend>.verdicts.json for ``run``: every case its measured status unless ``verdicts`` says otherwise."""
    cases = {c["case"]: make_verdict(c["status"]) for c in run["cases"]}
    cases.update(verdicts or {})
    counts: dict[str, int] = {}
    for entry in cases.values():
        counts[entry["verdict"]] = counts.get(entry["verdict"], 0) + 1
    return {
        "schema": "keras-parity/verdicts", "schema_version": 1, "backend": backend,
        "run_started": run["started"] if run_started is None else run_started, "divergences_file": "divergences.toml",
        "divergences_sha256": "ab" * 32, "classified": "2026-11-25T10:00:00+00:00", "cases": cases, "counts": counts,
        "divergences": claims or [],
    }


def make_pair(case: str, first: str, second: str, difference: float, bound: float = 2e-6, output: str = "output",
              verdicts: tuple[str | None, str | None] = (None, None)) -> dict[str, Any]:
    """One cross_backend.json measurement; ``bound`` is the summed tolerance at the worst element."""
    return {"case": case, "backends": [first, second], "api": "functional", "output": output, "statuses": ["pass", "pass"],
            "verdicts": list(verdicts), "shape": [3, 4], "max_abs_diff": difference, "max_rel_diff": difference / 0.5,
            "worst_index": [1, 2], "values": [0.5, 0.5 + difference], "summed_tolerance_ratio": difference / bound,
            "nonfinite_disagreements": 0}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, allow_nan=True), encoding="utf-8")


def write_folder(folder: Path, runs: dict[str, dict[str, Any]], verdicts: dict[str, dict[str, Any]] | None = None,
                 pairs: list[dict[str, Any]] | None = None, skipped: list[dict[str, Any]] | None = None,
                 side: dict[str, dict[str, Any]] | None = None, missing: list[dict[str, Any]] | None = None) -> Path:
    """A results folder: run records, verdict files (default: every case its measured status), cross_backend.json
    (when ``pairs`` or ``skipped`` is given) and side records keyed by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    for backend, run in runs.items():
        write_json(folder / f"{backend}.json", run)
        if verdicts is None or backend in verdicts:
            write_json(folder / f"{backend}.verdicts.json", (verdicts or {}).get(backend) or make_verdicts(backend, run))
    if pairs is not None or skipped is not None:
        write_json(folder / "cross_backend.json", {"schema": "keras-parity/cross-backend", "schema_version": 1, "measurements_only": True,
                                                   "pairs": pairs or [], "not_compared": skipped or [], "missing": missing or [],
                                                   "never_compared": []})
    for name, data in (side or {}).items():
        write_json(folder / name, data)
    return folder


def side_header(kind: str, backend: str, device: str = "cpu") -> dict[str, Any]:
    return {"schema": f"keras-parity/{kind}", "schema_version": 2, "backend": backend, "device": device, "device_class": "cpu",
            "versions": {"keras": "3.15.1", backend: "1.0"}, "settings": {}, "command": f"python -m harness {kind}",
            "seed": None, "fault": None, "started": STARTED, "finished": STARTED}


def make_probes(backend: str, device: str = "cpu", api_difference: float = 0.0) -> dict[str, Any]:
    return side_header("probes", backend, device) | {"probes": {
        "identical_weights": {"max_abs_diff": api_difference, "bitwise_equal": api_difference == 0, "error": None},
        "separately_initialized_weights": {"max_abs_diff": 0.26, "bitwise_equal": False, "error": None},
        "predict_batch_size": {"max_abs_diff": 1.2e-7, "bitwise_equal": False, "error": None},
        "seeded_initial_weights": {"weights": [[0.1, 0.2], [0.3]] if backend == "jax" else [[0.1, 0.5], [0.3]], "error": None},
    }}


# ------------------------------------------------------------------------------------------ a folder with everything


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """jax: a failing case, an erroring case, a known divergence, a possibly resolved claim, passing cases;
    torch: passes and a NaN output; cross-backend comparisons with one unexplained disagreement."""
    jax_cases = [
        make_case("lstm_fail", "fail", items=[make_item(error=2e-3, ratio=180.0, mismatched=3, total=12)]),
        make_case("lstm_error", "error", error=make_error()),
        make_case("lstm_known", "fail", items=[make_item(error=0.5, ratio=4e5, mismatched=12, total=12)]),
        make_case("lstm_resolved", "pass", ratio=0.2, abs_error=2e-7),
        make_case("lstm_pass", "pass", ratio=0.5, abs_error=5e-7),
        make_case("lstm_tiny", "pass", ratio=0.001, abs_error=1e-9),
    ]
    torch_cases = [
        make_case("lstm_fail", "pass", ratio=0.04),
        make_case("lstm_error", "pass", ratio=0.05),
        make_case("lstm_known", "pass", ratio=0.06),
        make_case("lstm_resolved", "pass", ratio=0.07),
        make_case("lstm_pass", "pass", ratio=0.08),
        make_case("lstm_tiny", "fail", items=[make_item(error=math.nan, ratio=math.nan, nonfinite=3, passed=False)]),
    ]
    runs = {"jax": make_run("jax", jax_cases, version="0.10.2"), "torch": make_run("torch", torch_cases)}
    claims = [make_claim("mask_dropped"), make_claim("jax_crash", "crash", ("jax",)), make_claim("never_seen")]
    verdicts = {
        "jax": make_verdicts("jax", runs["jax"], {
            "lstm_known": make_verdict("fail", "known", explained_by=("mask_dropped",)),
            "lstm_resolved": make_verdict("pass", possibly_resolved=("mask_dropped",)),
            "lstm_error": make_verdict("error", applicable=("jax_crash",),
                                       unexplained=("jax_crash: claims ValueError, got AttributeError: 'tuple' object",)),
        }, claims),
        "torch": make_verdicts("torch", runs["torch"], claims=claims),
    }
    pairs = [make_pair("lstm_pass", "jax", "torch", 1e-7), make_pair("lstm_resolved", "jax", "torch", 8e-6),
             make_pair("lstm_fail", "jax", "torch", 2e-3, verdicts=("fail", "pass"))]
    skipped = [{"case": "lstm_error", "backends": ["jax", "torch"], "reason": "no numbers on jax (measured error)"}]
    missing = [{"case": "lstm_tiny", "backends": ["jax", "torch"], "raw_output": "torch: lstm_tiny/functional/output"}]
    side = {"jax.probes.json": make_probes("jax"), "torch.probes.json": make_probes("torch")}
    return write_folder(tmp_path / "results", runs, verdicts, pairs, skipped, side, missing)


# ------------------------------------------------------------------------------------------ the model


def test_verdicts_come_from_the_verdict_files(mixed: Path) -> None:
    report = build_report(mixed)
    jax = report.results["jax"]
    assert jax["lstm_known"].measured_status == "fail" and jax["lstm_known"].verdict == "known"
    assert jax["lstm_known"].explained_by == ("mask_dropped",)
    summary = {s.backend: s for s in report.summaries}
    assert summary["jax"].counts["fail"] == 1 and summary["jax"].counts["known"] == 1 and summary["jax"].counts["error"] == 1
    assert summary["torch"].counts["fail"] == 1 and summary["torch"].classified


def test_failures_carry_their_details(mixed: Path) -> None:
    report = build_report(mixed)
    failures = {(f.result.backend, f.result.case): f for f in report.failures}
    assert set(failures) == {("jax", "lstm_fail"), ("jax", "lstm_error"), ("torch", "lstm_tiny")}
    fail = failures[("jax", "lstm_fail")]
    assert fail.result.judged == Judged(180.0, 2e-3, False)
    assert "3 / 12 elements mismatch (25.0%)" in fail.failing_items[0].message
    error = failures[("jax", "lstm_error")].result
    assert error.error.type == "AttributeError" and error.error.message == "'tuple' object has no attribute 'shape'"
    assert error.unexplained == ("jax_crash: claims ValueError, got AttributeError: 'tuple' object",)
    assert error.judged.ratio is None  # nothing was compared: missing, not non-finite


def test_ratios_are_sorted_largest_first_with_nan_on_top(mixed: Path) -> None:
    report = build_report(mixed)
    order = [row.case for row in report.case_rows]
    assert order[0] == "lstm_tiny"  # torch's NaN output: non-finite is the worst there is
    assert order[1:3] == ["lstm_known", "lstm_fail"]
    keys = [row.judged.key for row in report.case_rows]
    assert keys == sorted(keys, reverse=True)


def test_closest_calls_are_the_passing_cases_nearest_their_tolerance(tmp_path: Path) -> None:
    cases = [make_case(f"case_{i:02d}", ratio=(i + 1) / 20) for i in range(14)]
    cases.append(make_case("over", "fail", items=[make_item(error=1e-3, ratio=5.0, mismatched=1)]))
    folder = write_folder(tmp_path / "r", {"jax": make_run("jax", cases)})
    report = build_report(folder)
    closest = report.closest_calls
    assert len(closest) == model.CLOSEST_CALLS == 10
    assert [r.case for r in closest] == [f"case_{i:02d}" for i in range(13, 3, -1)]
    assert all(r.verdict == "pass" for r in closest)


def test_known_divergences_and_possibly_resolved(mixed: Path) -> None:
    report = build_report(mixed)
    claims = {c.id: c for c in report.claims}
    assert [c.id for c in report.claims][:1] == ["mask_dropped"]  # seen claims first
    assert [r.case for r in claims["mask_dropped"].explained["jax"]] == ["lstm_known"]
    assert not claims["never_seen"].seen
    assert [(c.claim, c.backend, c.cases) for c in report.possibly_resolved] == [("mask_dropped", "jax", ("lstm_resolved",))]
    assert claims["mask_dropped"].upstream.startswith(UPSTREAM)
    assert claims["mask_dropped"].checks == "every output matches the reference computed with mask_ignored=True"


def test_cross_backend_distances_are_measurements_and_only_a_missing_raw_output_needs_attention(mixed: Path) -> None:
    report = build_report(mixed)
    # lstm_resolved is 4x the summed tolerances apart: a measurement (both sides pass against the reference), not a finding
    # and lstm_fail, failing on jax, is measured against torch too: 2e-3 apart, the largest
    assert [(r.case, r.backends, r.verdicts) for r in report.cross.rows] == [
        ("lstm_fail", ("jax", "torch"), ("fail", "pass")), ("lstm_resolved", ("jax", "torch"), ("pass", "pass")),
        ("lstm_pass", ("jax", "torch"), ("pass", "pass"))]
    assert report.cross.rows[1].worst.judged.ratio == pytest.approx(4.0)
    assert report.cross.rows[1].worst.max_abs_diff == pytest.approx(8e-6)
    summary = report.cross.pairs[0]
    assert (summary.compared, summary.both_pass, summary.largest.case, summary.largest_both_pass.case) == (3, 2, "lstm_fail", "lstm_resolved")
    assert [f.cross_distances for f in report.failures if f.result.case == "lstm_fail"] == [(report.cross.rows[0],)]
    assert report.cross.skipped == (("lstm_error", ("jax", "torch"), "no numbers on jax (measured error)"),)
    assert report.cross.missing == (("lstm_tiny", ("jax", "torch"), "torch: lstm_tiny/functional/output"),)
    assert report.attention_count == 3 + 1  # jax lstm_fail, lstm_error, torch lstm_tiny; the missing raw output


def test_formatting_keeps_nan_apart_from_missing() -> None:
    assert format_ratio(Judged(math.nan, math.nan, True)) == "non-finite (NaN)"
    assert format_judged(Judged(math.nan, math.nan, True)) == "non-finite (NaN) (abs NaN)"
    assert format_ratio(Judged(math.inf, 1e-7)) == "inf (bound 0)"
    assert format_judged(model.NOT_MEASURED) == "n/a"
    assert format_ratio(Judged(0.0344, 3e-8)) == "0.034" and format_ratio(Judged(180.2, 2e-3)) == "180"
    assert [Judged(r, None).band for r in (0.05, 0.1, 1.0, 1.5, math.nan, None)] == ["ok", "close", "close", "over", "over", "missing"]


def test_unclassified_backend_keeps_its_measured_status_and_warns(tmp_path: Path) -> None:
    run = make_run("jax", [make_case("a", "fail", items=[make_item(error=1e-3, ratio=9.0, mismatched=1)])])
    report = build_report(write_folder(tmp_path / "r", {"jax": run}, verdicts={}))
    assert report.results["jax"]["a"].verdict == "fail" and not report.results["jax"]["a"].classified
    assert any("no jax.verdicts.json" in w for w in report.warnings)


def test_verdicts_of_another_run_are_flagged(tmp_path: Path) -> None:
    run = make_run("jax", [make_case("a")])
    folder = write_folder(tmp_path / "r", {"jax": run}, {"jax": make_verdicts("jax", run, run_started="2020-01-01T00:00:00+00:00")})
    report = build_report(folder)
    assert not report.environments[0].verdicts.matches_run
    assert any("re-run the classification" in w for w in report.warnings)
    assert "(**not this run**)" in markdown.render_markdown(report)


@pytest.mark.parametrize("problem", ["old_schema", "no_records", "not_a_folder", "backend_mismatch"])
def test_unusable_run_records_raise_one_line_record_errors(tmp_path: Path, problem: str) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    if problem == "old_schema":
        write_json(folder / "jax.json", make_run("jax", []) | {"schema_version": 1})
    elif problem == "backend_mismatch":
        write_json(folder / "jax.json", make_run("torch", []))
    elif problem == "not_a_folder":
        folder = folder / "absent"
    with pytest.raises(RecordError) as caught:
        build_report(folder)
    assert "\n" not in str(caught.value)


def test_missing_and_corrupt_side_records(mixed: Path) -> None:
    (mixed / "jax.growth.json").write_text("{not json", encoding="utf-8")
    report = build_report(mixed)
    assert report.growth is None and report.faults is None and report.serialization is None
    assert any("jax.growth.json" in note for note in report.notes)
    text = markdown.render_markdown(report)
    assert "Not run (nox -s faults)." in text and "Not run (python -m harness growth" in text


# ------------------------------------------------------------------------------------------ REPORT.md


def test_report_leads_with_failures_before_known_divergences(mixed: Path) -> None:
    text = markdown.render_report(mixed)
    attention = text.index("## Needs attention")
    known = text.index("## Known divergences")
    closest = text.index("## Closest calls")
    assert attention < text.index("**lstm_fail**") < known < closest < text.index("## Summary")
    assert text.index("**lstm_error**") < known
    assert "**4 items need attention**" in text and "1 raw output missing from the records" in text
    head = text[attention:known]
    assert "3 / 12 elements mismatch (25.0%)" in head and "(ratio **180**)" in head
    assert "raised AttributeError: 'tuple' object has no attribute 'shape'" in head
    assert "applicable divergence did not match: jax_crash: claims ValueError" in head
    assert "- jax vs torch (measured): output: 2.00e-03 abs, 4.00e-03 rel, 1000 of the summed tolerances" in head
    assert "- lstm_tiny (jax vs torch): torch: lstm_tiny/functional/output" in head


def test_nan_errors_are_shown_as_non_finite_never_as_n_a(mixed: Path) -> None:
    text = markdown.render_report(mixed)
    row = next(line for line in text.splitlines() if line.startswith("| lstm_tiny | float32 |"))
    assert "non-finite (NaN)" in row and "abs NaN" in row
    assert "n/a" not in row
    failure = next(line for line in text.splitlines() if line.startswith("- **lstm_tiny**"))
    assert "non-finite (NaN)" in failure and "n/a" not in failure


def test_known_divergence_section_describes_each_claim(mixed: Path) -> None:
    text = markdown.render_report(mixed)
    section = text[text.index("## Known divergences"):text.index("## Closest calls")]
    assert "#### mask_dropped" in section
    assert "Applies when: mask == 'right_padded'; initial_state != 'none'." in section
    assert f"Upstream: {UPSTREAM} (open)" in section and "`results/repro/mask_dropped.py`" in section
    assert "- Explained on jax: 1 case, worst ratio 4.0e+05 (abs 5.0e-01): lstm_known" in section
    assert "Documented but explaining no case in this run: `jax_crash`, `never_seen`." in section
    assert "### Possibly resolved" in section and "- `mask_dropped` on jax: lstm_resolved" in section


def test_long_tables_show_twenty_rows_sorted_and_fold_the_rest(tmp_path: Path) -> None:
    cases = [make_case(f"case_{i:02d}", ratio=(i + 1) / 100) for i in range(30)]
    text = markdown.render_report(write_folder(tmp_path / "r", {"jax": make_run("jax", cases)}))
    table = text[text.index("## Against the float64 NumPy reference"):text.index("## Sequential")]
    rows = [line for line in table.splitlines() if line.startswith("| case_")]
    assert [row.split(" | ")[0][2:] for row in rows] == [f"case_{i:02d}" for i in range(29, -1, -1)]
    visible = table[:table.index("<details>")]
    assert visible.count("| case_") == markdown.SHOWN_ROWS
    assert "<details><summary>10 more cases (smaller ratios)</summary>" in table


def test_environment_section_lists_what_each_record_was_made_with(tmp_path: Path) -> None:
    run = make_run("torch", [make_case("a")], device="cuda:0", device_class="gpu_tf32", settings={"TF32": "off"})
    text = markdown.render_report(write_folder(tmp_path / "r", {"torch": run}))
    section = text[text.index("## Environment"):]
    for expected in ("cuda:0 (gpu_tf32)", "TF32=off", "20261124", STARTED, "2026-11-24T20:35:14+00:00", "240 s",
                     "`python -m harness run --backend torch --out results`", "`divergences.toml`", "`" + "ab" * 32 + "`", "2.13.0"):
        assert expected in section, expected


# ------------------------------------------------------------------------------------------ kernel paths, precision, device


def with_kernel_paths(case: dict[str, Any], paths: dict[str, str], at_error: tuple[str, str] | None = None) -> dict[str, Any]:
    """``case`` with the kernel path each API's build ran (as harness.execute.measure records it), and for a build
    that raised, ``kernel_at_error``."""
    for api, path in paths.items():
        case["apis"][api]["kernel_path"] = path
        case["apis"][api]["kernel"] = {"paths": {segment: 1 for segment in path.split(", ")}, "calls": {"lstm": {"returned": 1}}}
    if at_error is not None:
        case["kernel_at_error"] = {"api": at_error[0], "kernel_path": at_error[1], "kernel": {"paths": {at_error[1]: 1}, "calls": {}}}
    return case


def two_builds(name: str, status: str = "pass") -> dict[str, Any]:
    return make_case(name, status, items=[make_item("sequential"), make_item("functional")])


GPU_DETAILS = {"kind": "gpu", "name": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "compute_capability": "9.0", "driver": "550.54.15",
               "cuda": "12.4", "cudnn": 90100, "host": {"kind": "cpu", "processor": "AMD EPYC", "machine": "x86_64", "cpu_count": 16}}


@pytest.fixture
def kernel_folder(tmp_path: Path) -> Path:
    """torch on a GPU in precision mode highest: fused builds, declined and failed fused attempts, a build that
    raised after declining; jax: a record from before kernel paths and precision modes were recorded, but one case."""
    torch_cases = [
        with_kernel_paths(two_builds("lstm_a"), {"sequential": "fused", "functional": "fused"}),
        with_kernel_paths(two_builds("lstm_mask"), {"sequential": "fused_declined->generic", "functional": "fused_declined->generic"}),
        with_kernel_paths(two_builds("lstm_broken"), {"sequential": "fused_failed->fallback_loop", "functional": "fused_failed->fallback_loop"}),
        with_kernel_paths(two_builds("lstm_mixed"), {"sequential": "fused", "functional": "fused_declined->generic"}),
        with_kernel_paths(make_case("cudnn_on", "refused", error=make_error("ValueError", "use_cudnn=True was specified")),
                          {}, at_error=("sequential", "fused_declined")),
    ]
    torch = make_run("torch", torch_cases, device="gpu:NVIDIA H100 80GB HBM3", device_class="gpu_highest",
                     settings={"precision_mode": "highest", "tf32_matmul": False, "tf32_cudnn": False})
    torch["device_details"] = GPU_DETAILS
    jax_cases = [two_builds("lstm_a"), with_kernel_paths(two_builds("lstm_mask"), {"sequential": "generic", "functional": "generic"})]
    return write_folder(tmp_path / "kernels", {"torch": torch, "jax": make_run("jax", jax_cases, version="0.10.2")})


def test_kernel_paths_are_counted_per_backend_from_the_records(kernel_folder: Path) -> None:
    report = build_report(kernel_folder)
    kernels = {k.backend: k for k in report.kernels}
    torch = kernels["torch"]
    assert torch.precision_mode == "highest" and torch.builds == 9 and torch.raised == 1 and torch.unrecorded == 0
    assert torch.paths == (("fused", 3), ("fused_declined->generic", 3), ("fused_failed->fallback_loop", 2), ("fused_declined (raised)", 1))
    assert torch.fused_cases == ("lstm_a", "lstm_mixed") and torch.failed_cases == ("lstm_broken",)
    jax = kernels["jax"]
    assert jax.precision_mode == "not recorded" and jax.builds == 2 and jax.unrecorded == 2 and jax.fused_cases == ()
    rows = {row.case: row.cells for row in report.kernel_rows}
    assert rows["lstm_a"] == {"torch": "fused", "jax": "not recorded"}
    assert rows["lstm_mixed"] == {"torch": "sequential: fused; functional: fused_declined->generic", "jax": "not run"}
    assert rows["cudnn_on"]["torch"] == "fused_declined (raised)"
    assert report.results["torch"]["cudnn_on"].kernel_paths == (("sequential", "fused_declined (raised)"),)
    assert model.ran_fused("bidirectional_fused_declined->fused_declined->generic, fused") and not model.ran_fused("fused_failed->generic")


def test_environment_shows_the_precision_mode_and_the_device_in_detail(kernel_folder: Path) -> None:
    report = build_report(kernel_folder)
    environments = {e.backend: e for e in report.environments if e.kind == "run"}
    assert environments["torch"].precision_mode == "highest" and environments["jax"].precision_mode == "not recorded"
    details = dict(environments["torch"].device_details)
    assert details["compute_capability"] == "9.0" and details["cudnn"] == "90100" and details["host.processor"] == "AMD EPYC"
    assert environments["jax"].device_details == ()


def test_renderers_show_kernel_paths_precision_and_device(kernel_folder: Path) -> None:
    from harness.reports.html import render_html

    report = build_report(kernel_folder)
    text = markdown.render_markdown(report)
    summary = text[text.index("## Summary"):text.index("## Against the float64")]
    assert "### Kernel paths" in summary
    assert ("| torch | highest | 9 | fused: 3; fused_declined->generic: 3; fused_failed->fallback_loop: 2; fused_declined (raised): 1 "
            "| lstm_a, lstm_mixed | lstm_broken |") in summary
    assert "| jax | not recorded | 2 | generic: 2 | none | none | 2 builds without a recorded path |" in summary
    assert "| lstm_mixed | not run | sequential: fused; functional: fused_declined->generic |" in summary  # jax, torch
    environment = text[text.index("## Environment"):]
    assert "| torch | gpu:NVIDIA H100 80GB HBM3 (gpu_highest) | highest |" in environment
    assert "- torch: kind gpu, name NVIDIA H100 80GB HBM3, gpu_count 1, compute_capability 9.0, driver 550.54.15, cuda 12.4, cudnn 90100" in environment
    assert "precision_mode=highest, tf32_matmul=False, tf32_cudnn=False" in environment
    page = render_html(report, {})
    assert "<h3>Kernel paths</h3>" in page and "fused_failed-&gt;fallback_loop: 2" in page
    assert "compute_capability 9.0, driver 550.54.15" in page and "<td>highest</td>" in page


def test_records_without_kernel_paths_show_no_kernel_section(mixed: Path) -> None:
    report = build_report(mixed)
    assert report.kernels == () and report.kernel_rows == ()
    assert "Kernel paths" not in markdown.render_markdown(report)
    assert {e.precision_mode for e in report.environments} == {"not recorded"}


# ------------------------------------------------------------------------------------------ WHY.md


def test_why_uses_the_recorded_device_and_computes_its_conclusions(tmp_path: Path) -> None:
    agreeing = [make_case("a", agreement=[make_agreement()]), make_case("b", agreement=[make_agreement(difference=0.0)])]
    run = make_run("torch", agreeing, device="cuda:0", device_class="gpu_highest")
    folder = write_folder(tmp_path / "bitwise", {"torch": run}, side={"torch.probes.json": make_probes("torch", "cuda:0")})
    text = why.render_why(build_report(folder))
    assert "torch (cuda:0)" in text and "CPU" not in text
    assert "## With the same weights, the API changes nothing (bitwise)" in text
    assert "Nothing to fix: bitwise equal on every backend probed." in text  # identical_weights probe is bitwise
    assert "Rounding only: at most 1.2e-07" in text  # predict_batch_size, within the float32 atol

    differing = [make_case("a", agreement=[make_agreement(difference=1e-7, bound=1e-6)])]
    folder = write_folder(tmp_path / "within", {"torch": make_run("torch", differing)},
                          side={"torch.probes.json": make_probes("torch", api_difference=0.3)})
    text = why.render_why(build_report(folder))
    assert "the API changes nothing" not in text and "agree within their bound, not always bitwise" in text
    assert "Nothing to fix: bitwise" not in text.split("The model-building API itself")[1].splitlines()[0]
    assert "Report it: with the same weights the APIs should give the same numbers." in text


def test_why_seed_weights_and_divergences(mixed: Path) -> None:
    text = why.render_why(build_report(mixed))
    assert "| jax vs torch | 0.3 |" in text
    # "?": the synthetic definitions name no layers, so the kinds column cannot tell them
    assert "| mask_dropped | ? | ratio up to 4.0e+05 (abs 5.0e-01) (1 case) | - | `results/repro/mask_dropped.py` |" in text
    assert why.PROBES_SCHEMA == "keras-parity/probes"


# ------------------------------------------------------------------------------------------ figures and entry points


@pytest.fixture
def plots():
    pytest.importorskip("matplotlib")
    from harness.reports import plots

    return plots


def test_figures_are_pngs_with_captions(mixed: Path, plots) -> None:
    growth = side_header("growth", "jax") | {"tolerances": {"float32": {"outputs": {"rtol": 1e-5, "atol": 1e-6}}}, "points": [
        {"time": t, "units": 4, "quantities": {"output": {"max_abs_error": 1e-8 * t, "headroom": 100 / t, "tightest_bound": 1e-6}}}
        for t in (10, 100, 1000)
    ] + [{"time": 2000, "units": 4, "status": "error"}]}
    write_json(mixed / "jax.growth.json", growth)
    report = build_report(mixed)
    assert report.growth.worst.ratio == pytest.approx(10.0)
    figures = plots.report_figures(report)
    assert list(figures) == [plots.HEATMAP_CAPTION, plots.GROWTH_CAPTION, plots.HISTOGRAM_CAPTION]
    assert "ULP" in plots.HISTOGRAM_CAPTION and "near-zero" in plots.HISTOGRAM_CAPTION
    for png in figures.values():
        assert png[:8] == plots.PNG_SIGNATURE and len(png) > 5000


def test_heatmap_cells_take_the_worst_ratio_per_group(mixed: Path, plots) -> None:
    groups, backends, worst, failing, known = plots._heatmap_cells(build_report(mixed))
    assert groups == ["lstm"] and backends == ["jax", "torch"]
    assert worst[0, 0] == 4e5 and math.isinf(worst[0, 1])  # torch's NaN output counts as the worst
    assert failing.tolist() == [[2, 1]] and known.tolist() == [[1, 0]]


def test_write_report_writes_the_three_reports(mixed: Path) -> None:
    from harness.reports.publish import write_report

    paths = write_report(mixed)
    assert [p.name for p in paths] == ["REPORT.md", "WHY.md", "report.html"]
    assert all(p.read_text(encoding="utf-8") for p in paths)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


# Report modules that parse the case definitions their records hold with harness.case (data and pure functions, no
# framework): the benchmark report (the real shard split) and the model's case results (each case's layer kinds, through
# the case stage's kind table, so that no report module tells layer types apart itself).
CASE_READERS = {"bench_model", "bench_shards", "case_results"}


def test_renderers_import_only_the_model_and_no_framework() -> None:
    folder = ROOT / "harness" / "reports"
    renderers = {"markdown", "html", "why", "plots"}
    for path in sorted(folder.rglob("*.py")):  # the model's sections (harness/reports/sections/) included
        names = _imports(path)
        assert not {n for n in names if n.split(".")[0] in {"keras", "tensorflow", "jax", "torch"}}, path.name
        # CASE_READERS parse the case definitions their run records hold; every other report module reads records only.
        forbidden = ("harness.execute", "harness.studies") if path.stem in CASE_READERS else ("harness.execute", "harness.studies", "harness.case")
        assert not {n for n in names if n.startswith(forbidden)}, path.name
        if path.stem in renderers:
            others = {f"harness.reports.{r}" for r in renderers - {path.stem}}
            crossing = {n for n in names if any(n == o or n.startswith(o + ".") for o in others)}
            crossing |= {f"harness.reports.{n.rsplit('.', 1)[-1]}" for n in names
                         if n.startswith("harness.reports.") and n.rsplit(".", 1)[-1] in renderers - {path.stem}}
            assert not crossing, f"{path.name} imports {crossing}"
            private = {n for n in names if n.startswith("harness.reports.") and n.rsplit(".", 1)[-1].startswith("_")}
            assert not private, f"{path.name} imports private helpers {private}"


def test_figures_draw_when_nothing_was_measured(tmp_path: Path, plots) -> None:
    cases = [make_case("act_relu", "error", error=make_error()), make_case("cudnn_on", "refused", error=make_error("ValueError", "no cuDNN"))]
    report = build_report(write_folder(tmp_path / "r", {"jax": make_run("jax", cases), "torch": make_run("torch", cases)}))
    groups, _, worst, failing, _ = plots._heatmap_cells(report)
    assert groups == ["act", "cudnn"] and all(math.isnan(v) for v in worst.ravel()) and failing.tolist() == [[1, 1], [0, 0]]
    for png in (plots.ratio_heatmap(report), plots.ratio_histogram(report),
                plots.growth_plot(model.Growth(("jax",), (), (), None, model.NOT_MEASURED))):
        assert png[:8] == plots.PNG_SIGNATURE and len(png) > 5000


def _crash_folder(tmp_path: Path, where: dict[str, str] | None) -> Path:
    """jax: one crash a crash claim explains and one unexplained crash, both with ``where`` (api, raised_in,
    raised_at) in their error records (None: records from before errors said where), and claims.json with the
    claim's bound."""
    error = make_error() | (where or {})
    cases = [make_case("lstm_crash_known", "error", error=error), make_case("lstm_crash_other", "error", error=make_error("RuntimeError", "boom") | (where or {})),
             make_case("lstm_pass", "pass")]
    runs = {"jax": make_run("jax", cases, version="0.10.2")}
    claims = [make_claim("jax_crash", "crash", ("jax",)), make_claim("mask_dropped")]
    verdicts = {"jax": make_verdicts("jax", runs["jax"], {"lstm_crash_known": make_verdict("error", "known", explained_by=("jax_crash",))}, claims)}
    row = {"claim": "jax_crash", "kind": "crash", "backends": ["jax"], "cases": 1, "faults_tried": 2, "faults_absorbed": 0,
           "largest_explained_error": None, "largest_absorbed_error": None, "ratio": None, "passed": True, "reasons": [],
           "not_explained_now": []}
    gradient_row = {"claim": "mask_dropped", "kind": "semantics", "backends": ["jax"], "cases": 0, "faults_tried": 17,
                    "faults_absorbed": 1, "largest_explained_error": None, "largest_absorbed_error": None, "ratio": None,
                    "passed": True, "reasons": [], "gradient_cases": 1, "largest_absorbed_gradient_scale": 2.7e-6,
                    "largest_absorbed_gradient_error": 1.9e-7, "largest_explained_gradient_error": 6.0e-2,
                    "not_explained_now": [{"claim": "mask_dropped", "backend": "jax", "case": "lstm_old", "study": "outputs",
                                           "verdict": "fail", "reason": "does not apply"}]}
    side = {"claims.json": {"schema": "keras-parity/claims", "schema_version": 1, "factor": 3.0, "passed": True,
                            "claims": [row, gradient_row]}}
    return write_folder(tmp_path / "results", runs, verdicts, side=side)


WHERE = {"api": "functional", "raised_in": "keras/src/backend/jax/rnn.py", "raised_at": "keras/src/backend/jax/rnn.py:120 in rnn"}


def test_crashes_show_the_build_and_file_that_raised_and_claims_their_bound(tmp_path: Path) -> None:
    text = markdown.render_report(_crash_folder(tmp_path, WHERE))
    failures = text[:text.index("## Known divergences")]
    assert ("  - raised RuntimeError (in the functional build, at keras/src/backend/jax/rnn.py:120 in rnn): boom") in failures
    known = text[text.index("## Known divergences"):text.index("## Closest calls")]
    assert "  - raised AttributeError in the functional build, at keras/src/backend/jax/rnn.py:120 in rnn: 1 case" in known
    assert "- Under injected faults: absorbs no injected fault on its 1 case." in known
    study = text[text.index("## Known divergences under injected faults"):]
    assert ("- mask_dropped: absorbs no kernel gradient scaled by more than 1 + 2.70e-06 (adding 1.90e-07; the largest gradient "
            "error it explains is 6.00e-02) and no zeroed kernel gradient") in study
    assert "- mask_dropped: 1 recorded case it no longer explains, not studied (first: lstm_old@jax (outputs, now fail): does not apply)" in study


def test_crashes_of_records_that_do_not_say_where_say_so(tmp_path: Path) -> None:
    text = markdown.render_report(_crash_folder(tmp_path, None))
    failures = text[:text.index("## Known divergences")]
    assert "  - raised RuntimeError: boom" in failures
    known = text[text.index("## Known divergences"):text.index("## Closest calls")]
    assert "  - raised AttributeError (the record does not say where): 1 case" in known


def test_a_too_loose_claim_says_so_beside_its_description(tmp_path: Path) -> None:
    folder = _crash_folder(tmp_path, WHERE)
    claims = json.loads((folder / "claims.json").read_text())
    claims["claims"][0] |= {"passed": False, "reasons": ["absorbs other_message on lstm_crash_known@jax"]}
    claims["passed"] = False
    write_json(folder / "claims.json", claims)
    known = markdown.render_report(folder).split("## Known divergences")[1]
    assert "- Under injected faults: absorbs no injected fault on its 1 case: TOO LOOSE (absorbs other_message on lstm_crash_known@jax)." in known


def test_cpu_details_name_the_vector_isa_and_any_variable_that_limits_it(monkeypatch):
    """float32 kernels round differently by instruction set (recact_linear on TensorFlow: 2.05e-6 with AVX2 + FMA,
    1.35e-6 with ONEDNN_MAX_CPU_ISA=SSE41 on the same CPU), so a record names both."""
    import platform

    from harness.execute.backends import cpu_details

    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "TF_ENABLE_ONEDNN_OPTS"):
        monkeypatch.delenv(name, raising=False)
    plain = cpu_details()
    assert "isa_limits" not in plain and plain["vector_isa"]
    if platform.machine() == "x86_64" and Path("/proc/cpuinfo").exists():
        assert "sse4_2" in plain["vector_isa"].split()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    assert cpu_details()["isa_limits"] == "ONEDNN_MAX_CPU_ISA=SSE41"


def _layer_case(name: str, layers: list[dict[str, Any]], status: str = "pass", ratio: float = 0.03) -> dict[str, Any]:
    """A run record case whose definition parses (so the report can tell its layer kinds)."""
    case = make_case(name, status, ratio=ratio, items=None if status == "pass" else [make_item(ratio=ratio)])
    case["definition"] = {"name": name, "description": "d", "dtype": "float32", "batch": 3, "time": 5, "features": 2,
                          "layers": layers}
    return case


def test_the_kinds_are_counted_side_by_side_per_backend_and_a_failure_lands_in_its_kind(tmp_path: Path) -> None:
    gru, simple, lstm = {"type": "gru", "units": 4}, {"type": "simple_rnn", "units": 4}, {"type": "lstm", "units": 4}
    stacked = [dict(gru, return_sequences=True), dict(lstm)]
    bidi_gru = [{"type": "bidirectional", "units": 4}]  # a flat Bidirectional means its wrapped kind (LSTM by default)
    jax_cases = [_layer_case("g1", [gru]), _layer_case("g2", [gru], "fail", ratio=40.0), _layer_case("s1", [simple]),
                 _layer_case("l1", [lstm]), _layer_case("m1", stacked), _layer_case("b1", bidi_gru)]
    torch_cases = [_layer_case("g1", [gru]), _layer_case("g2", [gru]), _layer_case("s1", [simple], "fail", ratio=3.0),
                   _layer_case("l1", [lstm]), _layer_case("m1", stacked), _layer_case("b1", bidi_gru)]
    runs = {"jax": make_run("jax", jax_cases, version="0.10.2"), "torch": make_run("torch", torch_cases)}
    report = build_report(write_folder(tmp_path / "results", runs))
    rows = {row.kinds: row for row in report.kind_rows}
    assert [row.kinds for row in report.kind_rows] == ["gru", "lstm", "simple_rnn", "gru+lstm"]  # single kinds first
    assert rows["gru"].counts == {"jax": {"pass": 1, "fail": 1}, "torch": {"pass": 2}}
    assert rows["simple_rnn"].counts == {"jax": {"pass": 1}, "torch": {"fail": 1}}
    assert rows["lstm"].cases("jax") == 2  # the plain LSTM and the Bidirectional (of an LSTM)
    assert model.kind_cell(rows["gru"], "jax") == "2: 1 fail, 1 pass" and model.kind_cell(rows["gru"], "tensorflow") == "-"
    text = markdown.render_markdown(report)
    assert "### By layer kind" in text and "| `simple_rnn` | 1: 1 pass | 1: 1 fail |" in text
    assert model.case_kinds({"name": "x", "layers": [{"type": "no_such_layer"}]}) == "?"


def test_a_single_kind_shows_no_kind_table(mixed: Path) -> None:
    report = build_report(mixed)
    assert len(report.kind_rows) == 1 and "### By layer kind" not in markdown.render_markdown(report)
