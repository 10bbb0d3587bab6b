"""reference: generate an image from a condition map (`canny`, `depth`, `seg`) or a subject (`subject`).

All condition maps are computed from the target's own pixels or its exact layers, never drawn apart:
- canny: `cv2.Canny` of the target's grey image with the thresholds the json states.
- depth: for a collage, exact layered depth from z-order (L, 255 = near): each pixel takes the level of
  the layer it shows (the renderer's `visible` rule), the background is 0.
- seg: each object's visible pixels painted in its own palette colour, the background black; the
  json's legend maps every colour to its object.
- subject: the source is a collage of several objects; the target shows one of them (same sprite,
  new pose) in a new scene with new companions, and the prompt names it.

Photos (as DreamOmni does it): `--option source=collage|photos|mixed` makes canny/depth/seg samples whose target
is a background photo alone (`objects` is []; subject stays a collage): photos makes every such sample a photo,
mixed PHOTO_SHARE of them, collage none. Without `source`, an op whose model option is given mixes photos in at
PHOTO_SHARE (what `depth_model` always did) and the others are collages. On a photo:
- canny: `cv2.Canny` of its grey image, thresholds chosen per photo for a drawn edge density (CANNY_PHOTO_*);
  the json states them, the density aimed at and the one reached.
- depth: a local transformers depth-estimation model's relative depth (`--option depth_model=/local/path`).
- seg: a local transformers semantic-segmentation model's classes (`--option seg_model=/local/path`), each class
  in its own palette colour from the largest down, with a legend of exactly the colours in the map; background-like
  classes, those under SEG_MIN_SHARE of the pixels and those past the palette are black (legend "background",
  or "other" with the classes it holds).
A photo op without its model is refused at run-config validation (`check_options`); models are loaded and run
by `photo_models` (never downloaded, once per worker, on CPU).

Prompts: TEMPLATES per op (PHOTO_TEMPLATES for a photo), one drawn per sample by its rng (json `template_id`,
"reference.<op>.<k>", "reference.<op>.photo.<k>"). They name the objects with their articles
(`collage.words`) and what the background shows; a depth prompt lists several objects "from back to front",
one object plainly; a photo's prompt names what the photo shows (`words.photo_phrase`).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..assets import AssetLibrary
from ..errors import Reject, UserError
from ..geometry import Footprints, place
from ..palette import PALETTE
from ..render import Layer, Rendered, Scene, render
from ..sample import Sample
from . import GenConfig, register
from .. import words
from .common import draw_background, pick_template, random_collage, require_visible
from .labels import object_entry, placed_objects, top_layer_index
from .photo_models import (DEPTH_MODEL_OPTION, SEG_MODEL_OPTION, check_depth_model, check_seg_model,  # noqa: F401
                           estimate_depth, load_depth_model, model_name, model_outputs_distance, segment)

OPS = ("canny", "depth", "seg", "subject")
CANNY_LOW = (40, 120)  # the low threshold is drawn from this range, the high one is 1.5–3× it
CANNY_KEEP = 0.5  # every named object keeps at least this share of its outline in the edge map
CANNY_STEP, CANNY_TRIES = 0.7, 6  # else both thresholds are lowered by this factor, at most this often
SOURCE_OPTION, SOURCES = "source", ("collage", "photos", "mixed")
PHOTO_OPS = ("canny", "depth", "seg")  # subject is always a collage
MODEL_OPTIONS = {"depth": DEPTH_MODEL_OPTION, "seg": SEG_MODEL_OPTION}  # the ops whose photo maps need a model
PHOTO_SHARE = 0.5  # share of photo samples under source=mixed, and for an op whose model is given without `source`
PHOTO_DEPTH_SHARE = PHOTO_SHARE  # the name before `source` existed
# A photo's canny thresholds follow its edge density: a target share of edge pixels and a ratio are drawn per
# sample, and the low threshold is the smallest integer in CANNY_PHOTO_LOW whose map (high = round(low · ratio))
# has at most that share (the top of the range when none has); the map is kept when its share of edge pixels lies
# in CANNY_PHOTO_KEEP (below: a blank photo; above: texture noise), else the sample is redrawn.
CANNY_PHOTO_DENSITY = (0.04, 0.10)
CANNY_PHOTO_RATIO = (2.0, 3.0)
CANNY_PHOTO_LOW = (20, 400)  # ≥ 20 keeps sensor noise and JPEG blocking of flat skies out of the map
CANNY_PHOTO_KEEP = (0.005, 0.15)
# Model segmentation of a photo: classes are coloured from the largest down; those under this share of the pixels,
# those past the SEG_COLOURS, and background-like classes (SEG_UNLABELLED) are painted SEG_BACKGROUND.
SEG_MIN_SHARE = 0.005
SEG_UNLABELLED = frozenset({"background", "unlabeled", "unlabelled", "void", "other", "others", "ignore", "none"})
DEPTH_NEAREST_RANGE = (64, 255)  # layer levels run evenly from just above the first value to the second
SEG_BACKGROUND = (0, 0, 0)
SEG_COLOURS = tuple(n for n in PALETTE if n not in ("black", "gray"))  # far from the black background
# Fields: {scene} "a cat and an owl on a blue checkerboard" (depth, several objects: "a cat and an owl,
# from back to front, on …"), {legend} "red is the cat, … and black is the background (…)", {the_subject},
# {context} "on <background>[, together with <companions>]", {photo} what a photo shows.
TEMPLATES = {
    "canny": ("Generate an image from this canny edge map: {scene}.",
              "Canny edges to image: {scene}.",
              "Render the picture these edges outline: {scene}."),
    "depth": ("Generate an image from this depth map: {scene}.",
              "Depth map to image: {scene}.",
              "Render a picture with this depth layout: {scene}."),
    "seg": ("Generate an image from this segmentation map: {legend}.",
            "Segmentation map to image: {legend}.",
            "Paint a picture that follows this segmentation map, where {legend}."),
    "subject": ("Show {the_subject} from the reference image {context}.",
                "Place the same {subject} as in the reference image {context}.",
                "{The_subject} from the reference picture, now {context}."),
}
PHOTO_DEPTH_TEMPLATES = ("Generate {photo} from this depth map.",
                         "Depth map to image: {photo}.",
                         "Render {photo} with this depth layout.")
# Photo samples ("reference.<op>.photo.<k>"): {photo} what the photo shows; {legend} "red is the sky, … and black
# is the background" (or "black is everything else" when smaller classes are folded into it).
PHOTO_TEMPLATES = {
    "canny": ("Generate {photo} from this canny edge map.",
              "Canny edges to image: {photo}.",
              "Render {photo} that these edges outline."),
    "depth": PHOTO_DEPTH_TEMPLATES,
    "seg": ("Generate {photo} from this segmentation map, where {legend}.",
            "Segmentation map to image: {photo}, where {legend}.",
            "Paint {photo} that follows this segmentation map: {legend}."),
}


# --- photos -----------------------------------------------------------------------------------------------

def photo_share(op: str, options) -> float:
    """Share of `op`'s samples that are background photos under the run's options (see SOURCES)."""
    source = options.get(SOURCE_OPTION)
    if op not in PHOTO_OPS or source == "collage":
        return 0.0
    if source is None:  # as before `source` existed: an op whose model is given mixes photos in
        return PHOTO_SHARE if options.get(MODEL_OPTIONS.get(op, "")) else 0.0
    return 1.0 if source == "photos" else PHOTO_SHARE


def check_options(ops: tuple[str, ...], options) -> None:
    """Run-config validation of the options together: a photo op needs its model; collage needs none."""
    source = options.get(SOURCE_OPTION)
    if source == "collage":
        for option in MODEL_OPTIONS.values():
            if option in options:
                raise UserError(f"option {option} has no use with source=collage (collage maps come from exact layers): "
                                "drop it, or use source=mixed or source=photos")
    if source in ("photos", "mixed"):
        for op, option in MODEL_OPTIONS.items():
            if op in ops and option not in options:
                kind = "depth-estimation" if op == "depth" else "semantic-segmentation"
                others = ",".join(o for o in ops if o != op) or "canny"
                raise UserError(f"option source={source} makes reference/{op} maps of photos with a local model: add "
                                f"--option {option}=/path/to/model (a transformers {kind} model saved with "
                                f"save_pretrained), or leave {op} out (--ops {others})")


def use_photo(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> bool:
    """Whether this sample is a photo sample (draws from rng only under a share strictly between 0 and 1)."""
    share = photo_share(cfg.op, cfg.options)
    if share <= 0:
        return False
    if not assets.photos:
        if cfg.options.get(SOURCE_OPTION) is None:  # as before: no photos, collage maps only
            return False
        raise UserError(f"option source={cfg.options[SOURCE_OPTION]} needs background photos, but the asset library "
                        "has none: import some with `collage assets import --kind background --folder …`")
    return share >= 1 or rng.random() < share


def draw_photo(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> tuple[dict, np.ndarray]:
    """A photo large enough for the canvas within max_upscale, cropped to it (Reject if the library has none)."""
    row = assets.random_photo(rng, cfg.width, cfg.height)
    if row is None:
        raise Reject(f"no photo is large enough for {cfg.width}x{cfg.height} within max_upscale")
    return row, assets.photo(rng, row["id"], cfg.width, cfg.height)


def photo_prompt(rng: np.random.Generator, op: str, row: dict, **fields: str) -> tuple[str, str]:
    """(template id "reference.<op>.photo.<k>", prompt) naming what the photo shows."""
    templates = PHOTO_TEMPLATES[op]
    k = int(rng.integers(len(templates)))
    prompt = words.sentence_case(templates[k].format(photo=words.photo_phrase(row["name"]), **fields))
    return f"reference.{op}.photo.{k}", prompt


def photo_canny(rng: np.random.Generator, gray: np.ndarray) -> tuple[np.ndarray, dict]:
    """The photo's edge map and its `condition` (thresholds chosen for a drawn edge density, see CANNY_PHOTO_*)."""
    target = round(float(rng.uniform(*CANNY_PHOTO_DENSITY)), 4)  # rounded as the json states it: the search is exact
    ratio = round(float(rng.uniform(*CANNY_PHOTO_RATIO)), 3)  # rounded as the json states it: high is exact

    def at(low: int) -> tuple[np.ndarray, float]:
        edges = cv2.Canny(gray, low, int(round(low * ratio)))
        return edges, cv2.countNonZero(edges) / edges.size

    lo, hi = CANNY_PHOTO_LOW
    best = at(lo)
    if best[1] > target:
        # Raising both thresholds only removes edges (fewer candidates, fewer seeds): bisect for the first low
        # threshold whose map has at most the target share. `lo` is always over it; `hi` at or under, or the top.
        top = at(hi)
        if top[1] > target:
            lo, best = hi, top
        else:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                edges = at(mid)
                if edges[1] > target:
                    lo = mid
                else:
                    hi, top = mid, edges
            lo, best = hi, top
    edges, density = best
    if not CANNY_PHOTO_KEEP[0] <= density <= CANNY_PHOTO_KEEP[1]:
        raise Reject(f"a photo's edge map covers {density:.1%} of it, outside {CANNY_PHOTO_KEEP}")
    return edges, {"low": lo, "high": int(round(lo * ratio)), "ratio": ratio, "target_density": target,
                   "density": round(density, 6)}


def photo_canny_sample(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    row, photo = draw_photo(rng, assets, cfg)
    edges, thresholds = photo_canny(rng, cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY))
    template_id, prompt = photo_prompt(rng, "canny", row)
    return Sample(cfg.op, {"tgt": photo, "cond": edges},
                  {"prompt": prompt, "objects": [], "template_id": template_id,
                   "background": words.photo_phrase(row["name"]),
                   "condition": {"kind": "canny", "input": "gray", **thresholds, "source": "photo",
                                 "photo": row["id"]}})


def photo_depth_sample(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    model_path = cfg.options[DEPTH_MODEL_OPTION]
    row, photo = draw_photo(rng, assets, cfg)
    depth = estimate_depth(photo, model_path)
    template_id, prompt = photo_prompt(rng, "depth", row)
    return Sample(cfg.op, {"tgt": photo, "cond": depth},
                  {"prompt": prompt, "objects": [], "template_id": template_id,
                   "background": words.photo_phrase(row["name"]),
                   "condition": {"kind": "depth", "source": "model", "model": model_name(model_path), "near": 255,
                                 "photo": row["id"]}})


def class_name(label: str, class_id: int) -> str:
    """The prompt's name of a model class: the label's first synonym ("building;edifice" → "building")."""
    name = label.split(";")[0].split(",")[0].replace("_", " ").strip().lower()
    return " ".join(name.split()) or f"class {class_id}"


def photo_seg_sample(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    model_path = cfg.options[SEG_MODEL_OPTION]
    row, photo = draw_photo(rng, assets, cfg)
    labels, id2label = segment(photo, model_path)
    labels = np.where(labels < 0, -1, labels)  # a model's ignore index (if any) is unlabelled
    classes, counts = np.unique(labels, return_counts=True)
    named, folded = [], []
    for c, n in sorted(zip(classes.tolist(), counts.tolist()), key=lambda cn: (-cn[1], cn[0])):
        label = id2label.get(c, f"class {c}") if c >= 0 else "unlabelled"
        unlabelled = c < 0 or class_name(label, c) in SEG_UNLABELLED
        (folded if unlabelled or n < SEG_MIN_SHARE * labels.size or len(named) >= len(SEG_COLOURS)
         else named).append((c, n, label))
    if not named:
        raise Reject("the segmentation model found no class to colour in the photo")
    colours = [SEG_COLOURS[int(i)] for i in rng.permutation(len(SEG_COLOURS))[: len(named)]]
    table = np.zeros((int(classes.max()) + 2, 3), np.uint8)  # row c + 1 is class c; row 0 is −1
    table[:] = SEG_BACKGROUND
    legend = []
    for (c, n, label), colour in zip(named, colours):
        table[c + 1] = PALETTE[colour]
        legend.append({"class_id": c, "name": class_name(label, c), "label": label, "color": list(PALETTE[colour]),
                       "color_name": colour, "share": round(n / labels.size, 6)})
    seg = table[labels + 1]
    said = [f"{e['color_name']} {words.be(e['name'])} the {e['name']}" for e in legend]
    if folded:
        only_background = all(c < 0 or class_name(label, c) in SEG_UNLABELLED for c, _, label in folded)
        legend.append({"class_id": None, "name": "background" if only_background else "other", "label": None,
                       "color": list(SEG_BACKGROUND), "color_name": "black",
                       "share": round(sum(n for _, n, _ in folded) / labels.size, 6),
                       "classes": [{"class_id": c, "label": label} for c, _, label in folded]})
        said.append("black is the background" if only_background else "black is everything else")
    template_id, prompt = photo_prompt(rng, "seg", row, legend=words.join_words(said))
    return Sample(cfg.op, {"tgt": photo, "cond": seg},
                  {"prompt": prompt, "objects": [], "template_id": template_id,
                   "background": words.photo_phrase(row["name"]),
                   "condition": {"kind": "seg", "source": "model", "model": model_name(model_path),
                                 "photo": row["id"], "min_share": SEG_MIN_SHARE, "legend": legend}})


# --- condition maps from exact layers -----------------------------------------------------------------

def layer_levels(count: int) -> list[int]:
    """Depth level of each layer, bottom to top: evenly spaced in (DEPTH_NEAREST_RANGE], the top at 255."""
    lo, hi = DEPTH_NEAREST_RANGE
    return [int(round(lo + (hi - lo) * (i + 1) / count)) for i in range(count)]


def lookup(shown: np.ndarray, table: np.ndarray) -> np.ndarray:
    """table[shown + 1] for a layer-index map (−1 = background): one cv2 LUT pass (L or RGB out)."""
    index = (shown + 1).astype(np.uint8)
    lut = np.zeros((256,) + table.shape[1:], np.uint8)
    lut[: len(table)] = table
    if table.ndim == 1:
        return cv2.LUT(index, lut)
    # One single-channel LUT per colour channel, then merge: twice as fast as a 3-channel LUT.
    return cv2.merge([cv2.LUT(index, np.ascontiguousarray(lut[:, c])) for c in range(table.shape[1])])


def prompt_scene(objects: list[dict], background: str, back_to_front: bool = False) -> str:
    """ "a cat and an owl on a photo of a cat"; with `back_to_front` and several objects "…, from back to front, on …"."""
    listed = words.join_words([words.with_article(o["name"]) for o in objects])
    order = ", from back to front," if back_to_front and len(objects) > 1 else ""
    return f"{listed}{order} on {background}"


def collage(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig,
            count: tuple[int, int] = (1, 6)) -> tuple[Scene, Rendered, str]:
    scene, _, background = random_collage(rng, assets, cfg.width, cfg.height, count=int(rng.integers(*count)),
                                          max_overlap=0.25)
    rendered = render(scene)
    require_visible(rendered, 0.4)
    return scene, rendered, background


def object_outline(rendered, index: int) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """(box, boundary pixels of layer `index`'s visible region over that box), or None when none show."""
    visible = rendered.visible_crop(index)
    if visible is None or not visible.any():
        return None
    inside = visible.astype(np.uint8)
    edge = inside & ~cv2.erode(inside, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return tuple(rendered.boxes[index]), edge.astype(bool)


def outline_kept(edges: np.ndarray, outline) -> float:
    """Share of an object_outline with an edge of `edges` within 2 px (1 for an object that does not show)."""
    if outline is None:
        return 1.0
    (x0, y0, x1, y1), boundary = outline
    near = cv2.dilate(edges[y0:y1, x0:x1], np.ones((5, 5), np.uint8)) > 0
    return float(np.count_nonzero(boundary & near)) / max(1, int(np.count_nonzero(boundary)))


def canny_sample(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    if use_photo(rng, assets, cfg):
        return photo_canny_sample(rng, assets, cfg)
    scene, rendered, background = collage(rng, assets, cfg)
    low = int(rng.integers(*CANNY_LOW))
    high = int(round(low * rng.uniform(1.5, 3.0)))
    gray = cv2.cvtColor(rendered.rgb, cv2.COLOR_RGB2GRAY)
    objects = placed_objects(scene, rendered)
    outlines = [object_outline(rendered, o["id"]) for o in objects]  # once: only the thresholds change below
    for _ in range(CANNY_TRIES):
        edges = cv2.Canny(gray, low, high)
        if all(outline_kept(edges, outline) >= CANNY_KEEP for outline in outlines):
            break
        low, high = max(1, int(low * CANNY_STEP)), max(2, int(high * CANNY_STEP))
    else:  # an object as dark or light as what is around it: its edges are not in any usable map
        raise Reject("a named object keeps too little of its outline in the edge map")
    template_id, template = pick_template(rng, "reference", "canny", TEMPLATES["canny"])
    return Sample(cfg.op, {"tgt": rendered.rgb, "cond": edges},
                  {"prompt": template.format(scene=prompt_scene(objects, background)),
                   "objects": objects, "template_id": template_id, "background": background,
                   "condition": {"kind": "canny", "input": "gray", "low": low, "high": high}})


def depth_sample(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    if use_photo(rng, assets, cfg):
        return photo_depth_sample(rng, assets, cfg)
    scene, rendered, background = collage(rng, assets, cfg)
    levels = layer_levels(len(scene.layers))
    depth = lookup(top_layer_index(rendered), np.array([0] + levels, np.uint8))
    objects = placed_objects(scene, rendered)
    level_list = [{"id": o["id"], "name": o["name"], "value": levels[o["id"]]} for o in objects]
    template_id, template = pick_template(rng, "reference", "depth", TEMPLATES["depth"])
    prompt = template.format(scene=prompt_scene(objects, background, back_to_front=True))
    return Sample(cfg.op, {"tgt": rendered.rgb, "cond": depth},
                  {"prompt": prompt, "objects": objects, "template_id": template_id, "background": background,
                   "condition": {"kind": "depth", "source": "layers", "near": 255, "background": 0,
                                 "levels": level_list}})


def seg_sample(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    if use_photo(rng, assets, cfg):
        return photo_seg_sample(rng, assets, cfg)
    scene, rendered, background = collage(rng, assets, cfg)
    colours = [SEG_COLOURS[int(i)] for i in rng.permutation(len(SEG_COLOURS))[: len(scene.layers)]]
    if len(colours) < len(scene.layers):
        raise Reject("more objects than segmentation colours")
    table = np.array([SEG_BACKGROUND] + [PALETTE[c] for c in colours], np.uint8)
    seg = lookup(top_layer_index(rendered), table)
    objects = placed_objects(scene, rendered)
    legend = [{"id": o["id"], "name": o["name"], "color": list(PALETTE[colours[o["id"]]]),
               "color_name": colours[o["id"]]} for o in objects]
    legend.append({"id": None, "name": "background", "color": list(SEG_BACKGROUND), "color_name": None})
    said = words.join_words([f"{colours[o['id']]} {words.be(o['name'])} the {o['name']}" for o in objects]
                            + [f"black is the background ({background})"])
    template_id, template = pick_template(rng, "reference", "seg", TEMPLATES["seg"])
    return Sample(cfg.op, {"tgt": rendered.rgb, "cond": seg},
                  {"prompt": template.format(legend=said), "objects": objects, "template_id": template_id,
                   "background": background, "condition": {"kind": "seg", "legend": legend}})


def subject_sample(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    width, height = cfg.width, cfg.height
    scene, source, _ = collage(rng, assets, cfg, count=(2, 5))
    index = int(rng.integers(len(scene.layers)))
    subject = scene.layers[index]
    if source.visible_count(index) < 0.8 * source.coverage(index):
        raise Reject("the subject is partly hidden in the source")

    # The new scene: a new background, the subject in a new pose on top, 0–2 new companions below it.
    background, background_phrase = draw_background(rng, assets, width, height)
    hw = subject.sprite.rgba.shape[:2]
    long_side = max(hw) * float(np.sqrt(abs(np.linalg.det(subject.matrix[:, :2])))) * rng.uniform(0.7, 1.4)
    long_side = assets.fit(subject.sprite, long_side)  # the same sprite: at most max_upscale of its pixels
    placed = Footprints()
    matrix = place(rng, hw, long_side, width, height, placed, 0.0, angle_range=15.0)
    if matrix is None:
        raise Reject("no room for the subject")
    taken = {l.name for l in scene.layers}
    companions = []
    for _ in range(int(rng.integers(0, 3))):
        companion_long = rng.uniform(0.18, 0.4) * min(width, height)
        sprite = assets.random_sprite(rng, exclude_names=taken, long_side=companion_long)
        if sprite.name in taken:  # before placing: place() keeps the footprint of what it places
            continue
        place_matrix = place(rng, sprite.rgba.shape[:2], assets.fit(sprite, companion_long), width, height,
                             placed, 0.1, angle_range=10.0)
        if place_matrix is None:
            continue
        taken.add(sprite.name)
        companions.append(Layer(sprite, place_matrix))
    new_scene = Scene(background, companions + [Layer(subject.sprite, matrix)])
    target = render(new_scene)
    require_visible(target, 0.4)

    objects = placed_objects(new_scene, target)
    others = [words.with_article(l.name) for l in companions]
    context = f"on {background_phrase}" + (f", together with {words.join_words(others)}" if others else "")
    template_id, template = pick_template(rng, "reference", "subject", TEMPLATES["subject"])
    prompt = template.format(subject=subject.name, the_subject=f"the {subject.name}",
                             The_subject=f"The {subject.name}", context=context)
    return Sample(cfg.op, {"src": source.rgb, "tgt": target.rgb},
                  {"prompt": prompt, "objects": objects, "template_id": template_id, "background": background_phrase,
                   "condition": {"kind": "subject", "name": subject.name,
                                 "source": object_entry(index, subject, source),
                                 "target": object_entry(len(companions), new_scene.layers[-1], target),
                                 "source_objects": placed_objects(scene, source)}})


MAKERS = {"canny": canny_sample, "depth": depth_sample, "seg": seg_sample, "subject": subject_sample}


@register("reference", OPS, options={SOURCE_OPTION: SOURCES, DEPTH_MODEL_OPTION: check_depth_model,
                                    SEG_MODEL_OPTION: check_seg_model}, check=check_options)
def generate(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    if cfg.op not in MAKERS:
        raise ValueError(f"unknown reference op {cfg.op!r}")
    return MAKERS[cfg.op](rng, assets, cfg)
