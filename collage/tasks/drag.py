"""drag: one object of a collage is translated, scaled or rotated; drag points say where its pixels went.

Labels are computed from the renders, not assumed: the mask is every pixel the object can have changed,
and each point is a pixel that shows the object alone (alpha 255, nothing above it) in both images, in a
flat patch of the sprite, so its colour in the source is its colour at (x + dx, y + dy) in the target.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..assets import AssetLibrary
from ..errors import Reject
from ..geometry import apply, compose, footprint, inside, similarity
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


def point_candidates(rendered: Rendered, index: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Bool crop + its (x0, y0): pixels showing layer `index` alone, EDGE_MARGIN px inside its edge, in a
    5×5 patch whose colour varies by at most FLAT_RANGE per channel. Worked on the layer's box only."""
    solid = rendered.solid_crop(index)
    if solid is None or not solid.any():
        return np.zeros((0, 0), bool), (0, 0)
    # The layer's box already holds a transparent margin (the warp's bounds round outwards), and eroding
    # treats the box edge as background, so points keep EDGE_MARGIN px from every edge either way.
    x0, y0 = rendered.boxes[index][:2]
    kernel = np.ones((2 * EDGE_MARGIN + 1,) * 2, np.uint8)
    inner = cv2.erode(solid.view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    patch = rendered.rgb[y0:y0 + solid.shape[0], x0:x0 + solid.shape[1]]
    window = np.ones((5, 5), np.uint8)
    spread = cv2.subtract(cv2.dilate(patch, window), cv2.erode(patch, window))
    widest = cv2.max(cv2.max(spread[..., 0], spread[..., 1]), spread[..., 2])
    return (inner > 0) & (widest <= FLAT_RANGE), (x0, y0)


def pick_points(rng: np.random.Generator, src_ok: tuple, tgt_ok: tuple, matrix: np.ndarray, count: int,
                min_spacing: float) -> np.ndarray:
    """Up to `count` source pixels (N, 2) whose image under `matrix` lands on a target candidate, spread apart."""
    (src_mask, (sx0, sy0)), (tgt_mask, (tx0, ty0)) = src_ok, tgt_ok
    ys, xs = np.nonzero(src_mask)
    if len(xs) == 0:
        return np.zeros((0, 2))
    # 1,024 draws (with replacement) stand in for a full shuffle of every candidate pixel, at a fraction of
    # the cost; repeats fall to the spacing filter below.
    order = rng.integers(0, len(xs), size=min(len(xs), 1024))
    pts = np.stack([xs[order] + sx0, ys[order] + sy0], axis=1).astype(np.float64)
    moved = np.rint(apply(matrix, pts)).astype(int) - (tx0, ty0)
    h, w = tgt_mask.shape
    valid = (moved[:, 0] >= 0) & (moved[:, 0] < w) & (moved[:, 1] >= 0) & (moved[:, 1] < h)
    valid[valid] = tgt_mask[moved[valid, 1], moved[valid, 0]]
    candidates = pts[valid][:512]  # already in random order: more only cost time
    chosen: list[np.ndarray] = []
    while len(candidates) and len(chosen) < count:
        chosen.append(candidates[0])
        # keep only candidates at least min_spacing from the point just taken
        candidates = candidates[np.hypot(*(candidates - candidates[0]).T) >= min_spacing]
    return np.array(chosen).reshape(-1, 2)


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
        if inside(footprint(sprite_hw, moved_matrix), width, height):
            break
    else:
        raise Reject("the dragged object would leave the canvas")

    target_scene = Scene(scene.background, list(scene.layers))
    target_scene.layers[moved_index] = Layer(layer.sprite, moved_matrix)
    warps: dict = {}  # layers above the moved one are warped once for both images
    if moved_index == 0:
        src, tgt = render(scene, warps=warps), render(target_scene, warps=warps)
    else:  # the layers under the moved one are drawn once, for both images
        under = render(Scene(scene.background, scene.layers[:moved_index]))
        tgt = render(target_scene, under, moved_index, warps=warps)
        src = render(scene, under, moved_index, consume_base=True, warps=warps)
    require_visible(src, 0.4)
    require_visible(tgt, 0.4)

    # Every pixel the object can have changed: its coverage before or after, unless hidden by layers above.
    mask = np.zeros((height, width), bool)
    for rendered in (src, tgt):
        if rendered.boxes[moved_index] is not None:
            x0, y0, x1, y1 = rendered.boxes[moved_index]
            mask[y0:y1, x0:x1] |= rendered.crops[moved_index] > 0
    mask &= ~src.covered_above(moved_index)
    if not mask.any():
        raise Reject("nothing changed")

    long_side = max(sprite_hw) * float(np.hypot(*layer.matrix[:, 0]))
    pixels = pick_points(rng, point_candidates(src, moved_index), point_candidates(tgt, moved_index),
                         transform["matrix"], int(rng.integers(1, 6)), 0.12 * long_side)
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
        images={"src": src.rgb, "tgt": tgt.rgb, "mask": mask.astype(np.uint8) * 255},
        meta={"prompt": prompt, "objects": objects_json(target_scene, tgt), "target_object": moved_index,
              "points": points, "transform": transform},
    )
