"""The one colour palette every prompt names colours from (name → RGB). Documented in the README.

Colours are far apart in RGB so a named colour is unambiguous to a reader and to a pixel checker.
"""

from __future__ import annotations

import numpy as np

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (250, 220, 30),
    "green": (40, 170, 60),
    "teal": (20, 150, 150),
    "blue": (30, 80, 220),
    "purple": (130, 50, 180),
    "pink": (245, 120, 190),
    "brown": (120, 70, 30),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
    "white": (245, 245, 245),
}
NAMES = tuple(PALETTE)


def contrasting(rng: np.random.Generator, background: np.ndarray, min_distance: float = 120.0,
                avoid: set[str] | frozenset = frozenset()) -> str:
    """A palette colour far (in RGB) from the mean colour of `background` (any (..., 3) array)."""
    mean = background.reshape(-1, 3).mean(axis=0)
    far = [n for n in NAMES if n not in avoid and np.linalg.norm(np.subtract(PALETTE[n], mean)) >= min_distance]
    pool = far or [max((n for n in NAMES if n not in avoid), key=lambda n: np.linalg.norm(np.subtract(PALETTE[n], mean)))]
    return pool[int(rng.integers(len(pool)))]
