"""Colour emoji glyphs through Pillow (FreeType in freetype-py cannot load colour bitmaps)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

NOTO_PIXEL_SIZE = 109  # the only size the CBDT strike of Noto Color Emoji accepts


@lru_cache(maxsize=4)
def _font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, NOTO_PIXEL_SIZE)


def render_emoji(font_path: str | Path, text: str) -> np.ndarray | None:
    """RGBA uint8 of one emoji, trimmed to its alpha; None when the font draws nothing or a tofu box."""
    font = _font(str(font_path))
    canvas = Image.new("RGBA", (NOTO_PIXEL_SIZE * 3, NOTO_PIXEL_SIZE * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((8, 8), text, font=font, embedded_color=True)
    rgba = np.asarray(canvas)
    ys, xs = np.nonzero(rgba[..., 3])
    if len(xs) == 0:
        return None
    rgba = rgba[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    # Unsupported sequences fall back to several glyphs side by side: keep single-glyph renders only.
    if rgba.shape[1] > 1.6 * NOTO_PIXEL_SIZE:
        return None
    return np.ascontiguousarray(rgba)
