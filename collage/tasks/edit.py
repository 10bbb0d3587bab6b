"""edit: add, remove or replace one named object of a collage.

`add`: the source lacks the object, the target has it; by default on a blank (white) canvas, as in the
DreamOmni paper, so the model learns to add an object rather than to paste one onto a photo;
`--option add_background=scene` (real and procedural backgrounds) or `=mixed` (half each) changes it.
`remove`: the source has the object, the target is the same scene without it (the background and the
other objects as they are behind it). `replace`: another object of a different name takes its place:
same centre, same angle, same long side.

Prompts: TEMPLATES, one drawn per sample by its rng (json `template_id`, "edit.<op>.<k>"); objects are
named with `collage.words` (articles, plural-only and mass nouns). `target_object` (and `new_object`)
is the object's record, the shape of an `objects` entry (id, asset, name, bbox, matrix).

Both images come from one scene rendered with and without the layer, so nothing else can change. The
mask is computed from the pixels: exactly those where source and target differ (255); outside it the
two are bit-identical before encoding.
"""

from __future__ import annotations


import cv2
import numpy as np

from ..assets import AssetLibrary
from ..errors import Reject
from ..geometry import inside, sprite_bounds, sprite_matrix
from ..render import Layer, Scene, Warps, render
from ..sample import Sample
from . import GenConfig, register
from .. import words
from .common import WHITE_BACKGROUND, pick_template, random_collage, require_visible
from .labels import object_entry, placed_objects, where

OPS = ("add", "remove", "replace")
BLANK = 255  # the blank canvas of `add`: white
ADD_BACKGROUNDS = ("blank", "scene", "mixed")
MIN_VISIBLE = 0.5  # the edited object shows at least this share of itself where it is present
MIN_CHANGED = 0.002  # and changes at least this share of the canvas
# Fields: {a_new} the added / new object with its article, {the_old} "the <name>", {where} its place
# ("in the top left"), {background} what the background shows, {it} "it" / "them".
TEMPLATES = {
    "add": ("Add {a_new} {where}.",
            "Put {a_new} {where} of the picture.",
            "Insert {a_new} {where}, on {background}.",
            "Place {a_new} {where} of the image."),
    "remove": ("Remove {the_old}.",
               "Erase {the_old} from the picture.",
               "Take {the_old} out of the image.",
               "Delete {the_old} and fill in what was behind {it}."),
    "replace": ("Replace {the_old} with {a_new}.",
                "Swap {the_old} for {a_new}.",
                "Change {the_old} into {a_new}.",
                "Put {a_new} where {the_old} {is_} now."),
}


def add_background_mode(cfg: GenConfig) -> str:
    """The run option `add_background` (validated against ADD_BACKGROUNDS when the run is configured)."""
    return cfg.options.get("add_background", "blank")


def changed_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint8 (H, W): 255 where the two RGB images differ in any channel, else 0."""
    diff = cv2.absdiff(a, b)
    # Any channel nonzero → that channel 255 → its grey value ≥ 255·0.114 > 0: three fast SIMD passes.
    cv2.threshold(diff, 0, 255, cv2.THRESH_BINARY, dst=diff)
    return cv2.threshold(cv2.cvtColor(diff, cv2.COLOR_RGB2GRAY), 0, 255, cv2.THRESH_BINARY)[1]


def replacement_layer(rng: np.random.Generator, assets: AssetLibrary, old: Layer, taken: set[str],
                      width: int, height: int) -> Layer:
    """A sprite of a name not in `taken`, with the old one's centre, angle and long side, fully on the canvas."""
    old_hw = old.sprite.rgba.shape[:2]
    center = tuple(old.matrix @ np.array([(old_hw[1] - 1) / 2, (old_hw[0] - 1) / 2, 1.0]))
    linear = old.matrix[:, :2]
    old_scale = float(np.sqrt(abs(np.linalg.det(linear))))
    angle = float(np.degrees(np.arctan2(linear[0, 1], linear[0, 0])))  # similarity(): [[c, s], [-s, c]]
    long_side = old_scale * max(old_hw)
    for _ in range(8):
        sprite = assets.random_sprite(rng, exclude_names=taken, long_side=long_side)
        if sprite.name in taken:
            continue
        hw = sprite.rgba.shape[:2]
        matrix = sprite_matrix(hw, assets.fit(sprite, long_side) / max(hw), angle, center)
        if inside(sprite_bounds(hw, matrix), width, height):
            return Layer(sprite, matrix)
    raise Reject("no replacement fits where the old object was")


@register("edit", OPS, options={"add_background": ADD_BACKGROUNDS})
def generate(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    if cfg.op not in OPS:
        raise ValueError(f"unknown edit op {cfg.op!r}")
    width, height = cfg.width, cfg.height
    blank = None
    if cfg.op == "add":
        mode = add_background_mode(cfg)
        if mode == "blank" or (mode == "mixed" and rng.random() < 0.5):
            blank = np.full((height, width, 3), BLANK, np.uint8)
    scene, _, background = random_collage(rng, assets, width, height, count=int(rng.integers(1, 5)), background=blank,
                                          background_phrase=WHITE_BACKGROUND)
    index = int(rng.integers(len(scene.layers)))
    layer = scene.layers[index]

    if cfg.op == "replace":
        new_layer = replacement_layer(rng, assets, layer, {l.name for l in scene.layers}, width, height)
        other_scene = Scene(scene.background, list(scene.layers))
        other_scene.layers[index] = new_layer
    else:
        other_scene = Scene(scene.background, scene.layers[:index] + scene.layers[index + 1:])
    # Both scenes share the layers under `index` (drawn once, into the background itself) and the Layer
    # objects above it (warped once).
    under = render(Scene(scene.background, scene.layers[:index]), consume_base=True)
    warps = Warps()
    with_object = render(scene, under, index, warps=warps)
    other = render(other_scene, under, index, consume_base=True, warps=warps)
    require_visible(with_object, MIN_VISIBLE)
    require_visible(other, MIN_VISIBLE)

    if cfg.op == "add":
        src_scene, src, tgt_scene, tgt = other_scene, other, scene, with_object
    else:
        src_scene, src, tgt_scene, tgt = scene, with_object, other_scene, other
    mask = changed_pixels(src.rgb, tgt.rgb)
    if cv2.countNonZero(mask) < MIN_CHANGED * width * height:
        raise Reject("the edit changes too few pixels")

    target = object_entry(index, layer, with_object)
    meta = {"target_object": target, "background": background}
    fields = {"the_old": f"the {layer.name}", "it": words.pronoun(layer.name), "is_": words.be(layer.name),
              "background": background}
    if cfg.op == "add":
        fields.update(a_new=words.with_article(layer.name), where=where(target["bbox"], width, height))
    elif cfg.op == "replace":
        meta["new_object"] = object_entry(index, new_layer, other)
        fields["a_new"] = words.with_article(new_layer.name)
    template_id, template = pick_template(rng, "edit", cfg.op, TEMPLATES[cfg.op])
    prompt = template.format(**fields)
    meta["template_id"] = template_id
    # `objects` lists what the target shows, except for remove: there, what the source shows.
    listed = placed_objects(src_scene, src) if cfg.op == "remove" else placed_objects(tgt_scene, tgt)
    return Sample(
        op=cfg.op,
        images={"src": src.rgb, "tgt": tgt.rgb, "mask": mask},
        meta={"prompt": prompt, "objects": listed, **meta},
    )
