"""Affine transforms and placement geometry shared by every generator: footprints as shapely polygons for
the generators' own checks, and `Footprints` (OpenCV's convex clipper) for the placement hot loop.

Pixel convention: integer coordinates are pixel centres (as in cv2.warpAffine); a 2×3 matrix maps a
sprite's pixel (u, v) to the canvas point M @ (u, v, 1). Angles are degrees counter-clockwise on screen.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from shapely.geometry import Polygon


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


def sprite_rectangle(sprite_hw: tuple[int, int]) -> np.ndarray:
    """(4, 2) corners of a sprite's pixel edges (not centres), in sprite coordinates."""
    h, w = sprite_hw
    return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])


def footprint(sprite_hw: tuple[int, int], matrix: np.ndarray) -> Polygon:
    """The sprite's rectangle (pixel edges, not centres) on the canvas."""
    return Polygon(apply(matrix, sprite_rectangle(sprite_hw)))


def inside(poly: Polygon, width: int, height: int, margin: float = 1.0) -> bool:
    """`poly` lies within the canvas, `margin` px in from its edges. A box contains a shape exactly when it
    contains the shape's bounds, so the bounds decide (a tenth of the cost of a shapely `contains`)."""
    x0, y0, x1, y1 = poly.bounds
    return x0 > -0.5 + margin and y0 > -0.5 + margin and x1 < width - 0.5 - margin and y1 < height - 0.5 - margin


class Footprints:
    """The sprite footprints (turned rectangles) placed so far on one canvas, for overlap checks.

    Kept as corner arrays with their boxes and areas rather than shapely polygons: every footprint is
    convex, so OpenCV's convex clipper gives the exact shared area of two at a tenth of the cost of
    building and intersecting shapely polygons (placement was a sixth of a drag sample's compose time).
    """

    def __init__(self) -> None:
        self.corners: list[np.ndarray] = []  # (4, 2) float32 each
        self.areas: list[float] = []
        self._bounds: list[tuple[float, float, float, float]] = []

    def __len__(self) -> int:
        return len(self.corners)

    def add(self, sprite_hw: tuple[int, int], matrix: np.ndarray) -> None:
        corners = apply(matrix, sprite_rectangle(sprite_hw))
        (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
        self.corners.append(corners.astype(np.float32))
        self.areas.append(abs(float(np.linalg.det(matrix[:, :2]))) * sprite_hw[0] * sprite_hw[1])
        self._bounds.append((x0, y0, x1, y1))

    @property
    def bounds(self) -> np.ndarray:
        """(n, 4) [x0, y0, x1, y1] of each footprint."""
        return np.array(self._bounds, np.float64).reshape(-1, 4)

    def overlap(self, corners: np.ndarray, area: float, near: np.ndarray | None = None) -> float:
        """Largest share of either area covered by the intersection with a footprint, for a convex polygon's
        corners. `near`: indices of the footprints whose boxes meet the polygon's, when the caller knows them."""
        if near is None:  # only footprints whose boxes meet can overlap
            (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
            b = self.bounds
            near = np.flatnonzero((x0 < b[:, 2]) & (b[:, 0] < x1) & (y0 < b[:, 3]) & (b[:, 1] < y1))
        worst, quad = 0.0, np.asarray(corners, np.float32)
        for i in near:
            shared = cv2.intersectConvexConvex(quad, self.corners[i])[0]
            worst = max(worst, shared / min(area, self.areas[i]))
        return worst


def place(rng: np.random.Generator, sprite_hw: tuple[int, int], long_side: float, width: int, height: int,
          placed: Footprints, max_overlap: float, angle_range: float = 0.0, tries: int = 24) -> np.ndarray | None:
    """A matrix that puts the sprite fully on the canvas with at most `max_overlap` over the footprints in
    `placed`, to which its own is added.

    All `tries` candidates (angle, centre) are drawn at once; the first whose box meets no footprint, or
    whose exact overlaps stay within `max_overlap`, wins.
    """
    h, w = sprite_hw
    scale = long_side / max(sprite_hw)
    angles = rng.uniform(-angle_range, angle_range, tries) if angle_range else np.zeros(tries)
    cos, sin = np.abs(np.cos(np.radians(angles))), np.abs(np.sin(np.radians(angles)))
    for _ in range(32):
        # half extents of the turned rectangle's bounding box (pixel edges: w × h about its centre)
        half_x, half_y = scale * (cos * w + sin * h) / 2, scale * (sin * w + cos * h) / 2
        lo_x, hi_x = half_x + 0.5, width - 1.5 - half_x  # a pixel's margin inside every canvas edge
        lo_y, hi_y = half_y + 0.5, height - 1.5 - half_y
        if (lo_x <= hi_x).all() and (lo_y <= hi_y).all():
            break
        scale *= 0.85  # too big for this canvas at some angle: shrink
    else:
        return None
    centers = np.stack([lo_x, lo_y], axis=1) + rng.random((tries, 2)) * np.stack([hi_x - lo_x, hi_y - lo_y], axis=1)
    b = placed.bounds
    x0, y0 = centers[:, :1] - half_x[:, None], centers[:, 1:] - half_y[:, None]
    x1, y1 = centers[:, :1] + half_x[:, None], centers[:, 1:] + half_y[:, None]
    near = (x0 < b[:, 2]) & (b[:, 0] < x1) & (y0 < b[:, 3]) & (b[:, 1] < y1)  # (tries, placed)
    pivot = ((w - 1) / 2, (h - 1) / 2)
    area = scale * scale * w * h  # a similarity scales areas by scale²
    for k in range(tries):
        matrix = similarity(scale, float(angles[k]), tuple(centers[k]), pivot)
        if near[k].any() and placed.overlap(apply(matrix, sprite_rectangle(sprite_hw)), area,
                                            np.flatnonzero(near[k])) > max_overlap:
            continue
        placed.add(sprite_hw, matrix)
        return matrix
    return None
