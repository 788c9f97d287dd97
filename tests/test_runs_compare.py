"""harness.reports.compare_runs on synthetic run and verdict records: regressions, drift, improvements, versions, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.records import store as records
from harness.reports.compare_runs import compare_runs
from test_report_model import make_case as record_case, make_error, make_item, make_run, make_verdict, make_verdicts, write_json


def make_case(name: str, status: str, max_abs_error: float = 1e-8, known: tuple[str, ...] = (), error: str | None = None,
              measured: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One case result and its verdict: ``status`` is the verdict; a known divergence was measured as a fail."""
    measured = measured or ("fail" if status == "known" else status)
    ratio = max_abs_error / 1e-6
    if measured in ("error", "refused", "timeout"):
        kind, _, message = (error or "RuntimeError: boom").partition(": ")
        result = record_case(name, measured, error=make_error(kind, message))
    else:
        result = record_case(name, measured, items=[make_item(error=max_abs_error, ratio=ratio, passed=measured == "pass",
                                                              mismatched=0 if measured == "pass" else 1)])
    return result, make_verdict(measured, status, explained_by=known)


def write_run(folder: Path, backend: str, cases: list[tuple[dict[str, Any], dict[str, Any]]], keras: str = "3.15.1",
              backend_version: str = "2.13.0") -> None:
    """A <backend>.json run record and its <backend>.verdicts.json in ``folder``."""
    run = make_run(backend, [result for result, _ in cases], keras=keras, version=backend_version)
    write_json(folder / f"{backend}.json", run)
    write_json(folder / f"{backend}.verdicts.json", make_verdicts(backend, run, {r["case"]: v for r, v in cases}))


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    """Two empty results folders, old and new."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    return old, new


def test_identical_runs_report_nothing(runs: tuple[Path, Path]) -> None:
    old, new = runs
    for folder in runs:
        write_run(folder, "torch", [make_case("lstm_a", "pass"), make_case("lstm_b", "known", known=("some_id",))])
    text, code = compare_runs(old, new)
    assert code == 0
    assert "0 regressions" in text
    assert "## Regressions\n\nNone." in text
    assert "## Version changes\n\nNone." in text


def test_pass_to_fail_and_known_to_error_are_regressions(runs: tuple[Path, Path]) -> None:
    old, new = runs
    write_run(old, "torch", [make_case("lstm_a", "pass"), make_case("lstm_b", "known", known=("x",)), make_case("lstm_c", "pass")])
    write_run(new, "torch", [make_case("lstm_a", "fail", 1e-2), make_case("lstm_b", "error", error="RuntimeError: boom"), make_case("lstm_c", "pass")])
    text, code = compare_runs(old, new)
    regressions = text.split("## Regressions")[1].split("##")[0]
    assert code == 1
    assert "**lstm_a** on torch: pass -> fail" in regressions
    assert "**lstm_b** on torch: known -> error" in regressions and "RuntimeError: boom" in regressions
    assert "lstm_c" not in text


def test_known_divergence_that_no_longer_reproduces_is_an_improvement(runs: tuple[Path, Path]) -> None:
    old, new = runs
    write_run(old, "jax", [make_case("masked", "known", 0.5, known=("jax_scan_masked",)), make_case("act", "fail", 1.0)])
    write_run(new, "jax", [make_case("masked", "pass"), make_case("act", "pass")])
    text, code = compare_runs(old, new)
    improvements = text.split("## Improvements")[1].split("##")[0]
    assert code == 0
    assert "**masked** on jax: known -> pass" in improvements
    assert "jax_scan_masked no longer reproduces" in improvements
    assert "**act** on jax: fail -> pass" in improvements


def test_error_growth_over_ten_times_while_passing_is_drift(runs: tuple[Path, Path]) -> None:
    old, new = runs
    write_run(old, "torch", [make_case("grew", "pass", 1e-8), make_case("steady", "pass", 1e-8)])
    write_run(new, "torch", [make_case("grew", "pass", 5e-7), make_case("steady", "pass", 9e-8)])
    text, code = compare_runs(old, new)
    drift = text.split("## Drift")[1].split("##")[0]
    assert code == 1
    assert "**grew** on torch: pass -> pass, ratio 0.01 -> 0.5, max abs error 1.00e-08 -> 5.00e-07 (grew 50x)" in drift
    assert "steady" not in text
    assert "1 regressions (1 of them drift)" in text


def test_new_and_removed_cases_and_version_changes(runs: tuple[Path, Path]) -> None:
    old, new = runs
    write_run(old, "torch", [make_case("kept", "pass"), make_case("dropped", "pass")], keras="3.15.1", backend_version="2.13.0")
    write_run(old, "tensorflow", [make_case("kept", "pass")])
    write_run(new, "torch", [make_case("kept", "pass"), make_case("added", "fail")], keras="3.16.0.dev2026112403", backend_version="2.14.0")
    text, code = compare_runs(old, new)
    assert code == 1  # the removed case and the removed backend fail the comparison
    assert "- added on torch" in text.split("## New cases")[1].split("##")[0]
    removed = text.split("## Removed cases")[1].split("##")[0]
    assert "- dropped on torch" in removed and "- kept on tensorflow" in removed
    assert "backends gone: tensorflow" in text
    versions = text.split("## Version changes")[1]
    assert "- torch: keras 3.15.1 -> 3.16.0.dev2026112403" in versions
    assert "- torch: torch 2.13.0 -> 2.14.0" in versions
    assert "- tensorflow: only in the old run" in versions
    assert "numpy" not in versions


def test_corrupt_record_raises_record_error(runs: tuple[Path, Path]) -> None:
    old, new = runs
    write_run(old, "torch", [make_case("lstm_a", "pass")])
    (new / "torch.json").write_text('{"schema": "keras-parity/run", "cases": [', encoding="utf-8")
    with pytest.raises(records.RecordError, match="not valid JSON") as caught:
        compare_runs(old, new)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("problem", ["missing", "empty", "wrong_schema", "case_without_status"])
def test_unusable_folders_raise_record_error(runs: tuple[Path, Path], problem: str) -> None:
    old, new = runs
    write_run(old, "torch", [make_case("lstm_a", "pass")])
    if problem == "missing":
        new = new / "absent"
    elif problem == "wrong_schema":
        (new / "torch.json").write_text(json.dumps({"schema": "something/else"}), encoding="utf-8")
    elif problem == "case_without_status":
        write_json(new / "torch.json", make_run("torch", [{"case": "lstm_a"}]))
    with pytest.raises(records.RecordError) as caught:
        compare_runs(old, new)
    assert "\n" not in str(caught.value)


def test_nan_failure_and_invalid_are_regressions_shown_as_non_finite(runs: tuple[Path, Path]) -> None:
    old, new = runs
    write_run(old, "jax", [make_case("nan_out", "pass"), make_case("bad_expected", "pass")])
    write_run(new, "jax", [make_case("nan_out", "fail", float("nan")), make_case("bad_expected", "invalid", measured="invalid")])
    text, code = compare_runs(old, new)
    regressions = text.split("## Regressions")[1].split("##")[0]
    assert code == 1
    assert "**nan_out** on jax: pass -> fail, ratio 0.01 -> non-finite (NaN), max abs error 1.00e-08 -> NaN" in regressions
    assert "**bad_expected** on jax: pass -> invalid" in regressions


def test_runs_classified_against_different_divergence_files_are_flagged(runs: tuple[Path, Path]) -> None:
    old, new = runs
    write_run(old, "jax", [make_case("a", "pass")])
    write_run(new, "jax", [make_case("a", "pass")])
    verdicts = json.loads((new / "jax.verdicts.json").read_text())
    write_json(new / "jax.verdicts.json", verdicts | {"divergences_sha256": "cd" * 32})
    (old / "jax.verdicts.json").unlink()
    text, code = compare_runs(old, new)
    assert code == 0
    assert "Warning: the old jax record has no verdicts" in text
    write_run(old, "jax", [make_case("a", "pass")])
    text, _ = compare_runs(old, new)
    assert "classified against different divergence files" in text


def test_a_new_failing_case_alone_is_listed_as_new_not_a_regression(runs: tuple[Path, Path]) -> None:
    old, new = runs
    write_run(old, "torch", [make_case("kept", "pass")])
    write_run(new, "torch", [make_case("kept", "pass"), make_case("added", "fail", 1e-2)])
    text, code = compare_runs(old, new)
    assert code == 0
    assert "- added on torch" in text.split("## New cases")[1].split("##")[0]


@pytest.mark.parametrize("gone", ["case", "backend"])
def test_a_case_or_backend_the_new_run_lacks_fails_the_comparison(runs: tuple[Path, Path], gone: str) -> None:
    old, new = runs
    write_run(old, "torch", [make_case("kept", "pass"), make_case("dropped", "pass")])
    write_run(old, "jax", [make_case("kept", "pass")])
    write_run(new, "torch", [make_case("kept", "pass")] + ([make_case("dropped", "pass")] if gone == "backend" else []))
    if gone == "case":
        write_run(new, "jax", [make_case("kept", "pass")])
    text, code = compare_runs(old, new)
    assert code == 1
    removed = text.split("## Removed cases")[1].split("##")[0]
    assert ("- dropped on torch" in removed) if gone == "case" else ("- kept on jax" in removed and "backends gone: jax" in text)


def test_pass_to_known_and_pass_to_refused_are_regressions(runs: tuple[Path, Path]) -> None:
    old, new = runs
    write_run(old, "tensorflow", [make_case("masked", "pass"), make_case("cudnn", "pass")])
    write_run(new, "tensorflow", [make_case("masked", "known", 0.3, known=("masking_layer_ignored_with_initial_state",)),
                                  make_case("cudnn", "refused", error="NotImplementedError: no cuDNN")])
    text, code = compare_runs(old, new)
    regressions = text.split("## Regressions")[1].split("##")[0]
    assert code == 1
    assert "**masked** on tensorflow: pass -> known" in regressions and "verdict pass -> known" in regressions
    assert "**cudnn** on tensorflow: pass -> refused" in regressions
    assert "None." in text.split("## Other verdict changes")[1].split("##")[0]


def test_known_under_another_claim_is_a_regression(runs: tuple[Path, Path]) -> None:
    old, new = runs
    write_run(old, "jax", [make_case("masked", "known", 0.3, known=("jax_scan_masked",))])
    write_run(new, "jax", [make_case("masked", "known", 0.3, known=("jax_unroll_zero_output",))])
    text, code = compare_runs(old, new)
    assert code == 1
    assert "known as jax_scan_masked -> known as jax_unroll_zero_output" in text.split("## Regressions")[1].split("##")[0]


def test_known_with_an_error_larger_by_more_than_the_tolerance_is_a_regression(runs: tuple[Path, Path]) -> None:
    """make_item's tolerance: atol 1e-6 + rtol 1e-5 * |0.25| = 3.5e-6 at the worst element."""
    old, new = runs
    write_run(old, "jax", [make_case("grew", "known", 8.47e-8, known=("jax_float64_tanh",)),
                           make_case("noise", "known", 8.47e-8, known=("jax_float64_tanh",))])
    write_run(new, "jax", [make_case("grew", "known", 8 * 8.47e-8 + 3.6e-6, known=("jax_float64_tanh",)),
                           make_case("noise", "known", 8.47e-8 + 3.4e-6, known=("jax_float64_tanh",))])
    text, code = compare_runs(old, new)
    regressions = text.split("## Regressions")[1].split("##")[0]
    assert code == 1
    assert "**grew** on jax: known -> known" in regressions and "more than the tolerance" in regressions
    assert "noise" not in text


def test_a_narrower_output_dtype_or_a_lost_output_is_a_regression(runs: tuple[Path, Path]) -> None:
    old, new = runs
    two_builds = [make_item("functional", dtype="float64"), make_item("sequential", dtype="float64")]
    write_run(old, "torch", [(record_case(name, "pass", items=two_builds), make_verdict("pass")) for name in ("narrowed", "lost")])
    narrowed = [make_item("functional", dtype="float64"), make_item("sequential", dtype="float32")]
    write_run(new, "torch", [(record_case("narrowed", "pass", items=narrowed), make_verdict("pass")),
                             (record_case("lost", "pass", items=two_builds[:1]), make_verdict("pass"))])
    text, code = compare_runs(old, new)
    regressions = text.split("## Regressions")[1].split("##")[0]
    assert code == 1
    assert "sequential/output dtype narrowed float64 -> float32" in regressions
    assert "output lost: sequential/output" in regressions


def test_worse_by_a_definition_claim_is_another_change_not_a_regression(runs: tuple[Path, Path]) -> None:
    from test_report_model import make_claim

    old, new = runs
    write_run(old, "tensorflow", [make_case("hard", "pass")])
    run = make_run("tensorflow", [make_case("hard", "known", 0.1, known=("hard_sigmoid_definition",))[0]], keras="2.21.0")
    write_json(new / "tensorflow.json", run)
    claim = make_claim("hard_sigmoid_definition") | {"change": "definition"}
    verdicts = {"hard": make_verdict("fail", "known", explained_by=("hard_sigmoid_definition",))}
    write_json(new / "tensorflow.verdicts.json", make_verdicts("tensorflow", run, verdicts, claims=[claim]))
    text, code = compare_runs(old, new)
    assert code == 0
    assert "**hard** on tensorflow: pass -> known" in text.split("## Other verdict changes")[1].split("##")[0]
    write_json(new / "tensorflow.verdicts.json", make_verdicts("tensorflow", run, verdicts, claims=[make_claim("hard_sigmoid_definition")]))
    assert compare_runs(old, new)[1] == 1  # the same claim as a bug is a regression
