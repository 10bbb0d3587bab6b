"""Test helpers: hold a decoded sample's json against its pixels.

`objects` entries of the inpaint / edit / reference / segdet tasks carry each layer's exact placement
(`asset`, `matrix`), so a test can re-warp the sprite by itself and ask what the image must show there,
independently of how the generator computed its labels.
"""

from __future__ import annotations

import numpy as np

from collage.render import VISIBLE_ALPHA, warp_layer


def layer_alpha(lib, entry: dict, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(alpha uint8 (H, W), premultiplied RGB (H, W, 3)) of one object's sprite warped into the canvas."""
    sprite = lib.sprite(entry["asset"])
    alpha = np.zeros((height, width), np.uint8)
    rgb = np.zeros((height, width, 3), np.uint8)
    warped = warp_layer(sprite.rgba, np.asarray(entry["matrix"], np.float64), width, height, sprite.levels)
    if warped is not None:
        x0, y0, crop = warped
        alpha[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop[..., 3]
        rgb[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop[..., :3]
    return alpha, rgb


def layers(lib, objects: list[dict], width: int, height: int) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """(entry, alpha, rgb) per object, bottom to top (objects are listed by layer id)."""
    ordered = sorted(objects, key=lambda o: o["id"])
    return [(o, *layer_alpha(lib, o, width, height)) for o in ordered]


def visible_regions(stack: list[tuple[dict, np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Bool maps: where each layer is the topmost one with alpha ≥ VISIBLE_ALPHA."""
    out = []
    for i, (_, alpha, _) in enumerate(stack):
        region = alpha >= VISIBLE_ALPHA
        for _, above, _ in stack[i + 1:]:
            region &= above < VISIBLE_ALPHA
        out.append(region)
    return out


def solid_regions(stack: list[tuple[dict, np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Bool maps: where each layer is opaque and nothing above it covers it at all."""
    out = []
    for i, (_, alpha, _) in enumerate(stack):
        region = alpha == 255
        for _, above, _ in stack[i + 1:]:
            region &= above == 0
        out.append(region)
    return out


def assert_sprites_shown(image: np.ndarray, stack) -> None:
    """Every object's sprite is really in the (lossless) image where its json puts it.

    Where the sprite is opaque and uncovered the pixel is the sprite's; where it is partly transparent
    (alpha ≥ VISIBLE_ALPHA) and uncovered, premultiplied 'over' bounds it: rgb ≤ pixel ≤ rgb + 255 − alpha.
    """
    for i, (entry, alpha, rgb) in enumerate(stack):
        uncovered = alpha >= VISIBLE_ALPHA
        for _, above, _ in stack[i + 1:]:
            uncovered &= above == 0
        assert uncovered.any(), f"{entry['name']} has no uncovered pixel"
        solid = uncovered & (alpha == 255)
        assert np.array_equal(image[solid], rgb[solid]), f"{entry['name']} is not drawn where its json puts it"
        pixel = image[uncovered].astype(int)
        low = rgb[uncovered].astype(int)
        high = low + (255 - alpha[uncovered].astype(int))[:, None]
        assert ((pixel >= low - 1) & (pixel <= high + 1)).all(), f"{entry['name']}: pixels outside the 'over' bounds"


def bbox(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def colour_mask(image: np.ndarray, colour) -> np.ndarray:
    return np.all(image == np.asarray(colour, np.uint8), axis=-1)
