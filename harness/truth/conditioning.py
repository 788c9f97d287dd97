"""Ill-conditioning or bug: the rule that keeps a gradient disagreement that float rounding explains apart from
a bug, as gradient differential testing does (Yang et al., "∇Fuzz", ICSE'23). Pure NumPy; no Keras.

Two measurements decide it, for every gradient (or the loss) that failed its tolerance:

- a condition estimate from the float64 reference (``gradient_condition``): the relative change of the
  reference gradient under a tiny random relative perturbation of the inputs, weights and initial states,
  ``kappa = (max|g(p + dp) - g(p)| / max|g(p)|) / eps`` with ``dp = eps * p * s`` (``s`` random signs, the
  largest over ``DIRECTIONS`` directions). A gradient that nearly cancels (a loss of significance) or sits
  near a kink of an activation has a large kappa. Rounding a number costs a relative ``u`` even when it is
  perfectly conditioned, so kappa is floored at 1.
- a float64 recomputation on the backend (the caller's: the same model, weights, inputs and targets built
  with dtype float64): rounding error shrinks when the precision grows (by 2^29 from float32 to float64); a
  wrong formula gives the same error in both.

The rule (``classify_key``), errors measured as ``max|actual - expected| / max|expected|``: a gradient is
``ill_conditioned`` when (1) its float32 error is within ``EXPLAIN_FACTOR * kappa * 2^-24`` and (2) the float64
recomputation's error is at most ``1 / SHRINK`` of the float32 error. Anything else, a NaN or Inf included, is a
``bug``. A known divergence that bounds the backend's float64 computation of the case (a bound or other claim about
float64 outputs) never counts as the float64 recomputation agreeing: it is recorded beside the judgement
(``float64_claim``) and changes nothing, since a claim about forward outputs says nothing about a gradient. (2) rather than "float64 error within kappa * 2^-53": Keras computes some float64
operations in float32 (JAX's tanh, PyTorch's Dense matmul, several activations on every backend), which leaves
a float64 model with float32-sized errors that are still far smaller than the float32 model's.
A case is ill-conditioned when every failing gradient is (``classify``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "float64": 2.0 ** -53}
PERTURBATION = 1e-6  # about 17 float32 ulps: the scale at which float32 rounding moves an LSTM's numbers
DIRECTIONS = 4
# How many kappa * 2^-24 a float32 rounding error can be. Measured with this rule on every gradient key of 85
# fuzzed float32 configurations (harness fuzz --gradients' strategy, hypothesis seed 3, keras 3.15.1, CPU: 40 on
# TensorFlow, 30 on PyTorch, 15 on JAX), bugs left out: worst 45.7 (TensorFlow, the gradient with respect to an
# initial state, kappa 6.8), 10.7 on JAX, 3.1 on PyTorch. The factor is 11x that. A wrong gradient can sit below
# it (the recurrent kernel's gradient scaled by 1 + 1e-4 is 91 kappa u at kappa 18): the float64 test catches it.
EXPLAINED_MEASURED = 45.7
EXPLAIN_FACTOR = 512.0
# A bug's error survives float64 (ratio about 1); rounding error shrinks. Measured on the disagreements above that
# the factor explains: the float64 error was at least 1,070 times smaller (TensorFlow, a model with a float32
# operation inside it), 1e8 and more where the backend is float64 throughout. 1/16 (4 bits) keeps 60x from that.
SHRINK = 16.0
RULE = (f"ill_conditioned when every gradient beyond tolerance has float32 error <= {EXPLAIN_FACTOR:g} x kappa x 2^-24 "
        f"and a float64 recomputation on the backend with error <= 1/{SHRINK:g} of the float32 error (a known divergence "
        f"about the backend's float64 outputs never counts as agreeing); error: max|a - e| / max|e|; "
        f"kappa: relative change of the float64 reference gradient under a {PERTURBATION:g} relative perturbation of "
        f"inputs, weights and initial states, largest of {DIRECTIONS} random directions, floored at 1; otherwise bug")


def relative_error(actual: Any, expected: Any) -> float:
    """``max|actual - expected| / max|expected|`` in float64; NaN when either holds a NaN or Inf (never explained);
    0 / 0 is 0 and x / 0 is inf."""
    actual64 = np.asarray(actual, np.float64)
    expected64 = np.asarray(expected, np.float64)
    if actual64.shape != expected64.shape or not (np.isfinite(actual64).all() and np.isfinite(expected64).all()):
        return float("nan")
    if actual64.size == 0:
        return 0.0
    difference = float(np.max(np.abs(actual64 - expected64)))
    scale = float(np.max(np.abs(expected64)))
    if scale == 0.0:
        return 0.0 if difference == 0.0 else float("inf")
    return difference / scale


def relative_condition(gradient_of: Callable[[list[np.ndarray]], dict[str, np.ndarray]], params: list[np.ndarray], *,
                       eps: float = PERTURBATION, directions: int = DIRECTIONS, seed: int = 0) -> dict[str, float]:
    """Per key of ``gradient_of(params)``: the largest relative change of its value under ``directions`` random
    relative perturbations ``p * (1 + eps * s)`` of every parameter (``s``: random signs), divided by ``eps``.
    A zero stays zero (a masked input step stays masked)."""
    rng = np.random.default_rng(seed)
    base_params = [np.asarray(p, np.float64) for p in params]
    base = gradient_of(base_params)
    kappa = {key: 0.0 for key in base}
    for _ in range(directions):
        moved = gradient_of([p * (1.0 + eps * rng.choice((-1.0, 1.0), size=p.shape)) for p in base_params])
        for key, value in base.items():
            change = relative_error(moved[key], value)
            kappa[key] = max(kappa[key], change / eps) if not np.isnan(change) else float("nan")
    return kappa


def gradient_condition(case: Any, data: Any, targets: dict[str, np.ndarray], loss_key: str = "loss", *,
                       eps: float = PERTURBATION, directions: int = DIRECTIONS) -> dict[str, float]:
    """``relative_condition`` of the case's reference gradients (and of the loss, under ``loss_key``) with respect
    to its inputs, weights and initial states (``data``: a ``CaseData``), the targets held fixed."""
    from harness.truth.expected_gradients import expected_gradients

    states = list(data.initial_state or ())

    def unpack(params: list[np.ndarray]) -> Any:
        x, rest = params[0], params[1:]
        layers, position = [], 0
        for layer in data.layer_weights:
            groups = []
            for group in layer:
                groups.append(tuple(rest[position: position + len(group)]))
                position += len(group)
            layers.append(tuple(groups))
        initial = tuple(rest[position:]) if data.initial_state is not None else None
        return replace(data, x=x, layer_weights=tuple(layers), initial_state=initial)

    def gradient_of(params: list[np.ndarray]) -> dict[str, np.ndarray]:
        loss, grads, _, _ = expected_gradients(case, unpack(params), targets=targets)
        return dict(grads, **{loss_key: np.asarray(loss)})

    params = [data.x] + [w for layer in data.layer_weights for group in layer for w in group] + states
    return relative_condition(gradient_of, params, eps=eps, directions=directions)


@dataclass(frozen=True)
class KeyJudgement:
    """One gradient beyond tolerance: its errors in float32 and in the float64 recomputation, kappa, how many
    kappa * 2^-24 the float32 error is, how many times smaller the float64 error is, and the verdict."""

    key: str
    kappa: float
    error32: float
    error64: float
    explained32: float  # error32 / (kappa * 2^-24)
    shrink: float  # error32 / error64
    verdict: str  # ill_conditioned | bug
    float64_claim: str | None = None  # a known divergence about the backend's float64 outputs (recorded, never explains)

    def line(self) -> str:
        held = (f" (known divergence {self.float64_claim} bounds the backend's float64 outputs; a claim never counts as "
                f"float64 agreeing)") if self.float64_claim else ""
        return (f"{self.key}: {self.verdict}: float32 error {self.error32:.3g} = {self.explained32:.3g} x kappa u, "
                f"float64 recomputation error {self.error64:.3g} (1/{self.shrink:.3g} of it){held}, kappa {self.kappa:.3g}")

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kappa": self.kappa, "error32": self.error32, "error64": self.error64,
                "explained32": self.explained32, "shrink": self.shrink, "verdict": self.verdict,
                "float64_claim": self.float64_claim}


def classify_key(key: str, error32: float, error64: float, kappa: float, factor: float = EXPLAIN_FACTOR, *,
                 float64_claim: str | None = None) -> KeyJudgement:
    """The rule of the module docstring for one gradient (relative errors as ``relative_error`` gives them).

    ``float64_claim``: the id of a known divergence that says the backend does not compute this float64 case in
    float64 end to end (JAX's float64 tanh, PyTorch's float64 Dense matmul run in float32). It is recorded and
    never makes the float64 recomputation agree: only the measured shrink does."""
    effective = max(float(kappa), 1.0) if not np.isnan(kappa) else float("nan")
    explained32 = error32 / (effective * UNIT_ROUNDOFF["float32"])
    if np.isnan(error32) or np.isnan(error64):
        shrink = float("nan")
    else:
        shrink = error32 / error64 if error64 > 0 else (float("inf") if error32 > 0 else 1.0)
    # NaN compares False: a NaN error or kappa is never explained.
    agrees64 = bool(error64 * SHRINK <= error32)
    ill = bool(explained32 <= factor) and agrees64
    return KeyJudgement(key, float(kappa), float(error32), float(error64), float(explained32), float(shrink),
                        "ill_conditioned" if ill else "bug", float64_claim)


def classify(judgements: list[KeyJudgement]) -> str:
    """``ill_conditioned`` when there is a judged gradient and every one is; ``bug`` otherwise (a failure with no
    gradient beyond tolerance, such as APIs that disagree, is not a matter of conditioning)."""
    if judgements and all(j.verdict == "ill_conditioned" for j in judgements):
        return "ill_conditioned"
    return "bug"
