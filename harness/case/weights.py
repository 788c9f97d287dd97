"""Seeded NumPy inputs and weights for a case: the same numbers on every backend.

Weights never come from Keras initializers (one seed gives different weights on each backend).
Everything is drawn in float64 from a generator seeded by the run seed and the case name, then
rounded to the case's variable dtype, so the reference (float64) sees exactly the numbers the
backend sees.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from harness.case.schema import Case, LayerSpec

DEFAULT_SEED = 20261124


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype for a Keras dtype name; bfloat16 comes from ml_dtypes (a Keras dependency)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


@dataclass(frozen=True)
class CaseData:
    """The concrete numbers of one case.

    ``layer_weights[i]`` holds, for layer i, one tuple of arrays per Keras layer that owns weights
    (in Keras get_weights order, harness.case.kinds): one for an LSTM or Dense, forward then backward
    for a Bidirectional (as one tuple of six), one per branch for separate branches.
    For a stateful case, ``x`` stacks the successive batches along the batch axis.
    """

    x: np.ndarray
    layer_weights: tuple[tuple[tuple[np.ndarray, ...], ...], ...]
    mask: np.ndarray | None
    initial_state: tuple[np.ndarray, ...] | None

    def model_inputs(self, case: Case) -> list[np.ndarray]:
        """The arrays fed to the model, in order: x, the mask (when passed as an argument), the states."""
        inputs = [self.x]
        if self.mask is not None and case.mask_source == "argument":
            inputs.append(self.mask)
        if self.initial_state is not None:
            inputs += list(self.initial_state)
        return inputs


def case_rng(case: Case, seed: int) -> np.random.Generator:
    """A generator that depends only on the seed and the case name, not on which cases run."""
    return np.random.default_rng([seed, zlib.crc32(case.name.encode("utf-8"))])


def _layer_weights(layer: LayerSpec, fan_in: int, rng: np.random.Generator) -> list[list[np.ndarray]]:
    """The layer's arrays, drawn in its kind's order (harness.case.kinds: ``weight_groups``)."""
    return [[rng.normal(0.0, array.scale, size=array.shape) for array in group]
            for group in layer.kind.weight_groups(layer, fan_in)]


def make_mask(kind: str, batch: int, time: int, rng: np.random.Generator) -> np.ndarray | None:
    """A (batch, time) bool mask of the given kind; the first row is always fully valid."""
    if kind == "none":
        return None
    steps = np.arange(time)[None, :]
    if kind in ("right_padded", "left_padded", "all_masked_row"):
        lengths = rng.integers(1, time + 1, size=batch)
        lengths[0] = time
        if kind == "left_padded":
            return steps >= (time - lengths)[:, None]
        mask = steps < lengths[:, None]
        if kind == "all_masked_row":
            mask[-1, :] = False
        return mask
    if kind == "holes":
        # Random holes, made deterministic where it matters: even rows start valid, odd rows start
        # masked (leading masked steps), row 0 is fully valid, and with time >= 3 one row has a
        # masked step in the middle (row 2, which starts valid, or row 1 when there are 2 rows).
        mask = rng.random((batch, time)) > 0.35
        mask[:, 0] = np.arange(batch) % 2 == 0
        if batch >= 2 and time >= 3:
            mask[min(2, batch - 1), time // 2] = False
        mask[0, :] = True
        return mask
    raise ValueError(f"unknown mask kind {kind!r}")


def make_case_data(case: Case, seed: int = DEFAULT_SEED) -> CaseData:
    rng = case_rng(case, seed)
    rows = case.batch * max(1, case.stateful_batches)
    x = rng.normal(0.0, case.input_scale, size=(rows, case.time, case.features))
    mask = make_mask(case.mask, case.batch, case.time, rng)
    if mask is not None and case.mask_source == "masking_layer":
        # Masking(0.0) masks the steps whose features are all zero: zero exactly the masked steps.
        x = np.where(mask[:, :, None], x, 0.0)

    layer_weights = []
    fan_in = case.features
    variable_dtype = numpy_dtype(case.variable_dtype)
    for layer in case.layers:
        arrays = _layer_weights(layer, fan_in, rng)
        layer_weights.append(tuple(tuple(a.astype(variable_dtype) for a in group) for group in arrays))
        fan_in = layer.output_width

    initial_state = None
    if case.initial_state != "none":
        first = case.layers[0]
        shapes = [(case.batch, first.units)] * case.initial_state_count
        if case.initial_state == "zeros":
            initial_state = tuple(np.zeros(shape, variable_dtype) for shape in shapes)
        else:
            scales = first.kind.initial_state_scales(first)  # per state (an LSTM's h small, c larger)
            initial_state = tuple(rng.normal(0.0, s, size=shape).astype(variable_dtype) for s, shape in zip(scales, shapes))
    input_dtype = numpy_dtype(case.variable_dtype)
    return CaseData(x=x.astype(input_dtype), layer_weights=tuple(layer_weights), mask=mask, initial_state=initial_state)
