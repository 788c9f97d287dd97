"""Every number README.md states comes from the records (issue 15): the measured block between
<!-- measured:begin --> and <!-- measured:end --> is what harness/reports/readme.py makes of the committed results/,
a changed record changes the block (so the comparison fails), and the counts the prose elsewhere states are
checked against the records here. Record-only: no Keras.
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, run_harness
from harness.records.store import RecordError
from harness.reports.model import build_report
from harness.reports.readme import BEGIN, END, ReadmeError, current_block, measured_block, replace_block, write_readme

README = ROOT / "README.md"
RESULTS = ROOT / "results"

# Record-only, so the same on every backend, and each test rebuilds the report model of the whole matrix's records
# (10 to 11 min a session on CI's 2 cores, the largest module of the suite): it runs once, in the JAX session of
# 'nox -s tests' (the shortest), and wherever KERAS_BACKEND is unset.
ONCE_IN = "jax"
pytestmark = pytest.mark.skipif(os.environ.get("KERAS_BACKEND", ONCE_IN) != ONCE_IN,
                                reason=f"record-only: runs once, in the {ONCE_IN} session of nox -s tests")


@pytest.fixture(scope="module")
def committed_block() -> str:
    return measured_block(RESULTS)


@pytest.fixture
def results_copy(tmp_path: Path) -> Path:
    """The committed records (JSON only) under tmp_path/results, to edit."""
    copy = tmp_path / "results"
    shutil.copytree(RESULTS, copy, ignore=shutil.ignore_patterns("*.npz", "*.log", "*.html", "*.md", "repro", "*.py", "*.sh"))
    return copy


def test_readme_block_is_what_the_committed_records_make(committed_block):
    assert current_block(README.read_text(encoding="utf-8")) == committed_block, (
        "README.md's measured block differs from the records: run 'python -m harness readme README.md --results results'")


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=1))


def _first_pass(data: dict) -> None:
    name = next(name for name, entry in data["cases"].items() if entry["verdict"] == "pass")
    data["cases"][name]["verdict"] = "fail"


def _longer_wall_time(data: dict) -> None:
    data["wall_time_s"] = data["wall_time_s"] * 2 + 1


def _larger_cross_difference(data: dict) -> None:
    data["pairs"][0]["max_abs_diff"] = _above_every_difference(data)


def _above_every_difference(data: dict) -> float:
    """Ten times the largest finite difference the record holds, a round number above every pair's largest."""
    finite = [pair["max_abs_diff"] for pair in data["pairs"] if isinstance(pair.get("max_abs_diff"), (int, float))
              and pair["max_abs_diff"] < float("inf")]
    return float(f"{10 * max(finite):.0e}")


def _one_fault_missed(data: dict) -> None:
    first = next(iter(data["faults"]))
    data["faults"][first]["status"] = "undetected"
    data["faults"][first]["detected"] = False


def _fewer_regressions(data: dict) -> None:
    data["counts"]["regression"] -= 1


def _longer_main_job(data: dict) -> None:
    data["wall_s"] = data["wall_s"] * 2 + 60


def _other_keras(data: dict) -> None:
    data["versions"]["keras"] = "3.15.2"


def _verdict_counts(data: dict) -> str:
    from harness.verdicts.classify import VERDICTS

    verdicts = [entry["verdict"] for entry in data["cases"].values()]
    return ", ".join(f"{verdicts.count(verdict)} {verdict}" for verdict in VERDICTS if verdicts.count(verdict))


def _detected(data: dict) -> tuple[int, int]:
    return sum(bool(entry["detected"]) for entry in data["faults"].values()), len(data["faults"])


# Each wrong number: the record, the edit, and what the block must then show, computed from the edited record (so
# the test holds for whatever the committed records measured).
WRONG_NUMBERS = {
    "a verdict": ("jax.verdicts.json", _first_pass, lambda edited: f"| {len(edited['cases'])} | {_verdict_counts(edited)} |"),
    "a wall time": ("torch.json", _longer_wall_time, lambda edited: f"| {edited['wall_time_s']:.0f} s |"),
    "a cross-backend distance": ("cross_backend.json", _larger_cross_difference,
                                 lambda edited: f"| {edited['pairs'][0]['max_abs_diff']:.2e} |"),
    "a fault detected": ("tensorflow.faults.json", _one_fault_missed,
                         lambda edited: "| results | tensorflow | cpu, precision default | {} of {} |".format(*_detected(edited))),
    "a between-versions count": ("between_versions.json", _fewer_regressions,
                                 lambda edited: f"| {edited['counts']['fixed']} | {edited['counts']['regression']} |"),
    "a version": ("keras-nightly/tensorflow.json", _other_keras, lambda edited: "keras 3.15.2, tensorflow"),
    "the main job's time": ("bench/main_job.json", _longer_main_job, lambda edited: f"took {edited['wall_s'] / 60:.1f} min"),
}


@pytest.mark.parametrize("wrong", sorted(WRONG_NUMBERS))
def test_a_changed_record_changes_the_block(wrong, results_copy, committed_block):
    record, change, shows = WRONG_NUMBERS[wrong]
    if record == "bench/main_job.json" and not (results_copy / record).exists():
        # a run whose publish session did not run has no main job record: one appearing must change the block too
        (results_copy / record).write_text(json.dumps({
            "started": "2026-01-01T10:00:00+00:00", "finished": "2026-01-01T10:40:00+00:00", "wall_s": 2400.0,
            "sessions": sorted(path.stem for path in (results_copy / "bench" / "sessions").glob("*.json")), "jobs": 2,
            "cpu_count": 2, "clean_clone": True, "commit": "0123456789abcdef", "command": "nox"}))
    _edit(results_copy / record, change)
    shown = shows(json.loads((results_copy / record).read_text()))
    block = measured_block(results_copy)
    assert block != committed_block
    assert shown in block and shown not in committed_block
    # the comparison the README test makes fails on it
    assert current_block(README.read_text(encoding="utf-8")) != block


def test_the_block_does_not_depend_on_where_results_lie(results_copy, committed_block):
    assert measured_block(results_copy) == committed_block


def test_readme_command_rewrites_only_the_block(tmp_path, results_copy):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{BEGIN}\nstale: 1 pass\n{END}\n\nafter\n", encoding="utf-8")
    done = run_harness("readme", str(readme), "--results", str(results_copy))
    assert done.returncode == 0, done.stderr
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# title\n\nbefore\n\n" + BEGIN + "\n") and text.endswith(END + "\n\nafter\n")
    assert "stale" not in text and current_block(text) == measured_block(results_copy)
    assert run_harness("readme", str(readme), "--results", str(results_copy), "--check").returncode == 0
    _edit(results_copy / "jax.verdicts.json", _first_pass)
    assert run_harness("readme", str(readme), "--results", str(results_copy), "--check").returncode == 1
    assert write_readme(readme, results_copy) is True
    assert write_readme(readme, results_copy) is False


@pytest.mark.parametrize("text", ["no markers\n", f"{BEGIN}\nonly the beginning\n", f"{END}\n{BEGIN}\n",
                                  f"{BEGIN}\n{END}\n{BEGIN}\n{END}\n"])
def test_readme_without_its_markers_exits_2_with_one_line(tmp_path, text):
    readme = tmp_path / "README.md"
    readme.write_text(text, encoding="utf-8")
    with pytest.raises(ReadmeError):
        replace_block(text, "block\n")
    done = run_harness("readme", str(readme), "--results", str(RESULTS))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "marker" in done.stderr
    assert readme.read_text(encoding="utf-8") == text


def test_readme_of_a_folder_without_records_exits_2(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\n{END}\n", encoding="utf-8")
    with pytest.raises(RecordError):
        measured_block(tmp_path / "nothing")
    done = run_harness("readme", str(readme), "--results", str(tmp_path / "nothing"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------ the prose elsewhere

def _prose() -> str:
    """README.md without its measured block: the hand-written text."""
    text = README.read_text(encoding="utf-8")
    return text[:text.index(BEGIN)] + text[text.index(END):]


def _cases_with_verdict(folder: Path, backend: str, verdict: str) -> list[str]:
    cases = json.loads((folder / f"{backend}.verdicts.json").read_text())["cases"]
    return sorted(name for name, entry in cases.items() if entry["verdict"] == verdict)


def prose_problems(prose: str, release, folder: Path = RESULTS) -> list[str]:
    """The counts the hand-written prose states, each against the records of ``release`` (a report of results/);
    one line per number the records do not back."""
    problems = []
    cases = {backend: sum(1 for row in release.gradients.rows if row.backend == backend) for backend in release.gradients.backends}
    if len(set(cases.values())) != 1 or f"selects {next(iter(cases.values()))} float32 built-ins" not in prose:
        problems.append(f"gradient cases per backend: {cases}")
    float32 = [line for line in release.gradients.drift if line.policy == "float32"]
    worst = max(line.worst_ratio for line in float32)
    if f"worst {worst:.2f} of it" not in prose:
        problems.append(f"worst float32 drift ratio {worst:.2f}")
    for optimizer, words in (("adam", "after 50 Adam steps"), ("sgd", "with SGD")):
        last = max(line.distances[-1] for line in float32 if line.optimizer == optimizer)
        if f"{f'{last:.0e}'.replace('e-0', 'e-')} {words}" not in prose:
            problems.append(f"{optimizer} drift after the last step {last:.1e}")
    sweep = {row.dtype: row.cells for row in release.faults.sweep}
    if set(sweep["float32"].values()) != {"1e-05"} or "1e-5 in float32 on every backend" not in prose:
        problems.append(f"float32 sweep {sweep['float32']}")
    if not sweep["float64"]["tensorflow"] == sweep["float64"]["torch"] == "1e-11" or "down to 1e-11" not in prose:
        problems.append(f"float64 sweep {sweep['float64']}")
    # what the 'What it found' prose says without a number: no release case fails on CPU, every fault is detected
    # without a false alarm, the float32 drift is within its bound
    if not all(summary.device_class == "cpu" for summary in release.summaries):
        problems.append("a release record is not CPU")
    # a failing release case is allowed only where the prose names it (backend and case, as `case`)
    for summary in release.summaries:
        for verdict in ("fail", "error", "timeout", "invalid"):
            if not summary.counts[verdict]:
                continue
            cases = _cases_with_verdict(folder, summary.backend, verdict)
            unnamed = [name for name in cases if f"`{name}`" not in prose]
            if unnamed or summary.counts[verdict] != len(cases):
                problems.append(f"{summary.backend}: {summary.counts[verdict]} {verdict} (not named in the prose: {unnamed})")
    problems += [f"{entry.backend}: {entry.detected} of {entry.total} faults detected, false alarms {entry.false_alarms}"
                 for entry in release.faults.detection if entry.detected != entry.total or entry.false_alarms]
    problems += [f"{line.backend} {line.optimizer} float32 drift over its bound" for line in float32 if not line.passed]
    return problems


def test_prose_numbers_are_the_records():
    assert prose_problems(_prose(), build_report(RESULTS)) == []


def _drift_doubled(data: dict) -> None:
    for entry in data["long_runs"]:
        entry["max_abs_weight_difference"] = [2 * value for value in entry["max_abs_weight_difference"]]
        entry["drift_check"]["worst_ratio"] *= 2


def _sweep_coarser(data: dict) -> None:
    data["sweep"]["float32"]["smallest_detected"] = 1e-4


def _gradient_case_lost(data: dict) -> None:
    data["cases"].pop()


WRONG_PROSE = {
    "drift": ("torch.training.json", _drift_doubled, "worst float32 drift ratio 1.26"),
    "sweep": ("jax.faults.json", _sweep_coarser, "float32 sweep"),
    "gradient cases": ("tensorflow.gradients.json", _gradient_case_lost, "gradient cases per backend"),
    "a failure": ("torch.verdicts.json", _first_pass, "torch: 1 fail"),
    "a missed fault": ("jax.faults.json", _one_fault_missed,
                       lambda edited: "jax: {} of {} faults detected".format(*_detected(edited))),
}


@pytest.mark.parametrize("wrong", sorted(WRONG_PROSE))
def test_prose_check_fails_on_a_changed_record(wrong, results_copy):
    record, change, problem = WRONG_PROSE[wrong]
    _edit(results_copy / record, change)
    problem = problem(json.loads((results_copy / record).read_text())) if callable(problem) else problem
    problems = prose_problems(_prose(), build_report(results_copy), results_copy)
    assert any(line.startswith(problem) for line in problems), problems
