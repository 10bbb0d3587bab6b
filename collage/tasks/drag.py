"""drag: one object of a collage is translated, scaled or rotated; drag points say where its pixels went.

Labels are computed from the renders, not assumed: the mask is every pixel the object can have changed,
and each point is a pixel that shows the object alone (alpha 255, nothing above it) in both images, in a
flat patch of the sprite, so its colour in the source is its colour at (x + dx, y + dy) in the target.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from ..assets import AssetLibrary
from ..errors import Reject
from ..geometry import apply, compose, inside, similarity, sprite_corners
from ..render import Layer, Rendered, Scene, render
from ..sample import Sample
from . import GenConfig, register
from .common import objects_json, random_collage, require_visible

OPS = ("translate", "scale", "rotate")
FLAT_RANGE = 24  # max per-channel spread in a 5×5 patch for a point to count as flat
EDGE_MARGIN = 2  # points keep this many pixels from the object's visible edge


def drag_transform(rng: np.random.Generator, op: str, center: np.ndarray, width: int, height: int) -> dict:
    """The drag as a canvas-space similarity about the object's centre."""
    scale, angle, shift = 1.0, 0.0, np.zeros(2)
    if op == "translate":
        direction = rng.uniform(0, 2 * np.pi)
        shift = rng.uniform(0.08, 0.35) * min(width, height) * np.array([np.cos(direction), np.sin(direction)])
    elif op == "scale":
        scale = rng.uniform(0.6, 0.85) if rng.random() < 0.5 else rng.uniform(1.2, 1.6)
    elif op == "rotate":
        angle = rng.choice([-1, 1]) * rng.uniform(20, 120)
    else:
        raise ValueError(f"unknown drag op {op!r}")
    matrix = similarity(scale, angle, tuple(center + shift), tuple(center))
    return {"matrix": matrix, "tx": float(shift[0]), "ty": float(shift[1]), "scale": float(scale),
            "angle_deg": float(angle), "center": [float(center[0]), float(center[1])]}


# (25, 2) offsets of a pixel's 5×5 neighbourhood: EDGE_MARGIN and the flatness patch share this radius
NEIGHBOURS = np.stack(np.meshgrid(np.arange(-EDGE_MARGIN, EDGE_MARGIN + 1),
                                  np.arange(-EDGE_MARGIN, EDGE_MARGIN + 1)), -1).reshape(-1, 2)
DRAWS, ROUNDS = 64, 16  # box pixels drawn per round, and rounds: the first round almost always suffices


@functools.lru_cache(maxsize=64)
def _offsets(width: int, channels: int) -> np.ndarray:
    """(channels, 25) flat offsets of the 5×5 neighbourhood in a C-contiguous (·, width, channels) array:
    channel-major, so that the reduction over the patch runs along the last axis (several times faster)."""
    return (NEIGHBOURS @ (channels, width * channels))[None, :] + np.arange(channels)[:, None]


def usable(rendered: Rendered, index: int, solid: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bool (N,) for integer canvas pixels (xs, ys): the whole 5×5 neighbourhood shows layer `index` alone
    (so the pixel is EDGE_MARGIN px inside its visible edge) and varies by at most FLAT_RANGE per channel.
    Tested at the given pixels only, by flat-offset gathers: morphology over the layer's whole box, or
    2-D fancy indexing, costs several times more."""
    x0, y0 = rendered.boxes[index][:2]
    h, w = solid.shape
    lx, ly = xs - x0, ys - y0
    ok = (lx >= EDGE_MARGIN) & (lx < w - EDGE_MARGIN) & (ly >= EDGE_MARGIN) & (ly < h - EDGE_MARGIN)
    ok[ok] = solid.ravel()[(ly * w + lx)[ok][:, None] + _offsets(w, 1)[0]].all(axis=1)
    canvas_width = rendered.rgb.shape[1]
    patch = rendered.rgb.ravel()[((ys * canvas_width + xs) * 3)[ok][:, None, None] + _offsets(canvas_width, 3)]
    ok[ok] = (patch.max(axis=2) - patch.min(axis=2)).max(axis=1) <= FLAT_RANGE  # patch: (n, 3, 25)
    return ok


def pick_points(rng: np.random.Generator, src: Rendered, tgt: Rendered, index: int, matrix: np.ndarray,
                count: int, min_spacing: float) -> np.ndarray:
    """Up to `count` source pixels (N, 2), spread at least `min_spacing` apart, usable in the source and
    whose image under `matrix` is usable in the target."""
    src_solid, tgt_solid = src.solid_crop(index), tgt.solid_crop(index)
    if src_solid is None or tgt_solid is None:
        return np.zeros((0, 2))
    h, w = src_solid.shape
    x0, y0 = src.boxes[index][:2]
    (a, b, tx), (c, d, ty) = matrix.tolist()
    chosen: list[tuple[int, int]] = []
    for _ in range(ROUNDS):
        # pixels of the box drawn at random, kept where the object shows alone: a random order of the
        # candidates without listing them all
        drawn = (rng.random(DRAWS) * (h * w)).astype(np.intp)
        drawn = drawn[src_solid.ravel()[drawn]]
        ys, xs = np.divmod(drawn, w)
        xs, ys = xs + x0, ys + y0
        ok = usable(src, index, src_solid, xs, ys)
        xs, ys = xs[ok], ys[ok]
        ok = usable(tgt, index, tgt_solid, np.rint(a * xs + b * ys + tx).astype(np.intp),
                    np.rint(c * xs + d * ys + ty).astype(np.intp))
        for x, y in zip(xs[ok].tolist(), ys[ok].tolist()):  # greedy in draw order: taken if far from all taken
            if all((x - u) ** 2 + (y - v) ** 2 >= min_spacing ** 2 for u, v in chosen):
                chosen.append((x, y))
                if len(chosen) == count:
                    return np.array(chosen, np.float64)
    return np.array(chosen, np.float64).reshape(-1, 2)


@register("drag", OPS)
def generate(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    width, height = cfg.width, cfg.height
    scene, _ = random_collage(rng, assets, width, height, count=int(rng.integers(1, 5)))
    moved_index = int(rng.integers(len(scene.layers)))
    layer = scene.layers[moved_index]
    sprite_hw = layer.sprite.rgba.shape[:2]
    center = apply(layer.matrix, np.array([[(sprite_hw[1] - 1) / 2, (sprite_hw[0] - 1) / 2]]))[0]
    for _ in range(8):
        transform = drag_transform(rng, cfg.op, center, width, height)
        moved_matrix = compose(transform["matrix"], layer.matrix)
        if inside(sprite_corners(sprite_hw, moved_matrix), width, height):
            break
    else:
        raise Reject("the dragged object would leave the canvas")

    target_scene = Scene(scene.background, list(scene.layers))
    target_scene.layers[moved_index] = Layer(layer.sprite, moved_matrix)
    # The layers under the moved one are drawn once, for both images, into the background itself (this
    # scene's own); the layers above are warped once for both.
    under = render(Scene(scene.background, scene.layers[:moved_index]), consume_base=True)
    warps: dict = {}
    tgt = render(target_scene, under, moved_index, warps=warps)
    src = render(scene, under, moved_index, consume_base=True, warps=warps)
    require_visible(src, 0.4)
    require_visible(tgt, 0.4)

    # Every pixel the object can have changed: its coverage before or after, unless hidden by layers above.
    # Worked box by box with OpenCV's saturating max/min: whole-canvas passes or numpy boolean assignment
    # cost several times more.
    mask = np.zeros((height, width), np.uint8)
    for rendered in (src, tgt):
        if rendered.boxes[moved_index] is not None:
            x0, y0, x1, y1 = rendered.boxes[moved_index]
            region = mask[y0:y1, x0:x1]
            cv2.max(region, cv2.threshold(rendered.crops[moved_index], 0, 255, cv2.THRESH_BINARY)[1], dst=region)
    for above in range(moved_index + 1, len(src.boxes)):
        if src.boxes[above] is not None:  # fully opaque pixels of a layer above hide any change
            x0, y0, x1, y1 = src.boxes[above]
            region = mask[y0:y1, x0:x1]
            cv2.min(region, cv2.threshold(src.crops[above], 254, 255, cv2.THRESH_BINARY_INV)[1], dst=region)
    if not cv2.hasNonZero(mask):
        raise Reject("nothing changed")

    long_side = max(sprite_hw) * float(np.hypot(*layer.matrix[:, 0]))
    pixels = pick_points(rng, src, tgt, moved_index, transform["matrix"], int(rng.integers(1, 6)),
                         0.12 * long_side)
    if len(pixels) == 0:
        raise Reject("no pixel of the object is visible and flat in both images")
    moved = apply(transform["matrix"], pixels)
    # Python floats, not numpy's: numpy rounds halves differently, and the prompt must match the json exactly.
    points = [[round(float(v), 6) for v in (x / width, y / height, (mx - x) / width, (my - y) / height)]
              for (x, y), (mx, my) in zip(pixels, moved)]

    name = layer.name
    # round, then add 0.0: a tiny negative would otherwise print as "-0.000"
    prompt = f"Drag the {name}: " + "; ".join("(" + ", ".join(f"{round(v, 3) + 0.0:.3f}" for v in p) + ")" for p in points)
    transform["matrix"] = np.round(transform["matrix"], 6).tolist()
    return Sample(
        op=cfg.op,
        images={"src": src.rgb, "tgt": tgt.rgb, "mask": mask},
        meta={"prompt": prompt, "objects": objects_json(target_scene, tgt), "target_object": moved_index,
              "points": points, "transform": transform},
    )
