"""Scene-building pieces every generator shares: random collages, backgrounds named for prompts, the
`objects` json list and prompt templates."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from .. import words
from ..assets import AssetLibrary
from ..errors import Reject
from ..geometry import Footprints, place
from ..render import Layer, Rendered, Scene


WHITE_BACKGROUND = "a white background"


def extreme_colours(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two colours farthest apart in an image (on a grid of ~64 points a side: gradients are smooth): a
    procedural background's two colours, a gradient's ends. (The first is the one farthest from the mean.)"""
    step = max(4, min(pixels.shape[:2]) // 64)
    grid = pixels[::step, ::step].reshape(-1, 3).astype(np.int32)
    mean = grid.mean(axis=0)
    first = grid[int(np.argmax(((grid - mean) ** 2).sum(axis=1)))]
    second = grid[int(np.argmax(((grid - first) ** 2).sum(axis=1)))]
    return first, second


def describe_background(assets: AssetLibrary, asset_id: str, pixels: np.ndarray) -> str:
    """What the background shows, as a noun phrase for "on …": a photo by its asset name ("a photo of a
    cat"), a procedural recipe by its pattern and the colours read off its pixels ("a blue and white
    checkerboard", "a pink-to-white gradient"). The procedural pattern's first colour is the one at the
    top-left pixel (a stripe, square or the dots' ground), the second the colour farthest from it."""
    row = assets.by_id.get(asset_id)
    if row is not None and row["kind"] == "background" and row["source"] != "procedural":
        return words.photo_phrase(row["name"])
    recipe = json.loads(row["extra"])["recipe"] if row is not None and row.get("extra") else \
        asset_id.split(":", 1)[-1]
    if recipe == "clouds":  # a ramp's middle can read as a third colour: name the two the most pixels show
        step = max(1, min(pixels.shape[:2]) // 16)
        names = Counter(words.colour_name(c) for c in pixels[::step, ::step].reshape(-1, 3))
        (first, _), (second, n) = (names.most_common(2) + [(None, 0)])[:2]
        return words.pattern_phrase(recipe, first, second if n >= 0.1 * sum(names.values()) else first)
    if recipe in ("tiles", "bokeh", "plaid"):  # the ground (most pixels), then what stands out from it
        grid = pixels[::4, ::4].reshape(-1, 3).astype(np.int32)
        if recipe == "plaid":  # three exact colours: the ground is the commonest (a median could mix them)
            packed = grid[:, 0] << 16 | grid[:, 1] << 8 | grid[:, 2]  # a 1-D unique: rows are 20× slower
            values, counts = np.unique(packed, return_counts=True)
            best = int(values[int(np.argmax(counts))])
            first = np.array([best >> 16, best >> 8 & 255, best & 255], np.int32)
        else:
            first = np.median(grid, axis=0).astype(np.int32)
        second = grid[int(np.argmax(((grid - first) ** 2).sum(axis=1)))]
    elif recipe in ("stripes", "checker", "dots", "solid", "diagonal-stripes"):
        first = pixels[0, 0].astype(np.int32)
        step = max(2, min(pixels.shape[:2]) // 128)  # a pattern's cells and dots scale with the canvas
        second = pixels[::step, ::step].reshape(-1, 3).astype(np.int32)
        second = second[int(np.argmax(((second - first) ** 2).sum(axis=1)))]
    else:
        first, second = extreme_colours(pixels)
    return words.pattern_phrase(recipe, words.colour_name(first), words.colour_name(second))


def draw_background(rng: np.random.Generator, assets: AssetLibrary, width: int, height: int) -> tuple[np.ndarray, str]:
    """(RGB pixels, what they show): a background from the library, named for the prompt."""
    asset_id, pixels = assets.background(rng, width, height)
    return pixels, describe_background(assets, asset_id, pixels)


def pick_template(rng: np.random.Generator, task: str, op: str, templates: tuple[str, ...]) -> tuple[str, str]:
    """(template id "task.op.k", template): one of the op's templates, drawn by the sample's rng."""
    k = int(rng.integers(len(templates)))
    return f"{task}.{op}.{k}", templates[k]


def random_collage(rng: np.random.Generator, assets: AssetLibrary, width: int, height: int, count: int,
                   size_range: tuple[float, float] = (0.18, 0.42), max_overlap: float = 0.1,
                   angle_range: float = 10.0, kinds: tuple[str, ...] = ("sticker", "cutout"),
                   background: np.ndarray | None = None,
                   background_phrase: str = WHITE_BACKGROUND) -> tuple[Scene, Footprints, str]:
    """A background (drawn from the library unless given, then named by `background_phrase`) with `count`
    objects of distinct names, each fully on the canvas; and what the background shows."""
    if background is None:
        background, background_phrase = draw_background(rng, assets, width, height)
    scene, placed, names = Scene(background), Footprints(), set()
    for _ in range(count):
        long_side = rng.uniform(*size_range) * min(width, height)
        sprite = assets.random_sprite(rng, kinds, exclude_names=names, long_side=long_side)
        matrix = place(rng, sprite.rgba.shape[:2], assets.fit(sprite, long_side), width, height, placed, max_overlap,
                       angle_range)
        if matrix is None:
            raise Reject("no room for another object")
        names.add(sprite.name)
        scene.layers.append(Layer(sprite, matrix))
    return scene, placed, background_phrase


def require_visible(rendered: Rendered, min_fraction: float, min_pixels: int = 64, layers: range | None = None) -> None:
    """Reject a scene where some object (of `layers`; default all) is mostly hidden: a caption must not name
    what cannot be seen."""
    for i in layers if layers is not None else range(len(rendered.crops)):
        whole, seen = rendered.coverage(i), rendered.visible_count(i)
        if whole == 0 or seen < min_pixels or seen < min_fraction * whole:
            raise Reject(f"layer {i} is hidden ({seen}/{whole} px visible)")


def objects_json(scene: Scene, rendered: Rendered) -> list[dict]:
    """One entry per layer visible in `rendered`: id, asset, name, tight bbox of its visible pixels."""
    out = []
    for i, layer in enumerate(scene.layers):
        bbox = rendered.visible_bbox(i)
        if bbox is not None:
            out.append({"id": i, "asset": layer.sprite.id, "name": layer.name, "bbox": bbox})
    return out


def entry_of(objects: list[dict], index: int) -> dict:
    """The `objects` entry of layer `index` (a copy): the record `target_object` holds."""
    return dict(next(o for o in objects if o["id"] == index))
