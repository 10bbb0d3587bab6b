"""Affine transforms and placement geometry (shapely) shared by every generator.

Pixel convention: integer coordinates are pixel centres (as in cv2.warpAffine); a 2×3 matrix maps a
sprite's pixel (u, v) to the canvas point M @ (u, v, 1). Angles are degrees counter-clockwise on screen.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import Polygon, box


def similarity(scale: float, angle_deg: float, center: tuple[float, float], pivot: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """2×3 matrix: scale and rotate about `pivot`, then move `pivot` to `center`."""
    a = math.radians(angle_deg)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    # y points down, so a counter-clockwise turn on screen is (c, s; -s, c).
    (px, py), (cx, cy) = pivot, center
    return np.array([[c, s, cx - (c * px + s * py)], [-s, c, cy - (-s * px + c * py)]])


def sprite_matrix(sprite_hw: tuple[int, int], scale: float, angle_deg: float, center: tuple[float, float]) -> np.ndarray:
    """Place a sprite so its centre lands on `center`, scaled and turned."""
    h, w = sprite_hw
    return similarity(scale, angle_deg, center, ((w - 1) / 2, (h - 1) / 2))


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer ∘ inner for 2×3 matrices."""
    full = lambda m: np.vstack([m, [0.0, 0.0, 1.0]])  # noqa: E731
    return (full(outer) @ full(inner))[:2]


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 2×3 matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def _rectangle(sprite_hw: tuple[int, int]) -> np.ndarray:
    """(4, 2) corners of a sprite's pixel edges (not centres), in sprite coordinates."""
    h, w = sprite_hw
    return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])


def footprint(sprite_hw: tuple[int, int], matrix: np.ndarray) -> Polygon:
    """The sprite's rectangle (pixel edges, not centres) on the canvas."""
    return Polygon(apply(matrix, _rectangle(sprite_hw)))


def canvas_box(width: int, height: int, margin: float = 0.0) -> Polygon:
    return box(-0.5 + margin, -0.5 + margin, width - 0.5 - margin, height - 0.5 - margin)


def inside(poly: Polygon, width: int, height: int, margin: float = 1.0) -> bool:
    """`poly` lies within the canvas, `margin` px in from its edges. A box contains a shape exactly when it
    contains the shape's bounds, so the bounds decide (a tenth of the cost of a shapely `contains`)."""
    x0, y0, x1, y1 = poly.bounds
    return x0 > -0.5 + margin and y0 > -0.5 + margin and x1 < width - 0.5 - margin and y1 < height - 0.5 - margin


def overlap_fraction(poly: Polygon, others: list[Polygon]) -> float:
    """Largest share of either polygon's area covered by their intersection."""
    if not others:
        return 0.0
    others_bounds = shapely.bounds(others)
    x0, y0, x1, y1 = poly.bounds
    # only polygons whose boxes meet need the exact (and far costlier) polygon intersection
    near = (x0 < others_bounds[:, 2]) & (others_bounds[:, 0] < x1) & (y0 < others_bounds[:, 3]) & (others_bounds[:, 1] < y1)
    if not near.any():
        return 0.0
    near_polys = np.asarray(others, dtype=object)[near]
    shared = shapely.area(shapely.intersection(poly, near_polys))
    return float((shared / np.minimum(poly.area, shapely.area(near_polys))).max())


def place(rng: np.random.Generator, sprite_hw: tuple[int, int], long_side: float, width: int, height: int,
          placed: list[Polygon], max_overlap: float, angle_range: float = 0.0, tries: int = 24) -> np.ndarray | None:
    """A matrix that puts the sprite fully on the canvas with at most `max_overlap` over earlier footprints."""
    scale = long_side / max(sprite_hw)
    rectangle = _rectangle(sprite_hw)
    pivot = ((sprite_hw[1] - 1) / 2, (sprite_hw[0] - 1) / 2)
    for _ in range(tries):
        angle = rng.uniform(-angle_range, angle_range) if angle_range else 0.0
        matrix = similarity(scale, angle, (0.0, 0.0), pivot)  # the sprite centred on the origin
        corners = apply(matrix, rectangle)
        (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
        lo_x, hi_x = -0.5 - x0 + 1, width - 0.5 - x1 - 1
        lo_y, hi_y = -0.5 - y0 + 1, height - 0.5 - y1 - 1
        if lo_x > hi_x or lo_y > hi_y:
            scale *= 0.85  # too big for this canvas: shrink and retry
            continue
        center = (rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y))
        poly = Polygon(corners + center)
        if overlap_fraction(poly, placed) <= max_overlap:
            placed.append(poly)
            matrix[:, 2] += center
            return matrix
    return None
