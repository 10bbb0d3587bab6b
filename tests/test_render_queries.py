"""Render label queries against plain numpy definitions."""

import numpy as np

from collage.render import mask_bbox


def _bbox_by_definition(mask):
    cols = np.flatnonzero(mask.any(axis=0))
    if len(cols) == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def test_mask_bbox_matches_its_definition():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        h, w = rng.integers(1, 40, 2)
        mask = rng.random((h, w)) < rng.choice([0, 0.001, 0.05, 0.5])
        if rng.random() < 0.3:
            mask = mask.astype(np.uint8) * int(rng.integers(1, 256))
        if rng.random() < 0.2:
            mask = mask[::2]  # a strided view
        assert mask_bbox(mask) == _bbox_by_definition(mask)
