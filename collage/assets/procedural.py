"""Procedural backgrounds: cheap, endless, licence-free. Each is a pure function of (rng, recipe, size)."""

from __future__ import annotations

import cv2
import numpy as np


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def procedural_background(rng: np.random.Generator, recipe: str, width: int, height: int) -> np.ndarray:
    """RGB uint8 (height, width, 3)."""
    if recipe == "solid":
        out = np.empty((height, width, 3), np.uint8)
        out[:] = np.tile(_colour(rng).astype(np.uint8), (width, 1))  # row-wise copy: far faster than a 3-value fill
        return out
    if recipe in ("linear-gradient", "radial-gradient"):
        # Draw at low resolution, then let the resize interpolate: a smooth gradient costs a fraction.
        sw, sh = max(2, width // 16), max(2, height // 16)
        ys, xs = np.mgrid[0:sh, 0:sw].astype(np.float32)
        if recipe == "linear-gradient":
            angle = rng.uniform(0, 2 * np.pi)
            t = xs / sw * np.cos(angle) + ys / sh * np.sin(angle)
        else:
            cx, cy = rng.uniform(0, sw), rng.uniform(0, sh)
            t = np.hypot(xs - cx, ys - cy) / np.hypot(sw, sh)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        small = _colour(rng) * (1 - t[..., None]) + _colour(rng) * t[..., None]
        return cv2.resize(small.astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    if recipe == "soft-noise":
        grid = rng.integers(3, 12)
        small = rng.uniform(0, 1, (grid, grid, 1)).astype(np.float32)
        a, b = _colour(rng), _colour(rng)
        small = (a * (1 - small) + b * small).astype(np.uint8)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    if recipe in ("stripes", "checker", "dots"):
        a, b = _colour(rng).astype(np.uint8), _colour(rng).astype(np.uint8)
        period = int(rng.integers(8, 48)) * 2
        # Draw one period, then repeat it: a pattern for the cost of one tile.
        tile = np.full((period, period, 3), a, np.uint8)
        half = period // 2
        if recipe == "stripes":
            tile[:, half:] = b
        elif recipe == "checker":
            tile[:half, half:] = b
            tile[half:, :half] = b
        else:
            cv2.circle(tile, (half, half), max(2, period // 5), b.tolist(), -1, lineType=cv2.LINE_AA)
        reps = (height // period + 1, width // period + 1, 1)
        return np.ascontiguousarray(np.tile(tile, reps)[:height, :width])
    raise ValueError(f"unknown procedural recipe {recipe!r}")
