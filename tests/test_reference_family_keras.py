"""The recurrent family of the reference (reference.gru, reference.simple_rnn, reference.lstm and their dropout
variants) against real Keras layers in float64 on the session's backend: keras.layers.GRU (reset_after True
and False, implementation 1 and 2), SimpleRNN and LSTM with random non-symmetric weights (set_weights),
unequal sizes, sequence masks, go_backwards, zero_output_for_mask, initial states, and, in training mode, the
dropout masks handed to the cell (get_dropout_mask / get_recurrent_dropout_mask patched to return ours).

Keras runs in a subprocess: float64 needs floatx float64 and, on JAX, JAX_ENABLE_X64 before JAX is imported.
Masks keep each row's first and last timestep valid: with masked *first processed* steps and a non-zero
initial state the backends disagree (see reference/lstm.py; checked elsewhere).

TOLERANCES (per backend), on max |reference - Keras| / max(1, max |Keras|) per returned array: on PyTorch, keras.ops.matmul
computes float64 operands in float32 (Keras 3.15.1), so the GRU with reset_after=False or implementation 1, the
SimpleRNN and the LSTM agree only to float32 rounding: measured over the 80 forward cases at most 3.2e-7, over
the dropout cases 1.9e-7 (the fused float64 GRU path, reset_after=True implementation 2: 2e-16): 1e-5 leaves
30x headroom. JAX computes keras.ops.tanh of float64 in float32 (the same float32 rounding: 1e-5), and crashes a
plain float64 SimpleRNN over it (``expected_error``). TensorFlow computes in float64: measured at most 1.1e-15, so 1e-13.
What the test looks for is far larger:
swapping z and r, or dropping the GRU's recurrent bias, moves the outputs by 1e-2 and more
(test_a_wrong_reference_is_caught, on the same Keras outputs), dropping the dropout masks by 0.4 and more.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import reference
from conftest import ROOT
from reference.gru_dropout import gru_with_dropout
from reference.lstm_dropout import inverted_dropout_mask, lstm_with_dropout
from reference.simple_rnn_dropout import simple_rnn_with_dropout

# Per backend (see the module docstring): TensorFlow computes float64 throughout, measured worst 1.1e-15 over
# the 80 forward cases and 4.4e-16 over the dropout cases, so 1e-13 (about 100x). JAX rounds keras.ops.tanh to
# float32 (claim jax_float64_tanh_in_float32) and PyTorch its matmuls (torch_float64_*_in_float32): float32
# rounding, measured at most 3.2e-7, so 1e-5.
TOLERANCES = {"tensorflow": 1e-13, "jax": 1e-5, "torch": 1e-5}

KERAS_SCRIPT = """
import json, sys
import numpy as np
import keras
keras.config.set_floatx("float64")
results = []
for case in json.loads(sys.stdin.read()):
    kind, options = case["kind"], case["options"]
    layer_class = {"gru": keras.layers.GRU, "simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM}[kind]
    layer = layer_class(case["units"], return_sequences=True, return_state=True, **options)
    x = np.array(case["x"])
    layer.build(x.shape)
    layer.set_weights([np.array(w) for w in case["weights"]])
    call = {}
    if case.get("mask") is not None:
        call["mask"] = np.array(case["mask"], dtype=bool)
    if case.get("initial_state") is not None:
        call["initial_state"] = [np.array(s) for s in case["initial_state"]]
    if case.get("dropout") is not None:
        masks = case["dropout"]
        tensor = lambda m: keras.ops.convert_to_tensor(np.array(m), dtype="float64")
        given = lambda value: [tensor(m) for m in value] if isinstance(value[0][0], list) else tensor(value)
        layer.cell.get_dropout_mask = lambda step_input, m=masks["input"]: given(m)
        layer.cell.get_recurrent_dropout_mask = lambda step_input, m=masks["recurrent"]: given(m)
        call["training"] = True
    try:
        out = layer(x, **call)
    except Exception as error:  # recorded, and judged by the test against the divergences it expects
        results.append({"error": type(error).__name__ + ": " + " ".join(str(error).split())})
        continue
    results.append([np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in out])
print(json.dumps(results))
"""


def run_keras(session_backend: str, cases: list[dict]) -> list[list[np.ndarray]]:
    env = dict(os.environ, KERAS_BACKEND=session_backend, JAX_ENABLE_X64="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", KERAS_SCRIPT], input=json.dumps(cases), capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [result if isinstance(result, dict) else [np.array(v) for v in result]
            for result in json.loads(done.stdout.strip().splitlines()[-1])]


def expected_error(session_backend: str, case: dict) -> str | None:
    """What Keras raises for ``case`` on this backend instead of computing it, or None.

    JAX (Keras 3.15.1, jax 0.10.2): keras.ops.tanh of a float64 tensor returns float32 (the cause of the claim
    jax_float64_tanh_in_float32: dtypes.result_type maps float64 to float32 on every backend but TensorFlow). A
    SimpleRNN's new state *is* tanh(...), so its lax.scan carry turns float32 and JAX refuses the loop; the LSTM
    and GRU multiply their tanh by a float64 gate, so their state stays float64 and they compute (with float32
    tanh rounding). With another activation, with unroll=True (no lax.scan) or with a mask (the masked step selects
    between the new and the old state, which promotes the carry back to float64: measured) the SimpleRNN runs."""
    if (session_backend == "jax" and case["kind"] == "simple_rnn" and case["options"].get("activation", "tanh") == "tanh"
            and not case["options"].get("unroll", False) and case["mask"] is None):
        return "TypeError: Exception encountered when calling SimpleRNN.call(). scan body function carry input and carry output must have equal types"
    return None


def judged_results(session_backend: str, cases: list[dict], results: list) -> list[tuple[dict, list[np.ndarray]]]:
    """The (case, Keras outputs) pairs that computed, after checking that exactly the expected cases raised, and
    raised what is expected (the start of the message, to the first detail that names shapes)."""
    computed = []
    for case, result in zip(cases, results):
        expected = expected_error(session_backend, case)
        if expected is None:
            assert not isinstance(result, dict), f"{case['kind']} {case['options']}: Keras raised {result['error']}"
            computed.append((case, result))
        else:
            assert isinstance(result, dict), f"{case['kind']} {case['options']}: expected {expected!r}, but Keras computed"
            assert result["error"].replace("\x1b[1m", "").startswith(expected), result["error"]
    return computed


def listed(value):
    if value is None:
        return None
    if isinstance(value, list):
        return [listed(v) for v in value]
    return np.asarray(value).tolist()


def draw_case(rng: np.random.Generator, kind: str, size: tuple[int, int, int, int], **options) -> dict:
    batch, time, features, units = size
    gates = {"gru": 3, "simple_rnn": 1, "lstm": 4}[kind]
    kernel = rng.normal(size=(features, gates * units)) / np.sqrt(features)
    recurrent = rng.normal(size=(units, gates * units)) / np.sqrt(units)
    bias_shape = (2, 3 * units) if kind == "gru" and options.get("reset_after", True) else (gates * units,)
    weights = [kernel, recurrent] + ([rng.normal(size=bias_shape) * 0.5] if options.get("use_bias", True) else [])
    mask = None
    if options.pop("masked", False):
        mask = rng.random((batch, time)) > 0.4
        mask[:, 0] = mask[:, -1] = True
    states = {"gru": 1, "simple_rnn": 1, "lstm": 2}[kind]
    initial = [rng.normal(size=(batch, units)) * 0.5 for _ in range(states)] if options.pop("with_state", False) else None
    return {"kind": kind, "units": units, "options": options, "x": rng.normal(size=(batch, time, features)),
            "weights": weights, "mask": mask, "initial_state": initial}


def reference_outputs(case: dict, swap_zr: bool = False, drop_recurrent_bias: bool = False) -> list[np.ndarray]:
    """The reference for one case; ``swap_zr`` / ``drop_recurrent_bias``: a deliberately wrong GRU (the
    injected bugs of test_a_wrong_reference_is_caught)."""
    options = dict(case["options"])
    kind = case["kind"]
    weights = [np.asarray(w) for w in case["weights"]]
    bias = weights[2] if len(weights) == 3 else None
    kernel, recurrent = weights[0], weights[1]
    if swap_zr:
        units = case["units"]
        order = np.r_[units : 2 * units, 0:units, 2 * units : 3 * units]
        kernel, recurrent = kernel[:, order], recurrent[:, order]
        bias = None if bias is None else bias[..., order]
    if drop_recurrent_bias:
        bias = np.stack([bias[0], np.zeros_like(bias[1])])
    common = dict(mask=case["mask"], initial_state=case["initial_state"], go_backwards=options.get("go_backwards", False),
                  zero_output_for_mask=options.get("zero_output_for_mask", False), return_sequences=True,
                  return_state=True, activation=options.get("activation", "tanh"))
    if case.get("dropout") is not None:
        masks = case["dropout"]
        drop = dict(initial_state=case["initial_state"], go_backwards=common["go_backwards"], return_sequences=True,
                    return_state=True, activation=common["activation"])
        if kind == "gru":
            return gru_with_dropout(case["x"], kernel, recurrent, bias, input_masks=masks["input"],
                                    recurrent_masks=masks["recurrent"], reset_after=options.get("reset_after", True),
                                    recurrent_activation=options.get("recurrent_activation", "sigmoid"), **drop)
        if kind == "lstm":
            return lstm_with_dropout(case["x"], kernel, recurrent, bias, input_masks=masks["input"],
                                     recurrent_masks=masks["recurrent"],
                                     recurrent_activation=options.get("recurrent_activation", "sigmoid"), **drop)
        return simple_rnn_with_dropout(case["x"], kernel, recurrent, bias, input_mask=masks["input"],
                                       recurrent_mask=masks["recurrent"], **drop)
    if kind == "gru":
        return reference.gru(case["x"], kernel, recurrent, bias, reset_after=options.get("reset_after", True),
                             recurrent_activation=options.get("recurrent_activation", "sigmoid"), **common)
    if kind == "lstm":
        return reference.lstm(case["x"], kernel, recurrent, bias,
                              recurrent_activation=options.get("recurrent_activation", "sigmoid"), **common)
    return reference.simple_rnn(case["x"], kernel, recurrent, bias, **common)


def build_cases() -> list[dict]:
    rng = np.random.default_rng(20240611)
    cases = []
    sizes = [(3, 5, 4, 2), (4, 7, 3, 5)]  # batch != time != features != units
    for size in sizes:
        for go_backwards in (False, True):
            for masked, zero in ((False, False), (True, False), (True, True)):
                common = dict(go_backwards=go_backwards, masked=masked, zero_output_for_mask=zero, with_state=True)
                for reset_after in (True, False):
                    for implementation in (1, 2):
                        cases.append(draw_case(rng, "gru", size, reset_after=reset_after,
                                               implementation=implementation, **common))
                cases.append(draw_case(rng, "simple_rnn", size, **common))
                cases.append(draw_case(rng, "lstm", size, **common))
        # other activations, no bias, no initial state
        cases.append(draw_case(rng, "gru", size, activation="relu", recurrent_activation="hard_sigmoid", masked=True))
        cases.append(draw_case(rng, "gru", size, reset_after=False, use_bias=False, activation="softsign"))
        cases.append(draw_case(rng, "gru", size, use_bias=False))
        cases.append(draw_case(rng, "simple_rnn", size, activation="relu", use_bias=False, masked=True))
        cases.append(draw_case(rng, "simple_rnn", size, unroll=True, masked=True, with_state=True))  # runs on JAX too
    return cases


def build_dropout_cases() -> list[dict]:
    rng = np.random.default_rng(77)
    batch, time, features, units = 3, 6, 4, 5
    cases = []

    def masks(count, width, rate):
        drawn = [inverted_dropout_mask(rng, (batch, width), rate, "float64") for _ in range(count)]
        return drawn[0] if count == 1 else drawn

    for reset_after in (True, False):
        for go_backwards in (False, True):
            # implementation 1 (recurrent dropout): three input and three recurrent masks
            case = draw_case(rng, "gru", (batch, time, features, units), reset_after=reset_after, dropout=0.3,
                             recurrent_dropout=0.4, go_backwards=go_backwards, with_state=True)
            case["dropout"] = {"input": masks(3, features, 0.3), "recurrent": masks(3, units, 0.4)}
            cases.append(case)
        # implementation 2 without recurrent dropout: one input mask for all gates
        case = draw_case(rng, "gru", (batch, time, features, units), reset_after=reset_after, dropout=0.3)
        case["dropout"] = {"input": masks(1, features, 0.3), "recurrent": masks(1, units, 0.4)}  # recurrent unused
        case["dropout_reference"] = {"input": case["dropout"]["input"], "recurrent": None}
        cases.append(case)
    case = draw_case(rng, "simple_rnn", (batch, time, features, units), dropout=0.3, recurrent_dropout=0.4,
                     with_state=True, go_backwards=True)
    case["dropout"] = {"input": masks(1, features, 0.3), "recurrent": masks(1, units, 0.4)}
    cases.append(case)
    case = draw_case(rng, "lstm", (batch, time, features, units), dropout=0.3, recurrent_dropout=0.4, with_state=True)
    case["dropout"] = {"input": masks(4, features, 0.3), "recurrent": masks(4, units, 0.4)}
    cases.append(case)
    return cases


def to_json(case: dict) -> dict:
    out = {key: listed(value) if key not in ("kind", "options", "units", "dropout") else value
           for key, value in case.items() if key != "dropout_reference"}
    if case.get("dropout") is not None:
        out["dropout"] = {name: listed(value) for name, value in case["dropout"].items()}
    return out


def worst_difference(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
    """max |ours - theirs| / max(1, max |theirs|) over the returned arrays (output sequence, states)."""
    assert len(ours) == len(theirs)
    return max(float(np.max(np.abs(a - b))) / max(1.0, float(np.max(np.abs(b)))) for a, b in zip(ours, theirs))


_KERAS_RESULTS: dict = {}


@pytest.fixture
def keras_results(session_backend):
    """The Keras outputs of build_cases(), one subprocess per test session."""
    if session_backend not in _KERAS_RESULTS:
        cases = build_cases()
        _KERAS_RESULTS[session_backend] = cases, run_keras(session_backend, [to_json(case) for case in cases])
    return _KERAS_RESULTS[session_backend]


@pytest.mark.backend
def test_forward_matches_keras(keras_results, session_backend):
    cases, results = keras_results
    tolerance = TOLERANCES[session_backend]
    computed = judged_results(session_backend, cases, results)
    worst = 0.0
    for case, keras_outputs in computed:
        difference = worst_difference(reference_outputs(case), keras_outputs)
        worst = max(worst, difference)
        assert difference <= tolerance, f"{case['kind']} {case['options']}: {difference:.3g} from Keras"
    assert {case["kind"] for case, _ in computed} == {"gru", "simple_rnn", "lstm"}  # every kind compared somewhere
    print(f"worst difference from Keras over {len(computed)} of {len(cases)} cases: {worst:.3g}")


@pytest.mark.backend
@pytest.mark.parametrize("bug", ["swap_zr", "drop_recurrent_bias"])
def test_a_wrong_reference_is_caught(keras_results, session_backend, bug):
    cases, results = keras_results
    differences = []
    for case, keras_outputs in judged_results(session_backend, cases, results):
        if case["kind"] != "gru" or (bug == "drop_recurrent_bias" and (not case["options"].get("reset_after", True)
                                                                     or not case["options"].get("use_bias", True))):
            continue
        differences.append(worst_difference(reference_outputs(case, **{bug: True}), keras_outputs))
    print(f"{bug}: smallest difference from Keras over {len(differences)} GRU cases {min(differences):.3g}")
    assert differences and min(differences) > 100 * TOLERANCES[session_backend], f"{bug}: the smallest change was {min(differences):.3g}"


@pytest.mark.backend
def test_dropout_variants_match_keras_in_training_mode(session_backend):
    cases = build_dropout_cases()
    tolerance = TOLERANCES[session_backend]
    for case, keras_outputs in judged_results(session_backend, cases, run_keras(session_backend, [to_json(case) for case in cases])):
        ours_case = dict(case, dropout=case.get("dropout_reference", case["dropout"]))
        difference = worst_difference(reference_outputs(ours_case), keras_outputs)
        assert difference <= tolerance, f"{case['kind']} {case['options']}: {difference:.3g} from Keras"
        # the masks matter: without them the reference is far from Keras's training-mode outputs
        plain = worst_difference(reference_outputs(dict(case, dropout=None)), keras_outputs)
        assert plain > 100 * tolerance
        print(f"dropout {case['kind']} {case['options']}: {difference:.3g} from Keras, {plain:.3g} without the masks")
