"""Wording and label helpers shared by the inpaint, edit, reference and segdet generators.

Prompts name objects by their asset names; grammar (plurals, articles, counts) is `collage.words`; these
helpers only place words, they decide nothing about a task. `placed_objects` extends the standard `objects` entries with each layer's exact placement
so a checker can re-render a sprite and hold the pixels against the label.
"""

from __future__ import annotations

import numpy as np

from ..render import Layer, Rendered, Scene
from .common import objects_json


def position_word(bbox: list[int], width: int, height: int) -> str:
    """The 3×3 grid cell (thirds of the canvas) of the box centre: 'top left', 'top', …, 'center', …"""
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    col = min(int(3 * cx / width), 2)
    row = min(int(3 * cy / height), 2)
    word = f"{('top', '', 'bottom')[row]} {('left', '', 'right')[col]}".strip()
    return word or "center"


def where(bbox: list[int], width: int, height: int) -> str:
    """`position_word` as a phrase: 'in the top left', 'in the center', 'on the left', 'at the top'."""
    word = position_word(bbox, width, height)
    if word == "center" or " " in word:
        return f"in the {word}"
    return f"on the {word}" if word in ("left", "right") else f"at the {word}"


def matrix_json(matrix: np.ndarray) -> list[list[float]]:
    """A 2×3 matrix as json floats, unrounded (Python's float repr round-trips exactly)."""
    return [[float(v) for v in row] for row in matrix]


def placed_objects(scene: Scene, rendered: Rendered) -> list[dict]:
    """`objects_json` entries plus `matrix`: the 2×3 sprite → image placement of each listed layer."""
    out = objects_json(scene, rendered)
    for entry in out:
        entry["matrix"] = matrix_json(scene.layers[entry["id"]].matrix)
    return out


def object_entry(index: int, layer: Layer, rendered: Rendered) -> dict:
    """One `objects`-style entry for layer `index` of `rendered` (bbox of its visible pixels)."""
    return {"id": index, "asset": layer.sprite.id, "name": layer.name, "bbox": rendered.visible_bbox(index),
            "matrix": matrix_json(layer.matrix)}


def top_layer_index(rendered: Rendered) -> np.ndarray:
    """int16 (H, W): index of the layer each pixel shows (the `visible` rule), −1 for the background."""
    index = np.full(rendered.rgb.shape[:2], -1, np.int16)
    for i, box in enumerate(rendered.boxes):
        if box is not None:  # later (higher) layers overwrite: the topmost one wins
            x0, y0, x1, y1 = box
            index[y0:y1, x0:x1][rendered.covered_crop(i)] = i
    return index
