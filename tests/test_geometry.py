"""Placement geometry: the fast overlap test agrees with shapely's exact intersection."""

import numpy as np
from shapely.geometry import Polygon, box

from collage.geometry import footprint, inside, overlap_fraction, place, sprite_matrix


def _random_footprint(rng):
    hw = tuple(int(v) for v in rng.integers(5, 200, 2))
    return footprint(hw, sprite_matrix(hw, rng.uniform(0.3, 2), rng.uniform(-180, 180), tuple(rng.uniform(0, 300, 2))))


def test_overlap_fraction_matches_shapely():
    rng = np.random.default_rng(0)
    overlapping = 0
    for _ in range(300):
        poly = _random_footprint(rng)
        others = [_random_footprint(rng) for _ in range(int(rng.integers(0, 4)))]
        x0, y0, x1, y1 = *rng.uniform(0, 140, 2), *rng.uniform(160, 300, 2)
        others.append(Polygon([(x0, y0), (x1, y0), (x1, 150), (150, 150), (150, y1), (x0, y1)]))  # not convex
        others.append(box(x0, y0, x1, y1).difference(box(145, 145, 155, 155)))  # convex outline, with a hole
        expected = max([poly.intersection(o).area / min(poly.area, o.area) for o in others] + [0.0])
        assert abs(overlap_fraction(poly, others) - expected) < 1e-4
        overlapping += expected > 0
    assert overlapping > 100  # the comparison covered real overlaps, not only disjoint pairs


def test_place_respects_overlap_and_canvas():
    rng = np.random.default_rng(1)
    for _ in range(50):
        placed: list[Polygon] = []
        for _ in range(5):
            hw = tuple(int(v) for v in rng.integers(20, 120, 2))
            matrix = place(rng, hw, rng.uniform(60, 200), 320, 240, placed, 0.1, angle_range=30)
            if matrix is None:
                continue
            poly = footprint(hw, matrix)
            assert poly.equals_exact(placed[-1], 1e-6)
            assert inside(poly, 320, 240) and box(0.5, 0.5, 318.5, 238.5).contains(poly)
            for other in placed[:-1]:
                assert poly.intersection(other).area <= 0.1 * min(poly.area, other.area) + 1e-6
