"""segdet: segment or detect one named object of a collage by painting on it.

The source is the plain collage. `segment`: the target recolours exactly the object's visible region
(the renderer's `visible` rule: its alpha reaches VISIBLE_ALPHA and no layer above does) with a named
palette colour. `detect`: the target draws the object's tight box (of those visible pixels) as a frame
BOX_WIDTH thick lying just inside the box, so the frame's outer edge is the box the json states.

The colour is one the source image does not contain anywhere (exact RGB), so in the target the pixels of
that colour are exactly the painted ones, and it stands out from most of the pixels it covers.
json `boxes`: [[x0, y0, x1, y1]] normalised by width and height (x1, y1 exclusive), `color`: [r, g, b].
`target_object` is the named object's `objects` entry. Prompts: TEMPLATES per op, one drawn per sample by
its rng (json `template_id`, "segdet.<op>.<k>"), with articles and pronouns from `collage.words`.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..assets import AssetLibrary
from ..errors import Reject
from ..palette import NAMES, PALETTE
from ..render import render
from ..sample import Sample
from . import GenConfig, register
from .. import words
from .common import entry_of, pick_template, random_collage, require_visible
from .labels import placed_objects

OPS = ("segment", "detect")
MIN_VISIBLE = 0.6  # the named object shows at least this share of itself
MIN_BOX_SIDE = 12
# Fields: {name}, {colour}, {a_colour_box} ("an orange box"), {it} ("it" / "them").
TEMPLATES = {
    "segment": ("Segment the {name}: paint {it} {colour}.",
                "Paint the {name} {colour}.",
                "Color every visible pixel of the {name} {colour}.",
                "Fill the {name} with solid {colour}."),
    "detect": ("Detect the {name}: draw {a_colour_box} around {it}.",
               "Draw {a_colour_box} around the {name}.",
               "Find the {name} and frame {it} with {a_colour_box}.",
               "Mark the {name} with {a_colour_bounding_box}."),
}


def box_width(width: int, height: int) -> int:
    return max(4, round(0.01 * min(width, height)))  # 4:2:0 JPEG halves chroma: a 2 px frame loses its colour


def present(image: np.ndarray, colour: tuple[int, int, int]) -> bool:
    """Whether any pixel of the RGB image has exactly this colour."""
    return cv2.countNonZero(cv2.inRange(image, colour, colour)) > 0


PIXEL_DISTANCE, FAR_SHARE = 100.0, 0.8  # the paint differs by this much (RGB) from this share of what it covers


def paint_colour(rng: np.random.Generator, image: np.ndarray, under: np.ndarray) -> str:
    """A palette colour, drawn evenly among those the image lacks exactly and that stand out from at least
    FAR_SHARE of the pixels they cover. (Against the covered pixels' mean colour, as before, gray was almost
    never far enough: 0 of 300 samples; pixel by pixel it stands out from most objects.)"""
    flat = under.reshape(-1, 3)
    pixels = flat[:: max(1, len(flat) // 1024)].astype(np.int32)
    for i in rng.permutation(len(NAMES)):  # the first of a random order that qualifies: an even draw of the pool
        colour = NAMES[i]
        far = ((pixels - np.int32(PALETTE[colour])) ** 2).sum(axis=1) >= PIXEL_DISTANCE ** 2
        if far.mean() >= FAR_SHARE and not present(image, PALETTE[colour]):
            return colour
    raise Reject("no palette colour the image lacks stands out from the object")


@register("segdet", OPS)
def generate(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    if cfg.op not in OPS:
        raise ValueError(f"unknown segdet op {cfg.op!r}")
    width, height = cfg.width, cfg.height
    scene, _, background = random_collage(rng, assets, width, height, count=int(rng.integers(1, 5)), max_overlap=0.2)
    src = render(scene)
    require_visible(src, 0.4)
    index = int(rng.integers(len(scene.layers)))
    layer = scene.layers[index]
    objects = placed_objects(scene, src)
    entry = entry_of(objects, index)
    x0, y0, x1, y1 = entry["bbox"]
    bx0, by0 = src.boxes[index][:2]
    region = src.visible_crop(index)[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
    if src.visible_count(index) < MIN_VISIBLE * src.coverage(index) or min(x1 - x0, y1 - y0) < MIN_BOX_SIDE:
        raise Reject("the named object is too hidden or too small")

    tgt = src.rgb.copy()
    if cfg.op == "segment":
        # Far from the object's own colours, so the recolouring is plain to see.
        own = src.rgb[y0:y1, x0:x1][region]
        colour = paint_colour(rng, src.rgb, own)
        paint = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        paint[:] = PALETTE[colour]
        cv2.copyTo(paint, region.view(np.uint8), tgt[y0:y1, x0:x1])
    else:
        t = min(box_width(width, height), (x1 - x0) // 2, (y1 - y0) // 2)
        bands = ((slice(y0, y0 + t), slice(x0, x1)), (slice(y1 - t, y1), slice(x0, x1)),
                 (slice(y0, y1), slice(x0, x0 + t)), (slice(y0, y1), slice(x1 - t, x1)))
        # Far from what the frame covers, so the box stands out from the object and background under it.
        under = np.concatenate([src.rgb[ys, xs].reshape(-1, 3) for ys, xs in bands])
        colour = paint_colour(rng, src.rgb, under)
        for ys, xs in bands:
            tgt[ys, xs] = PALETTE[colour]
    box = [round(x0 / width, 6), round(y0 / height, 6), round(x1 / width, 6), round(y1 / height, 6)]
    template_id, template = pick_template(rng, "segdet", cfg.op, TEMPLATES[cfg.op])
    prompt = template.format(name=layer.name, colour=colour, it=words.pronoun(layer.name),
                             a_colour_box=words.a_or_an(f"{colour} box"),
                             a_colour_bounding_box=words.a_or_an(f"{colour} bounding box"))
    return Sample(
        op=cfg.op,
        images={"src": src.rgb, "tgt": tgt},
        meta={"prompt": prompt, "objects": objects, "target_object": entry, "boxes": [box],
              "color": list(PALETTE[colour]), "color_name": colour, "template_id": template_id,
              "background": background},
    )
