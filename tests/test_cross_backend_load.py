"""Models saved on one backend, loaded on this one: committed .keras fixtures from every backend.

tests/fixtures/saved_on/<backend>/<case>.keras were written by 'python -m harness save' on each
backend (the command is in tests/fixtures/README.md). In each backend's session (KERAS_BACKEND), every
fixture saved by another backend is loaded with keras.saving.load_model, and must hold exactly the
case's seeded weights and give the float64 reference's outputs on the case's seeded inputs, within
the case's tolerance from harness/case/tolerances.toml (the same judgement as a harness run).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from harness.case.schema import Case, builtin_cases
from harness.case.tolerances import load_tolerances, quantity_of, tolerance_for
from harness.case.weights import DEFAULT_SEED, make_case_data
from harness.truth.compare import compare
from harness.truth.expected import expected_outputs

pytestmark = pytest.mark.backend

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "saved_on"
BACKENDS = ("tensorflow", "jax", "torch")
# lstm_return_state: three outputs (sequence, h, c) from one LSTM; heads_dense_leftpadded: a Masking
# layer, an LSTM over a left-padded mask and a Dense head.
FIXTURE_CASES = ("lstm_return_state", "heads_dense_leftpadded")
SIZE_LIMIT = 200_000  # bytes for all fixtures together: they are committed


def _saved_elsewhere() -> list[tuple[str, str]]:
    """(saved_on, case) for every backend but this session's (all of them when KERAS_BACKEND is unset:
    the session_backend fixture then skips each one)."""
    this_backend = os.environ.get("KERAS_BACKEND")
    return [(saved_on, case) for saved_on in BACKENDS if saved_on != this_backend for case in FIXTURE_CASES]


def _case(name: str) -> Case:
    return next(case for case in builtin_cases() if case.name == name)


def test_every_backend_has_every_fixture():
    missing = [f"{b}/{c}.keras" for b in BACKENDS for c in FIXTURE_CASES if not (FIXTURES / b / f"{c}.keras").is_file()]
    assert missing == [], f"missing fixtures under {FIXTURES}: {missing}; see tests/fixtures/README.md"
    total = sum(path.stat().st_size for path in FIXTURES.rglob("*.keras"))
    assert total < SIZE_LIMIT, f"fixtures take {total} bytes; keep them under {SIZE_LIMIT}"


@pytest.mark.parametrize("saved_on, case_name", _saved_elsewhere())
def test_model_saved_on_another_backend_loads_with_seeded_weights_and_reference_outputs(
    session_backend: str, saved_on: str, case_name: str
) -> None:
    import keras

    assert keras.backend.backend() == session_backend
    case = _case(case_name)
    data = make_case_data(case, DEFAULT_SEED)
    model = keras.saving.load_model(FIXTURES / saved_on / f"{case_name}.keras")

    # The weights: exactly the seeded ones, in Keras get_weights order, dtype included. A difference
    # means the case's weights changed since the fixture was saved: regenerate it (README).
    seeded = [array for layer in data.layer_weights for group in layer for array in group]
    loaded = model.get_weights()
    assert len(loaded) == len(seeded), f"{len(loaded)} weight arrays loaded; the case has {len(seeded)}"
    for index, (actual, expected) in enumerate(zip(loaded, seeded)):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, (index, actual.dtype, actual.shape)
        assert np.array_equal(actual, expected), f"weight {index} of {case_name} saved on {saved_on} is not the seeded one"

    # The outputs: against the float64 reference, judged as a harness run judges them.
    inputs = data.model_inputs(case)
    result = model.predict(inputs if len(inputs) > 1 else inputs[0], batch_size=case.batch, verbose=0)
    outputs = result if isinstance(result, (list, tuple)) else [result]
    assert len(outputs) == len(case.output_names)
    expected = expected_outputs(case, data)
    tolerances = load_tolerances()
    for name, actual in zip(case.output_names, outputs):
        tolerance = tolerance_for(tolerances, case.compute_dtype, quantity_of(name))
        comparison = compare(keras.ops.convert_to_numpy(actual), expected[name], tolerance, case.compute_dtype)
        assert comparison.passed, comparison.message(f"{case_name} saved on {saved_on}, loaded on {session_backend}: {name}")
