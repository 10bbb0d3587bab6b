"""drag: one object of a collage is translated, scaled or rotated; drag points say where its pixels went.

Labels are computed from the renders, not assumed: the mask is every pixel the object can have changed,
and each point is a pixel that shows the object alone (alpha 255, nothing above it) in both images, in a
flat patch of the sprite, so its colour in the source is its colour at (x + dx, y + dy) in the target.

Prompts: TEMPLATES per op, one drawn per sample by its rng (json `template_id`, "drag.<op>.<k>"); each
ends with the points, "(x, y, dx, dy); …". `target_object` is the dragged object's `objects` entry (its
box in the target).
"""

from __future__ import annotations

import math

import cv2
import numba
import numpy as np

from ..assets import AssetLibrary
from ..errors import Reject
from ..geometry import apply, compose, inside, similarity, sprite_bounds
from ..render import Layer, Rendered, Scene, Warps, render
from ..sample import Sample
from . import GenConfig, register
from .common import entry_of, pick_template, random_collage, require_visible
from .labels import placed_objects

OPS = ("translate", "scale", "rotate")
GROW = (1.2, 1.6)  # a growing scale drag enlarges the object by a factor in this range
MIN_MOVE_PX, MIN_MOVE_FRACTION = 3.0, 0.02  # every drag point moves at least this far (px; of the short side)
FLAT_RANGE = 24  # max per-channel spread in a 5×5 patch for a point to count as flat
EDGE_MARGIN = 2  # points keep this many pixels from the object's visible edge
# Fields: {name} the object's name, {points} the drag points, {background} what the background shows.
TEMPLATES = {
    "translate": ("Drag the {name}: {points}",
                  "Move the {name} along these drag points: {points}",
                  "Drag the {name} to a new place on {background}: {points}"),
    "scale": ("Drag the {name}: {points}",
              "Resize the {name} with these drag points: {points}",
              "Drag points that resize the {name} on {background}: {points}"),
    "rotate": ("Drag the {name}: {points}",
               "Rotate the {name} with these drag points: {points}",
               "Drag points that turn the {name} on {background}: {points}"),
}


def drag_transform(rng: np.random.Generator, op: str, center: tuple[float, float], width: int, height: int,
                   max_grow: float = 2.0) -> dict:
    """The drag as a canvas-space similarity about the object's centre; a scale grows the object by at most
    `max_grow` (what its pixels allow within the run's max_upscale), else shrinks it. (Scalar math: a rotate
    is often redrawn several times before it fits the canvas.)"""
    scale, angle, tx, ty = 1.0, 0.0, 0.0, 0.0
    if op == "translate":
        direction = rng.uniform(0, 2 * np.pi)
        # whole pixels: the moved object is then its source pixels at an offset (one warp serves both images)
        length = rng.uniform(0.08, 0.35) * min(width, height)
        tx, ty = float(np.rint(length * math.cos(direction))), float(np.rint(length * math.sin(direction)))
    elif op == "scale":
        shrink = rng.random() < 0.5 or max_grow < GROW[0]
        scale = rng.uniform(0.6, 0.85) if shrink else rng.uniform(GROW[0], min(GROW[1], max_grow))
    elif op == "rotate":
        angle = (1 if rng.random() < 0.5 else -1) * rng.uniform(20, 120)
    else:
        raise ValueError(f"unknown drag op {op!r}")
    matrix = similarity(scale, angle, (center[0] + tx, center[1] + ty), center)
    return {"matrix": matrix, "tx": tx, "ty": ty, "scale": float(scale), "angle_deg": float(angle),
            "center": list(center)}


CANDIDATES = 1024  # box pixels drawn per sample; the search stops once it has its points


def _compiled(function):
    """numba-compiled, its machine code cached beside the source (or in the user's cache) so that a new
    worker loads it instead of compiling (~1 s); where no cache folder can be written, compiled per process."""
    try:
        return numba.njit(cache=True)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(function)


@_compiled
def _usable(rgb: np.ndarray, solid: np.ndarray, box_x: int, box_y: int, x: int, y: int) -> bool:
    """The 5×5 neighbourhood of canvas pixel (x, y) shows the layer alone (`solid`, over the layer's box at
    (box_x, box_y)), so the pixel is EDGE_MARGIN px inside its visible edge, and varies by at most
    FLAT_RANGE per channel in `rgb`."""
    h, w = solid.shape
    lx, ly = x - box_x, y - box_y
    if lx < EDGE_MARGIN or ly < EDGE_MARGIN or lx >= w - EDGE_MARGIN or ly >= h - EDGE_MARGIN:
        return False
    for dy in range(-EDGE_MARGIN, EDGE_MARGIN + 1):
        for dx in range(-EDGE_MARGIN, EDGE_MARGIN + 1):
            if not solid[ly + dy, lx + dx]:
                return False
    for c in range(3):
        lo, hi = 255, 0
        for dy in range(-EDGE_MARGIN, EDGE_MARGIN + 1):
            for dx in range(-EDGE_MARGIN, EDGE_MARGIN + 1):
                v = rgb[y + dy, x + dx, c]
                lo, hi = min(lo, v), max(hi, v)
        if hi - lo > FLAT_RANGE:
            return False
    return True


@_compiled
def _search_points(draws: np.ndarray, src_rgb: np.ndarray, src_solid: np.ndarray, src_x: int, src_y: int,
                   tgt_rgb: np.ndarray, tgt_solid: np.ndarray, tgt_x: int, tgt_y: int, matrix: np.ndarray,
                   count: int, min_spacing: float) -> np.ndarray:
    """Greedy in draw order: a drawn box pixel is taken when it is usable in the source, its image under
    `matrix` (rounded) is usable in the target, and it lies at least `min_spacing` from every point taken.
    A compiled loop: it stops at the first `count` points, where vectorised tests pay for every candidate."""
    h, w = src_solid.shape
    chosen = np.zeros((count, 2), np.int64)
    n = 0
    for u in draws:
        k = int(u * (h * w))
        ly, lx = k // w, k % w
        if not src_solid[ly, lx]:
            continue
        x, y = lx + src_x, ly + src_y
        if not _usable(src_rgb, src_solid, src_x, src_y, x, y):
            continue
        mx = int(np.rint(matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]))
        my = int(np.rint(matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]))
        if not _usable(tgt_rgb, tgt_solid, tgt_x, tgt_y, mx, my):
            continue
        far = True
        for j in range(n):
            if (x - chosen[j, 0]) ** 2 + (y - chosen[j, 1]) ** 2 < min_spacing * min_spacing:
                far = False
                break
        if far:
            chosen[n, 0], chosen[n, 1] = x, y
            n += 1
            if n == count:
                break
    return chosen[:n]


def pick_points(rng: np.random.Generator, src: Rendered, tgt: Rendered, index: int, matrix: np.ndarray,
                count: int, min_spacing: float) -> np.ndarray:
    """Up to `count` source pixels (N, 2), spread at least `min_spacing` apart, usable in the source and
    whose image under `matrix` is usable in the target (see `_usable`). Candidates are box pixels drawn at
    random: a random order of them without listing them all."""
    src_solid, tgt_solid = src.solid_crop(index), tgt.solid_crop(index)
    if src_solid is None or tgt_solid is None:
        return np.zeros((0, 2))
    draws = rng.random(CANDIDATES)
    (src_x, src_y), (tgt_x, tgt_y) = src.boxes[index][:2], tgt.boxes[index][:2]
    return _search_points(draws, src.rgb, src_solid, src_x, src_y, tgt.rgb, tgt_solid, tgt_x, tgt_y,
                          np.ascontiguousarray(matrix, np.float64), count, float(min_spacing)).astype(np.float64)


def _three_places(value: float) -> str:
    """`value` to three places, as Python's round(value, 3) gives it; a tiny negative prints "0.000", not "-0.000"."""
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


@register("drag", OPS)
def generate(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    width, height = cfg.width, cfg.height
    scene, _, background = random_collage(rng, assets, width, height, count=int(rng.integers(1, 5)))
    moved_index = int(rng.integers(len(scene.layers)))
    layer = scene.layers[moved_index]
    sprite_hw = layer.sprite.rgba.shape[:2]
    center = tuple(apply(layer.matrix, np.array([[(sprite_hw[1] - 1) / 2, (sprite_hw[0] - 1) / 2]]))[0].tolist())
    max_grow = assets.max_upscale / math.sqrt(abs(np.linalg.det(layer.matrix[:, :2])))
    for _ in range(8):
        transform = drag_transform(rng, cfg.op, center, width, height, max_grow)
        moved_matrix = compose(transform["matrix"], layer.matrix)
        if inside(sprite_bounds(sprite_hw, moved_matrix), width, height):
            break
    else:
        raise Reject("the dragged object would leave the canvas")

    target_scene = Scene(scene.background, list(scene.layers))
    target_scene.layers[moved_index] = moved_layer = Layer(layer.sprite, moved_matrix)
    # The layers under the moved one are drawn once, for both images, into the background itself (this
    # scene's own); the layers above are warped once for both, and a translated object is warped once.
    under = render(Scene(scene.background, scene.layers[:moved_index]), consume_base=True)
    warps = Warps()
    if cfg.op == "translate":
        warps.shifted(moved_layer, layer, int(transform["tx"]), int(transform["ty"]))
    tgt = render(target_scene, under, moved_index, warps=warps)
    src = render(scene, under, moved_index, consume_base=True, warps=warps)
    require_visible(src, 0.4)
    # above the moved object both images hold the same layers, so those are as visible as in the source
    require_visible(tgt, 0.4, layers=range(moved_index + 1))

    # Every pixel the object can have changed: its coverage before or after, unless hidden by layers above.
    # (Every layer is on the canvas: require_visible saw it.) Worked box by box with OpenCV's saturating
    # max/min: whole-canvas passes or numpy boolean assignment cost several times more. The mask cannot be
    # empty: the object's visible pixels have nothing opaque above them.
    mask = np.zeros((height, width), np.uint8)
    for rendered in (src, tgt):
        x0, y0, x1, y1 = rendered.boxes[moved_index]
        region = mask[y0:y1, x0:x1]
        cv2.max(region, cv2.threshold(rendered.crops[moved_index], 0, 255, cv2.THRESH_BINARY)[1], dst=region)
    for above in range(moved_index + 1, len(src.boxes)):  # fully opaque pixels of a layer above hide any change
        x0, y0, x1, y1 = src.boxes[above]
        region = mask[y0:y1, x0:x1]
        cv2.min(region, cv2.threshold(src.crops[above], 254, 255, cv2.THRESH_BINARY_INV)[1], dst=region)

    long_side = max(sprite_hw) * math.hypot(*layer.matrix[:, 0].tolist())
    pixels = pick_points(rng, src, tgt, moved_index, transform["matrix"], int(rng.integers(1, 6)),
                         0.12 * long_side)
    if len(pixels) == 0:
        raise Reject("no pixel of the object is visible and flat in both images")
    moved = apply(transform["matrix"], pixels)
    # a point next to a scale's or rotation's pivot barely moves: it would teach "drag by nothing"
    keep = np.hypot(*(moved - pixels).T) >= max(MIN_MOVE_PX, MIN_MOVE_FRACTION * min(width, height))
    if not keep.any():
        raise Reject("no drag point moves far enough")
    pixels, moved = pixels[keep], moved[keep]
    # Python floats, not numpy's: numpy rounds halves differently, and the prompt must match the json exactly.
    points = [[round(float(v), 6) for v in (x / width, y / height, (mx - x) / width, (my - y) / height)]
              for (x, y), (mx, my) in zip(pixels, moved)]

    listed = "; ".join("(" + ", ".join(_three_places(v) for v in p) + ")" for p in points)
    template_id, template = pick_template(rng, "drag", cfg.op, TEMPLATES[cfg.op])
    prompt = template.format(name=layer.name, points=listed, background=background)
    transform["matrix"] = np.round(transform["matrix"], 6).tolist()
    objects = placed_objects(target_scene, tgt)  # with each layer's placement in the target
    return Sample(
        op=cfg.op,
        images={"src": src.rgb, "tgt": tgt.rgb, "mask": mask},
        meta={"prompt": prompt, "objects": objects, "target_object": entry_of(objects, moved_index),
              "points": points, "transform": transform, "template_id": template_id,
              "background": background},
    )
