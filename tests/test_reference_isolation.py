"""The ground truth must never see a framework: nothing under reference/ imports one."""

import ast
import subprocess
import sys

from conftest import ROOT

FRAMEWORKS = {"keras", "tensorflow", "jax", "jaxlib", "torch", "scipy"}


def test_reference_sources_import_no_framework():
    offenders = []
    for path in sorted((ROOT / "reference").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] in FRAMEWORKS]
    assert offenders == []


def test_importing_reference_loads_no_framework():
    code = "import sys, reference; print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % (FRAMEWORKS,)
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
