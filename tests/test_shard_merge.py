"""Shards and merge: ``run --shard K/N`` measures a deterministic, balanced share of the selected cases,
and ``merge OUT DIR...`` puts the shares (or the runs of many machines) back together, refusing inputs
that did not measure the same thing with one line and exit 2.

The pure tests build small synthetic records; the backend test shards a real run in three and checks
that the merge equals the unsharded run.
"""

import json
import random
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import run_harness
from harness.case.schema import CaseError, builtin_cases, select_cases
from harness.case.shard import assign_shards, case_cost, parse_shard, select_shard

# ---------------------------------------------------------------------------------------------------
# select_shard


def _cases():
    return builtin_cases()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 40])
def test_every_case_is_in_exactly_one_shard(n):
    cases = _cases()
    shards = [select_shard(cases, k, n) for k in range(1, n + 1)]
    names = [case.name for shard in shards for case in shard]
    assert sorted(names) == sorted(case.name for case in cases)
    assert len(names) == len(set(names))
    assert all(shards), "with no more shards than cases, every shard gets at least one case"


def test_shards_are_deterministic_and_do_not_depend_on_the_order_of_the_cases():
    cases = _cases()
    shuffled = list(cases)
    random.Random(7).shuffle(shuffled)
    for k in range(1, 5):
        first = [case.name for case in select_shard(cases, k, 4)]
        assert first == [case.name for case in select_shard(cases, k, 4)]
        assert sorted(first) == sorted(case.name for case in select_shard(shuffled, k, 4))


def test_a_shard_keeps_the_cases_in_their_original_order():
    cases = _cases()
    position = {case.name: index for index, case in enumerate(cases)}
    for k in range(1, 4):
        indices = [position[case.name] for case in select_shard(cases, k, 3)]
        assert indices == sorted(indices)


@pytest.mark.parametrize("pattern, n", [(None, 3), (None, 7), ("lstm_*", 3), ("stateful_*,bidi_*", 4), ("lstm_*,stacked_*", 9)])
def test_shards_are_balanced_within_one_case(pattern, n):
    cases = select_cases(_cases(), pattern)
    assignment = assign_shards(cases, n)
    loads = [sum(case_cost(case) for case, shard in zip(cases, assignment) if shard == k) for k in range(1, n + 1)]
    assert max(loads) - min(loads) <= max(case_cost(case) for case in cases), loads


def test_the_cost_estimate_grows_with_the_work():
    by_name = {case.name: case for case in _cases()}
    single, stacked = by_name["lstm_sequences"], by_name["stacked_lstm"]
    assert case_cost(stacked) > case_cost(single) > 0


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "0/0", "-1/3", "a/b", "3", "", "1/2/3", "1.0/2"])
def test_bad_shard_is_refused_with_one_line(text):
    with pytest.raises(CaseError) as error:
        parse_shard(text)
    assert "\n" not in str(error.value) and "shard" in str(error.value)


@pytest.mark.parametrize("k, n", [(0, 3), (4, 3), (1, 0), (True, 2)])
def test_select_shard_refuses_k_outside_1_to_n(k, n):
    with pytest.raises(CaseError, match="shard"):
        select_shard(_cases(), k, n)


def test_parse_shard_accepts_k_of_n():
    assert parse_shard("2/4") == (2, 4) and parse_shard(" 1 / 1 ") == (1, 1)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("cases, shard, expected", [
    ("lstm_*", "4/3", "shard 4/3: K must be between 1 and N (3)"),
    ("lstm_*", "two/3", "is not K/N"),
    ("lstm_last_step", "2/3", "shard 2/3 holds no case: the selection has 1 case(s)"),
])
def test_run_with_a_bad_or_empty_shard_exits_2_and_writes_nothing(tmp_path, cases, shard, expected):
    completed = run_harness("run", "--backend", "jax", "--cases", cases, "--shard", shard, "--out", str(tmp_path / "out"))
    assert completed.returncode == 2
    assert expected in _one_line(completed.stderr)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------
# merge refusals, on synthetic records (no backend needed: refusals come before any classification)

CASES = {case.name: case for case in _cases()}


def _result(name, definition=None):
    return {"case": name, "definition": definition if definition is not None else CASES[name].definition, "status": "pass",
            "apis": {}, "api_agreement": [], "problems": [], "error": None, "duration_s": 1.0}


def _record(backend="jax", cases=("lstm_last_step",), **changes):
    record = {
        "schema": "keras-parity/run", "schema_version": 2, "backend": backend, "device": "cpu", "device_class": "cpu",
        "versions": {"keras": "3.15.1", backend: "1.0", "numpy": "2.4.6", "python": "3.11.7", "platform": "Linux"},
        "settings": {}, "command": "python -m harness run", "seed": 20261124, "fault": None,
        "started": "2026-01-01T10:00:00+00:00", "finished": "2026-01-01T10:01:00+00:00", "shard": None,
        "tolerances": [], "tolerance_overrides": [], "api_agreement_bound": {"max_abs_diff": 0.0},
        "unmeasured_tolerance_rows": [], "cases": [_result(name) for name in cases], "wall_time_s": 60.0,
    }
    record.update(changes)
    return record


def _folder(path, *records, side=None):
    path.mkdir(parents=True, exist_ok=True)
    for record in records:
        (path / f"{record['backend']}.json").write_text(json.dumps(record))
    for name, content in (side or {}).items():
        (path / name).write_text(json.dumps(content))
    return path


def _refused(tmp_path, *folders, out=None):
    out = out or tmp_path / "merged"
    completed = run_harness("merge", str(out), *(str(folder) for folder in folders))
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert completed.stdout == ""
    line = _one_line(completed.stderr)
    assert line.startswith("keras-parity: error: cannot merge: ")
    return line


@pytest.mark.parametrize("changes, expected", [
    ({"versions": {"keras": "3.16.0", "jax": "1.0", "numpy": "2.4.6", "python": "3.11.7", "platform": "Linux"}},
     "versions['keras'] '3.15.1', "),
    ({"seed": 1}, "seed 20261124, "),
    ({"fault": "swap_input_forget_gates"}, "fault None, "),
    ({"device_class": "gpu_highest"}, "device_class 'cpu', "),
    ({"settings": {"JAX_ENABLE_X64": "1"}}, "settings['JAX_ENABLE_X64'] None, "),
    ({"tolerances": [{"dtype": "float32"}]}, "tolerances [], "),
])
def test_merge_refuses_inputs_of_one_backend_measured_differently(tmp_path, changes, expected):
    first = _folder(tmp_path / "a", _record(cases=("lstm_last_step",)))
    second = _folder(tmp_path / "b", _record(cases=("lstm_sequences",), **changes))
    line = _refused(tmp_path, first, second)
    assert expected in line and str(first) in line and str(second) in line
    assert not (tmp_path / "merged").exists()


def test_merge_accepts_runners_that_differ_only_in_their_kernel_string(tmp_path):
    first = _folder(tmp_path / "a", _record(cases=("lstm_last_step",)))
    other_kernel = {"keras": "3.15.1", "jax": "1.0", "numpy": "2.4.6", "python": "3.11.7", "platform": "Linux-6.1-azure"}
    second = _folder(tmp_path / "b", _record(cases=("lstm_sequences",), versions=other_kernel))
    completed = run_harness("merge", str(tmp_path / "merged"), str(first), str(second))
    assert completed.returncode == 0, completed.stderr


def test_merge_refuses_a_case_measured_twice(tmp_path):
    first = _folder(tmp_path / "a", _record(cases=("lstm_last_step", "lstm_sequences")))
    second = _folder(tmp_path / "b", _record(cases=("lstm_sequences",)))
    assert "case 'lstm_sequences' appears in both" in _refused(tmp_path, first, second)
    twice = _folder(tmp_path / "c", _record(cases=("lstm_sequences", "lstm_sequences")))
    assert "case 'lstm_sequences' appears in both" in _refused(tmp_path, twice)


def test_merge_refuses_one_case_name_with_two_definitions(tmp_path):
    other = dict(CASES["lstm_sequences"].definition, batch=7)
    first = _folder(tmp_path / "a", _record(cases=("lstm_sequences",)))
    second = _folder(tmp_path / "b", _record(backend="torch", cases=()) | {"cases": [_result("lstm_sequences", other)]})
    assert "case 'lstm_sequences' is defined differently in" in _refused(tmp_path, first, second)


def test_merge_refuses_backends_measured_with_different_seeds(tmp_path):
    first = _folder(tmp_path / "a", _record())
    second = _folder(tmp_path / "b", _record(backend="torch", seed=5))
    assert "must share the seed" in _refused(tmp_path, first, second)


def test_merge_refuses_different_copies_of_a_side_record(tmp_path):
    first = _folder(tmp_path / "a", side={"jax.faults.json": {"schema": "keras-parity/faults", "backend": "jax", "x": 1}})
    second = _folder(tmp_path / "b", side={"jax.faults.json": {"schema": "keras-parity/faults", "backend": "jax", "x": 2}})
    assert "jax.faults.json and" in _refused(tmp_path, first, second)


def test_merge_refuses_a_bad_output_folder_or_input(tmp_path):
    good = _folder(tmp_path / "a", _record())
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    assert "exists and is not empty" in _refused(tmp_path, good, out=occupied)
    assert (occupied / "keep.txt").read_text() == "mine" and len(list(occupied.iterdir())) == 1
    assert "is given twice" in _refused(tmp_path, good, tmp_path / "a" / ".." / "a")
    assert "is also an input" in _refused(tmp_path, good, out=good)
    assert "is not a folder" in _refused(tmp_path, good, tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no keras-parity record" in _refused(tmp_path, good, empty)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "jax.json").write_text("{not json")
    assert "is not valid JSON" in _refused(tmp_path, good, corrupt)


def test_merge_combines_headers_orders_cases_by_name_and_copies_side_records(tmp_path):
    side = {"schema": "keras-parity/faults", "backend": "jax", "x": 1}
    first = _folder(
        tmp_path / "a", _record(cases=("lstm_sequences",), shard="2/3", started="2026-01-01T10:05:00+00:00",
                                finished="2026-01-01T10:07:00+00:00", wall_time_s=12.5),
        side={"jax.faults.json": side, "torch.growth.json": {"schema": "keras-parity/growth", "backend": "torch"}},
    )
    second = _folder(tmp_path / "b", _record(cases=("lstm_last_step", "lstm_dense_head"), shard="1/3", wall_time_s=30.0),
                     side={"jax.faults.json": side})
    (first / "jax.log").write_text("==== first\n")
    (second / "jax.log").write_text("==== second")
    out = tmp_path / "merged"
    completed = run_harness("merge", str(out), str(first), str(second))
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0] == ("jax: 3 cases from 2 folders (shards 2/3, 1/3): 3 pass; missing shards 3/3; "
                        "wrote jax.json, jax.npz, jax.verdicts.json, jax.faults.json")
    assert lines[1] == "torch: wrote torch.growth.json"
    record = json.loads((out / "jax.json").read_text())
    assert [result["case"] for result in record["cases"]] == ["lstm_dense_head", "lstm_last_step", "lstm_sequences"]
    assert record["command"] == f"python -m harness merge {out} {first} {second}"
    assert record["shard"] is None
    assert (record["started"], record["finished"]) == ("2026-01-01T10:00:00+00:00", "2026-01-01T10:07:00+00:00")
    assert record["wall_time_s"] == 42.5
    assert [(entry["folder"], entry["shard"]) for entry in record["merged_from"]] == [(str(first), "2/3"), (str(second), "1/3")]
    assert json.loads((out / "jax.faults.json").read_text()) == side
    assert (out / "jax.log").read_text() == "==== first\n==== second\n"
    verdicts = json.loads((out / "jax.verdicts.json").read_text())
    assert set(verdicts["cases"]) == {"lstm_dense_head", "lstm_last_step", "lstm_sequences"}
    assert json.loads((out / "cross_backend.json").read_text())["backends"] == ["jax"]

    # A merged folder merges again: its runs are carried over, not nested.
    third = _folder(tmp_path / "c", _record(cases=("lstm_return_state",), shard="3/3"))
    again = run_harness("merge", str(tmp_path / "again"), str(out), str(third))
    assert again.returncode == 0, again.stderr
    merged = json.loads((tmp_path / "again" / "jax.json").read_text())
    assert [entry["shard"] for entry in merged["merged_from"]] == ["2/3", "1/3", "3/3"]
    assert "missing" not in again.stdout


# ---------------------------------------------------------------------------------------------------
# the real thing: three shards merged equal the unsharded run

SELECTION = "lstm_*"


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory):
    import os

    backend = os.environ.get("KERAS_BACKEND")
    if backend is None:
        pytest.skip("KERAS_BACKEND is not set: run through 'nox -s tests'")
    root = tmp_path_factory.mktemp("shards")
    commands = {"full": ("run", "--backend", backend, "--cases", SELECTION, "--quiet", "--out", str(root / "full"))}
    for k in (1, 2, 3):
        commands[f"shard{k}"] = ("run", "--backend", backend, "--cases", SELECTION, "--shard", f"{k}/3", "--quiet",
                                 "--out", str(root / f"shard{k}"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        completed = dict(zip(commands, pool.map(lambda args: run_harness(*args), commands.values())))
    for name, run in completed.items():
        assert run.returncode in (0, 1), f"{name}: {run.stderr[-2000:]}"
        assert (root / name / f"{backend}.json").exists(), f"{name}: {run.stderr[-2000:]}"
    merged = run_harness("merge", str(root / "merged"), *(str(root / f"shard{k}") for k in (1, 2, 3)))
    return backend, root, merged


def _cases_by_name(path):
    record = json.loads(path.read_text())
    return {result["case"]: {key: value for key, value in result.items() if key != "duration_s"} for result in record["cases"]}



@pytest.mark.backend
def test_shards_partition_the_selection(sharded_runs):
    backend, root, _ = sharded_runs
    full = set(_cases_by_name(root / "full" / f"{backend}.json"))
    shards = []
    for k in (1, 2, 3):
        record = json.loads((root / f"shard{k}" / f"{backend}.json").read_text())
        assert record["shard"] == f"{k}/3"
        shards.append({result["case"] for result in record["cases"]})
    assert json.loads((root / "full" / f"{backend}.json").read_text())["shard"] is None
    assert all(shards) and sum(len(shard) for shard in shards) == len(full) and set().union(*shards) == full


@pytest.mark.backend
def test_merged_shards_equal_the_unsharded_run(sharded_runs):
    backend, root, merged = sharded_runs
    assert merged.returncode == 0, merged.stderr
    from harness.case.schema import builtin_cases, select_cases

    selected = len(select_cases(builtin_cases(), SELECTION))
    assert selected >= 10  # the lstm_* cases and their fused_on_cpu twins
    assert merged.stdout.startswith(f"{backend}: {selected} cases from 3 folders (shards 1/3, 2/3, 3/3): "), merged.stdout
    out, full = root / "merged", root / "full"

    # Cases: names, definitions, statuses, problems and every measured number.
    merged_cases, full_cases = _cases_by_name(out / f"{backend}.json"), _cases_by_name(full / f"{backend}.json")
    assert list(merged_cases) == sorted(full_cases)
    assert merged_cases == full_cases

    record = json.loads((out / f"{backend}.json").read_text())
    assert record["shard"] is None and record["command"].startswith("python -m harness merge")
    assert [entry["shard"] for entry in record["merged_from"]] == ["1/3", "2/3", "3/3"]
    original = json.loads((full / f"{backend}.json").read_text())
    for key in ("backend", "versions", "settings", "seed", "fault", "device_class", "tolerances", "tolerance_overrides"):
        assert record[key] == original[key], key

    # Raw outputs: the same arrays, bit for bit.
    with np.load(out / f"{backend}.npz") as merged_arrays, np.load(full / f"{backend}.npz") as full_arrays:
        assert sorted(merged_arrays.files) == sorted(full_arrays.files)
        for key in full_arrays.files:
            a, b = merged_arrays[key], full_arrays[key]
            assert (a.dtype, a.shape) == (b.dtype, b.shape) and a.tobytes() == b.tobytes(), key

    # Verdicts: re-judged from the merged record, the same as the unsharded run's (timestamps aside).
    def verdicts(folder):
        data = json.loads((folder / f"{backend}.verdicts.json").read_text())
        return {key: value for key, value in data.items() if key not in ("classified", "run_started", "integrity")}

    assert verdicts(out) == verdicts(full)
    # merge classifies the merged record, which checks it: every status its raw outputs give, nothing flagged.
    integrity = json.loads((out / f"{backend}.verdicts.json").read_text())["integrity"]
    assert integrity["failing"] == 0 and integrity["flags"] == [] and integrity["status_check"]["mismatches"] == []
    assert json.loads((out / "cross_backend.json").read_text())["backends"] == [backend]
    assert (out / f"{backend}.log").exists()


@pytest.mark.backend
def test_the_bench_prediction_shards_the_cases_as_the_runs_did(sharded_runs):
    """bench-report predicts the wall time on N machines from the unsharded run's durations under the real shard
    assignment: its shares of the full record are the shards' records, and its 3-machine time is the slowest share."""
    from harness.reports.bench_shards import measured_cases, predict_shards, shard_members

    backend, root, _ = sharded_runs
    cases, durations = measured_cases(json.loads((root / "full" / f"{backend}.json").read_text()), "full")
    predicted = shard_members(cases, 3)
    for k in (1, 2, 3):
        record = json.loads((root / f"shard{k}" / f"{backend}.json").read_text())
        assert predicted[k - 1] == [result["case"] for result in record["cases"]], k
    prediction = predict_shards(cases, durations, 3, 1.0)
    assert prediction.predicted_s == pytest.approx(max(sum(durations[name] for name in names) for names in predicted) + 1.0)
    assert prediction.predicted_s < predict_shards(cases, durations, 1, 1.0).predicted_s


@pytest.mark.backend
def test_merge_refuses_altered_copies_of_real_records(sharded_runs, tmp_path):
    backend, root, _ = sharded_runs
    copy = tmp_path / "copy"
    shutil.copytree(root / "shard2", copy)
    assert "appears in both" in _refused(tmp_path, root / "shard2", copy)

    record = json.loads((root / "shard3" / f"{backend}.json").read_text())
    altered = _folder(tmp_path / "seed", record | {"seed": record["seed"] + 1})
    assert "with seed" in _refused(tmp_path, root / "shard1", altered)
    versions = dict(record["versions"], keras="3.0.0")
    altered = _folder(tmp_path / "versions", record | {"versions": versions})
    assert "versions['keras']" in _refused(tmp_path, root / "shard1", altered)


@pytest.mark.backend
def test_resume_refuses_another_shard(sharded_runs, tmp_path):
    backend, root, _ = sharded_runs
    copy = tmp_path / "copy"
    shutil.copytree(root / "shard1", copy)
    completed = run_harness("run", "--backend", backend, "--cases", SELECTION, "--shard", "2/3", "--resume", "--out", str(copy))
    assert completed.returncode == 2
    assert "measured with shard '1/3', this run has '2/3'" in _one_line(completed.stderr)
