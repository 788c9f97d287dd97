"""The GitHub Actions workflows (.github/workflows/*.yml) are valid and run what exists.

Each file is checked against the official workflow schema (schemastore's github-workflows schema, which
check-jsonschema ships vendored, so no network is needed), and the validator is shown to reject a broken
copy. Every 'nox -s' session a workflow (or a script it runs) names is a session of noxfile.py per
'nox -l', and every 'python -m harness' command parses with the harness's own argument parser.
"""

import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from ruamel.yaml import YAML

from conftest import ROOT, load_noxfile

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# Unreachable proxies: the vendored schema must be enough.
OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
CONTROL = {"||", "&&", ";", "|", "&", "(", ")", "\n"}
REDIRECT = {">", ">>", "<", "2>", "&>"}
MATRIX_EXPRESSION = re.compile(r"\$\{\{\s*matrix\.(\w+)\s*\}\}")
ENV_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")  # $NAME or ${NAME}, from the env: of the workflow, job and step
ACTION_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")


noxfile = load_noxfile()
BACKENDS = noxfile.BACKENDS


def _load(path: Path) -> dict[str, Any]:
    return YAML(typ="safe").load(path.read_text())  # YAML 1.2: the key 'on' stays a string


def _validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **OFFLINE},
    )


def _write(data: dict[str, Any], path: Path) -> Path:
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    with path.open("w") as file:
        yaml.dump(data, file)
    return path


def _matrix_combinations(job: dict[str, Any]) -> list[dict[str, str]]:
    """Every combination of the job's matrix axes (include entries added), as strings; [{}] without a matrix."""
    matrix = dict(job.get("strategy", {}).get("matrix", {}))
    include = matrix.pop("include", [])
    matrix.pop("exclude", None)
    axes = {key: values for key, values in matrix.items() if isinstance(values, list)}
    combinations = [dict(zip(axes, values)) for values in itertools.product(*axes.values())] or [{}]
    combinations += include
    return [{key: str(value) for key, value in combination.items()} for combination in combinations]


def _logical_lines(script: str) -> list[str]:
    return script.replace("\\\n", " ").splitlines()


def _commands(line: str) -> Iterator[list[str]]:
    """The simple commands of one shell line (split at control operators, redirections dropped)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    command: list[str] = []
    tokens = iter(lexer)
    for token in tokens:
        if token in CONTROL:
            if command:
                yield command
            command = []
        elif token in REDIRECT:
            next(tokens, None)
        else:
            command.append(token)
    if command:
        yield command


def _scripts() -> Iterator[tuple[str, str, dict[str, str]]]:
    """(where, shell script, matrix values) for every run step of every workflow, with the matrix expanded;
    and, once, every repository script a step runs (such as .ci/run)."""
    seen: set[Path] = set()
    for path in WORKFLOWS:
        workflow = _load(path)
        for job_id, job in workflow["jobs"].items():
            for index, step in enumerate(job.get("steps", [])):
                if "run" not in step:
                    continue
                env = {key: str(value) for key, value in
                       {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}.items()}
                for values in _matrix_combinations(job):
                    script = MATRIX_EXPRESSION.sub(lambda match: values.get(match.group(1), match.group(0)), step["run"])
                    script = ENV_VARIABLE.sub(lambda match: env.get(match.group(1) or match.group(2), match.group(0)), script)
                    yield f"{path.name}: {job_id} step {index + 1} {values or ''}", script, values
                    for line in _logical_lines(script):
                        for command in _commands(line):
                            target = ROOT / command[0]
                            if command[0].startswith((".", "scripts/")) and target.is_file() and target not in seen:
                                seen.add(target)
                                yield str(target.relative_to(ROOT)), target.read_text(), {}


def _commands_in_scripts() -> list[tuple[str, list[str]]]:
    found = []
    for where, script, _ in _scripts():
        for line in _logical_lines(script):
            if re.search(r"\b(nox|harness)\b", line):
                found += [(where, command) for command in _commands(line)]
    return found


def _nox_sessions(command: list[str]) -> list[str] | None:
    """The -s/--session names of a nox command line; None when it is not nox."""
    if command[:1] == ["nox"]:
        args = command[1:]
    elif len(command) >= 3 and Path(command[0]).name.startswith("python") and command[1:3] == ["-m", "nox"]:
        args = command[3:]
    else:
        return None
    args = args[: args.index("--")] if "--" in args else args
    names, taking = [], False
    for arg in args:
        if arg in ("-s", "-e", "--session", "--sessions"):
            taking = True
        elif arg.startswith("-"):
            taking = False
        elif taking:
            names.append(arg)
    return names


def _harness_args(command: list[str]) -> list[str] | None:
    if len(command) >= 3 and Path(command[0]).name.startswith("python") and command[1:3] == ["-m", "harness"]:
        return command[3:]
    return None


@pytest.fixture(scope="module")
def nox_sessions() -> set[str]:
    """Every session per 'nox -l' (selected by default, '*', or not, '-'; 'nox -l --json' lists only the
    selected ones): full names (parity_gpu(backend='jax')) and bare names (parity_gpu)."""
    done = subprocess.run([sys.executable, "-m", "nox", "-l"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = {line[2:].split(" -> ")[0] for line in done.stdout.splitlines() if line[:2] in ("* ", "- ")}
    return listed | {name.split("(")[0] for name in listed}


def test_there_are_workflows():
    assert {path.name for path in WORKFLOWS} >= {"ci.yml", "nightly.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_workflow_matches_the_github_workflow_schema(path):
    done = _validate(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout


def test_validator_rejects_a_misspelled_key(tmp_path):
    data = _load(ROOT / ".github" / "workflows" / "ci.yml")
    job = next(iter(data["jobs"].values()))
    job["runs_on"] = job.pop("runs-on")
    done = _validate(_write(data, tmp_path / "misspelled.yml"))
    assert done.returncode == 1
    assert "'runs-on' is a required property" in done.stdout


def test_validator_rejects_a_job_without_runs_on_and_an_unknown_event(tmp_path):
    data = _load(ROOT / ".github" / "workflows" / "nightly.yml")
    del next(iter(data["jobs"].values()))["runs-on"]
    assert _validate(_write(data, tmp_path / "no_runner.yml")).returncode == 1
    data = _load(ROOT / ".github" / "workflows" / "nightly.yml")
    data["on"] = {"nightly_schedule": {"cron": "17 3 * * *"}}
    done = _validate(_write(data, tmp_path / "unknown_event.yml"))
    assert done.returncode == 1, done.stdout
    assert _validate(_write(_load(ROOT / ".github" / "workflows" / "nightly.yml"), tmp_path / "copy.yml")).returncode == 0


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_actions_are_pinned(path):
    for job in _load(path)["jobs"].values():
        for step in job.get("steps", []):
            if "uses" in step:
                assert ACTION_PIN.match(step["uses"]), f"{path.name}: {step['uses']} is not pinned to a version"


def test_every_nox_session_named_exists(nox_sessions):
    named = []
    for where, command in _commands_in_scripts():
        sessions = _nox_sessions(command)
        for name in sessions or []:
            assert name in nox_sessions, f"{where}: 'nox -s {name}' is not a session of noxfile.py"
            named.append(name)
    assert {f"parity_gpu(backend='{backend}')" for backend in BACKENDS} <= set(named)
    assert "tests" in named  # through .ci/run


def test_every_harness_command_parses():
    from harness.case.shard import parse_shard
    from harness.cli import build_parser

    seen = set()
    for where, command in _commands_in_scripts():
        args = _harness_args(command)
        if args is None:
            continue
        try:
            parsed = build_parser().parse_args(args)
        except SystemExit as error:
            pytest.fail(f"{where}: 'python -m harness {' '.join(args)}' does not parse (exit {error.code})")
        if getattr(parsed, "shard", None) is not None:
            parse_shard(parsed.shard)
        seen.add(args[0])
    assert {"run", "merge", "classify", "report", "compare"} <= seen


def test_ci_shards_cover_every_backend():
    ci = _load(ROOT / ".github" / "workflows" / "ci.yml")
    matrix = ci["jobs"]["parity"]["strategy"]["matrix"]
    assert matrix["backend"] == BACKENDS
    assert matrix["shard"] == list(range(1, int(ci["env"]["SHARDS"]) + 1))
    merge = ci["jobs"]["merge"]
    assert merge["needs"] == "parity" and "cancelled()" in merge["if"]


def test_nightly_runs_the_gpu_sessions_on_gpu_runners_and_publishes():
    nightly = _load(ROOT / ".github" / "workflows" / "nightly.yml")
    assert set(nightly["on"]) == {"schedule", "workflow_dispatch"}
    gpu = nightly["jobs"]["gpu"]
    assert gpu["runs-on"] == ["self-hosted", "gpu"]
    assert gpu["strategy"]["matrix"]["backend"] == BACKENDS
    (upload,) = [step for step in gpu["steps"] if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["path"].rstrip("/") == noxfile.GPU_RESULTS  # where parity_gpu writes
    report = nightly["jobs"]["report"]
    scripts = "\n".join(step.get("run", "") for step in report["steps"])
    assert f"for precision in {' '.join(noxfile.PRECISIONS)}; do" in scripts
    assert report["permissions"]["pages"] == "write" and report["permissions"]["id-token"] == "write"
    assert report["environment"]["name"] == "github-pages"
    uses = [step.get("uses", "").split("@")[0] for step in report["steps"]]
    assert {"actions/upload-pages-artifact", "actions/deploy-pages", "actions/upload-artifact"} <= set(uses)
