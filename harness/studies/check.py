"""``keras-parity check``: one saved model, run on each requested backend in its own interpreter, every layer judged
against the float64 reference and the backends against each other (harness.verdicts.check).

Each backend runs ``python -m harness.execute.capture`` in a subprocess, in the interpreter that has it: the one
given with ``python={backend: interpreter}`` (``--python BACKEND=INTERPRETER``); else the project's nox virtualenv
of that backend (``.nox/tests-backend-<backend>/bin/python``, or a ``.nox/parity*<backend>*`` one, under the project
or the current folder); else this interpreter, when it has the backend. The backends run at once; each one's log
(Keras's and the backend's warnings) goes to a file beside its capture.

The public API::

    from harness.studies.check import check, assert_backends_agree

    result = check("model.keras", "x.npy", backends=["jax", "torch"])
    assert_backends_agree(result)  # AssertionError with the per-layer table when any layer diverges

Bad input raises ``CheckProblem`` (one line: the problem and what is accepted); the CLI prints it and exits 2.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from harness.case.model_file import ModelFileProblem, declared_inputs, python_code_layers, read_config
from harness.case.model_inputs import InputProblem, fit_inputs, load_input_file, parse_input_spec
from harness.case.tolerances import load_tolerances
from harness.execute.backends import BACKENDS, backend_module
from harness.execute.capture import FAULT_VARIABLE
from harness.records.store import write_text
from harness.verdicts.check import Capture, LayerRow, Verdict, judge, render_table

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INPUT_SPEC = "seed=0,batch=2"
CAPTURE_TIMEOUT_S = 900
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class CheckProblem(ValueError):
    """Bad input to check: one line naming the problem and what is accepted or the fix."""


@dataclass
class CheckResult:
    """The outcome of one check: per layer and backend the judgement (``verdict.rows``), the first divergent layer,
    the backends that could not run the model, and what was run where."""

    model: str
    inputs: str
    safe_mode: bool
    backends: list[str]
    interpreters: dict[str, str]
    versions: dict[str, dict[str, Any]]
    verdict: Verdict
    model_errors: dict[str, str] = field(default_factory=dict)  # backend -> why the model could not run there

    @property
    def passed(self) -> bool:
        return self.verdict.passed and not self.model_errors

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_FAILED

    @property
    def first_divergent(self) -> str | None:
        return self.verdict.first_divergent

    @property
    def layers(self) -> list[LayerRow]:
        """The per-layer table: one row per layer call, in the order the calls finished."""
        return self.verdict.rows

    def layer(self, name: str) -> LayerRow:
        """The row of layer call ``name`` (a shared layer's second call: NAME#2); KeyError when there is none."""
        for row in self.verdict.rows:
            if row.name == name:
                return row
        raise KeyError(f"no layer call {name!r}; the calls: {', '.join(row.name for row in self.verdict.rows)}")

    def table(self) -> str:
        judged = [b for b in self.backends if b not in self.model_errors]
        lines = [f"model {self.model} ({'safe mode' if self.safe_mode else 'UNSAFE: safe mode off (--unsafe)'}), inputs {self.inputs}"]
        for backend in self.backends:
            versions = self.versions.get(backend, {})
            lines.append(f"  {backend}: keras {versions.get('keras', '?')}, {backend} {versions.get(backend, '?')} "
                         f"({self.interpreters[backend]})")
        lines.append(render_table(self.verdict, judged))
        for backend, problem in self.model_errors.items():
            lines.append(f"{backend}: {problem}")
        if self.passed:
            lines.append(f"PASS: every layer within tolerance on {', '.join(judged)}"
                         + (" and across them" if len(judged) > 1 else "")
                         + _no_reference_note(self.verdict))
        else:
            lines.append("FAIL" + (f": first divergent layer {self.first_divergent}" if self.first_divergent else ""))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"schema": "keras-parity/check", "model": self.model, "inputs": self.inputs, "safe_mode": self.safe_mode,
                "backends": self.backends, "interpreters": self.interpreters, "versions": self.versions,
                "passed": self.passed, "exit_code": self.exit_code, "first_divergent": self.first_divergent,
                "problems": self.verdict.problems, "model_errors": self.model_errors,
                "amplification_floors": self.verdict.floors, "layers": [row.to_json() for row in self.verdict.rows]}


def _no_reference_note(verdict: Verdict) -> str:
    names = [row.name for row in verdict.rows if row.status == "no reference"]
    return f" ({len(names)} without a reference, compared across backends only: {', '.join(names)})" if names else ""


def assert_backends_agree(result: CheckResult) -> None:
    """Raise AssertionError with the per-layer table unless every layer agrees with the reference and across backends."""
    if not result.passed:
        raise AssertionError("keras-parity check failed\n" + result.table())


def _has_backend(backend: str) -> bool:
    return importlib.util.find_spec(backend_module(backend).IMPORT_NAME) is not None


def _nox_interpreter(backend: str) -> Path | None:
    for root in dict.fromkeys([PROJECT_ROOT, Path.cwd()]):
        candidates = [root / ".nox" / f"tests-backend-{backend}"] + sorted((root / ".nox").glob(f"parity*{backend}*"))
        for folder in candidates:
            python = folder / "bin" / "python"
            if python.is_file():
                return python
    return None


def interpreters(backends: Sequence[str] | None, python: Mapping[str, str] | None = None) -> dict[str, str]:
    """backend -> the interpreter that runs it: the one given, a nox virtualenv, or this one when it has the backend.
    Without ``backends``: every backend that has one. CheckProblem for an unknown backend or one without an interpreter."""
    python = dict(python or {})
    for backend in list(python) + list(backends or []):
        if backend not in BACKENDS:
            raise CheckProblem(f"unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    found: dict[str, str] = {}
    for backend in backends or BACKENDS:
        if backend in python:
            path = Path(python[backend])
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise CheckProblem(f"--python {backend}={python[backend]}: no such executable; give the python of a "
                                   f"virtualenv with keras and {backend}")
            found[backend] = str(path)
        elif (nox := _nox_interpreter(backend)) is not None:
            found[backend] = str(nox)
        elif _has_backend(backend):
            found[backend] = sys.executable
        elif backends:
            raise CheckProblem(f"no interpreter with backend {backend}: this one lacks it and there is no "
                               f".nox/tests-backend-{backend}; pass --python {backend}=/path/to/venv/bin/python")
    if not found:
        raise CheckProblem(f"no interpreter has any of {', '.join(BACKENDS)}; pass --python BACKEND=/path/to/python")
    return found


def _precheck(model: Path, inputs: Any, unsafe: bool) -> None:
    """Refuse at once what the model file itself shows to be bad input (harness.case.model_file), before any backend
    starts: no Keras model, Python code under safe mode, inputs that do not fit the declared inputs. The captures
    check again, with Keras."""
    try:
        config = read_config(model)
    except ModelFileProblem as error:
        raise CheckProblem(str(error)) from None
    code = python_code_layers(config)
    if code and not unsafe:
        raise CheckProblem(f"{model} holds Python code (the function of Lambda layer {', '.join(code)}) that Keras's safe "
                           f"mode refuses to load; if you trust the file, pass --unsafe")
    declared = declared_inputs(config)
    if declared is None or inputs is None:
        return
    try:
        given = load_input_file(Path(inputs)) if isinstance(inputs, (str, Path)) else inputs
        fit_inputs(declared, dict(given) if isinstance(given, Mapping) else np.asarray(given))
    except InputProblem as error:
        raise CheckProblem(str(error)) from None


def _inputs_argument(inputs: Any, input_spec: str | None, folder: Path) -> tuple[list[str], str]:
    """The capture's input arguments and a description; user arrays are saved once into ``folder``."""
    try:
        if inputs is None:
            spec = input_spec or DEFAULT_INPUT_SPEC
            parse_input_spec(spec)
            return ["--input-spec", spec], f"drawn from --input-spec {spec}"
        if isinstance(inputs, (str, Path)):
            path = Path(inputs)
            load_input_file(path)
            return ["--inputs", str(path.resolve())], str(path)
    except InputProblem as error:
        raise CheckProblem(str(error)) from None
    if isinstance(inputs, Mapping):
        path = folder / "inputs.npz"
        np.savez(path, **{name: np.asarray(value) for name, value in inputs.items()})
        return ["--inputs", str(path)], f"arrays {', '.join(inputs)}"
    path = folder / "inputs.npy"
    np.save(path, np.asarray(inputs), allow_pickle=False)
    return ["--inputs", str(path)], f"an array of shape {tuple(np.shape(inputs))}"


def _environment(backend: str, fault: tuple[str, str] | None) -> dict[str, str]:
    """The capture's environment: the project and the current folder importable (for --import), the backend chosen."""
    environment = dict(os.environ)
    paths = [str(PROJECT_ROOT), os.getcwd()] + [p for p in [environment.get("PYTHONPATH")] if p]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    environment["KERAS_BACKEND"] = backend
    environment.pop(FAULT_VARIABLE, None)
    if fault is not None and fault[0] == backend:
        environment[FAULT_VARIABLE] = fault[1]
    return environment


def _last_line(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(nothing logged)"


def check(model_path: str | Path, inputs: Any = None, backends: Sequence[str] | None = None, *,
          input_spec: str | None = None, python: Mapping[str, str] | None = None, unsafe: bool = False,
          imports: Sequence[str] = (), fault: tuple[str, str] | None = None,
          workdir: str | Path | None = None) -> CheckResult:
    """Run the model at ``model_path`` on each backend (all that have an interpreter when None) and judge it.

    inputs: a .npy / .npz path, an array (one input) or {input name: array}; or ``input_spec``
    ("seed=N,batch=B[,time=T]"; the default when neither is given: seed=0,batch=2). python: backend -> interpreter.
    unsafe: load with Keras's safe mode off. imports: modules each capture imports first (where the model's custom
    classes are registered; importable from the current folder). fault: (backend, "LAYER:weightK:DELTA"), for the tests: one layer on
    one backend computes with its K-th weight DELTA off the file's (harness.execute.capture). workdir: keep each backend's
    capture (arrays, manifest, log) there instead of a temporary folder.
    Raises CheckProblem on bad input."""
    if inputs is not None and input_spec is not None:
        raise CheckProblem("give either inputs (a .npy or .npz) or an input spec, not both")
    if input_spec is not None:
        try:
            parse_input_spec(input_spec)
        except InputProblem as error:
            raise CheckProblem(str(error)) from None
    model = Path(model_path)
    _precheck(model, inputs, unsafe)
    chosen = interpreters(backends, python)
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        return _check_in(model, inputs, input_spec, chosen, unsafe, imports, fault, Path(workdir))
    with tempfile.TemporaryDirectory(prefix="keras-parity-check-") as folder:
        return _check_in(model, inputs, input_spec, chosen, unsafe, imports, fault, Path(folder))


def _check_in(model: Path, inputs: Any, input_spec: str | None, chosen: dict[str, str], unsafe: bool,
              imports: Sequence[str], fault: tuple[str, str] | None, folder: Path) -> CheckResult:
    arguments, described = _inputs_argument(inputs, input_spec, folder)
    arguments += [argument for module in imports for argument in ("--import", module)]
    processes = {}
    for backend, interpreter in chosen.items():
        argv = [interpreter, "-m", "harness.execute.capture", "--backend", backend, "--model", str(model.resolve()),
                "--out", str(folder), *arguments] + (["--unsafe"] if unsafe else [])
        log = open(folder / f"{backend}.log", "w", encoding="utf-8")
        processes[backend] = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=_environment(backend, fault),
                                               cwd=str(folder)), log)
    codes = {}
    for backend, (process, log) in processes.items():
        try:
            codes[backend] = process.wait(timeout=CAPTURE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            codes[backend] = process.wait()
        finally:
            log.close()
    captures, versions, model_errors = [], {}, {}
    for backend in chosen:
        error_path = folder / f"{backend}.error.json"
        if codes[backend] != 0 and error_path.is_file():
            error = json.loads(error_path.read_text(encoding="utf-8"))
            if error["kind"] == "bad_input":
                raise CheckProblem(f"{backend}: {error['problem']}")
            model_errors[backend] = error["problem"]
            continue
        if codes[backend] != 0:
            raise CheckProblem(f"the {backend} capture crashed (exit {codes[backend]}) in {chosen[backend]}: "
                               f"{_last_line(folder / f'{backend}.log')}")
        manifest = json.loads((folder / f"{backend}.json").read_text(encoding="utf-8"))
        with np.load(folder / f"{backend}.npz", allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        captures.append(Capture(backend, manifest, arrays))
        versions[backend] = manifest["versions"]
    tolerances = {capture.backend: load_tolerances(capture.manifest["device_class"], capture.backend) for capture in captures}
    verdict = judge(captures, tolerances)
    safe_mode = not unsafe
    return CheckResult(model=str(model), inputs=described, safe_mode=safe_mode, backends=list(chosen),
                       interpreters=chosen, versions=versions, verdict=verdict, model_errors=model_errors)


def write_json(result: CheckResult, path: Path) -> None:
    """The result as JSON, written atomically (a temporary file, then os.replace)."""
    write_text(Path(path), json.dumps(_strict(result.to_json()), indent=1, allow_nan=False) + "\n")


def _strict(value: Any) -> Any:
    """JSON without NaN or Infinity tokens: a non-finite float becomes the string "nan", "inf" or "-inf"."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value
