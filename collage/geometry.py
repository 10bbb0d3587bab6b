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
    out = outer[:, :2] @ inner
    out[:, 2] += outer[:, 2]
    return out


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 2×3 matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def rectangle_corners(sprite_hw: tuple[int, int]) -> tuple[tuple[float, float], ...]:
    """The four (u, v) corners of a sprite's pixel edges (not centres), in sprite coordinates, clockwise on
    screen from the top left."""
    h, w = sprite_hw
    return (-0.5, -0.5), (w - 0.5, -0.5), (w - 0.5, h - 0.5), (-0.5, h - 0.5)


def sprite_rectangle(sprite_hw: tuple[int, int]) -> np.ndarray:
    """(4, 2) corners of a sprite's pixel edges (not centres), in sprite coordinates."""
    return np.array(rectangle_corners(sprite_hw))


def footprint(sprite_hw: tuple[int, int], matrix: np.ndarray) -> Polygon:
    """The sprite's rectangle (pixel edges, not centres) on the canvas."""
    return Polygon(apply(matrix, sprite_rectangle(sprite_hw)))


def sprite_corners(sprite_hw: tuple[int, int], matrix: np.ndarray) -> np.ndarray:
    """(4, 2) canvas corners of the sprite's rectangle (pixel edges): `footprint` without the polygon."""
    return apply(matrix, sprite_rectangle(sprite_hw))


def sprite_bounds(sprite_hw: tuple[int, int], matrix: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1): the canvas bounding box of the sprite's rectangle (pixel edges). Scalar math: it is
    asked for once per layer and render, where numpy's per-call cost on four points dominates."""
    (a, b, c), (d, e, f) = matrix.tolist()
    corners = rectangle_corners(sprite_hw)
    xs = [a * u + b * v + c for u, v in corners]
    ys = [d * u + e * v + f for u, v in corners]
    return min(xs), min(ys), max(xs), max(ys)


def inside(bounds: tuple[float, float, float, float], width: int, height: int, margin: float = 1.0) -> bool:
    """A shape with these (x0, y0, x1, y1) bounds lies within the canvas, `margin` px in from its edges (a
    box contains a shape exactly when it contains the shape's bounds)."""
    x0, y0, x1, y1 = bounds
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
        self.boxes: list[tuple[float, float, float, float]] = []  # (x0, y0, x1, y1) of each

    def __len__(self) -> int:
        return len(self.corners)

    def add(self, sprite_hw: tuple[int, int], matrix: np.ndarray) -> None:
        corners = sprite_corners(sprite_hw, matrix)
        self.add_corners(corners, abs(float(np.linalg.det(matrix[:, :2]))) * sprite_hw[0] * sprite_hw[1])

    def add_corners(self, corners, area: float) -> None:
        """Add a footprint by its four (x, y) corners (a (4, 2) array or a list of pairs) and area."""
        corners = np.asarray(corners, np.float64)
        (x0, y0), (x1, y1) = corners.min(axis=0).tolist(), corners.max(axis=0).tolist()
        self.corners.append(corners.astype(np.float32))
        self.areas.append(area)
        self.boxes.append((x0, y0, x1, y1))

    @property
    def bounds(self) -> np.ndarray:
        """(n, 4) [x0, y0, x1, y1] of each footprint."""
        return np.array(self.boxes, np.float64).reshape(-1, 4)

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

    The `tries` candidates (angle, centre) are drawn at once and tried in order; the first whose box meets
    no footprint, or whose exact overlaps stay within `max_overlap`, wins. A sprite too big for the canvas
    at a candidate's angle is shrunk until it fits. The first or second candidate almost always wins, so
    they are worked out one at a time in scalar math: numpy's per-call cost on 24-element arrays made this
    a sixth of a drag sample's compose time.
    """
    h, w = sprite_hw
    scale = long_side / max(sprite_hw)
    angles = rng.uniform(-angle_range, angle_range, tries).tolist() if angle_range else [0.0] * tries
    units = rng.random((tries, 2)).tolist()
    bounds = placed.boxes
    pivot = ((w - 1) / 2, (h - 1) / 2)
    rectangle = rectangle_corners(sprite_hw)
    for angle, (ux, uy) in zip(angles, units):
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        for _ in range(32):
            # half extents of the turned rectangle's bounding box (pixel edges: w × h about its centre)
            half_x = scale * (abs(cos) * w + abs(sin) * h) / 2
            half_y = scale * (abs(sin) * w + abs(cos) * h) / 2
            lo_x, hi_x = half_x + 0.5, width - 1.5 - half_x  # a pixel's margin inside every canvas edge
            lo_y, hi_y = half_y + 0.5, height - 1.5 - half_y
            if lo_x <= hi_x and lo_y <= hi_y:
                break
            scale *= 0.85  # too big for this canvas at this angle: shrink
        else:
            return None
        cx, cy = lo_x + ux * (hi_x - lo_x), lo_y + uy * (hi_y - lo_y)
        x0, y0, x1, y1 = cx - half_x, cy - half_y, cx + half_x, cy + half_y
        near = [i for i, b in enumerate(bounds) if x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1]
        # the similarity's coefficients and the rectangle's canvas corners, as `similarity` and
        # `sprite_corners` give them; the matrix is built only for the winner
        c, s = cos * scale, sin * scale
        tx, ty = cx - (c * pivot[0] + s * pivot[1]), cy - (-s * pivot[0] + c * pivot[1])
        corners = [(c * u + s * v + tx, -s * u + c * v + ty) for u, v in rectangle]
        area = scale * scale * w * h  # a similarity scales areas by scale²
        if near and placed.overlap(corners, area, near) > max_overlap:
            continue
        placed.add_corners(corners, area)
        return np.array([[c, s, tx], [-s, c, ty]])
    return None
