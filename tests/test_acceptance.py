"""What the backends accept (issue 17): a case Keras refuses on some backends and runs on others is a finding, judged
against the acceptance claims; each way of judging is fed a wrong result here and says no. Record-only: no Keras."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import load_noxfile
from harness.case.divergences import DIVERGENCES_FILE, DivergenceFileError, load_divergences
from harness.case.schema import parse_case
from harness.case.tolerances import load_tolerances
from harness.records import store
from harness.verdicts.acceptance import acceptance_possibly_resolved, judge_acceptance
from harness.verdicts.classify import classify_result, divergence_summary

RESULTS = Path(__file__).resolve().parent.parent / "results"
BACKENDS = ("tensorflow", "jax", "torch")
CLAIMED_CASES = ("cudnn_on_impl1", "cudnn_on_impl2", "cudnn_on_impl1_fused_cpu", "cudnn_on_impl2_fused_cpu", "gru_cudnn_on_reseton")
TORCH, JAX, STAND_IN = "torch_use_cudnn_true_runs_without_cuda", "jax_gru_use_cudnn_true_runs_without_cudnn", "fused_on_cpu_stand_in_runs_use_cudnn_true"


@pytest.fixture(scope="module")
def committed() -> dict[str, dict[str, Any]]:
    """The committed release run records, cut to the use_cudnn cases (the acceptance judgement reads no arrays)."""
    runs = {}
    for backend in BACKENDS:
        run = store.read_record(RESULTS / f"{backend}.json")
        runs[backend] = {**run, "cases": [result for result in run["cases"] if "cudnn" in result["case"]]}
    return runs


def _runs(committed: dict[str, dict[str, Any]], case: str, statuses: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One case on the given backends with the given measured statuses (a refusal keeps the recorded refusal: the
    ValueError of a backend that refused this case or another use_cudnn case)."""
    refusal = next(r["error"] for run in committed.values() for r in run["cases"] if r["status"] == "refused")
    runs = {}
    for backend, status in statuses.items():
        result = copy.deepcopy(next(r for r in committed[backend]["cases"] if r["case"] == case))
        result["status"] = status
        result["error"] = copy.deepcopy(refusal) if status == "refused" else None
        runs[backend] = {**committed[backend], "cases": [result]}
    return runs


def test_the_committed_acceptance_differences_are_the_claimed_ones(committed):
    entries = judge_acceptance(committed, load_divergences())
    assert {entry["case"]: entry["explained_by"] for entry in entries} == {
        "cudnn_on_impl1": [TORCH], "cudnn_on_impl2": [TORCH],
        "cudnn_on_impl1_fused_cpu": [STAND_IN], "cudnn_on_impl2_fused_cpu": [STAND_IN],
        "gru_cudnn_on_reseton": [JAX, TORCH]}
    assert all(not entry["unexplained"] for entry in entries)
    # gru_cudnn_on_resetoff is refused everywhere and gru_cudnn_auto_* run everywhere: no difference to explain
    assert not {"gru_cudnn_on_resetoff", "gru_cudnn_auto_reseton"} & {entry["case"] for entry in entries}


def test_without_acceptance_claims_every_difference_is_a_finding(committed):
    others = [claim for claim in load_divergences() if claim.kind != "acceptance"]
    entries = judge_acceptance(committed, others)
    assert sorted(entry["case"] for entry in entries if entry["unexplained"]) == sorted(CLAIMED_CASES)
    gru = next(entry for entry in entries if entry["case"] == "gru_cudnn_on_reseton")
    assert gru["explained_by"] == [] and gru["unexplained"] == ["no acceptance claim applies on jax", "no acceptance claim applies on torch"]


def test_a_claim_for_one_running_backend_does_not_explain_another(committed):
    """gru_cudnn_on_reseton runs on JAX and PyTorch: the PyTorch claim alone leaves JAX's acceptance unexplained."""
    without_jax = [claim for claim in load_divergences() if claim.id != JAX]
    entry = next(e for e in judge_acceptance(committed, without_jax) if e["case"] == "gru_cudnn_on_reseton")
    assert entry["explained_by"] == [] and entry["unexplained"] == ["no acceptance claim applies on jax"]


def test_another_refusal_than_the_claimed_one_is_unexplained(committed):
    runs = _runs(committed, "cudnn_on_impl1", {"tensorflow": "refused", "torch": "pass"})
    refusal_message = runs["tensorflow"]["cases"][0]["error"]["message"]
    runs["tensorflow"]["cases"][0]["error"]["message"] = "use_cudnn=True was specified, but the GPU ran out of memory."
    entry, = judge_acceptance(runs, load_divergences())
    assert entry["explained_by"] == []
    assert entry["unexplained"][0].startswith(f"{TORCH}: on tensorflow: claims a ValueError whose whole message matches")
    runs["tensorflow"]["cases"][0]["error"].update(type="RuntimeError", message=refusal_message)
    entry, = judge_acceptance(runs, load_divergences())
    assert entry["unexplained"][0].startswith(f"{TORCH}: on tensorflow: claims ValueError, got RuntimeError")


def test_a_claim_whose_own_backend_refused_is_unexplained(committed):
    """The stand-in claim says JAX and PyTorch both run a fused_on_cpu use_cudnn=True case: PyTorch refusing it
    while JAX runs it is not what the claim says."""
    runs = _runs(committed, "cudnn_on_impl1_fused_cpu", {"tensorflow": "refused", "jax": "pass", "torch": "refused"})
    entry, = judge_acceptance(runs, load_divergences())
    assert entry["refused_on"] == ["tensorflow", "torch"] and entry["explained_by"] == []
    assert entry["unexplained"] == [f"{STAND_IN}: names torch among the backends that run it, but torch refused it"]


def test_a_crash_or_a_case_everyone_refuses_is_no_acceptance_difference(committed):
    crashed = _runs(committed, "cudnn_on_impl1", {"tensorflow": "refused", "torch": "error"})
    everyone = _runs(committed, "cudnn_on_impl1", {"tensorflow": "refused", "jax": "refused", "torch": "refused"})
    assert judge_acceptance(crashed, load_divergences()) == [] and judge_acceptance(everyone, load_divergences()) == []


def test_a_claim_whose_difference_is_gone_is_possibly_resolved(committed):
    """TensorFlow running gru_cudnn_on_reseton too (no backend refuses it): both claims that say the others refuse it
    are possibly resolved, on the backends they name."""
    runs = _runs(committed, "gru_cudnn_on_reseton", {"tensorflow": "pass", "jax": "pass", "torch": "pass"})
    divergences = load_divergences()
    entries = judge_acceptance(runs, divergences)
    assert entries == []
    assert sorted((e["divergence"], e["backend"]) for e in acceptance_possibly_resolved(runs, divergences, entries)) == [
        (JAX, "jax"), (TORCH, "torch")]
    # the committed records: every claimed difference is still there, nothing resolved
    assert acceptance_possibly_resolved(committed, divergences, judge_acceptance(committed, divergences)) == []


def _classify(committed: dict[str, dict[str, Any]], backend: str, case_name: str, status: str) -> dict[str, Any]:
    run = committed[backend]
    result = copy.deepcopy(next(r for r in run["cases"] if r["case"] == case_name))
    result["status"] = status
    case = parse_case(result["definition"], f"{backend}.json")
    return classify_result(case, backend, run["versions"], result, {}, load_tolerances("cpu", backend), load_divergences(),
                           run["seed"], "cpu")


def test_an_acceptance_claim_explains_no_numbers_and_no_crash(committed):
    """On PyTorch the claim applies to cudnn_on_impl1; a failing or crashing result there stays a fail or an error."""
    for status in ("fail", "error"):
        verdict = _classify(committed, "torch", "cudnn_on_impl1", status)
        assert verdict["verdict"] == status and TORCH in verdict["applicable"] and verdict["explained_by"] == []


def test_a_refusal_where_the_claim_says_the_backend_runs_is_possibly_resolved(committed):
    verdict = _classify(committed, "torch", "cudnn_on_impl1", "refused")
    assert verdict["verdict"] == "refused" and verdict["possibly_resolved"] == [TORCH]
    passing = _classify(committed, "torch", "cudnn_on_impl1", "pass")
    assert passing["verdict"] == "pass" and passing["possibly_resolved"] == []  # running is what the claim says


def test_the_report_session_fails_on_an_unexplained_acceptance_difference(tmp_path):
    entry = {"case": "cudnn_on_impl1", "refused_on": ["tensorflow"], "ran_on": ["torch"], "explained_by": [],
             "unexplained": ["no acceptance claim applies on torch"]}
    store.write_json(tmp_path / "cross_backend.json", {"missing": [], "acceptance": [entry, {**entry, "case": "explained",
                                                                                           "explained_by": [TORCH], "unexplained": []}]})
    assert load_noxfile()._unexplained_findings(tmp_path) == [
        "cudnn_on_impl1: refused on tensorflow, runs on torch, no acceptance claim explains it"]


def test_an_acceptance_claim_needs_the_refusal_it_stands_against(tmp_path):
    text = DIVERGENCES_FILE.read_text()
    broken = text.replace('''kind = "acceptance"\nexception = "ValueError"\n''', '''kind = "acceptance"\n''', 1)
    assert broken != text
    path = tmp_path / "divergences.toml"
    path.write_text(broken)
    with pytest.raises(DivergenceFileError, match=r"torch_use_cudnn_true_runs_without_cuda\): a acceptance claim needs exception, message"):
        load_divergences(path)


def test_an_acceptance_claim_explains_no_gradient(committed):
    from harness.studies.gradients import explain_gradient_result

    run = committed["torch"]
    result = copy.deepcopy(next(r for r in run["cases"] if r["case"] == "cudnn_on_impl1"))
    case = parse_case(result["definition"], "torch.json")
    claim = next(d for d in load_divergences() if d.id == TORCH)
    for status in ("fail", "error"):
        explained, unexplained = explain_gradient_result(case, {**result, "status": status}, {}, [claim], run["seed"],
                                                         load_tolerances("cpu", "torch"))
        assert explained == [] and unexplained == [f"{TORCH}: an acceptance claim says the backend runs this configuration; "
                                                   "it explains no gradient"]


def test_the_report_lists_an_unexplained_acceptance_difference_as_needing_attention(tmp_path, committed):
    from harness.reports.markdown import render_report
    from harness.reports.model import build_report

    for backend in BACKENDS:
        store.write_json(tmp_path / f"{backend}.json", committed[backend])
        verdicts = store.read_json_file(RESULTS / f"{backend}.verdicts.json")
        verdicts["cases"] = {name: entry for name, entry in verdicts["cases"].items() if "cudnn" in name}
        verdicts["divergences"] = divergence_summary(load_divergences())  # the claims as classify records them
        store.write_json(tmp_path / f"{backend}.verdicts.json", verdicts)
        store.write_arrays(tmp_path / f"{backend}.npz", {})
    cross = {"schema": "keras-parity/cross-backend", "schema_version": store.read_json_file(RESULTS / "cross_backend.json")["schema_version"],
             "backends": list(BACKENDS), "pairs": [], "not_compared": [], "missing": [], "never_compared": [],
             "acceptance": judge_acceptance(committed, load_divergences()), "acceptance_possibly_resolved": []}
    store.write_json(tmp_path / "cross_backend.json", cross)
    explained = build_report(tmp_path)
    assert len(explained.cross.acceptance) == 5 and not explained.cross.unexplained_acceptance
    torch_claim = next(claim for claim in explained.claims if claim.id == TORCH)
    assert sorted(case.case for case in torch_claim.explained["torch"]) == ["cudnn_on_impl1", "cudnn_on_impl2", "gru_cudnn_on_reseton"]
    # gru_cudnn_on_reseton runs on JAX too, explained there by the JAX claim: each claim counts its own backends only
    assert set(torch_claim.explained) == {"torch"}
    jax_claim = next(claim for claim in explained.claims if claim.id == JAX)
    assert {backend: [case.case for case in cases] for backend, cases in jax_claim.explained.items()} == {"jax": ["gru_cudnn_on_reseton"]}
    cross["acceptance"] = judge_acceptance(committed, [claim for claim in load_divergences() if claim.id != JAX])
    store.write_json(tmp_path / "cross_backend.json", cross)
    report = build_report(tmp_path)
    assert report.attention_count == explained.attention_count + 1
    markdown = render_report(tmp_path)
    assert "### Refused on some backends, run on others, unexplained (1)" in markdown
    assert ("- gru_cudnn_on_reseton: refused on tensorflow, runs on jax, torch: no acceptance claim applies on jax" in markdown)
