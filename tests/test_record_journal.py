"""The parity run's journal (issue 16): one small file pair per case instead of rewriting the whole record, the
whole record written at the end (also when an exception stops the run), and --resume rebuilding what a killed run
measured from record + journal, with the checks a record gets.

No Keras: ``run_case`` is replaced by a fake backend that returns, for each case, what the committed
results/jax.json measured (its result and raw outputs), so verdicts are judged for real and the files written are
real records. One test kills a run with SIGKILL in a subprocess."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.case.schema import Case, parse_case
from harness.case.tolerances import load_tolerances
from harness.execute.backends import BackendInfo
from harness.records import store
from harness.records.integrity import tolerance_fields
from harness.studies import parity
from harness.studies.parity import ResumeRefused, RunOptions, run_cases
from tests.conftest import ROOT

RESULTS = ROOT / "results"
NAMES = ["lstm_last_step", "lstm_sequences", "stacked_lstm_float64", "float16_default_initializer", "lstm_go_backwards"]
_COMMITTED: dict[str, Any] = {}


def _committed() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if not _COMMITTED:
        _COMMITTED["record"] = store.read_record(RESULTS / "jax.json")
        _COMMITTED["raw"] = store.read_arrays(RESULTS / "jax.npz")
    return _COMMITTED["record"], _COMMITTED["raw"]


def _backend() -> BackendInfo:
    record, _ = _committed()
    return BackendInfo(name="jax", device="cpu", versions=record["versions"], settings=record["settings"], device_class="cpu")


def _cases(names: list[str] = NAMES) -> list[Case]:
    results = {result["case"]: result for result in _committed()[0]["cases"]}
    return [parse_case(results[name]["definition"], "test") for name in names]


def _copies(count: int) -> list[Case]:
    """``count`` cases that measure exactly what lstm_sequences measures, under names of one length."""
    template = _cases(["lstm_sequences"])[0]
    return [dataclasses.replace(template, name=f"copy_{index:03d}") for index in range(count)]


class FakeBackend:
    """Stands in for ``measure.run_case``: the committed result and raw outputs of the case (of lstm_sequences for a
    ``copy_*`` case). ``interrupt_after`` raises KeyboardInterrupt, ``kill_after`` SIGKILLs the process, when that
    many cases have been measured."""

    def __init__(self, interrupt_after: int | None = None, kill_after: int | None = None) -> None:
        self.interrupt_after, self.kill_after = interrupt_after, kill_after
        self.measured: list[str] = []

    def __call__(self, case: Case, seed: int, tolerances: Any, arrays: dict[tuple[str, str], np.ndarray], timeout_s: int) -> dict[str, Any]:
        if len(self.measured) == self.interrupt_after:
            raise KeyboardInterrupt
        if len(self.measured) == self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        record, raw = _committed()
        source = "lstm_sequences" if case.name.startswith("copy_") else case.name
        result = copy.deepcopy(next(result for result in record["cases"] if result["case"] == source))
        arrays.update(store.result_arrays(result, raw))
        self.measured.append(case.name)
        return result | {"case": case.name}


def _run(folder: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeBackend, cases: list[Case] | None = None, *,
         resume: bool = False, seed: int = 1) -> tuple[dict[str, Any], dict[str, Any] | None]:
    monkeypatch.setattr(parity, "run_case", fake)
    options = RunOptions(out_dir=folder, seed=seed, command="test", resume=resume)
    return run_cases(_cases() if cases is None else cases, _backend(), options)


def _on_disk(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    return (json.loads((folder / "jax.json").read_text()), store.read_arrays(folder / "jax.npz"),
            json.loads((folder / "jax.verdicts.json").read_text()))


def _assert_same_record(folder: Path, reference: Path) -> None:
    """The same cases (results equal), the same raw outputs and the same verdicts as the uninterrupted run's."""
    record, raw, verdicts = _on_disk(folder)
    expected_record, expected_raw, expected_verdicts = _on_disk(reference)
    assert record["cases"] == expected_record["cases"]
    assert record["finished"] is not None
    assert sorted(raw) == sorted(expected_raw) and len(raw) > 0
    for key, value in expected_raw.items():
        assert raw[key].dtype == value.dtype and np.array_equal(raw[key], value, equal_nan=True), key
    assert verdicts["cases"] == expected_verdicts["cases"] and verdicts["counts"] == expected_verdicts["counts"]


@pytest.fixture
def uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "uninterrupted"
    _run(folder, monkeypatch, FakeBackend())
    return folder


def _journal_of(folder: Path, monkeypatch: pytest.MonkeyPatch, measured: int, seed: int = 1) -> None:
    """What a run killed outright after ``measured`` cases leaves: the record it started from (no case) and a journal
    of ``measured`` cases (the end of the run, which would write the whole record, never comes)."""
    monkeypatch.setattr(parity, "write_run_record", _only_first_call(parity.write_run_record))
    with pytest.raises(KeyboardInterrupt):
        _run(folder, monkeypatch, FakeBackend(interrupt_after=measured), seed=seed)
    monkeypatch.undo()


def _only_first_call(function: Any) -> Any:
    calls = []

    def first_only(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        if len(calls) == 1:
            function(*args, **kwargs)
        else:  # the final write: never reached by a killed run, and then the journal is not cleared either
            raise KeyboardInterrupt
    return first_only


# ------------------------------------------------------------------------------------------ a whole run


def test_a_run_writes_the_whole_record_and_leaves_no_journal(uninterrupted: Path) -> None:
    record, raw, verdicts = _on_disk(uninterrupted)
    committed, committed_raw = _committed()
    assert [result["case"] for result in record["cases"]] == NAMES and record["finished"] is not None
    expected_keys = sorted(key for key in committed_raw if key.split("/", 1)[0] in NAMES)
    assert sorted(raw) == expected_keys and all(np.array_equal(raw[key], committed_raw[key], equal_nan=True) for key in expected_keys)
    assert set(verdicts["cases"]) == set(NAMES) and verdicts["cases"]["stacked_lstm_float64"]["measured_status"] == "fail"
    assert not store.journal_folder(uninterrupted, "jax").exists()
    assert sorted(path.name for path in uninterrupted.iterdir()) == ["jax.json", "jax.npz", "jax.verdicts.json"]


# ------------------------------------------------------------------------------------------ interrupted, then resumed


def test_an_exception_writes_the_whole_record_and_resume_completes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      uninterrupted: Path) -> None:
    folder = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        _run(folder, monkeypatch, FakeBackend(interrupt_after=2))
    record, raw, verdicts = _on_disk(folder)  # written in the finally block: what was measured, unfinished
    assert [result["case"] for result in record["cases"]] == NAMES[:2] and record["finished"] is None
    assert set(verdicts["cases"]) == set(NAMES[:2]) and {key.split("/", 1)[0] for key in raw} == set(NAMES[:2])
    assert not store.journal_folder(folder, "jax").exists()
    fake = FakeBackend()
    _run(folder, monkeypatch, fake, resume=True)
    assert fake.measured == NAMES[2:]
    _assert_same_record(folder, uninterrupted)
    assert len(_on_disk(folder)[0]["resumed"]) == 1


def test_a_run_killed_outright_loses_nothing_on_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uninterrupted: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "killed"
    script = ("import sys; from pathlib import Path; import pytest\n"
              "from tests.test_record_journal import FakeBackend, _run\n"
              "_run(Path(sys.argv[1]), pytest.MonkeyPatch(), FakeBackend(kill_after=3))\n")
    killed = subprocess.run([sys.executable, "-c", script, str(folder)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((folder / "jax.json").read_text())["cases"] == []  # the record the run started from
    journal = store.read_journal(folder, "jax")
    assert journal is not None and journal.dropped == []
    assert [entry["result"]["case"] for entry in journal.entries] == NAMES[:3]
    fake = FakeBackend()
    _run(folder, monkeypatch, fake, resume=True)
    assert fake.measured == NAMES[3:]
    _assert_same_record(folder, uninterrupted)
    assert "resuming with the 3 case(s)" in capsys.readouterr().err
    assert not store.journal_folder(folder, "jax").exists()


def test_resume_continues_a_resumed_record_and_its_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           uninterrupted: Path) -> None:
    folder = tmp_path / "twice"
    _run(folder, monkeypatch, FakeBackend(), _cases(NAMES[:1]))  # a finished record of one case
    monkeypatch.setattr(parity, "write_run_record", _only_first_call(parity.write_run_record))
    with pytest.raises(KeyboardInterrupt):  # resumed, then killed after two more: record of 1 + journal of 2
        _run(folder, monkeypatch, FakeBackend(interrupt_after=2), resume=True)
    monkeypatch.undo()
    assert [result["case"] for result in _on_disk(folder)[0]["cases"]] == NAMES[:1]
    fake = FakeBackend()
    _run(folder, monkeypatch, fake, resume=True)
    assert fake.measured == NAMES[3:]
    _assert_same_record(folder, uninterrupted)
    assert len(_on_disk(folder)[0]["resumed"]) == 2


def test_a_journal_already_in_the_record_is_not_merged_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              uninterrupted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "folded"
    clear = store.clear_journal
    calls = []

    def clear_except_at_the_end(folder: Path, backend: str) -> None:
        calls.append(folder)
        if len(calls) == 1:  # at the start; the end's call is cut short: the whole record written, the journal left
            clear(folder, backend)
    monkeypatch.setattr(store, "clear_journal", clear_except_at_the_end)
    _run(folder, monkeypatch, FakeBackend())
    monkeypatch.undo()
    assert len(store.read_journal(folder, "jax").entries) == len(NAMES)
    fake = FakeBackend()
    _run(folder, monkeypatch, fake, resume=True)
    assert fake.measured == []
    assert "already in" in capsys.readouterr().err
    _assert_same_record(folder, uninterrupted)


# ------------------------------------------------------------------------------------------ refused, discarded, torn


def test_resume_refuses_a_journal_measured_with_another_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _journal_of(tmp_path, monkeypatch, 2, seed=7)
    before = (tmp_path / "jax.json").read_bytes()
    fake = FakeBackend()
    with pytest.raises(ResumeRefused, match=r"\.jax\.journal was measured with seed 7, this run has 8; run without --resume"):
        _run(tmp_path, monkeypatch, fake, resume=True, seed=8)
    assert fake.measured == [] and (tmp_path / "jax.json").read_bytes() == before
    assert len(store.read_journal(tmp_path, "jax").entries) == 2  # kept: a resume with seed 7 still has it


def test_resume_refuses_a_journal_judged_with_another_tolerance_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    looser = tolerance_fields(load_tolerances("cpu", "jax"))
    looser["tolerances"]["float32"]["outputs"]["rtol"] *= 2
    monkeypatch.setattr(parity, "tolerance_fields", lambda tolerances: copy.deepcopy(looser))
    _journal_of(tmp_path, monkeypatch, 2)  # a run under the looser table, killed
    fake = FakeBackend()
    with pytest.raises(ResumeRefused, match=r"\.jax\.journal was judged with another tolerance table .*tolerances differ"):
        _run(tmp_path, monkeypatch, fake, resume=True)
    assert fake.measured == [] and len(store.read_journal(tmp_path, "jax").entries) == 2


def test_resume_refuses_a_journal_written_on_top_of_another_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _journal_of(tmp_path, monkeypatch, 2)
    record = json.loads((tmp_path / "jax.json").read_text())
    record["command"] = "another run"  # the record file the journal continues was replaced
    (tmp_path / "jax.json").write_text(json.dumps(record))
    with pytest.raises(ResumeRefused, match=r"continues another jax\.json than the one there now"):
        _run(tmp_path, monkeypatch, FakeBackend(), resume=True)


def test_a_plain_run_discards_a_journal_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _journal_of(tmp_path, monkeypatch, 3)
    capsys.readouterr()
    fake = FakeBackend()
    _run(tmp_path, monkeypatch, fake, _cases(NAMES[3:]))
    lines = [line for line in capsys.readouterr().err.splitlines() if "journal" in line]
    assert len(lines) == 1 and "discarding" in lines[0] and "(3 case(s))" in lines[0] and "--resume" in lines[0]
    assert fake.measured == NAMES[3:]
    assert [result["case"] for result in _on_disk(tmp_path)[0]["cases"]] == NAMES[3:]
    assert not store.journal_folder(tmp_path, "jax").exists()


@pytest.mark.parametrize("tear", ["npz_missing", "json_missing", "temporary_file", "unreadable_npz"])
def test_a_torn_last_entry_is_dropped_with_a_message(tear: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     uninterrupted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _journal_of(tmp_path, monkeypatch, 3)
    journal = store.journal_folder(tmp_path, "jax")
    last = journal / "00002"
    if tear == "npz_missing":
        last.with_suffix(".npz").unlink()
    elif tear == "json_missing":
        last.with_suffix(".json").unlink()
    elif tear == "temporary_file":
        last.with_suffix(".json").unlink()
        last.with_suffix(".npz").unlink()
        (journal / ".00002.npz.k3j2.tmp").write_bytes(b"PK\x03\x04 half an archive")
    else:
        last.with_suffix(".npz").write_bytes(b"PK\x03\x04 half an archive")
    read = store.read_journal(tmp_path, "jax")
    assert [entry["result"]["case"] for entry in read.entries] == NAMES[:2]
    assert len(read.dropped) == 1 and ("dropped" in read.dropped[0]), read.dropped
    capsys.readouterr()
    fake = FakeBackend()
    _run(tmp_path, monkeypatch, fake, resume=True)
    assert fake.measured == NAMES[2:]  # the torn case is measured again, the two whole ones are not
    err = capsys.readouterr().err
    assert "dropped" in err and "resuming with the 2 case(s)" in err
    _assert_same_record(tmp_path, uninterrupted)


def test_a_journal_entry_naming_other_arrays_is_dropped(tmp_path: Path) -> None:
    store.start_journal(tmp_path, "jax", {"backend": "jax"}, "0" * 64)
    arrays = {"case_a/sequential/output": np.arange(6, dtype=np.float32).reshape(2, 3)}
    store.append_journal(tmp_path, "jax", 0, {"case": "case_a"}, None, arrays)
    store.append_journal(tmp_path, "jax", 1, {"case": "case_b"}, None, {"case_b/sequential/output": np.ones(2)})
    entry = store.journal_folder(tmp_path, "jax") / "00001.json"
    wrong = json.loads(entry.read_text()) | {"arrays": ["case_b/sequential/state"]}
    entry.write_text(json.dumps(wrong))
    journal = store.read_journal(tmp_path, "jax")
    assert [entry["result"]["case"] for entry in journal.entries] == ["case_a"]
    assert np.array_equal(journal.arrays["case_a/sequential/output"], arrays["case_a/sequential/output"])
    assert len(journal.dropped) == 1 and "00001.json" in journal.dropped[0]


# ------------------------------------------------------------------------------------------ linear cost


def test_a_case_writes_the_same_bytes_however_many_came_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[tuple[str, str, int]] = []
    write = store._write_unlocked

    def counting(path: Path, payload: bytes) -> None:
        written.append((path.parent.name, path.name, len(payload)))
        write(path, payload)
    monkeypatch.setattr(store, "_write_unlocked", counting)
    count = 40
    _run(tmp_path, monkeypatch, FakeBackend(), _copies(count))
    per_case: dict[int, int] = {}
    for folder, name, size in written:
        if folder == ".jax.journal" and name[:5].isdigit():
            per_case[int(name[:5])] = per_case.get(int(name[:5]), 0) + size
    assert sorted(per_case) == list(range(count))
    sizes = [per_case[index] for index in range(count)]
    assert max(sizes) - min(sizes) <= 4, sizes  # the same case, under names of one length: only the index's digits differ
    whole = [(name, size) for folder, name, size in written if folder == tmp_path.name]
    assert [name for name, _ in whole] == ["jax.npz", "jax.verdicts.json", "jax.json"] * 2  # at the start and at the end
    final_record = sum(size for _, size in whole[3:])
    assert final_record > 20 * sizes[-1]  # what rewriting the whole record after the last case would have cost
