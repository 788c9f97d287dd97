"""The folders of harness/ are the stages of the pipeline, and data flows one way through them.

    case -> truth -> execute -> records -> verdicts -> studies -> reports -> cli

A module may import from its own stage and from earlier ones, never from a later one (the reference
sits before all of them and imports none). Keras and the backends are imported only by the execute
stage and the studies that drive it.
"""

import ast

from conftest import ROOT

STAGES = ["case", "truth", "execute", "records", "verdicts", "studies", "reports"]
FRAMEWORKS = {"keras", "tensorflow", "jax", "jaxlib", "torch"}
MAY_IMPORT_FRAMEWORKS = {"execute", "studies"}


def _stage_of(module: str) -> int | None:
    """Index of a harness module's stage; len(STAGES) for the top level (cli, __main__)."""
    parts = module.split(".")
    if parts[0] != "harness":
        return None
    if len(parts) == 1 or parts[1] not in STAGES:
        return len(STAGES)
    return STAGES.index(parts[1])


def _imports(path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _harness_modules():
    for path in sorted((ROOT / "harness").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        yield path, module.removesuffix(".__init__")


def test_every_module_is_in_a_stage_folder():
    loose = [module for path, module in _harness_modules() if _stage_of(module) == len(STAGES)]
    assert sorted(loose) == ["harness", "harness.__main__", "harness.cli"]


def test_no_module_imports_from_a_later_stage():
    offenders = []
    for path, module in _harness_modules():
        own = _stage_of(module)
        for name in _imports(path):
            stage = _stage_of(name)
            if stage is not None and stage > own:
                offenders.append(f"{module} imports {name}")
    assert offenders == []


def test_reference_never_imports_the_harness():
    offenders = [
        f"{path.name}: {name}"
        for path in sorted((ROOT / "reference").rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] == "harness"
    ]
    assert offenders == []


def test_frameworks_are_imported_only_where_models_run():
    offenders = []
    for path, module in _harness_modules():
        stage = _stage_of(module)
        folder = STAGES[stage] if stage < len(STAGES) else "top level"
        if folder in MAY_IMPORT_FRAMEWORKS:
            continue
        offenders += [f"{module} imports {name}" for name in _imports(path) if name.split(".")[0] in FRAMEWORKS]
    assert offenders == []


def test_the_stage_check_catches_a_backward_import(tmp_path):
    """The check itself can fail: a truth module importing a report is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from harness.reports.markdown import render_report\nimport keras\n")
    assert _stage_of("harness.truth.bad") < max(_stage_of(name) for name in _imports(bad) if _stage_of(name) is not None)
