"""Bad input: one clear line on stderr, a non-zero exit, nothing half-written."""

import json

import pytest

from conftest import run_harness


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_unknown_backend(tmp_path):
    completed = run_harness("run", "--backend", "mxnet", "--out", str(tmp_path))
    assert completed.returncode == 2
    line = _one_line(completed.stderr)
    assert "invalid choice: 'mxnet'" in line and "tensorflow" in line
    assert list(tmp_path.iterdir()) == []


def test_glob_matching_no_case(tmp_path):
    completed = run_harness("run", "--backend", "jax", "--cases", "nosuchkind_*", "--out", str(tmp_path))
    assert completed.returncode == 2
    assert "no case matches 'nosuchkind_*'" in _one_line(completed.stderr)
    assert list(tmp_path.iterdir()) == []


def test_backend_not_installed_gives_install_hint(tmp_path):
    import importlib.util

    missing = [name for name in ("tensorflow", "jax", "torch") if importlib.util.find_spec(name) is None]
    if not missing:
        pytest.skip("every backend is installed in this interpreter")
    completed = run_harness("run", "--backend", missing[0], "--out", str(tmp_path))
    assert completed.returncode == 2
    line = _one_line(completed.stderr)
    assert f"backend {missing[0]!r} is not installed" in line and "pip install" in line


def test_bad_case_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[case]]\nname = "x"\ndtype = "float32"\nbatch = 2\ntime = 3\nfeatures = 4\nlayers = [{ type = "lstm" }]\n')
    completed = run_harness("list", "--case-file", str(bad))
    assert completed.returncode == 2
    assert "field 'units' is missing" in _one_line(completed.stderr)


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", "is not valid JSON"),
        (json.dumps({"hello": "world"}), "is not a keras-parity run record"),
        (json.dumps({"schema": "keras-parity/run", "schema_version": 99}), "has schema_version 99"),
    ],
)
def test_report_rejects_corrupt_or_foreign_json(tmp_path, content, expected):
    (tmp_path / "jax.json").write_text(content)
    completed = run_harness("report", str(tmp_path))
    assert completed.returncode == 2
    assert expected in _one_line(completed.stderr)
    assert not (tmp_path / "REPORT.md").exists()


def test_report_on_empty_folder(tmp_path):
    completed = run_harness("report", str(tmp_path))
    assert completed.returncode == 2
    assert "holds no run records" in _one_line(completed.stderr)


def test_list_shows_cases():
    completed = run_harness("list")
    assert completed.returncode == 0
    assert "lstm_right_padded_mask" in completed.stdout


def test_a_crash_of_the_harness_exits_2_not_1(monkeypatch, capsys):
    """1 means "measured, and found failures" (the nightly session tolerates it); a crash must never read so."""
    from harness import cli

    def crash(args, argv):
        raise ImportError("cannot import name 'something' from 'harness.execute'")

    monkeypatch.setattr(cli, "_dispatch_command", crash)
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert "ImportError" in err and "the harness crashed" in err.splitlines()[-1]
