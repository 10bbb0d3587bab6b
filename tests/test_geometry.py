"""Placement geometry: the fast overlap test agrees with shapely's exact intersection."""

import numpy as np
from shapely.geometry import box

from collage.geometry import Footprints, footprint, inside, place, sprite_bounds, sprite_matrix


def _random_sprite(rng):
    hw = tuple(int(v) for v in rng.integers(5, 200, 2))
    return hw, sprite_matrix(hw, rng.uniform(0.3, 2), rng.uniform(-180, 180), tuple(rng.uniform(0, 300, 2)))


def test_footprint_overlap_matches_shapely():
    rng = np.random.default_rng(0)
    overlapping = 0
    for _ in range(300):
        hw, matrix = _random_sprite(rng)
        poly = footprint(hw, matrix)
        placed, others = Footprints(), []
        for _ in range(int(rng.integers(0, 5))):
            other_hw, other_matrix = _random_sprite(rng)
            placed.add(other_hw, other_matrix)
            others.append(footprint(other_hw, other_matrix))
        expected = max([poly.intersection(o).area / min(poly.area, o.area) for o in others] + [0.0])
        assert abs(placed.overlap(np.asarray(poly.exterior.coords)[:-1], poly.area) - expected) < 1e-4
        assert all(np.allclose(c, np.asarray(o.exterior.coords)[:-1], atol=1e-3) for c, o in zip(placed.corners, others))
        assert np.allclose(placed.areas, [o.area for o in others])
        assert np.allclose(sprite_bounds(hw, matrix), poly.bounds)
        overlapping += expected > 0
    assert overlapping > 100  # the comparison covered real overlaps, not only disjoint pairs


def test_place_respects_overlap_and_canvas():
    rng = np.random.default_rng(1)
    for _ in range(50):
        placed, polygons = Footprints(), []
        for _ in range(5):
            hw = tuple(int(v) for v in rng.integers(20, 120, 2))
            matrix = place(rng, hw, rng.uniform(60, 200), 320, 240, placed, 0.1, angle_range=30)
            if matrix is None:
                continue
            poly = footprint(hw, matrix)
            assert len(placed) == len(polygons) + 1
            assert np.allclose(placed.corners[-1], np.asarray(poly.exterior.coords)[:-1], atol=1e-3)
            assert inside(poly.bounds, 320, 240) and box(0.5, 0.5, 318.5, 238.5).contains(poly)
            for other in polygons:
                assert poly.intersection(other).area <= 0.1 * min(poly.area, other.area) + 1e-3
            polygons.append(poly)
