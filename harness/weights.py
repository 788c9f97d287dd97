"""Seeded NumPy inputs and weights for a case: the same numbers on every backend.

Weights never come from Keras initializers (one seed gives different weights on each backend).
Everything is drawn in float64 from a generator seeded by the run seed and the case name, then
rounded to the case dtype, so the reference (float64) sees exactly the numbers the backend sees.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from harness.cases import Case, LayerSpec

DEFAULT_SEED = 20261124


@dataclass(frozen=True)
class CaseData:
    """The concrete numbers of one case: inputs, per-layer weights (Keras get_weights order), mask."""

    x: np.ndarray
    layer_weights: tuple[tuple[np.ndarray, ...], ...]
    mask: np.ndarray | None
    initial_state: tuple[np.ndarray, np.ndarray] | None

    def model_inputs(self) -> list[np.ndarray]:
        """The arrays fed to the model: x, then h0 and c0 when the case has an initial state."""
        return [self.x, *self.initial_state] if self.initial_state is not None else [self.x]


def case_rng(case: Case, seed: int) -> np.random.Generator:
    """A generator that depends only on the seed and the case name, not on which cases run."""
    return np.random.default_rng([seed, zlib.crc32(case.name.encode("utf-8"))])


def _layer_weights(layer: LayerSpec, fan_in: int, rng: np.random.Generator, dtype: str) -> tuple[np.ndarray, ...]:
    units = layer.units
    scale = 1.0 / np.sqrt(fan_in)
    if layer.type == "lstm":
        arrays = [
            rng.normal(0.0, scale, size=(fan_in, 4 * units)),
            rng.normal(0.0, 1.0 / np.sqrt(units), size=(units, 4 * units)),
        ]
        if layer.options["use_bias"]:
            arrays.append(rng.normal(0.0, 0.5, size=(4 * units,)))
    elif layer.type == "dense":
        arrays = [rng.normal(0.0, scale, size=(fan_in, units))]
        if layer.options["use_bias"]:
            arrays.append(rng.normal(0.0, 0.5, size=(units,)))
    else:
        raise ValueError(f"no weight layout for layer type {layer.type!r}")
    return tuple(array.astype(dtype) for array in arrays)


def right_padded_mask(batch: int, time: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of distinct valid lengths from 1 to time, the first row full length."""
    lengths = rng.integers(1, time + 1, size=batch)
    lengths[0] = time
    return np.arange(time)[None, :] < lengths[:, None]


def make_case_data(case: Case, seed: int = DEFAULT_SEED) -> CaseData:
    rng = case_rng(case, seed)
    x = rng.normal(0.0, 1.0, size=(case.batch, case.time, case.features))
    mask = None
    if case.mask == "right_padded":
        mask = right_padded_mask(case.batch, case.time, rng)
        x = np.where(mask[:, :, None], x, 0.0)

    layer_weights = []
    fan_in = case.features
    for layer in case.layers:
        layer_weights.append(_layer_weights(layer, fan_in, rng, case.dtype))
        fan_in = layer.units

    initial_state = None
    if case.initial_state == "random":
        units = case.layers[0].units
        h0 = rng.normal(0.0, 0.5, size=(case.batch, units)).astype(case.dtype)
        c0 = rng.normal(0.0, 1.0, size=(case.batch, units)).astype(case.dtype)
        initial_state = (h0, c0)
    return CaseData(x=x.astype(case.dtype), layer_weights=tuple(layer_weights), mask=mask, initial_state=initial_state)
