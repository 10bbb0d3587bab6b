"""Scene-building pieces every generator shares: random collages and the `objects` json list."""

from __future__ import annotations

import numpy as np

from ..assets import AssetLibrary
from ..errors import Reject
from ..geometry import Footprints, place
from ..render import Layer, Rendered, Scene


def random_collage(rng: np.random.Generator, assets: AssetLibrary, width: int, height: int, count: int,
                   size_range: tuple[float, float] = (0.18, 0.42), max_overlap: float = 0.1,
                   angle_range: float = 10.0, kinds: tuple[str, ...] = ("sticker", "cutout"),
                   background: np.ndarray | None = None) -> tuple[Scene, Footprints]:
    """A background (drawn from the library unless given) with `count` objects of distinct names, each fully on the canvas."""
    if background is None:
        _, background = assets.background(rng, width, height)
    scene, placed, names = Scene(background), Footprints(), set()
    for _ in range(count):
        sprite = assets.random_sprite(rng, kinds, exclude_names=names)
        long_side = rng.uniform(*size_range) * min(width, height)
        matrix = place(rng, sprite.rgba.shape[:2], long_side, width, height, placed, max_overlap, angle_range)
        if matrix is None:
            raise Reject("no room for another object")
        names.add(sprite.name)
        scene.layers.append(Layer(sprite, matrix))
    return scene, placed


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
