"""Vector sprites rasterised at the size the engine draws them (resvg, through the `resvg-py` wheel).

Twemoji ships SVGs beside its 72 px PNGs, openclipart-svg the sources of openclipart-png's pictures. A
sprite rendered from its SVG at the pixel cache's sprite size is never upscaled where a PNG would be.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

AGREE_IOU = 0.9  # an SVG render stands in for its PNG only when their alpha masks agree this well…
AGREE_COLOUR = 20  # …and their colours differ by at most this (mean absolute, 0–255) where both are opaque
_SVG_TAG = re.compile(rb"<svg\b[^>]*>", re.S)
_SIZE_ATTR = re.compile(rb"\s(width|height)=\"[^\"]*\"")


def rasterise_svg(path: str | Path, long_side: int, pixel_size: tuple[int, int] | None = None) -> np.ndarray:
    """Straight RGBA (H, W, 4) uint8 of an SVG drawn with its longer side `long_side` px.

    Old Inkscape files give their size in pt with no viewBox, which resvg refuses ("invalid size"); their
    user units are CSS pixels, so with `pixel_size` (the packaged PNG's (width, height)) the root's size is
    rewritten to it, with a viewBox of the same size, and drawn again."""
    import resvg_py

    try:
        png = resvg_py.svg_to_bytes(svg_path=str(path), width=int(long_side))
    except ValueError:
        if pixel_size is None:
            raise
        png = resvg_py.svg_to_bytes(svg_string=_sized(Path(path).read_bytes(), *pixel_size).decode("utf-8", "replace"),
                                    width=int(long_side))
    with Image.open(io.BytesIO(png)) as im:
        rgba = np.asarray(im.convert("RGBA"))
    if max(rgba.shape[:2]) > long_side:  # width was the longer side's stand-in: redraw a tall picture smaller
        scale = long_side / max(rgba.shape[:2])
        rgba = cv2.resize(rgba, (max(1, round(rgba.shape[1] * scale)), max(1, round(rgba.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    return rgba


def _sized(svg: bytes, width: int, height: int) -> bytes:
    tag = _SVG_TAG.search(svg)
    if tag is None:
        raise ValueError("no <svg> element")
    root = _SIZE_ATTR.sub(b"", tag.group(0))
    view = b"" if b"viewBox" in root else f' viewBox="0 0 {width} {height}"'.encode()
    root = f'<svg width="{width}" height="{height}"'.encode() + view + root[4:]
    return svg[:tag.start()] + root + svg[tag.end():]


def agrees(render: np.ndarray, packaged: np.ndarray) -> bool:
    """Whether an SVG render (any size) shows what the packaged PNG shows: the render brought down to the
    PNG's size has nearly the same alpha mask and the same colours (renderers differ on filters, fonts and
    old Inkscape quirks; where they do, the PNG is kept)."""
    small = cv2.resize(render, (packaged.shape[1], packaged.shape[0]), interpolation=cv2.INTER_AREA)
    a, b = small[..., 3] > 128, packaged[..., 3] > 128
    both, either = a & b, a | b
    if not either.any() or both.sum() / either.sum() < AGREE_IOU:
        return False
    diff = np.abs(small[..., :3].astype(np.int16) - packaged[..., :3].astype(np.int16))[both]
    return float(diff.mean()) <= AGREE_COLOUR
