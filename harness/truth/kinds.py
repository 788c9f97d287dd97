"""Layer kinds as the truth stage knows them: each kind -> its float64 reference (harness.truth.layers), the only
place in this stage that tells kinds apart. Keyed by the names of the case stage's table (harness.case.kinds).
No Keras here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from harness.case.schema import LayerSpec
from harness.truth import layers

Forward = Callable[..., list[np.ndarray]]
Backward = Callable[..., tuple[np.ndarray, list[list[np.ndarray]], Any]]


@dataclass(frozen=True)
class TruthKind:
    """forward / backward: the layer's reference (harness.truth.layers), backward None where it has none.
    carry: for a layer a stateful stack can hold that carries states, (output sequence, final states) over the
    joined batches; pointwise: for one that carries none, its output from its input.
    last_matmul_float32: its output is one matmul whose float32 rounding dense_matmul_in_float32 models."""

    forward: Forward
    backward: Backward | None = None
    carry: Callable[[LayerSpec, np.ndarray, tuple], tuple[np.ndarray, list[np.ndarray]]] | None = None
    pointwise: Callable[[LayerSpec, np.ndarray, tuple], np.ndarray] | None = None
    last_matmul_float32: bool = False


_CELL = TruthKind(layers.cell_layer_forward, layers.cell_layer_backward, carry=layers.cell_layer_carry)
_DENSE = TruthKind(layers.dense_forward, layers.dense_backward, pointwise=layers.dense_pointwise, last_matmul_float32=True)

TRUTH_KINDS: dict[str, TruthKind] = {
    "lstm": _CELL,
    "bidirectional": TruthKind(layers.bidirectional_forward, layers.bidirectional_backward),
    "branches": TruthKind(layers.branches_forward, layers.branches_backward),
    "dense": _DENSE,
    "time_distributed_dense": _DENSE,
    "gru": _CELL,
    "simple_rnn": _CELL,
}


def truth_kind(layer: LayerSpec) -> TruthKind | None:
    """The reference entry of the layer's kind, None when the reference has none."""
    return TRUTH_KINDS.get(layer.type)
