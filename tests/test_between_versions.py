"""harness.verdicts.between_versions: the release's results folder against nightly's, without Keras.

The "measured" outputs are computed by the reference under the semantics a Keras version is claimed to
have (as tests/test_verdicts.py does), written as real run records with the versions of each side,
classified by the real classify_record against the real divergence file, then compared. The claim
used is predict_rounds_float64_inputs (observed on keras ==3.15.1, every backend): a float64 case run
through predict() computes on inputs rounded to float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.case.divergences import DIVERGENCES_FILE
from harness.case.schema import parse_case
from harness.case.semantics import Semantics
from harness.records import store
from harness.records.header import SCHEMAS
from harness.verdicts.between_versions import FILE_NAME, compare_versions, upstream_change, write_between_versions
from harness.verdicts.classify import classify_record
from test_verdicts import TOLERANCES, _measured

RELEASE, NIGHTLY = "3.15.1", "3.16.0.dev2026102704"
BACKEND = "tensorflow"
ROUNDED = Semantics(inputs_rounded_to_float32=True)
CLAIM = "predict_rounds_float64_inputs"


def _definition(name: str, dtype: str = "float64") -> dict[str, Any]:
    return {"name": name, "description": "a test case", "dtype": dtype, "batch": 3, "time": 6, "features": 4,
            "entry_point": "predict", "layers": [{"type": "lstm", "units": 5, "return_sequences": True}]}


def _result(name: str, semantics: Semantics = Semantics(), dtype: str = "float64", wrong_gate: bool = False,
            ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One case result as a run records it, and its raw outputs keyed as in <backend>.npz."""
    definition = _definition(name, dtype)
    case = parse_case(definition, "test")
    result, arrays = _measured(case, semantics, wrong_gate=wrong_gate)
    result.update(definition=definition, dtype=dtype, entry_point="predict", description="a test case")
    return result, {store.array_key(name, api, output): value for (api, output), value in arrays.items()}


def _write(folder: Path, keras: str, results: list[tuple[dict[str, Any], dict[str, np.ndarray]]],
           divergences_path: Path = DIVERGENCES_FILE, backend: str = BACKEND) -> None:
    """<backend>.json and .npz measured with ``keras``, then classified (<backend>.verdicts.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    schema, version = SCHEMAS["run"]
    record = {
        "schema": schema, "schema_version": version, "backend": backend, "device": "cpu", "device_class": "cpu",
        "versions": {"keras": keras, backend: "2.21.0", "numpy": "2.4.6", "python": "3.11.7"}, "settings": {},
        "command": "python -m harness run", "seed": 20261124, "fault": None, "started": "2026-11-24T20:30:00+00:00",
        "finished": "2026-11-24T20:35:00+00:00", "cases": [result for result, _ in results],
    }
    store.write_json(folder / f"{backend}.json", record)
    store.write_arrays(folder / f"{backend}.npz", {key: value for _, arrays in results for key, value in arrays.items()})
    classify_record(folder, backend, divergences_path)


def _changes(record: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {entry["case"]: entry for entry in record["changes"] if entry["kind"] == kind}


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "results", tmp_path / "results" / "keras-nightly"


def test_a_claim_observed_on_the_release_does_not_absorb_a_nightly_failure(folders):
    release, nightly = folders
    _write(release, RELEASE, [_result("rounded")])
    _write(nightly, NIGHTLY, [_result("rounded", ROUNDED)])
    assert store.read_json_file(release / f"{BACKEND}.verdicts.json")["cases"]["rounded"]["verdict"] == "pass"
    nightly_verdict = store.read_json_file(nightly / f"{BACKEND}.verdicts.json")["cases"]["rounded"]
    assert nightly_verdict["verdict"] == "fail"  # the 3.15.1 claim does not apply to 3.16.0.dev...
    assert nightly_verdict["applicable"] == []
    record = compare_versions(release, nightly)
    regression = _changes(record, "regression")["rounded"]
    assert (regression["old_verdict"], regression["new_verdict"]) == ("pass", "fail")
    assert regression["new_max_abs_error"] > 1e-10
    assert f"keras {RELEASE} (pass) vs {NIGHTLY} (fail)" in regression["reproducer"]
    assert "--cases rounded" in regression["reproducer"]
    assert record["counts"]["regression"] == 1


def test_the_same_claim_on_the_release_absorbs_it(folders):
    """Control: the same measurement in a record of keras 3.15.1 is the known divergence."""
    release, _ = folders
    _write(release, RELEASE, [_result("rounded", ROUNDED)])
    verdict = store.read_json_file(release / f"{BACKEND}.verdicts.json")["cases"]["rounded"]
    assert (verdict["verdict"], verdict["explained_by"]) == ("known", [CLAIM])


def test_a_known_divergence_that_passes_on_nightly_is_fixed(folders):
    release, nightly = folders
    _write(release, RELEASE, [_result("rounded", ROUNDED), _result("plain", dtype="float32")])
    _write(nightly, NIGHTLY, [_result("rounded"), _result("plain", dtype="float32")])
    record = write_between_versions(release, nightly)
    fixed = _changes(record, "fixed")["rounded"]
    assert (fixed["old_verdict"], fixed["new_verdict"], fixed["old_explained_by"]) == ("known", "pass", [CLAIM])
    assert "no upstream change identified" in fixed["detail"]  # the claim names no upstream fix
    assert fixed["upstream_change"] is None
    assert fixed["old_max_abs_error"] > 1e-10 and fixed["new_max_abs_error"] < 1e-12
    assert record["counts"] == {"fixed": 1, "regression": 0, "changed": 0, "drift": 0, "still_present": 0, "unchanged": 1, "removed": 0}
    assert store.read_json_file(release / FILE_NAME)["counts"]["fixed"] == 1


def test_a_known_divergence_still_there_on_nightly_is_still_present_not_a_regression(folders):
    release, nightly = folders
    _write(release, RELEASE, [_result("rounded", ROUNDED)])
    _write(nightly, NIGHTLY, [_result("rounded", ROUNDED)])
    record = compare_versions(release, nightly)
    assert record["changes"] == []
    (entry,) = record["still_present"]
    assert (entry["case"], entry["divergences"], entry["new_verdict"]) == ("rounded", [CLAIM], "fail")


def test_a_known_divergence_that_fails_differently_on_nightly_is_a_regression(folders):
    """known -> fail in a way the claim does not describe: worse, not merely changed."""
    release, nightly = folders
    _write(release, RELEASE, [_result("rounded", ROUNDED)])
    _write(nightly, NIGHTLY, [_result("rounded", ROUNDED, wrong_gate=True)])
    record = compare_versions(release, nightly)
    regression = _changes(record, "regression")["rounded"]
    assert (regression["old_verdict"], regression["new_verdict"]) == ("known", "fail")
    assert "does not describe" in regression["detail"] and CLAIM in regression["detail"]
    assert record["counts"]["changed"] == 0


def _with_output_dtype(result: dict[str, Any], dtype: str) -> dict[str, Any]:
    """The result as recorded with another output dtype in every build (the check reads the records only)."""
    for entry in result["apis"].values():
        entry["items"]["output"]["dtype"] = dtype
    return result


def test_a_wider_or_same_width_output_dtype_is_changed_behaviour(folders):
    release, nightly = folders
    old, old_arrays = _result("plain", dtype="float32")
    new, new_arrays = _result("plain", dtype="float32")
    half, half_arrays = _result("half", dtype="float32")
    _write(release, RELEASE, [(_with_output_dtype(half, "float16"), half_arrays), (old, old_arrays)])
    _write(nightly, NIGHTLY, [(_with_output_dtype(_result("half", dtype="float32")[0], "bfloat16"), half_arrays),
                              (_with_output_dtype(new, "float64"), new_arrays)])
    record = compare_versions(release, nightly)
    changed = _changes(record, "changed")
    assert "output dtype changed" in changed["plain"]["detail"] and "float32 -> float64" in changed["plain"]["detail"]
    assert "float16 -> bfloat16" in changed["half"]["detail"]
    assert record["counts"]["regression"] == 0


def test_a_narrower_output_dtype_is_a_regression(folders):
    """float64 -> float32 output on nightly, both records passing: the output lost precision."""
    release, nightly = folders
    old, old_arrays = _result("wide")
    new, new_arrays = _result("wide")
    _write(release, RELEASE, [(old, old_arrays)])
    _write(nightly, NIGHTLY, [(_with_output_dtype(new, "float32"), new_arrays)])
    regression = _changes(compare_versions(release, nightly), "regression")["wide"]
    assert (regression["old_verdict"], regression["new_verdict"]) == ("pass", "pass")
    assert "functional/output dtype narrowed float64 -> float32" in regression["detail"]


def test_a_lost_output_is_a_regression(folders):
    release, nightly = folders
    old, old_arrays = _result("plain", dtype="float32")
    new, new_arrays = _result("plain", dtype="float32")
    del new["apis"]["subclassed"]
    _write(release, RELEASE, [(old, old_arrays)])
    _write(nightly, NIGHTLY, [(new, {key: value for key, value in new_arrays.items() if "subclassed" not in key})])
    regression = _changes(compare_versions(release, nightly), "regression")["plain"]
    assert "output lost: subclassed/output" in regression["detail"]


def test_pass_then_refused_is_a_regression(folders):
    release, nightly = folders
    refused = {"case": "plain", "status": "refused", "apis": {}, "api_agreement": [], "problems": ["refused"],
               "error": {"type": "ValueError", "message": "use_cudnn=True needs cuDNN", "summary": "ValueError: needs cuDNN"},
               "definition": _definition("plain", "float32"), "dtype": "float32", "entry_point": "predict",
               "description": "a test case"}
    _write(release, RELEASE, [_result("plain", dtype="float32")])
    _write(nightly, NIGHTLY, [(refused, {})])
    regression = _changes(compare_versions(release, nightly), "regression")["plain"]
    assert (regression["old_verdict"], regression["new_verdict"]) == ("pass", "refused")


def test_pass_on_the_first_version_and_known_on_the_second_is_a_regression(folders, capsys):
    """Keras 2's pass -> Keras 3's known divergence (the 20 Masking cases): Keras 3 got worse. Here the
    first version is 3.14.0, where the claim is not observed: it computes the documented numbers."""
    from harness.cli import main
    from harness.reports.markdown import render_markdown
    from harness.reports.model import build_report

    release, nightly = folders
    _write(release, "3.14.0", [_result("rounded")])
    _write(nightly, RELEASE, [_result("rounded", ROUNDED)])
    assert store.read_json_file(nightly / f"{BACKEND}.verdicts.json")["cases"]["rounded"]["verdict"] == "known"
    assert main(["between-versions", str(release), str(nightly)]) == 1
    assert "regression: rounded on tensorflow: pass -> known" in capsys.readouterr().err
    record = store.read_json_file(release / FILE_NAME)
    assert record["counts"]["regression"] == 1 and record["counts"]["changed"] == 0
    section = render_markdown(build_report(release)).split("## Between Keras versions")[1].split("\n## ")[0]
    assert "0 fixed, 1 regressions" in section and "| rounded | tensorflow | pass -> known |" in section


def _claims_file(tmp_path: Path, *claims: tuple[str, str]) -> Path:
    """A divergence file of bound claims (id, keras version) on float64 predict cases of TensorFlow."""
    text = ""
    for claim_id, keras in claims:
        text += f'''
[[divergence]]
id = "{claim_id}"
backends = ["tensorflow"]
versions = {{ keras = "=={keras}" }}
when = {{ dtype = "float64", entry_point = "predict" }}
kind = "bound"
outputs = ["*"]
max_abs_error = 1e-3
observed = "float32-sized errors on a float64 case"
reference = "the float64 reference"
upstream = "https://example.org/issue"
reproducer = "results/repro/predict_rounds_float64_inputs.py"
'''
    path = tmp_path / "divergences.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_known_under_another_claim_is_a_regression(folders, tmp_path):
    release, nightly = folders
    claims = _claims_file(tmp_path, ("bound_on_release", RELEASE), ("bound_on_nightly", NIGHTLY))
    _write(release, RELEASE, [_result("rounded", ROUNDED)], claims)
    _write(nightly, NIGHTLY, [_result("rounded", ROUNDED)], claims)
    regression = _changes(compare_versions(release, nightly, claims), "regression")["rounded"]
    assert (regression["old_explained_by"], regression["new_explained_by"]) == (["bound_on_release"], ["bound_on_nightly"])
    assert "known as bound_on_release -> known as bound_on_nightly" in regression["detail"]


def _scaled_result(name: str, semantics: Semantics, factor: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``_result`` with the error of every output (against the documented reference) scaled by ``factor``."""
    from harness.case.weights import DEFAULT_SEED, make_case_data
    from harness.execute.measure import api_agreement, judge_outputs, measured_status
    from harness.truth.expected import expected_outputs

    definition = _definition(name)
    case = parse_case(definition, "test")
    documented = expected_outputs(case, make_case_data(case, DEFAULT_SEED))
    produced = expected_outputs(case, make_case_data(case, DEFAULT_SEED), semantics)
    actual = {output: documented[output] + factor * (produced[output] - documented[output]) for output in produced}
    result: dict[str, Any] = {"case": name, "apis": {}, "error": None}
    for api in ("functional", "subclassed"):
        items = judge_outputs(case, actual, documented, TOLERANCES, api)
        result["apis"][api] = {"items": items, "passed": all(item["passed"] for item in items.values())}
    result["api_agreement"] = api_agreement({"functional": actual, "subclassed": actual}, TOLERANCES.api_max_abs_diff)
    result["status"], result["problems"] = measured_status(result)
    result.update(definition=definition, dtype="float64", entry_point="predict", description="a test case")
    arrays = {store.array_key(name, api, output): value for api in ("functional", "subclassed") for output, value in actual.items()}
    return result, arrays


def test_a_known_divergence_with_a_larger_error_on_nightly_is_a_regression_not_drift(folders, tmp_path):
    """The claim (a bound of 1e-3), its range ignored, still describes nightly's 8x larger error: the old
    code called it drift. The error grew by far more than the float64 tolerance: a regression."""
    release, nightly = folders
    claims = _claims_file(tmp_path, ("bound_on_release", RELEASE))
    _write(release, RELEASE, [_result("rounded", ROUNDED), _result("same", ROUNDED)], claims)
    _write(nightly, NIGHTLY, [_scaled_result("rounded", ROUNDED, 8.0), _result("same", ROUNDED)], claims)
    record = compare_versions(release, nightly, claims)
    regression = _changes(record, "regression")["rounded"]
    assert regression["new_max_abs_error"] == pytest.approx(8 * regression["old_max_abs_error"], rel=1e-6)
    assert "more than the tolerance" in regression["detail"] and "still present" in regression["detail"]
    assert [entry["case"] for entry in record["still_present"]] == ["same"]  # control: the same error stays still present
    assert record["counts"]["drift"] == 0 and record["counts"]["regression"] == 1


def test_worse_by_a_definition_claim_is_changed_not_a_regression(tmp_path):
    """Keras 3 (documented hard_sigmoid, pass) -> Keras 2 (its own hard_sigmoid, known by a change = "definition"
    claim): the version defines it so; changed behaviour, not a regression."""
    keras3, keras2 = tmp_path / "results", tmp_path / "tf-keras"
    _write(keras3, RELEASE, [_hard_sigmoid_result(Semantics())])
    _write(keras2, "2.21.0", [_hard_sigmoid_result(Semantics(hard_sigmoid_keras2=True))])
    record = compare_versions(keras3, keras2)
    changed = _changes(record, "changed")["hard"]
    assert (changed["old_verdict"], changed["new_verdict"]) == ("pass", "known")
    assert 'change = "definition"' in changed["detail"] and record["counts"]["regression"] == 0


def test_numbers_beyond_the_sum_of_the_tolerances_are_drift(folders):
    release, nightly = folders
    old, old_arrays = _result("plain", dtype="float32")
    new, new_arrays = _result("plain", dtype="float32")
    moved = {key: value.copy() for key, value in new_arrays.items()}
    for key, value in moved.items():
        value.flat[0] += 5e-5  # the record still says pass: drift is judged from the raw outputs
    _write(release, RELEASE, [(old, old_arrays)])
    _write(nightly, NIGHTLY, [(new, moved)])
    drift = _changes(compare_versions(release, nightly), "drift")["plain"]
    assert (drift["old_verdict"], drift["new_verdict"]) == ("pass", "pass")
    assert drift["max_abs_diff"] == pytest.approx(5e-5, rel=1e-3)
    assert drift["diff_ratio"] > 1
    assert "max abs difference 5e-05" in drift["magnitude"]


def test_noise_within_the_sum_of_the_tolerances_is_not_drift(folders):
    release, nightly = folders
    old, old_arrays = _result("plain", dtype="float32")
    tolerance = TOLERANCES.for_case(parse_case(_definition("plain", "float32"), "test"), "outputs")
    moved = {key: value + np.float32(tolerance.atol / 2) for key, value in old_arrays.items()}
    _write(release, RELEASE, [(old, old_arrays)])
    _write(nightly, NIGHTLY, [(old, moved)])
    record = compare_versions(release, nightly)
    assert record["changes"] == [] and record["counts"]["unchanged"] == 1


def test_cases_on_one_side_only_are_listed_not_classified(folders):
    release, nightly = folders
    _write(release, RELEASE, [_result("plain", dtype="float32"), _result("gone", dtype="float32")])
    _write(nightly, NIGHTLY, [_result("plain", dtype="float32"), _result("added", dtype="float32")])
    record = compare_versions(release, nightly)
    assert record["only_old"] == [{"backend": BACKEND, "case": "gone"}]
    assert record["only_new"] == [{"backend": BACKEND, "case": "added"}]
    assert record["changes"] == []
    assert record["counts"]["removed"] == 1


def test_a_case_or_backend_that_disappears_fails_between_versions(folders, capsys):
    from harness.cli import main

    release, nightly = folders
    _write(release, RELEASE, [_result("plain", dtype="float32"), _result("gone", dtype="float32")])
    _write(nightly, NIGHTLY, [_result("plain", dtype="float32")])
    assert main(["between-versions", str(release), str(nightly)]) == 1
    assert "removed: gone on tensorflow" in capsys.readouterr().err
    _write(release, RELEASE, [_result("plain", dtype="float32")])
    _write(release, RELEASE, [_result("plain", dtype="float32")], backend="jax")
    assert main(["between-versions", str(release), str(nightly)]) == 1
    assert "removed: every case on jax" in capsys.readouterr().err
    assert store.read_json_file(release / FILE_NAME)["removed_backends"] == ["jax"]
    (release / "jax.json").unlink()
    assert main(["between-versions", str(release), str(nightly)]) == 0  # control: nothing gone, nothing worse


def test_unclassified_records_are_refused_with_one_line(folders):
    release, nightly = folders
    _write(release, RELEASE, [_result("plain", dtype="float32")])
    _write(nightly, NIGHTLY, [_result("plain", dtype="float32")])
    (nightly / f"{BACKEND}.verdicts.json").unlink()
    with pytest.raises(store.RecordError, match="classify"):
        compare_versions(release, nightly)
    with pytest.raises(store.RecordError, match="not a folder"):
        compare_versions(release, release / "missing")


def test_upstream_change_is_named_only_when_a_claim_names_a_fix():
    assert upstream_change([{"upstream": "https://github.com/keras-team/keras/issues/1 (fix merged after 3.15.1: "
                                         "https://github.com/keras-team/keras/pull/2)"}]).endswith("pull/2)")
    assert upstream_change([{"upstream": "https://github.com/keras-team/keras/issues/1"}]) is None
    assert upstream_change([{"upstream": ""}]) is None


def test_cli_writes_between_versions_and_exits_1_on_a_regression(folders, capsys):
    from harness.cli import main

    release, nightly = folders
    _write(release, RELEASE, [_result("rounded")])
    _write(nightly, NIGHTLY, [_result("rounded", ROUNDED)])
    assert main(["between-versions", str(release), str(nightly)]) == 1
    out = capsys.readouterr()
    assert "1 regressions" in out.out and "regression: rounded on tensorflow" in out.err
    assert (release / FILE_NAME).is_file()
    assert main(["between-versions", str(release), str(release / "nope")]) == 2


def test_the_report_shows_the_between_versions_section(folders):
    from harness.reports.html import render_html
    from harness.reports.markdown import render_markdown
    from harness.reports.model import build_report

    release, nightly = folders
    _write(release, RELEASE, [_result("rounded", ROUNDED), _result("newly_rounded"), _result("still", ROUNDED)])
    _write(nightly, NIGHTLY, [_result("rounded"), _result("newly_rounded", ROUNDED), _result("still", ROUNDED)])
    without = build_report(release)
    assert without.between_versions is None
    assert "No other Keras version was compared" in render_markdown(without)
    write_between_versions(release, nightly)
    report = build_report(release)
    markdown = render_markdown(report)
    section = markdown.split("## Between Keras versions")[1].split("\n## ")[0]
    assert f"keras {RELEASE} (results) against {NIGHTLY} (results/keras-nightly)" in section.replace(str(release.parent) + "/", "")
    assert "1 fixed, 1 regressions" in section
    assert "### Fixed (1)" in section and "| rounded | tensorflow | known -> pass |" in section
    assert "no upstream change identified" in section
    assert "### Regressions (1)" in section and "| newly_rounded | tensorflow | pass -> fail |" in section
    assert f"keras {RELEASE} (pass) vs {NIGHTLY} (fail)" in section
    assert f"`{CLAIM}` on tensorflow: 1 case (still)" in section
    page = render_html(report, {})
    assert '<section id="between-versions">' in page and '<a href="#between-versions">Between Keras versions</a>' in page
    assert "newly_rounded" in page.split('id="between-regression"')[1].split("</table>")[0]


def _hard_sigmoid_result(semantics: Semantics) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    definition = {"name": "hard", "description": "a test case", "dtype": "float32", "batch": 3, "time": 6, "features": 4,
                  "entry_point": "call", "layers": [{"type": "lstm", "units": 5, "return_sequences": True,
                                                     "recurrent_activation": "hard_sigmoid"}]}
    result, arrays = _measured(parse_case(definition, "test"), semantics)
    result.update(definition=definition, dtype="float32", entry_point="call", description="a test case")
    return result, {store.array_key("hard", api, output): value for (api, output), value in arrays.items()}


def test_a_definition_that_moved_between_versions_is_changed_behaviour_not_fixed(tmp_path):
    """Keras 2 (tf_keras 2.21.0) defines hard_sigmoid as clip(0.2 x + 0.5): a claim of change = "definition"."""
    keras2, keras3 = tmp_path / "tf-keras", tmp_path / "results"
    _write(keras2, "2.21.0", [_hard_sigmoid_result(Semantics(hard_sigmoid_keras2=True))])
    _write(keras3, RELEASE, [_hard_sigmoid_result(Semantics())])
    verdict = store.read_json_file(keras2 / f"{BACKEND}.verdicts.json")["cases"]["hard"]
    assert (verdict["verdict"], verdict["explained_by"]) == ("known", ["tf_keras_hard_sigmoid_is_keras2_definition"])
    record = compare_versions(keras2, keras3)
    assert record["counts"]["fixed"] == 0
    changed = _changes(record, "changed")["hard"]
    assert "computes its own definition" in changed["detail"] and "computes the documented one" in changed["detail"]
    # the same claim does not describe Keras 3.15.1: there the Keras 2 numbers are a failure
    _write(tmp_path / "again", RELEASE, [_hard_sigmoid_result(Semantics(hard_sigmoid_keras2=True))])
    assert store.read_json_file(tmp_path / "again" / f"{BACKEND}.verdicts.json")["cases"]["hard"]["verdict"] == "fail"


def test_a_claim_may_list_several_version_ranges():
    from harness.case.divergences import load_divergences

    claim = next(d for d in load_divergences() if d.id == "predict_rounds_float64_inputs")
    assert claim.versions_match({"keras": "3.15.1"}) and claim.versions_match({"keras": "2.21.0"})
    assert not claim.versions_match({"keras": "3.16.0.dev2026102704"}) and not claim.versions_match({"keras": "3.14.0"})
    assert "keras ==3.15.1 or ==2.21.0" in claim.when()


def _one_committed_case(source: Path, folder: Path, backend: str, name: str, factor: float = 1.0) -> None:
    """``source``'s record of one case on ``backend`` copied into ``folder`` and classified, its error against the
    documented reference scaled by ``factor`` (outputs re-judged as a run judges them)."""
    from harness.case.tolerances import load_tolerances
    from harness.case.weights import make_case_data
    from harness.execute.measure import api_agreement, judge_outputs, measured_status
    from harness.truth.expected import expected_outputs

    record = store.read_record(source / f"{backend}.json")
    raw = store.read_arrays(source / f"{backend}.npz")
    result = next(result for result in record["cases"] if result["case"] == name)
    case = parse_case(result["definition"], "committed")
    documented = expected_outputs(case, make_case_data(case, record["seed"]))
    tolerances = load_tolerances(record.get("device_class", "cpu"), backend)
    arrays, actual_by_api = {}, {}
    for api in result["apis"]:
        actual = {}
        for output in result["apis"][api]["items"]:
            measured = raw[store.array_key(name, api, output)]
            actual[output] = (documented[output] + factor * (measured - documented[output])).astype(measured.dtype)
            arrays[store.array_key(name, api, output)] = actual[output]
        items = judge_outputs(case, actual, documented, tolerances, api)
        result["apis"][api] = {**result["apis"][api], "items": items, "passed": all(item["passed"] for item in items.values())}
        actual_by_api[api] = actual
    result["api_agreement"] = api_agreement(actual_by_api, tolerances.api_max_abs_diff)
    result["status"], result["problems"] = measured_status(result)
    folder.mkdir(parents=True, exist_ok=True)
    store.write_json(folder / f"{backend}.json", {**record, "cases": [result]})
    store.write_arrays(folder / f"{backend}.npz", arrays)
    classify_record(folder, backend)


def test_the_committed_jax_float64_error_scaled_by_8_on_nightly_is_a_regression(tmp_path):
    """The issue's example on the committed records: JAX lstm_float64_call, known on 3.15.1 (results/), its nightly
    error (results/keras-nightly/) scaled by 8. The old code called it drift (under the former bound claim) or changed."""
    root = Path(__file__).resolve().parent.parent / "results"
    release, nightly = tmp_path / "release", tmp_path / "nightly"
    _one_committed_case(root, release, "jax", "lstm_float64_call")
    _one_committed_case(root / "keras-nightly", nightly, "jax", "lstm_float64_call", factor=8.0)
    assert store.read_json_file(release / "jax.verdicts.json")["cases"]["lstm_float64_call"]["verdict"] == "known"
    record = compare_versions(release, nightly)
    regression = _changes(record, "regression")["lstm_float64_call"]
    assert regression["new_max_abs_error"] == pytest.approx(8 * regression["old_max_abs_error"], rel=1e-3)
    assert record["counts"]["drift"] == 0 and record["counts"]["changed"] == 0
    _one_committed_case(root / "keras-nightly", nightly, "jax", "lstm_float64_call")  # control: nightly as measured
    control = compare_versions(release, nightly)
    assert control["counts"]["regression"] == 0 and [entry["case"] for entry in control["still_present"]] == ["lstm_float64_call"]
