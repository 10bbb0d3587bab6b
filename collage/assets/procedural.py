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
    if recipe == "diagonal-stripes":
        a, b = _colour(rng).astype(np.uint8), _colour(rng).astype(np.uint8)
        period = int(rng.integers(12, 56))
        # (x ± y) mod period repeats every period in x and in y: draw one tile, repeat it.
        ys, xs = np.mgrid[0:period, 0:period]
        sign = 1 if rng.random() < 0.5 else -1
        band = ((xs + sign * ys) % period) < period // 2  # the top-left pixel is always `a`
        tile = np.where(band[..., None], a, b).astype(np.uint8)
        reps = (height // period + 1, width // period + 1, 1)
        return np.ascontiguousarray(np.tile(tile, reps)[:height, :width])
    if recipe == "tiles":
        tile, grout = _colour(rng).astype(np.uint8), _colour(rng).astype(np.uint8)
        period = int(rng.integers(16, 64))
        line = max(1, period // 10)
        cell = np.full((period, period, 3), tile, np.uint8)
        cell[:line], cell[:, :line] = grout, grout
        reps = (height // period + 2, width // period + 2, 1)
        dy, dx = (int(v) for v in rng.integers(period, size=2))  # the grout lines do not start at the edge
        return np.ascontiguousarray(np.tile(cell, reps)[dy:dy + height, dx:dx + width])
    if recipe == "bokeh":
        # Soft discs of light over a ground: drawn small and blurred, then scaled up.
        ground, light = _colour(rng) * 0.5, _colour(rng) * 0.5 + 127
        sw, sh = max(8, width // 4), max(8, height // 4)
        small = np.empty((sh, sw, 3), np.float32)
        small[:] = ground
        for _ in range(int(rng.integers(6, 18))):
            centre = (int(rng.integers(sw)), int(rng.integers(sh)))
            radius = int(rng.integers(max(2, min(sw, sh) // 16), max(3, min(sw, sh) // 5)))
            disc = small.copy()
            cv2.circle(disc, centre, radius, (light * rng.uniform(0.8, 1.0)).tolist(), -1, lineType=cv2.LINE_AA)
            small = cv2.addWeighted(small, 0.45, disc, 0.55, 0)
        small = cv2.GaussianBlur(small, (0, 0), max(1.0, min(sw, sh) / 60))
        return cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    if recipe == "waves":
        # Two-colour wavy bands: each column's bands are shifted by a sine of x. One column of bands (with
        # 1 px anti-aliased edges) is drawn tall enough, then every column reads it at its own shift
        # (cv2.remap: a sub-pixel gather in one pass).
        a, b = _colour(rng), _colour(rng)
        period = int(rng.integers(24, 96))
        amplitude, wavelength = rng.uniform(0.1, 0.35) * period, rng.uniform(1.5, 4.0) * period
        rows = height + 2 * period
        t = (np.arange(rows, dtype=np.float32) % period) / period
        band = np.clip((np.abs(t - 0.5) - 0.25) * period + 0.5, 0, 1)[:, None]
        column = (a * band + b * (1 - band)).astype(np.uint8).reshape(rows, 1, 3)
        shift = (amplitude * np.sin(2 * np.pi * np.arange(width) / wavelength + rng.uniform(0, 2 * np.pi))
                 + period).astype(np.float32)
        map_y = np.arange(height, dtype=np.float32)[:, None] + shift[None, :]
        map_x = np.zeros_like(map_y)
        return cv2.remap(column, map_x, map_y, cv2.INTER_LINEAR)
    if recipe == "clouds":
        # Fractal noise: octaves of smooth noise, each twice as fine and half as strong, summed at a quarter of
        # the size (the finest octave's cells are still 4 px there), coloured on the a → b ramp, then scaled up.
        a, b = _colour(rng), _colour(rng)
        sw, sh = max(8, width // 4), max(8, height // 4)
        t = np.zeros((sh, sw), np.float32)
        grid, weight = int(rng.integers(2, 5)), 1.0
        for _ in range(4):
            small = rng.uniform(0, weight, (grid + 1, grid + 1)).astype(np.float32)
            t += cv2.resize(small, (sw, sh), interpolation=cv2.INTER_CUBIC)
            grid, weight = grid * 2, weight / 2
        # stretched so that each end colour covers a few percent of the pixels (what the prompt names is seen)
        lo, hi = np.percentile(t, (4, 96))
        levels = np.clip((t - lo) * (255 / max(float(hi - lo), 1e-6)), 0, 255).astype(np.uint8)
        ramp = np.linspace(0, 1, 256, dtype=np.float32)[:, None]
        small_rgb = (a * (1 - ramp) + b * ramp).astype(np.uint8)[levels]
        return cv2.resize(small_rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    if recipe == "plaid":
        # Tartan: translucent broad and thin bands of one colour across a ground, both ways; the ground shows
        # on most pixels (so it is the median colour describe_background reads). Two kinds of row: without
        # a horizontal band, and across one; each is drawn once and copied into its rows.
        ground, band = _colour(rng), _colour(rng)
        period = int(rng.integers(32, 112))
        broad, thin = max(2, period // 5), max(1, period // 14)

        def bands(n: int) -> np.ndarray:
            x = np.arange(n) % period
            return (x < broad) | ((x >= period // 2) & (x < period // 2 + thin))

        palette = np.stack([ground, 0.5 * ground + 0.5 * band, 0.15 * ground + 0.85 * band]).astype(np.uint8)
        columns = bands(width).astype(np.int32)
        out = np.empty((height, width, 3), np.uint8)
        across = bands(height)
        out[~across] = palette[columns]
        out[across] = palette[columns + 1]
        return out
    raise ValueError(f"unknown procedural recipe {recipe!r}")
