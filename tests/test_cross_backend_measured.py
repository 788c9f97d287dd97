"""The cross-backend comparison from records alone (no Keras): every case both backends produced numbers for is
measured, whatever the two verdicts (pass, known, fail), with its largest absolute and relative difference and where;
the distance is a measurement, because two passing sides are within the sum of their tolerances by construction (a
test below searches for a counterexample); the one finding is a raw output a record names but its arrays lack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import load_noxfile
from harness.records import store
from harness.studies.gradients import arrays_path, gradients_path, write_cross_backend
from harness.verdicts.cross_backend import compare_backends, distance, largest_by_pair

RTOL, ATOL = 1e-5, 1e-6
SHAPE = (3, 5, 4)  # batch, time, units: distinct sizes


def run_case(name: str, status: str, outputs: tuple[str, ...] = ("output",)) -> dict[str, Any]:
    """One case result of a run record; an error or refused case has no APIs with items. Its definition: a small
    LSTM (the acceptance judgement parses the definition of a case refused on one side and run on the other)."""
    definition = {"name": name, "dtype": "float32", "batch": 3, "time": 5, "features": 2, "layers": [{"type": "lstm", "units": 4}]}
    if status in ("error", "refused"):
        return {"case": name, "status": status, "apis": {}, "definition": definition}
    items = {output: {"rtol": RTOL, "atol": ATOL, "passed": status == "pass"} for output in outputs}
    return {"case": name, "status": status, "apis": {"functional": {"items": items}, "sequential": {"items": dict(items)}},
            "definition": definition}


def write_run(folder: Path, backend: str, cases: list[dict[str, Any]], arrays: dict[str, np.ndarray],
              verdicts: dict[str, str] | None = None) -> None:
    store.write_json(folder / f"{backend}.json", {"schema": "keras-parity/run", "schema_version": 2, "backend": backend,
                                                 "device": "cpu", "versions": {"keras": "3.15.1"}, "fault": None, "cases": cases})
    store.write_arrays(folder / f"{backend}.npz", arrays)
    if verdicts is not None:
        store.write_json(folder / f"{backend}.verdicts.json", {"schema": "keras-parity/verdicts", "schema_version": 1, "backend": backend,
                                                               "cases": {name: {"verdict": verdict} for name, verdict in verdicts.items()}})


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261127)


@pytest.fixture
def folder(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, dict[str, np.ndarray]]:
    """jax and torch: a case passing on both (1e-7 apart), one known on jax (0.3 apart at [2, 1, 3]), one failing on
    torch (2e-2 apart at [0, 4, 1]), one erroring on jax, one refused on torch."""
    base = {name: rng.standard_normal(SHAPE).astype(np.float32) for name in ("both_pass", "known_on_jax", "fails_on_torch", "errors_on_jax")}
    jax, torch = {}, {}
    for name, values in base.items():
        jax[f"{name}/functional/output"] = values.copy()
        torch[f"{name}/functional/output"] = values.copy()
    torch["both_pass/functional/output"][1, 2, 0] += np.float32(1e-7 * 4)
    jax["known_on_jax/functional/output"][2, 1, 3] += np.float32(0.3)
    torch["fails_on_torch/functional/output"][0, 4, 1] -= np.float32(2e-2)
    del jax["errors_on_jax/functional/output"]
    torch["refused_on_torch/functional/output"] = rng.standard_normal(SHAPE)
    jax["refused_on_torch/functional/output"] = torch["refused_on_torch/functional/output"].copy()
    del torch["refused_on_torch/functional/output"]
    write_run(tmp_path, "jax", [run_case("both_pass", "pass"), run_case("known_on_jax", "fail"), run_case("fails_on_torch", "pass"),
                                run_case("errors_on_jax", "error"), run_case("refused_on_torch", "pass")], jax,
              {"both_pass": "pass", "known_on_jax": "known", "fails_on_torch": "pass", "errors_on_jax": "error", "refused_on_torch": "pass"})
    write_run(tmp_path, "torch", [run_case("both_pass", "pass"), run_case("known_on_jax", "pass"), run_case("fails_on_torch", "fail"),
                                  run_case("errors_on_jax", "pass"), run_case("refused_on_torch", "refused")], torch,
              {"both_pass": "pass", "known_on_jax": "pass", "fails_on_torch": "fail", "errors_on_jax": "pass", "refused_on_torch": "refused"})
    return tmp_path, {"jax": jax, "torch": torch}


def test_known_and_failing_sides_are_measured_too(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    """The old check compared only cases passing on both sides: known_on_jax and fails_on_torch were skipped."""
    path, arrays = folder
    record = compare_backends(path)
    measured = {row["case"]: row for row in record["pairs"]}
    assert sorted(measured) == ["both_pass", "fails_on_torch", "known_on_jax"]
    known = measured["known_on_jax"]
    expected = np.abs(arrays["jax"]["known_on_jax/functional/output"].astype(np.float64)
                      - arrays["torch"]["known_on_jax/functional/output"].astype(np.float64))
    assert known["max_abs_diff"] == pytest.approx(float(expected.max()), rel=0, abs=0)
    assert known["worst_index"] == [2, 1, 3]
    assert known["verdicts"] == ["known", "pass"] and known["statuses"] == ["fail", "pass"]
    assert known["api"] == "functional" and known["shape"] == list(SHAPE)
    assert measured["fails_on_torch"]["worst_index"] == [0, 4, 1] and measured["fails_on_torch"]["verdicts"] == ["pass", "fail"]
    assert measured["fails_on_torch"]["max_abs_diff"] == pytest.approx(2e-2, rel=1e-5)
    assert "within" not in known  # a distance, not a verdict
    assert record["measurements_only"] is True
    assert [(entry["case"], entry["reason"]) for entry in record["not_compared"]] == [
        ("errors_on_jax", "no numbers on jax (measured error)"), ("refused_on_torch", "no numbers on torch (measured refused)")]
    assert record["never_compared"] == ["errors_on_jax", "refused_on_torch"]
    assert record["missing"] == []
    largest = largest_by_pair(record["pairs"])
    assert largest["jax vs torch"]["case"] == "known_on_jax"


def test_a_raw_output_the_record_names_but_the_arrays_lack_is_a_finding(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, arrays = folder
    torch = dict(arrays["torch"])
    del torch["both_pass/functional/output"]  # the record says both_pass produced an output; the archive lost it
    store.write_arrays(path / "torch.npz", torch)
    record = compare_backends(path)
    assert record["missing"] == [{"case": "both_pass", "backends": ["jax", "torch"], "raw_output": "torch: both_pass/functional/output"}]
    assert "both_pass" not in {row["case"] for row in record["pairs"]}
    findings = load_noxfile()._unexplained_findings(path)
    assert findings == ["errors_on_jax@jax: error", "fails_on_torch@torch: fail",  # the verdicts' own findings
                        "both_pass (jax vs torch): raw output torch: both_pass/functional/output missing",
                        # refused on one backend, run on the other, and no acceptance claim says so
                        "refused_on_torch: refused on torch, runs on jax, no acceptance claim explains it"]


def test_a_passing_pair_far_apart_is_no_finding_for_nox(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    """nox used to fail the report on a pair beyond the summed tolerances; such a pair is now a published distance."""
    path, arrays = folder
    torch = dict(arrays["torch"])
    torch["both_pass/functional/output"] = torch["both_pass/functional/output"] + np.float32(1.0)
    store.write_arrays(path / "torch.npz", torch)
    record = compare_backends(path)
    row = next(row for row in record["pairs"] if row["case"] == "both_pass")
    assert row["max_abs_diff"] == pytest.approx(1.0, rel=1e-5) and row["summed_tolerance_ratio"] > 1
    assert load_noxfile()._unexplained_findings(path) == ["errors_on_jax@jax: error", "fails_on_torch@torch: fail",
                                                          "refused_on_torch: refused on torch, runs on jax, no acceptance claim explains it"]


def test_distance_finds_the_planted_difference_and_its_relative_size(rng: np.random.Generator) -> None:
    first = rng.standard_normal(SHAPE)
    second = first.copy()
    second[1, 3, 2] += 0.25
    second[0, 0, 0] += 1e-3
    measured = distance(first, second, (RTOL, ATOL), (2 * RTOL, 3 * ATOL))
    assert measured["worst_index"] == [1, 3, 2]
    assert measured["max_abs_diff"] == pytest.approx(0.25)
    assert measured["values"] == [first[1, 3, 2], second[1, 3, 2]]
    relative = np.abs(first - second) / np.maximum(np.abs(first), np.abs(second))
    assert measured["max_rel_diff"] == pytest.approx(float(relative.max()))
    summed = (ATOL + 3 * ATOL) + (RTOL + 2 * RTOL) * np.maximum(np.abs(first), np.abs(second))
    assert measured["summed_tolerance_ratio"] == pytest.approx(float((np.abs(first - second) / summed).max()))
    assert distance(first, first, (RTOL, ATOL), (RTOL, ATOL))["max_abs_diff"] == 0.0


def test_a_nan_on_one_side_only_is_an_infinite_distance_and_nan_on_both_is_none(rng: np.random.Generator) -> None:
    first = rng.standard_normal(SHAPE)
    second = first.copy()
    first[2, 4, 3] = second[2, 4, 3] = np.nan
    assert distance(first, second, (RTOL, ATOL), (RTOL, ATOL))["nonfinite_disagreements"] == 0
    second[0, 2, 1] = np.nan
    measured = distance(first, second, (RTOL, ATOL), (RTOL, ATOL))
    assert measured["nonfinite_disagreements"] == 1 and measured["worst_index"] == [0, 2, 1]
    assert measured["max_abs_diff"] == np.inf and measured["summed_tolerance_ratio"] == np.inf
    with pytest.raises(ValueError, match=r"shapes \[3, 5, 4\] and \[3, 4, 5\]"):
        distance(first, first.reshape(3, 4, 5), (RTOL, ATOL), (RTOL, ATOL))


def test_differing_shapes_are_published_not_dropped(folder: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, arrays = folder
    torch = dict(arrays["torch"])
    torch["known_on_jax/functional/output"] = torch["known_on_jax/functional/output"][:, :4]
    store.write_arrays(path / "torch.npz", torch)
    row = next(row for row in compare_backends(path)["pairs"] if row["case"] == "known_on_jax")
    assert row["shapes"] == [[3, 5, 4], [3, 4, 4]] and row["max_abs_diff"] is None


def test_two_passing_sides_are_within_the_summed_tolerances_by_construction(rng: np.random.Generator) -> None:
    """Why the old check could not fail: each side within its own tolerance of the same reference (the per-backend
    check, |x - r| <= atol + rtol * |r|) puts the two within the summed bound. Sides pushed to the edge of their
    tolerance in opposite directions, 10^5 elements, mixed signs and magnitudes, never exceed a ratio of 1."""
    reference = rng.standard_normal(100_000) * 10.0 ** rng.integers(-8, 3, 100_000)
    first_tol, second_tol = (1e-5, 1e-6), (3e-5, 2e-7)
    direction = rng.choice([-1.0, 1.0], reference.size)
    first = reference + direction * (first_tol[1] + first_tol[0] * np.abs(reference)) * rng.uniform(0.5, 1.0, reference.size)
    second = reference - direction * (second_tol[1] + second_tol[0] * np.abs(reference)) * rng.uniform(0.5, 1.0, reference.size)
    ratio = distance(first, second, first_tol, second_tol)["summed_tolerance_ratio"]
    assert 0.5 < ratio <= 1.0


def write_gradient_record(folder: Path, backend: str, cases: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> None:
    store.write_json(gradients_path(folder, backend), {"schema": "keras-parity/gradients", "schema_version": 1, "backend": backend,
                                                        "fault": None, "cases": cases})
    store.write_arrays(arrays_path(folder, backend), arrays)


def test_gradients_of_a_known_case_are_measured_across_backends(tmp_path: Path, rng: np.random.Generator) -> None:
    """The gradient comparison skipped the known JAX case; it is measured now, with its verdicts."""
    kernel = rng.standard_normal((5, 24)).astype(np.float32)
    h0 = rng.standard_normal((3, 6)).astype(np.float32)
    outputs = ("grad/lstm_0/kernel", "grad/initial/h")
    jax_case = run_case("masked_initial_state", "fail", outputs) | {"verdict": "known"}
    torch_case = run_case("masked_initial_state", "pass", outputs) | {"verdict": "pass"}
    shifted = h0.copy()
    shifted[2, 5] += np.float32(4e-2)
    write_gradient_record(tmp_path, "jax", [jax_case], {"masked_initial_state/functional/grad/lstm_0/kernel": kernel,
                                                       "masked_initial_state/functional/grad/initial/h": shifted})
    write_gradient_record(tmp_path, "torch", [torch_case], {"masked_initial_state/functional/grad/lstm_0/kernel": kernel,
                                                           "masked_initial_state/functional/grad/initial/h": h0})
    record = write_cross_backend(tmp_path)
    assert record["compared_outputs"] == 2 and record["measurements_only"] is True
    largest = record["largest_by_pair"]["jax vs torch"]
    assert (largest["output"], largest["worst_index"], largest["verdicts"]) == ("grad/initial/h", [2, 5], ["known", "pass"])
    assert largest["max_abs_diff"] == pytest.approx(4e-2, rel=1e-5)
    assert json.loads((tmp_path / "gradients_cross_backend.json").read_text())["never_compared"] == []
