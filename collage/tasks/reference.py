"""reference: generate an image from a condition map (`canny`, `depth`, `seg`) or a subject (`subject`).

All condition maps are computed from the target's own pixels or its exact layers, never drawn apart:
- canny: `cv2.Canny` of the target's grey image with the thresholds the json states.
- depth: for a collage, exact layered depth from z-order (L, 255 = near): each pixel takes the level of
  the layer it shows (the renderer's `visible` rule), the background is 0. For a photo, when a
  transformers depth-estimation model is configured (`--option depth_model=/local/path`, never downloaded),
  PHOTO_DEPTH_SHARE of depth samples are background photos with the model's relative depth.
- seg: each object's visible pixels painted in its own palette colour, the background black; the
  json's legend maps every colour to its object.
- subject: the source is a collage of several objects; the target shows one of them (same sprite,
  new pose) in a new scene with new companions, and the prompt names it.

Prompts: TEMPLATES per op (PHOTO_DEPTH_TEMPLATES for model depth of a photo), one drawn per sample by its
rng (json `template_id`, "reference.<op>.<k>", "reference.depth.photo.<k>"). They name the objects with
their articles (`collage.words`) and what the background shows; a depth prompt lists several objects
"from back to front", one object plainly.
"""

from __future__ import annotations

import functools
import os

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

OPS = ("canny", "depth", "seg", "subject")
CANNY_LOW = (40, 120)  # the low threshold is drawn from this range, the high one is 1.5–3× it
CANNY_KEEP = 0.5  # every named object keeps at least this share of its outline in the edge map
CANNY_STEP, CANNY_TRIES = 0.7, 6  # else both thresholds are lowered by this factor, at most this often
DEPTH_MODEL_OPTION = "depth_model"
PHOTO_DEPTH_SHARE = 0.5
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


# --- depth from a model ------------------------------------------------------------------------------

def check_depth_model(path: str) -> None:
    """Run-time validation of the `depth_model` option, before any shard starts."""
    if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "config.json")):
        raise UserError(f"option {DEPTH_MODEL_OPTION}={path!r} is not a model folder saved with save_pretrained "
                        "(config.json, weights, preprocessor_config.json)")


@functools.lru_cache(maxsize=2)
def load_depth_model(path: str):
    """(image processor, model) of a transformers depth-estimation model saved at a local path."""
    try:
        import torch  # noqa: F401
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation
    except ImportError as exc:
        raise UserError(f"option {DEPTH_MODEL_OPTION} needs torch and transformers (pip install 'collage[model]')") from exc
    check_depth_model(path)
    processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    model = AutoModelForDepthEstimation.from_pretrained(path, local_files_only=True).eval()
    return processor, model


def model_outputs_distance(model) -> bool:
    """True for metric models (larger = farther); relative ones (DPT, Depth Anything) give larger = nearer."""
    config = model.config
    return getattr(config, "depth_estimation_type", "relative") == "metric" or config.model_type == "zoedepth"


def estimate_depth(rgb: np.ndarray, path: str) -> np.ndarray:
    """uint8 (H, W), 255 = near: the model's prediction resized to the image and min-max normalised."""
    import torch

    processor, model = load_depth_model(path)
    inputs = processor(images=rgb, return_tensors="pt")
    with torch.inference_mode():
        predicted = model(**inputs).predicted_depth
    predicted = torch.nn.functional.interpolate(predicted.reshape(1, 1, *predicted.shape[-2:]).float(),
                                                size=rgb.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    depth = predicted.numpy().astype(np.float64)
    if model_outputs_distance(model):
        depth = -depth
    lo, hi = float(depth.min()), float(depth.max())
    scaled = (depth - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(depth)
    return np.round(scaled).astype(np.uint8)


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
    model_path = cfg.options.get(DEPTH_MODEL_OPTION)
    if model_path and assets.photos and rng.random() < PHOTO_DEPTH_SHARE:
        row = assets.photos[int(rng.integers(len(assets.photos)))]
        photo = assets.photo(rng, row["id"], cfg.width, cfg.height)
        name = os.path.basename(os.path.normpath(model_path))
        k = int(rng.integers(len(PHOTO_DEPTH_TEMPLATES)))
        prompt = words.sentence_case(PHOTO_DEPTH_TEMPLATES[k].format(photo=words.photo_phrase(row["name"])))
        return Sample(cfg.op, {"tgt": photo, "cond": estimate_depth(photo, model_path)},
                      {"prompt": prompt, "objects": [], "template_id": f"reference.depth.photo.{k}",
                       "background": words.photo_phrase(row["name"]),
                       "condition": {"kind": "depth", "source": "model", "model": name, "near": 255}})
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
    placed = Footprints()
    matrix = place(rng, hw, long_side, width, height, placed, 0.0, angle_range=15.0)
    if matrix is None:
        raise Reject("no room for the subject")
    taken = {l.name for l in scene.layers}
    companions = []
    for _ in range(int(rng.integers(0, 3))):
        sprite = assets.random_sprite(rng, exclude_names=taken)
        if sprite.name in taken:  # before placing: place() keeps the footprint of what it places
            continue
        place_matrix = place(rng, sprite.rgba.shape[:2], rng.uniform(0.18, 0.4) * min(width, height), width, height,
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


@register("reference", OPS, options={DEPTH_MODEL_OPTION: check_depth_model})
def generate(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    if cfg.op not in MAKERS:
        raise ValueError(f"unknown reference op {cfg.op!r}")
    return MAKERS[cfg.op](rng, assets, cfg)
