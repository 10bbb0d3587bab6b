"""Affine transforms and placement geometry (shapely) shared by every generator.

Pixel convention: integer coordinates are pixel centres (as in cv2.warpAffine); a 2×3 matrix maps a
sprite's pixel (u, v) to the canvas point M @ (u, v, 1). Angles are degrees counter-clockwise on screen.
"""

from __future__ import annotations

import math

import numpy as np
from shapely.geometry import Polygon, box


def similarity(scale: float, angle_deg: float, center: tuple[float, float], pivot: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """2×3 matrix: scale and rotate about `pivot`, then move `pivot` to `center`."""
    a = math.radians(angle_deg)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    # y points down, so a counter-clockwise turn on screen is (c, s; -s, c).
    linear = np.array([[c, s], [-s, c]])
    offset = np.asarray(center, np.float64) - linear @ np.asarray(pivot, np.float64)
    return np.hstack([linear, offset[:, None]])


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


def footprint(sprite_hw: tuple[int, int], matrix: np.ndarray) -> Polygon:
    """The sprite's rectangle (pixel edges, not centres) on the canvas."""
    h, w = sprite_hw
    corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    return Polygon(apply(matrix, corners))


def canvas_box(width: int, height: int, margin: float = 0.0) -> Polygon:
    return box(-0.5 + margin, -0.5 + margin, width - 0.5 - margin, height - 0.5 - margin)


def inside(poly: Polygon, width: int, height: int, margin: float = 1.0) -> bool:
    return canvas_box(width, height, margin).contains(poly)


def overlap_fraction(poly: Polygon, others: list[Polygon]) -> float:
    """Largest share of either polygon's area covered by their intersection."""
    worst = 0.0
    ax0, ay0, ax1, ay1 = poly.bounds
    for other in others:
        bx0, by0, bx1, by1 = other.bounds
        if ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0:
            continue  # disjoint boxes: skip the exact (and far costlier) polygon intersection
        inter = poly.intersection(other).area
        if inter:
            worst = max(worst, inter / min(poly.area, other.area))
    return worst


def place(rng: np.random.Generator, sprite_hw: tuple[int, int], long_side: float, width: int, height: int,
          placed: list[Polygon], max_overlap: float, angle_range: float = 0.0, tries: int = 24) -> np.ndarray | None:
    """A matrix that puts the sprite fully on the canvas with at most `max_overlap` over earlier footprints."""
    scale = long_side / max(sprite_hw)
    h, w = sprite_hw
    edges = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    for _ in range(tries):
        angle = rng.uniform(-angle_range, angle_range) if angle_range else 0.0
        corners = apply(sprite_matrix(sprite_hw, scale, angle, (0.0, 0.0)), edges)  # footprint about the origin
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
            return sprite_matrix(sprite_hw, scale, angle, center)
    return None
