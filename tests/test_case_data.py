"""The seeded case data: what the "holes" mask guarantees for every seed, not only for lucky ones.

A "holes" case exists to exercise three mask situations at once: a fully valid row, a row whose
first steps are masked (leading masked outputs, where the backends disagree with a non-zero
initial_state), and a masked step in the middle of a row (states carried across a gap). The random
draw alone does not guarantee them (with batch 3 and time 6, about 3% of seeds give no middle
hole), so make_mask sets them deterministically; these tests check it over many seeds and sizes.
"""

import numpy as np
import pytest

from harness.case.weights import make_mask

SEEDS = range(40)
# (batch, time), batch >= 2, never batch == time; includes the sizes of the holes cases in cases.toml
# (4 x 7, 3 x 6) and the smallest sizes where a middle step exists (time 3).
SIZES = [(2, 3), (2, 5), (3, 6), (4, 7), (5, 3), (6, 10)]


@pytest.mark.parametrize("batch, time", SIZES)
def test_holes_mask_has_leading_masked_row_valid_row_and_middle_hole(batch: int, time: int) -> None:
    for seed in SEEDS:
        mask = make_mask("holes", batch, time, np.random.default_rng(seed))
        label = f"seed {seed}, batch {batch}, time {time}:\n{mask.astype(int)}"
        assert mask.shape == (batch, time) and mask.dtype == np.bool_, label
        assert mask[0].all(), label  # row 0 fully valid
        # Even rows start valid, odd rows start masked: the row pattern is fixed, not drawn.
        np.testing.assert_array_equal(mask[:, 0], np.arange(batch) % 2 == 0, err_msg=label)
        assert (~mask[:, 0]).any(), label  # a row whose first step is masked
        middle = ~mask[:, 1 : time - 1]
        assert middle.any(), label  # a masked step that is neither a row's first nor its last
        if batch >= 3:
            # A true hole: a masked middle step after a valid step of the same row.
            rows, steps = np.nonzero(middle)
            assert any(mask[row, : step + 1].any() for row, step in zip(rows, steps)), label


def test_holes_mask_keeps_the_random_draw_elsewhere() -> None:
    # Only row 0, column 0 and the one forced hole are set; every other step is the draw
    # rng.random((batch, time)) > 0.35, and the generator advances by exactly that one draw, so the
    # numbers drawn after the mask (the weights, the initial state) do not move.
    batch, time = 5, 8
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        twin = np.random.default_rng(seed)
        mask = make_mask("holes", batch, time, rng)
        drawn = twin.random((batch, time)) > 0.35
        free = np.ones((batch, time), dtype=bool)
        free[0, :] = False
        free[:, 0] = False
        free[2, time // 2] = False
        np.testing.assert_array_equal(mask[free], drawn[free], err_msg=f"seed {seed}")
        assert not mask[2, time // 2]
        assert rng.random() == twin.random(), f"seed {seed}: the holes mask drew a different amount"


@pytest.mark.parametrize("kind", ["right_padded", "left_padded", "all_masked_row"])
def test_other_mask_kinds_draw_one_length_per_row(kind: str) -> None:
    # The other kinds draw rng.integers(1, time + 1, size=batch) and nothing else.
    batch, time = 4, 7
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        twin = np.random.default_rng(seed)
        mask = make_mask(kind, batch, time, rng)
        lengths = twin.integers(1, time + 1, size=batch)
        lengths[0] = time
        counts = mask.sum(axis=1)
        if kind == "all_masked_row":
            assert counts[-1] == 0
            counts, lengths = counts[:-1], lengths[:-1]
        np.testing.assert_array_equal(counts, lengths, err_msg=f"{kind}, seed {seed}")
        assert rng.random() == twin.random(), f"{kind}, seed {seed}: drew a different amount"
