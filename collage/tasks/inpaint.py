"""inpaint: fill a hole (`inpaint`) or extend the image past its edges (`outpaint`).

The target is a whole image: a collage on a background, or a plain background crop (a photo when the
library has photos). The mask (255 = hole) is drawn hard-edged (no anti-aliasing), and the source is
the target with every hole pixel set to HOLE_FILL, a constant mid gray, so outside the hole the source
equals the target exactly (before encoding) and inside it holds no trace of the target.

The prompt (TEMPLATES per op, one drawn per sample by its rng: json `template_id`, "inpaint.<op>.<k>")
says which edges an outpaint extends, then always what the full image shows: the objects of a collage
on its background ("… a cat and an owl on a blue checkerboard"), or the background alone ("a photo of a
cat"). Then it names each object the hole hides at least HIDDEN_MIN_SHARE of (of its visible pixels,
and at least 16 px): "the <name> completely" when every visible pixel is under the hole, else how much
and which part: "the lower half of the bed", "most of the cat (its top left)" (PART_WORDS by the
hidden share; the side from where the hidden pixels' centre lies from the visible pixels' centre, in
shares of the visible box). json `hidden`: [{"id", "name", "fraction", "complete", "part"}] (fraction =
hidden / visible pixels, rounded to 4 places), `hidden_objects`: their ids.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..assets import AssetLibrary
from ..errors import Reject
from ..palette import PALETTE
from ..render import render
from ..sample import Sample
from . import GenConfig, register
from .. import words
from .common import describe_background, pick_template, random_collage, require_visible
from .labels import placed_objects, top_layer_index

OPS = ("inpaint", "outpaint")
INPAINT_KINDS = ("scribble", "blob", "block")
# The palette's gray (128, 128, 128): 0 after the usual [-1, 1] scaling, plainly not content, and with
# equal channels the fill is a memset.
HOLE_FILL = PALETTE["gray"]
assert len(set(HOLE_FILL)) == 1, "the hole fill is a memset: keep its channels equal"
COVERAGE = (0.03, 0.6)  # a hole covers this share of the canvas
COLLAGE_SHARE = 0.7  # the rest are plain background crops
HIDDEN_MIN_SHARE = 0.05
SIDES = ("left", "right", "top", "bottom")
PART_WORDS = ((0.2, "a small part"), (0.4, "part"), (0.6, "about half"), (0.85, "most"), (1.0, "nearly all"))
SIDE_SHIFT = 0.12  # the hidden pixels' centre lies this share of the visible box off its centre to name a side
HALVES = {"top": "upper", "bottom": "lower", "left": "left", "right": "right"}
SIDE_WORDS = {"left": "left side", "right": "right side"}
# Fields: {sides} "left and top", {edges} "edge"/"edges", {bands} "band"/"bands". Each instruction is one
# sentence starting "Fill in the gray area" / "Extend the image past": the trainer (train/conditioning.py,
# split_instruction) takes the first sentence as the instruction and its tests expect those openings.
TEMPLATES = {
    "inpaint": ("Fill in the gray area of the image.",
                "Fill in the gray area so that the picture is whole again.",
                "Fill in the gray area with what belongs there.",
                "Fill in the gray area, matching the rest of the image."),
    "outpaint": ("Extend the image past its {sides} {edges}, filling the gray {bands}.",
                 "Extend the image past its {sides} {edges} into the gray {bands}.",
                 "Extend the image past its {sides} {edges}, continuing the picture into the gray {bands}."),
}


def scribble_mask(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A few thick random-walk strokes."""
    mask = np.zeros((height, width), np.uint8)
    side = min(width, height)
    for _ in range(int(rng.integers(1, 5))):
        count = int(rng.integers(4, 11))
        start = rng.uniform((0, 0), (width, height))
        angles = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.9, count))
        steps = rng.uniform(0.06, 0.2, count)[:, None] * side * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        points = np.vstack([start, start + np.cumsum(steps, axis=0)])
        thickness = max(2, int(rng.uniform(0.02, 0.07) * side))
        cv2.polylines(mask, [np.round(points).astype(np.int32)], False, 255, thickness, lineType=cv2.LINE_8)
    return mask


def blob_mask(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """One to three smooth star-shaped blobs: a circle whose radius wobbles with a few low harmonics."""
    mask = np.zeros((height, width), np.uint8)
    side = min(width, height)
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    for _ in range(int(rng.integers(1, 4))):
        radius = np.ones_like(theta)
        for k in range(2, 6):
            radius += rng.uniform(0, 0.25 / k * 2) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
        rx, ry = rng.uniform(0.08, 0.3, 2) * side
        center = rng.uniform((0.1 * width, 0.1 * height), (0.9 * width, 0.9 * height))
        points = center + radius[:, None] * np.stack([rx * np.cos(theta), ry * np.sin(theta)], axis=1)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 255, lineType=cv2.LINE_8)
    return mask


def block_mask(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """One to three axis-aligned rectangles."""
    mask = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        w, h = int(rng.uniform(0.12, 0.5) * width), int(rng.uniform(0.12, 0.5) * height)
        x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        mask[y0:y0 + h, x0:x0 + w] = 255
    return mask


def edge_mask(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[str]]:
    """Bands along one or more image edges, each 10–50 % of the canvas across; a third of it stays known."""
    while True:
        sides = [s for s in SIDES if rng.random() < 0.4]
        if sides:
            break
    share = {s: rng.uniform(0.1, 0.5) for s in sides}
    # Opposite bands may not eat the whole image: keep at least 30 % of each axis.
    for a, b in (("left", "right"), ("top", "bottom")):
        both = share.get(a, 0) + share.get(b, 0)
        if both > 0.7:
            for s in (a, b):
                if s in share:
                    share[s] *= 0.7 / both
    mask = np.zeros((height, width), np.uint8)
    for s in sides:
        across = width if s in ("left", "right") else height
        n = max(1, int(round(share[s] * across)))
        if s == "left":
            mask[:, :n] = 255
        elif s == "right":
            mask[:, width - n:] = 255
        elif s == "top":
            mask[:n] = 255
        else:
            mask[height - n:] = 255
    return mask, sides


def hidden_part(seen: np.ndarray, under: np.ndarray, name: str) -> tuple[float, bool, str]:
    """(hidden share, hidden completely?, phrase) for an object whose visible pixels are `seen` (bool, over
    its box), of which `under` lie in the hole."""
    total, hidden = int(np.count_nonzero(seen)), int(np.count_nonzero(under))
    if hidden == total:
        return 1.0, True, f"the {name} completely"
    share = hidden / total
    amount = next(word for limit, word in PART_WORDS if share < limit)
    ys, xs = np.nonzero(seen)
    hy, hx = np.nonzero(under)
    width, height = max(int(xs.max() - xs.min()) + 1, 1), max(int(ys.max() - ys.min()) + 1, 1)
    dx, dy = (hx.mean() - xs.mean()) / width, (hy.mean() - ys.mean()) / height
    vertical = ("top" if dy < 0 else "bottom") if abs(dy) >= SIDE_SHIFT else ""
    horizontal = ("left" if dx < 0 else "right") if abs(dx) >= SIDE_SHIFT else ""
    if vertical and horizontal and max(abs(dx), abs(dy)) > 2 * min(abs(dx), abs(dy)):
        vertical, horizontal = (vertical, "") if abs(dy) > abs(dx) else ("", horizontal)
    side = f"{vertical} {horizontal}".strip()
    if amount == "about half" and side in HALVES:
        return share, False, f"the {HALVES[side]} half of the {name}"
    if side:
        return share, False, f"{amount} of the {name} (its {SIDE_WORDS.get(side, side)})"
    return share, False, f"{amount} of the {name}" + (" (its middle)" if share < 0.6 else "")


def draw_hole(rng: np.random.Generator, op: str, width: int, height: int) -> tuple[np.ndarray, str, list[str]]:
    """(mask, mask_kind, sides) with the hole's coverage inside COVERAGE."""
    for _ in range(16):
        sides: list[str] = []
        if op == "outpaint":
            kind = "edge"
            mask, sides = edge_mask(rng, width, height)
        else:
            kind = INPAINT_KINDS[int(rng.integers(len(INPAINT_KINDS)))]
            mask = {"scribble": scribble_mask, "blob": blob_mask, "block": block_mask}[kind](rng, width, height)
        coverage = cv2.countNonZero(mask) / (width * height)
        if COVERAGE[0] <= coverage <= COVERAGE[1]:
            return mask, kind, sides
    raise Reject("no hole of a usable size")


@register("inpaint", OPS)
def generate(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    if cfg.op not in OPS:
        raise ValueError(f"unknown inpaint op {cfg.op!r}")
    width, height = cfg.width, cfg.height
    objects: list[dict] = []
    hidden: list[dict] = []
    if rng.random() < COLLAGE_SHARE:
        scene, _, background = random_collage(rng, assets, width, height, count=int(rng.integers(1, 5)))
        rendered = render(scene)
        require_visible(rendered, 0.4)
        tgt = rendered.rgb
        objects = placed_objects(scene, rendered)
    elif (row := assets.random_photo(rng, width, height)) is not None:  # one that fits within max_upscale
        tgt = assets.photo(rng, row["id"], width, height)
        background = words.photo_phrase(row["name"])
    else:
        asset_id, tgt = assets.background(rng, width, height)
        background = describe_background(assets, asset_id, tgt)

    mask, kind, sides = draw_hole(rng, cfg.op, width, height)
    # numpy's boolean assignment of an RGB triple is ~70x slower than cv2's masked copy.
    src = tgt.copy()
    cv2.copyTo(np.full_like(tgt, HOLE_FILL[0]), mask, src)

    if objects:
        shown = top_layer_index(rendered)
        for entry in objects:
            x0, y0, x1, y1 = entry["bbox"]
            seen = shown[y0:y1, x0:x1] == entry["id"]
            under = cv2.countNonZero(cv2.bitwise_and(mask[y0:y1, x0:x1], seen.view(np.uint8)))
            if under >= max(16, HIDDEN_MIN_SHARE * cv2.countNonZero(seen.view(np.uint8))):
                share, complete, part = hidden_part(seen, seen & (mask[y0:y1, x0:x1] > 0), entry["name"])
                hidden.append({"id": entry["id"], "name": entry["name"], "fraction": round(share, 4),
                               "complete": complete, "part": part})

    count = len(sides)
    template_id, template = pick_template(rng, "inpaint", cfg.op, TEMPLATES[cfg.op])
    prompt = template.format(sides=words.join_words(sides), edges=words.plural("edge") if count > 1 else "edge",
                             bands=words.plural("band") if count > 1 else "band")
    if objects:
        shown_objects = words.join_words([words.with_article(o["name"]) for o in objects])
        prompt += f" The full image shows {shown_objects} on {background}."
        if hidden:
            prompt += f" The gray area hides {words.join_words([h['part'] for h in hidden])}."
    else:
        prompt += f" The full image is {background}."
    return Sample(
        op=cfg.op,
        images={"src": src, "tgt": tgt, "mask": mask},
        meta={"prompt": prompt, "objects": objects, "mask_kind": kind, "sides": sides, "fill": list(HOLE_FILL),
              "hidden": hidden, "hidden_objects": [h["id"] for h in hidden], "template_id": template_id,
              "background": background},
    )
