"""harness.reports.compare_runs on synthetic run records: regressions, drift, improvements, versions, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.records import store as records
from harness.reports.compare_runs import compare_runs


def make_case(name: str, status: str, max_abs_error: float = 1e-8, known: tuple[str, ...] = (), error: str | None = None) -> dict[str, Any]:
    """One case result in the run-record schema (only the fields the comparison reads, plus a few more)."""
    item = {"passed": status in ("pass", "known"), "max_abs_error": max_abs_error, "max_ulp": 10.0, "message": f"{name}: synthetic"}
    return {
        "case": name,
        "dtype": "float32",
        "status": status,
        "apis": {} if status in ("error", "refused", "timeout") else {"functional": {"passed": item["passed"], "items": {"output": item}}},
        "api_agreement": [],
        "error": error,
        "known_divergences": list(known),
        "measured_status": "fail" if status == "known" else status,
    }


def write_run(folder: Path, backend: str, cases: list[dict[str, Any]], keras: str = "3.15.1", backend_version: str = "2.13.0") -> None:
    """A <backend>.json run record in ``folder``."""
    record = {
        "schema": records.SCHEMA,
        "schema_version": records.SCHEMA_VERSION,
        "backend": backend,
        "device": "cpu",
        "versions": {"keras": keras, backend: backend_version, "numpy": "2.4.6", "python": "3.11.7"},
        "settings": {},
        "fault": None,
        "cases": cases,
    }
    records.write_json(folder / f"{backend}.json", record)


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
    assert "**grew** on torch: pass -> pass, max abs error 1.00e-08 -> 5.00e-07 (grew 50x)" in drift
    assert "steady" not in text
    assert "1 regressions (1 of them drift)" in text


def test_new_and_removed_cases_and_version_changes(runs: tuple[Path, Path]) -> None:
    old, new = runs
    write_run(old, "torch", [make_case("kept", "pass"), make_case("dropped", "pass")], keras="3.15.1", backend_version="2.13.0")
    write_run(old, "tensorflow", [make_case("kept", "pass")])
    write_run(new, "torch", [make_case("kept", "pass"), make_case("added", "fail")], keras="3.16.0.dev2026112403", backend_version="2.14.0")
    text, code = compare_runs(old, new)
    assert code == 0  # a new failing case is listed as new, not as a regression
    assert "- added on torch" in text.split("## New cases")[1].split("##")[0]
    removed = text.split("## Removed cases")[1].split("##")[0]
    assert "- dropped on torch" in removed and "- kept on tensorflow" in removed
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
        write_run(new, "torch", [{"case": "lstm_a"}])
    with pytest.raises(records.RecordError) as caught:
        compare_runs(old, new)
    assert "\n" not in str(caught.value)
