"""Affine transforms and placement geometry (shapely) shared by every generator.

Pixel convention: integer coordinates are pixel centres (as in cv2.warpAffine); a 2×3 matrix maps a
sprite's pixel (u, v) to the canvas point M @ (u, v, 1). Angles are degrees counter-clockwise on screen.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
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
    return _Obstacles(others).overlap(np.asarray(poly.exterior.coords)[:-1], poly.area)


class _Obstacles:
    """Placed footprints, read once per placement: their corners, boxes and areas.

    Footprints are convex (turned rectangles), so OpenCV's convex clipper gives the exact shared area at a
    tenth of the cost of building shapely polygons and intersecting them; anything else goes to shapely.
    """

    def __init__(self, placed: list[Polygon]):
        self.polygons = placed
        self.corners = [np.asarray(p.exterior.coords, np.float32)[:-1] if isinstance(p, Polygon) else None
                        for p in placed]
        self.convex = [c is not None and len(c) >= 3 and not p.interiors and cv2.isContourConvex(c)
                       for p, c in zip(placed, self.corners)]
        self.bounds = np.array([p.bounds for p in placed]).reshape(-1, 4)
        self.areas = [p.area for p in placed]

    def overlap(self, corners: np.ndarray, area: float) -> float:
        """Largest share of either area covered by the intersection, for a convex polygon's corners."""
        (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
        b = self.bounds
        # only footprints whose boxes meet can overlap
        near = np.flatnonzero((x0 < b[:, 2]) & (b[:, 0] < x1) & (y0 < b[:, 3]) & (b[:, 1] < y1))
        worst, quad = 0.0, corners.astype(np.float32)
        for i in near:
            if self.convex[i]:
                shared = cv2.intersectConvexConvex(quad, self.corners[i])[0]
            else:
                shared = Polygon(corners).intersection(self.polygons[i]).area
            worst = max(worst, shared / min(area, self.areas[i]))
        return worst


def place(rng: np.random.Generator, sprite_hw: tuple[int, int], long_side: float, width: int, height: int,
          placed: list[Polygon], max_overlap: float, angle_range: float = 0.0, tries: int = 24) -> np.ndarray | None:
    """A matrix that puts the sprite fully on the canvas with at most `max_overlap` over earlier footprints."""
    scale = long_side / max(sprite_hw)
    rectangle = _rectangle(sprite_hw)
    pivot = ((sprite_hw[1] - 1) / 2, (sprite_hw[0] - 1) / 2)
    obstacles = _Obstacles(placed)
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
        corners += center
        area = scale * scale * sprite_hw[0] * sprite_hw[1]  # a similarity scales areas by scale²
        if obstacles.overlap(corners, area) <= max_overlap:
            placed.append(Polygon(corners))
            matrix[:, 2] += center
            return matrix
    return None

