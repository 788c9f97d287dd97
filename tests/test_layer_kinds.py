"""A layer kind is one entry per pipeline stage (harness/case/kinds.py, harness/truth/kinds.py,
harness/execute/kinds.py): no other module compares a value with a layer-type name.

The check is on the syntax tree: a comparison (==, !=, in, not in) with a layer-type string on either side (or
inside a tuple, list or set literal it is compared with), and a ``match`` case on one, are flagged. Building a
case table (``{"type": "lstm", ...}``) or naming a backend function (``"lstm"`` as an attribute) is no comparison.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.case.kinds import KINDS

ROOT = Path(__file__).resolve().parents[1]
# The kind tables themselves: the only modules that tell kinds apart.
KIND_TABLES = {"harness/case/kinds.py", "harness/truth/kinds.py", "harness/execute/kinds.py"}
# Every kind of the case table, and the recurrent layers the reference already computes.
LAYER_TYPES = frozenset(KINDS) | {"lstm", "gru", "simple_rnn", "bidirectional", "branches", "dense", "time_distributed_dense"}


def _layer_strings(node: ast.AST) -> list[str]:
    """The layer-type strings ``node`` is (a constant) or holds (a tuple, list or set literal)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in LAYER_TYPES:
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [value for element in node.elts for value in _layer_strings(element)]
    return []


def layer_type_branches(source: str, filename: str = "<source>") -> list[str]:
    """Every comparison with, or match on, a layer-type string in ``source``, as "file:line: 'name'"."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                names += _layer_strings(operand)
        elif isinstance(node, ast.MatchValue):
            names += _layer_strings(node.value)
        found += [f"{filename}:{node.lineno}: {name!r}" for name in names]
    return found


def _modules() -> list[Path]:
    return sorted(path for path in (ROOT / "harness").rglob("*.py"))


def test_no_module_outside_the_kind_tables_branches_on_a_layer_type():
    offenders = []
    for path in _modules():
        relative = path.relative_to(ROOT).as_posix()
        if relative in KIND_TABLES:
            continue
        offenders += layer_type_branches(path.read_text(encoding="utf-8"), relative)
    assert offenders == [], "compare with a layer kind only inside the kind tables:\n" + "\n".join(offenders)


def test_the_kind_tables_exist_and_are_checked_files():
    for table in KIND_TABLES:
        assert (ROOT / table).is_file(), table


@pytest.mark.parametrize("source, expected", [
    ('if layer.type == "lstm":\n    pass\n', ["<source>:1: 'lstm'"]),
    ('ok = spec.type != "bidirectional"\n', ["<source>:1: 'bidirectional'"]),
    ('if spec.type in ("dense", "time_distributed_dense"):\n    pass\n',
     ["<source>:1: 'dense'", "<source>:1: 'time_distributed_dense'"]),
    ('if "gru" == name:\n    pass\n', ["<source>:1: 'gru'"]),
    ('match layer.type:\n    case "branches":\n        pass\n', ["<source>:2: 'branches'"]),
    ('x = [t for t in types if t not in {"simple_rnn"}]\n', ["<source>:1: 'simple_rnn'"]),
])
def test_the_check_flags_a_branch_on_a_layer_type(source, expected):
    assert layer_type_branches(source) == expected


@pytest.mark.parametrize("source", [
    'entry = {"type": "lstm", "units": 4}\n',
    'hooks = [("jax.experimental.rnn", "lstm", "cudnn")]\n',
    'if layer.kind.recurrent and name == "output":\n    pass\n',
    'if mode == "concat":\n    pass\n',
])
def test_the_check_passes_what_is_no_branch_on_a_layer_type(source):
    assert layer_type_branches(source) == []


def test_the_cell_fact_names_the_computing_kinds_and_a_claim_on_it_says_no_to_the_others():
    """The ``cell`` condition fact holds the recurrent kinds that compute (a wrapper counts as the kind it wraps); the
    PyTorch stateful-training claim names lstm and gru, so it must not apply to the SimpleRNN, which trains."""
    from harness.case.divergences import case_facts, load_divergences
    from harness.case.schema import builtin_cases

    cases = {case.name: case for case in builtin_cases()}
    assert case_facts(cases["bidi_gru_concat_holes"])["cell"] == {"gru"}
    assert case_facts(cases["bidi_concat_seqon_holes"])["cell"] == {"lstm"}
    assert case_facts(cases["stateful_mixed_fit"])["cell"] == {"gru", "simple_rnn"}
    claim = next(d for d in load_divergences() if d.id == "torch_stateful_training_inplace_error")
    holds = {name: all(condition.holds(case_facts(cases[name])) for condition in claim.conditions)
             for name in ("stateful_fit", "gru_stateful_fit", "simplernn_stateful_fit")}
    assert holds == {"stateful_fit": True, "gru_stateful_fit": True, "simplernn_stateful_fit": False}
