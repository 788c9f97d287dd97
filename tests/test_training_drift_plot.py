"""The training drift: its bounds (pure functions of the NumPy trajectory and the measured float32 drift), and the drift
plot of report.html, drawn from .training.json records only (schema 2 with bounds, schema 1 without)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from harness.records.store import write_json
from harness.reports import plots
from harness.reports.model import gradients_and_training
from harness.studies.training import EPS, drift_check, float32_drift_bound, precision_drift_bound, training_setup


def test_bounds_follow_their_rules():
    scales = [0.5, 0.6, 0.7]
    assert float32_drift_bound(scales, 1.0) == pytest.approx([EPS["float32"] * 0.5, 2 * EPS["float32"] * 0.6, 3 * EPS["float32"] * 0.7])
    # The mixed bound scales the running maximum of the measured float32 drift by eps_compute / eps32, floored at
    # half a float32 epsilon of the largest weight.
    factor = EPS["float16"] / EPS["float32"]
    assert factor == 8192.0 and EPS["bfloat16"] / EPS["float32"] == 65536.0
    bound = precision_drift_bound([1e-7, 5e-8, 3e-7], scales, "float16")
    assert bound == pytest.approx([factor * 1e-7, factor * 1e-7, factor * 3e-7])
    assert precision_drift_bound([0.0], [2.0], "bfloat16") == pytest.approx([65536.0 * EPS["float32"]])


def test_drift_check_passes_within_the_bound_and_never_on_nan():
    assert drift_check([1e-7, 2e-7], [2e-7, 2e-7], "rule")["passed"]
    beyond = drift_check([1e-7, 3e-7], [2e-7, 2e-7], "rule")
    assert not beyond["passed"] and beyond["worst_step"] == 2 and beyond["worst_ratio"] == pytest.approx(1.5)
    assert not drift_check([1e-7, float("nan")], [2e-7, 2e-7], "rule")["passed"]
    assert not drift_check([float("inf")], [2e-7], "rule")["passed"]
    assert not drift_check([], [], "rule")["passed"]  # nothing measured is not a pass
    with pytest.raises(ValueError):
        drift_check([1e-7], [1e-7, 1e-7], "rule")
    # NaN in the float32 drift makes the mixed bound infinite from there on: the mixed run is then judged by nothing
    # finite, so the float32 check (which fails on NaN) is what reports it.
    assert math.isinf(precision_drift_bound([1e-7, float("nan")], [1.0, 1.0], "float16")[1])


def test_setup_names_the_mixed_policies_as_data():
    setup = training_setup()
    assert [(entry["policy"], entry["loss_scaling"]) for entry in setup["precisions"]] == [("mixed_float16", True), ("mixed_bfloat16", False)]
    assert setup["drift"]["float32_eps_per_step"] > 0 and "headroom" in setup["drift"]["reason"]


def test_setup_refuses_a_policy_that_is_not_mixed(tmp_path):
    text = (training_setup.__defaults__[0]).read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('policy = "mixed_bfloat16"', 'policy = "float16"'), encoding="utf-8")
    with pytest.raises(ValueError, match="not a mixed policy"):
        training_setup(bad)


def _long_run(optimizer, policy, distances, bound=None, passed=None, scale=None):
    entry = {"optimizer": {"name": optimizer}, "policy": policy, "max_abs_weight_difference": distances, "error": None}
    if bound is not None:
        ratios = [d / b for d, b in zip(distances, bound)]
        entry["drift_check"] = {"rule": "r", "bound": bound, "ratio": ratios, "worst_ratio": max(ratios),
                                "worst_step": int(np.argmax(ratios)) + 1, "passed": passed}
    if policy != "float32":
        entry["loss_scale"] = {"active": scale is not None, "scale": scale, "applied_steps": len(distances)}
    return entry


def _records(folder, jax_adam_drift=3e-7):
    steps = 6
    bound32 = [1.2e-7 * 1.73 * (k + 1) for k in range(steps)]
    write_json(folder / "jax.training.json", {
        "schema": "keras-parity/training", "schema_version": 2, "backend": "jax", "fault": None, "runs": [],
        "long_runs": [_long_run("sgd", "float32", [5e-8, 1e-7, 2e-7, 3e-7, 3e-7, 2.5e-7], bound32, True),
                      _long_run("adam", "float32", [1e-7, 2e-7, 2.5e-7, 3e-7, 3e-7, jax_adam_drift], bound32, jax_adam_drift <= bound32[-1])],
        "precision_runs": [_long_run("sgd", "mixed_float16", [2e-5, 1e-4, 0.0, 3e-4, 3e-4, 3e-4], [4e-4, 8e-4, 1.6e-3, 2.4e-3, 2.4e-3, 2.4e-3], True, 32768.0),
                           _long_run("adam", "mixed_bfloat16", [1e-3, 2e-3, 2e-3, 3e-3, 3e-3, 3e-3], [6e-3, 1.3e-2, 1.6e-2, 2e-2, 2e-2, 2e-2], True)]})
    # A schema-1 record (before the drift checks): its drift is drawn, without a bound.
    write_json(folder / "torch.training.json", {
        "schema": "keras-parity/training", "schema_version": 1, "backend": "torch", "fault": None, "runs": [],
        "long_runs": [{"optimizer": {"name": "adam"}, "max_abs_weight_difference": [1e-7, 2e-7, 3e-7, 3e-7, 4e-7, 4e-7]}]})


def test_drift_lines_come_from_both_record_versions(tmp_path):
    _records(tmp_path)
    notes: list[str] = []
    data = gradients_and_training(tmp_path, notes)
    assert notes == []
    lines = {(line.backend, line.optimizer, line.policy): line for line in data.drift}
    assert set(lines) == {("jax", "sgd", "float32"), ("jax", "adam", "float32"), ("jax", "sgd", "mixed_float16"),
                          ("jax", "adam", "mixed_bfloat16"), ("torch", "adam", "float32")}
    assert lines[("jax", "sgd", "mixed_float16")].loss_scale == 32768.0 and lines[("jax", "adam", "mixed_bfloat16")].loss_scale is None
    old = lines[("torch", "adam", "float32")]
    assert old.bound == () and old.passed is None and old.distances[-1] == 4e-7
    assert lines[("jax", "adam", "float32")].passed is True


def test_drift_plot_is_drawn_from_the_records_and_changes_with_them(tmp_path):
    pytest.importorskip("matplotlib")
    _records(tmp_path / "a")
    _records(tmp_path / "b", jax_adam_drift=5e-6)  # beyond the float32 bound
    first = plots.drift_plot(gradients_and_training(tmp_path / "a", []))
    assert first.startswith(plots.PNG_SIGNATURE)
    assert plots.drift_plot(gradients_and_training(tmp_path / "a", [])) == first  # the same records, the same bytes
    assert plots.drift_plot(gradients_and_training(tmp_path / "b", [])) != first


def test_report_figures_include_the_drift_plot_when_a_long_run_was_recorded(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(plots, "ratio_heatmap", lambda report: b"heatmap")
    monkeypatch.setattr(plots, "ratio_histogram", lambda report: b"histogram")
    _records(tmp_path)
    figures = plots.report_figures(SimpleNamespace(growth=None, gradients=gradients_and_training(tmp_path, [])))
    assert list(figures) == [plots.HEATMAP_CAPTION, plots.HISTOGRAM_CAPTION, plots.DRIFT_CAPTION]
    assert figures[plots.DRIFT_CAPTION].startswith(plots.PNG_SIGNATURE)
    assert plots.DRIFT_CAPTION not in plots.report_figures(SimpleNamespace(growth=None, gradients=None))


def test_report_text_flags_a_drift_beyond_its_bound(tmp_path):
    from harness.reports.html import _gradients
    from harness.reports.markdown import _gradient_lines

    _records(tmp_path, jax_adam_drift=5e-6)
    data = gradients_and_training(tmp_path, [])
    text = "\n".join(_gradient_lines(SimpleNamespace(gradients=data)))
    assert "**jax adam float32: 5e-06 after 6 steps" in text and "beyond what rounding explains**" in text
    assert "jax sgd mixed_float16: 0.0003 after 6 steps" in text and "loss scale 32768" in text
    page = "\n".join(_gradients(SimpleNamespace(gradients=data)))
    assert "beyond what rounding explains" in page and "jax adam mixed_bfloat16" in page


def test_a_known_drift_is_shown_as_known_not_as_a_failure(tmp_path):
    from harness.reports.markdown import _gradient_lines

    entry = _long_run("adam", "mixed_bfloat16", [2e-2, 2e-2], [7e-3, 1e-2], False)
    entry |= {"status": "known", "known": {"backend": "tensorflow", "reason": "Adam's first step is -lr * sign(g)."}}
    write_json(tmp_path / "tensorflow.training.json", {"schema": "keras-parity/training", "schema_version": 2, "backend": "tensorflow",
                                                       "fault": None, "runs": [], "long_runs": [], "precision_runs": [entry]})
    data = gradients_and_training(tmp_path, [])
    assert data.drift[0].passed is False and data.drift[0].known == "Adam's first step is -lr * sign(g)."
    text = "\n".join(_gradient_lines(SimpleNamespace(gradients=data)))
    assert "beyond the bound, known: Adam's first step" in text and "beyond what rounding explains" not in text
