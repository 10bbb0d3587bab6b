"""t2i: text-to-image samples whose prompt states checkable facts: drawn strings, shape counts, sticker relations.

Every fact is measured on the finished pixels (or the exact layer alphas), never taken from the intent:
- `text`: 1-3 words or phrases from `t2i_words` in the manifests' fonts (the repo's and Debian's), on one
  line or 2-3, level or turned by up to ±30°, plain or with an outline in a second, contrasting colour;
  each legible by a measured contrast against the background around it. See t2i_text.py (the op lives
  there) for how a string is drawn, placed and checked. objects: one per string, `name` = the string (its
  lines joined by a space), `asset` = the font id, `bbox` the tight box of every pixel its ink touches.
- `shapes`: 1-4 groups of filled geometric shapes (SHAPE_KINDS), one palette colour per group, no colour
  present near any background pixel. Shapes keep a gap from each other, so each one is one connected
  component of its colour; after drawing, the components of every group colour are counted on the image
  (a pixel has colour c when every channel is within COLOUR_TOL of c) and the sample is rejected unless
  there is exactly one per drawn shape. Fact bboxes are those components' boxes. objects: one per shape,
  `name` = "<colour> <kind>", `asset` = "shape:<kind>".
- `stickers`: stickers placed on a background, some repeated, sometimes one inside or overlapping another.
  `counts` are the visible instances per name; relations are computed from the rendered layers (RELATION_PHRASES)
  between objects whose name occurs once. objects: `placed_objects` (each layer's exact `matrix`, sprite
  pixels → canvas, too), so a checker can re-render the sprites and hold the boxes against the pixels.

facts (the json field; the prompt states all of it but fonts, stroke widths and boxes):
- text: {"texts": [{"text", "lines", "color", "rgb", "font" (font row name), "font_size" (px), "stroke" (px,
  0 = none), "outline" (colour name, or null; never `color`), "angle", "align", "line_pitch",
  "letter_height", "size", "position", "bbox", "quad", "line_bboxes", "contrast"}]} (t2i_text.py)
- shapes: {"shapes": [{"kind", "color", "rgb", "count", "size", "positions", "bboxes"}]}, one entry per colour.
- stickers: {"counts": {name: n}, "relations": [[name_a, relation, name_b], ...]}, with a and b boxes of the
  visible pixels and "above" in layer order (= object id): "left of" a.x1 + 2 % of the width ≤ b.x0 ("right
  of" mirrored); "above" likewise with 2 % of the height ("below" mirrored); "next to": apart by 0-8 % of the
  shorter side on one axis, overlapping by ≥ 30 % of the smaller extent on the other; "on top of": a is
  drawn over b and their silhouettes (alpha ≥ 128) share ≥ max(64 px, 5 % of b's); "inside": a is drawn
  over b, every pixel a touches is on b's silhouette, and a's box lies strictly within b's. At most three
  are stated, one per pair, "inside"/"on top of" always.

Prompts: TEMPLATES per op, one drawn per sample by its rng (json `template_id`, "t2i.<op>.<k>"); each names
what the background shows (`common.describe_background`, from the background's pixels before anything is
drawn on it). Counts, plurals and articles come from `collage.words` ("two small red crosses", "one pair
of jeans", "the cherries are above the cat").

Words used in prompts (also stored in the facts):
- position: the 3×3 grid cell of the box centre: "top left", "top", "top right", "left", "center",
  "right", "bottom left", "bottom", "bottom right" (cells are thirds of the canvas width and height).
- size: small / medium / large from an extent relative to the canvas's shorter side: for text the letters'
  height (`letter_height`, TEXT_SIZE_LIMITS), for shapes the box's longer side (SHAPE_SIZE_LIMITS).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from shapely.geometry import Polygon, box

from ..assets import AssetLibrary
from ..errors import Reject
from ..geometry import Footprints, footprint, place, sprite_bounds, sprite_matrix
from ..palette import PALETTE
from ..render import Layer, Scene, render, warp_layer
from ..sample import Sample
from ..words import be, counted, join_words, number_word, sentence_case
from . import GenConfig, register
from .common import describe_background, pick_template, require_visible
from .labels import placed_objects, position_word
from .t2i_text import (BACKGROUND_TOL, COLOUR_TOL, POSITION_PHRASES, TEXT_SIZE_LIMITS, TEXT_TEMPLATES,  # noqa: F401
                       colour_mask, generate_text, near_counts, size_word, usable_colours)

OPS = ("text", "shapes", "stickers")

SHAPE_SIZE_LIMITS = (0.12, 0.22)  # shape box longer side / shorter canvas side
SHAPE_SIZE_DRAW = {"small": (0.07, 0.105), "medium": (0.135, 0.2), "large": (0.245, 0.34)}  # inside the limits
SHAPE_MAX_COUNT = {"small": 6, "medium": 4, "large": 2}
SHAPE_KINDS = ("circle", "oval", "square", "rectangle", "triangle", "diamond", "pentagon", "hexagon", "octagon",
               "star", "heart", "cross")
MIN_SHAPE_PX = 12
NEXT_TO_GAP = 0.08  # "next to": boxes apart by at most this × the shorter canvas side
SIDE_MARGIN = 0.02  # "left of"/"above": boxes apart by at least this × the canvas width/height
RELATION_PHRASES = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below",
                    "next to": "next to", "on top of": "on top of", "inside": "inside"}
# Fields: {parts} the stated strings / shape groups / sticker counts, {background} what the background shows
# ({Background}: capitalised).
TEMPLATES = {
    "text": TEXT_TEMPLATES,
    "shapes": ("An image of {parts} on {background}.",
               "A picture with {parts}, on {background}.",
               "Flat geometric shapes on {background}: {parts}.",
               "A simple illustration of {parts} over {background}."),
    "stickers": ("A collage of {parts} on {background}.",
                 "Stickers of {parts} on {background}.",
                 "{Background} with stickers of {parts}.",
                 "A picture with {parts}, placed on {background}."),
}


def fill_template(rng: np.random.Generator, op: str, parts: list[str], background: str) -> tuple[str, str]:
    """(template id, prompt sentence) for the op, drawn by the sample's rng."""
    template_id, template = pick_template(rng, "t2i", op, TEMPLATES[op])
    return template_id, template.format(parts=join_words(parts), background=background,
                                        Background=sentence_case(background))


# --- words ----------------------------------------------------------------------------------------

def where_phrase(positions: list[str]) -> str:
    """ "at the top" for one shape; "(two at the top, one in the center)" for several."""
    if len(positions) == 1:
        return POSITION_PHRASES[positions[0]]
    tally = {p: positions.count(p) for p in dict.fromkeys(positions)}
    return "(" + ", ".join(f"{number_word(n)} {POSITION_PHRASES[p]}" for p, n in tally.items()) + ")"


# --- shapes ----------------------------------------------------------------------------------------

def regular_polygon(n: int, turn_deg: float = 0.0, inner: float | None = None) -> np.ndarray:
    """Unit polygon with a vertex up; with `inner`, a star alternating radius 1 and `inner`."""
    count = 2 * n if inner else n
    angles = np.radians(turn_deg) - np.pi / 2 + 2 * np.pi * np.arange(count) / count
    radius = np.where(np.arange(count) % 2, inner, 1.0) if inner else np.ones(count)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def shape_outline(rng: np.random.Generator, kind: str) -> np.ndarray:
    """(N, 2) outline of one shape, any scale, y down."""
    jitter = rng.uniform(-12, 12)
    if kind == "circle":
        return regular_polygon(72)
    if kind in ("oval", "rectangle"):
        base = regular_polygon(72) if kind == "oval" else np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
        stretch = rng.uniform(1.45, 1.9) if kind == "oval" else rng.uniform(1.6, 2.3)
        return base * ((stretch, 1.0) if rng.random() < 0.5 else (1.0, stretch))
    if kind == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    if kind == "diamond":
        return np.array([[0, -1], [1, 0], [0, 1], [-1, 0]], float) * (1.0, rng.uniform(1.3, 1.6))
    if kind == "triangle":
        return regular_polygon(3, jitter)
    if kind in ("pentagon", "hexagon", "octagon"):
        return regular_polygon({"pentagon": 5, "hexagon": 6, "octagon": 8}[kind], jitter)
    if kind == "star":
        return regular_polygon(5, jitter, inner=rng.uniform(0.4, 0.5))
    if kind == "heart":
        t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        return np.stack([16 * np.sin(t) ** 3, -y], 1)
    if kind == "cross":
        a = rng.uniform(0.3, 0.4)
        return np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a], [-1, a],
                         [-1, -a], [-a, -a]], float)
    raise ValueError(f"unknown shape {kind!r}")


def fitted_outline(rng: np.random.Generator, kind: str, side: float) -> np.ndarray:
    """The outline scaled so its box's longer side is `side` px, box centred on the origin."""
    pts = shape_outline(rng, kind)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return (pts - (lo + hi) / 2) * (side / float((hi - lo).max()))


def place_outline(rng: np.random.Generator, outline: np.ndarray, width: int, height: int, taken: list[Polygon],
                  gap: float, tries: int = 30) -> np.ndarray | None:
    """The outline moved to a spot fully on the canvas, at least `gap` px from every taken shape."""
    lo, hi = outline.min(axis=0), outline.max(axis=0)
    (x_lo, y_lo), (x_hi, y_hi) = 2 - lo, (width - 3 - hi[0], height - 3 - hi[1])
    if x_lo > x_hi or y_lo > y_hi:
        return None
    for _ in range(tries):
        pts = outline + (rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi))
        poly = Polygon(pts)
        if all(poly.distance(other) >= gap for other in taken):
            taken.append(poly)
            return pts
    return None


def own_components(mask: np.ndarray, outlines: list[np.ndarray]) -> list[list[int]] | None:
    """Each outline's component box when the mask's pixels are exactly one component per outline, else None.

    Works on each outline's padded box (a full-canvas labelling with stats costs ~2 ms): each box must hold
    exactly one component that spans the outline's box (±2 px), and no mask pixel may lie outside them.
    """
    height, width = mask.shape
    rest = mask.copy()
    out = []
    for pts in outlines:
        x0, y0 = max(int(pts[:, 0].min()) - 2, 0), max(int(pts[:, 1].min()) - 2, 0)
        x1, y1 = min(int(pts[:, 0].max()) + 4, width), min(int(pts[:, 1].max()) + 4, height)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask[y0:y1, x0:x1], connectivity=8)
        if count != 2:
            return None
        bx, by, bw, bh, _ = stats[1]
        found = [int(x0 + bx), int(y0 + by), int(x0 + bx + bw), int(y0 + by + bh)]
        expect = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max() + 1, pts[:, 1].max() + 1]
        if any(abs(a - b) > 2 for a, b in zip(found, expect)):
            return None
        rest[y0:y1, x0:x1] = 0
        out.append(found)
    return out if cv2.countNonZero(rest) == 0 else None


def generate_shapes(rng: np.random.Generator, assets: AssetLibrary, width: int, height: int) -> Sample:
    asset_id, canvas = assets.background(rng, width, height)
    background = describe_background(assets, asset_id, canvas)
    canvas = np.array(canvas)
    short = min(width, height)
    usable = usable_colours(canvas, 0.0)
    n_groups = min(int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.25, 0.1])), len(usable))
    if n_groups == 0:
        raise Reject("every palette colour occurs in the background")
    colours = [usable[i] for i in rng.permutation(len(usable))[:n_groups]]
    kinds = [SHAPE_KINDS[i] for i in rng.permutation(len(SHAPE_KINDS))[:n_groups]]
    sizes = [("small", "medium", "large")[int(rng.choice(3, p=[0.4, 0.4, 0.2]))] for _ in range(n_groups)]
    counts = [int(rng.integers(1, SHAPE_MAX_COUNT[s] + 1)) for s in sizes]
    gap = max(4.0, 0.02 * short)
    taken: list[Polygon] = []
    drawn: list[list[np.ndarray]] = [[] for _ in range(n_groups)]
    for g in sorted(range(n_groups), key=lambda g: -SHAPE_SIZE_DRAW[sizes[g]][0]):  # big ones first: they need room
        side = max(MIN_SHAPE_PX, rng.uniform(*SHAPE_SIZE_DRAW[sizes[g]]) * short)
        for _ in range(counts[g]):
            pts = place_outline(rng, fitted_outline(rng, kinds[g], side), width, height, taken, gap)
            if pts is None:
                raise Reject("no room for another shape")
            cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], PALETTE[colours[g]], cv2.LINE_AA, shift=4)
            drawn[g].append(pts)

    # The truth, read back from the pixels: one component of the group's colour per drawn shape, nothing else.
    facts, objects = [], []
    for g in range(n_groups):
        bboxes = own_components(colour_mask(canvas, PALETTE[colours[g]]), drawn[g])
        if bboxes is None:
            raise Reject(f"the {colours[g]} pixels are not exactly the {len(drawn[g])} drawn shapes")
        words = {size_word(max(b[2] - b[0], b[3] - b[1]), short, SHAPE_SIZE_LIMITS) for b in bboxes}
        if words != {sizes[g]}:
            raise Reject("a shape's measured size is not its group's size")
        positions = [position_word(b, width, height) for b in bboxes]
        facts.append({"kind": kinds[g], "color": colours[g], "rgb": list(PALETTE[colours[g]]), "count": len(bboxes),
                      "size": sizes[g], "positions": positions, "bboxes": bboxes})
        for b in bboxes:
            objects.append({"id": len(objects), "asset": f"shape:{kinds[g]}", "name": f"{colours[g]} {kinds[g]}",
                            "bbox": b})

    parts = []
    for f in facts:
        group = f"{f['size']} {f['color']} {f['kind']}"
        parts.append(f"{counted(f['count'], group)} {where_phrase(f['positions'])}")
    template_id, prompt = fill_template(rng, "shapes", parts, background)
    return Sample(op="shapes", images={"tgt": canvas}, meta={"prompt": prompt, "objects": objects,
                                                             "facts": {"shapes": facts}, "template_id": template_id,
                                                             "background": background})


# --- stickers --------------------------------------------------------------------------------------

def place_inside(rng: np.random.Generator, sprite, container: Layer, width: int, height: int,
                 max_long: float = math.inf) -> np.ndarray | None:
    """A matrix that puts `sprite` (small, its long side at most `max_long`) wholly on solid pixels of the
    container, or None."""
    warped = warp_layer(container.sprite.rgba, container.matrix, width, height, container.sprite.levels)
    if warped is None:
        return None
    x0, y0, crop = warped
    container_long = max(container.sprite.rgba.shape[:2]) * float(np.hypot(*container.matrix[:, 0]))
    long_side = min(rng.uniform(0.22, 0.36) * container_long, max_long)
    scale = long_side / max(sprite.rgba.shape[:2])
    angle = rng.uniform(-10, 10)
    reach = int(math.ceil(0.5 * long_side * math.sqrt(2))) + 2  # the sprite's footprint fits in this radius
    # Distance to the nearest non-solid pixel (the crop's border counts as outside): a centre this deep
    # keeps the whole footprint on solid pixels of the container.
    solid = np.pad((crop[..., 3] >= 250).view(np.uint8), 1)
    depth = cv2.distanceTransform(solid, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    ys, xs = np.nonzero(depth > reach)
    if len(xs) == 0:
        return None
    k = int(rng.integers(len(xs)))
    return sprite_matrix(sprite.rgba.shape[:2], scale, angle, (float(xs[k] + x0), float(ys[k] + y0)))


def place_overlapping(rng: np.random.Generator, sprite, under: Layer, width: int, height: int,
                      max_long: float = math.inf) -> np.ndarray | None:
    """A matrix that puts `sprite` (its long side at most `max_long`) partly over the layer `under`, fully on
    the canvas, or None."""
    under_hw = under.sprite.rgba.shape[:2]
    under_long = max(under_hw) * float(np.hypot(*under.matrix[:, 0]))
    centre = under.matrix @ np.array([(under_hw[1] - 1) / 2, (under_hw[0] - 1) / 2, 1.0])
    long_side = min(rng.uniform(0.55, 0.85) * under_long, max_long)
    scale = long_side / max(sprite.rgba.shape[:2])
    for _ in range(8):
        direction = rng.uniform(0, 2 * np.pi)
        offset = rng.uniform(0.35, 0.55) * under_long * np.array([np.cos(direction), np.sin(direction)])
        matrix = sprite_matrix(sprite.rgba.shape[:2], scale, rng.uniform(-10, 10), tuple(centre + offset))
        poly = footprint(sprite.rgba.shape[:2], matrix)
        if box(0.5, 0.5, width - 1.5, height - 1.5).contains(poly):
            return matrix
    return None


def shared_window(upper: Layer, lower: Layer, width: int, height: int) -> tuple[slice, slice] | None:
    """The canvas window where two layers' footprints overlap (a little padded), or None."""
    ux0, uy0, ux1, uy1 = sprite_bounds(upper.sprite.rgba.shape[:2], upper.matrix)
    lx0, ly0, lx1, ly1 = sprite_bounds(lower.sprite.rgba.shape[:2], lower.matrix)
    x0, y0 = max(int(max(ux0, lx0)) - 2, 0), max(int(max(uy0, ly0)) - 2, 0)
    x1, y1 = min(int(min(ux1, lx1)) + 3, width), min(int(min(uy1, ly1)) + 3, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0, y1), slice(x0, x1)


def sticker_relations(rendered, layers: list[Layer], objects: list[dict], width: int, height: int) -> dict:
    """{(i, j): [relations that hold for layer i towards layer j]} among the given objects, from the render."""
    boxes = {o["id"]: o["bbox"] for o in objects}
    margin_x, margin_y, near = SIDE_MARGIN * width, SIDE_MARGIN * height, NEXT_TO_GAP * min(width, height)
    out = {}
    ids = sorted(boxes)
    for i in ids:
        for j in ids:
            if i == j:
                continue
            a, b = boxes[i], boxes[j]
            found = []
            if a[2] + margin_x <= b[0]:
                found.append("left of")
            if b[2] + margin_x <= a[0]:
                found.append("right of")
            if a[3] + margin_y <= b[1]:
                found.append("above")
            if b[3] + margin_y <= a[1]:
                found.append("below")
            gap_x, gap_y = max(b[0] - a[2], a[0] - b[2]), max(b[1] - a[3], a[1] - b[3])
            overlap_y = min(a[3], b[3]) - max(a[1], b[1])
            overlap_x = min(a[2], b[2]) - max(a[0], b[0])
            if (0 <= gap_x <= near and overlap_y >= 0.3 * min(a[3] - a[1], b[3] - b[1])) or \
                    (0 <= gap_y <= near and overlap_x >= 0.3 * min(a[2] - a[0], b[2] - b[0])):
                found.append("next to")
            if i > j and (window := shared_window(layers[i], layers[j], width, height)) is not None:
                # layer i is drawn over layer j and their footprints meet: compare silhouettes there
                top, under = rendered.alpha_window(i, window), rendered.alpha_window(j, window)
                strictly_within = a[0] > b[0] and a[1] > b[1] and a[2] < b[2] and a[3] < b[3]
                if strictly_within and np.all(under[top > 0] >= 128) and \
                        np.count_nonzero(top) == np.count_nonzero(rendered.crops[i]):
                    found.append("inside")
                else:
                    shared = int(np.count_nonzero((top >= 128) & (under >= 128)))
                    if shared >= max(64, 0.05 * rendered.coverage(j)):
                        found.append("on top of")
            if found:
                out[(i, j)] = found
    return out


def stands_out(rendered, background: np.ndarray, i: int, bbox: list[int], min_fraction: float = 0.3) -> bool:
    """Whether enough of layer i's visible pixels differ clearly (> COLOUR_TOL in a channel) from the background.

    A black note on a black photo region is not something a prompt may say is there.
    """
    x0, y0, x1, y1 = bbox  # the box of layer i's visible pixels: inside its render box
    window = slice(y0, y1), slice(x0, x1)
    bx0, by0 = rendered.boxes[i][:2]
    seen = rendered.visible_crop(i)[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
    alike = cv2.inRange(cv2.absdiff(rendered.rgb[window], background[window]), (0, 0, 0), (COLOUR_TOL,) * 3)
    return np.count_nonzero(alike[seen] == 0) >= min_fraction * max(np.count_nonzero(seen), 1)


def generate_stickers(rng: np.random.Generator, assets: AssetLibrary, width: int, height: int) -> Sample:
    asset_id, background = assets.background(rng, width, height)
    background_phrase = describe_background(assets, asset_id, background)
    short = min(width, height)
    names: set[str] = set()
    sprites = []
    for _ in range(int(rng.choice([1, 2, 3, 4], p=[0.15, 0.35, 0.3, 0.2]))):
        # pixels enough for the largest a sticker is drawn here (bigger arrangements are drawn within `fit`)
        sprite = assets.random_sprite(rng, exclude_names=names, long_side=0.3 * short)
        if sprite.name in names:
            raise Reject("not enough distinct sticker names")
        names.add(sprite.name)
        sprites.append(sprite)
    copies = [1 if rng.random() < 0.7 else int(rng.integers(2, 4)) for _ in sprites]
    singles = [k for k, c in enumerate(copies) if c == 1]
    scene, placed = Scene(background), Footprints()
    squeeze = 1.0 if sum(copies) <= 3 else 0.75
    arrangement = rng.choice(["apart", "inside", "on top of"], p=[0.4, 0.3, 0.3]) if len(singles) >= 2 else "apart"
    todo = [k for k, c in enumerate(copies) for _ in range(c)]
    if arrangement != "apart":
        under_k, top_k = singles[0], singles[1]
        big = (0.45, 0.65) if arrangement == "inside" else (0.3, 0.45)
        matrix = place(rng, sprites[under_k].rgba.shape[:2], assets.fit(sprites[under_k], rng.uniform(*big) * short),
                       width, height, placed, 0.0, 10.0)
        if matrix is None:
            raise Reject("no room for the lower sticker")
        under = Layer(sprites[under_k], matrix)
        placer = place_inside if arrangement == "inside" else place_overlapping
        top_matrix = placer(rng, sprites[top_k], under, width, height, assets.fit(sprites[top_k], math.inf))
        if top_matrix is not None:
            scene.layers += [under, Layer(sprites[top_k], top_matrix)]
            placed.add(sprites[top_k].rgba.shape[:2], top_matrix)
            todo.remove(under_k)
            todo.remove(top_k)
        else:
            placed = Footprints()
    for k in todo:
        long_side = rng.uniform(0.14, 0.3) * squeeze * short
        matrix = place(rng, sprites[k].rgba.shape[:2], assets.fit(sprites[k], long_side), width, height, placed,
                       0.0, 10.0)
        if matrix is None:
            raise Reject("no room for another sticker")
        scene.layers.append(Layer(sprites[k], matrix))

    rendered = render(scene)
    require_visible(rendered, 0.5)
    objects = placed_objects(scene, rendered)
    if len(objects) != len(scene.layers):
        raise Reject("a sticker is not visible")
    for o in objects:
        if not stands_out(rendered, background, o["id"], o["bbox"]):
            raise Reject(f"the {o['name']} blends into what is under it")
    counts: dict[str, int] = {}
    for o in objects:
        counts[o["name"]] = counts.get(o["name"], 0) + 1

    # Relations only between objects whose name occurs once, so "the <name>" is one object.
    unique = [o for o in objects if counts[o["name"]] == 1]
    found = sticker_relations(rendered, scene.layers, unique, width, height)
    name_of = {o["id"]: o["name"] for o in objects}
    stated, used_pairs = [], set()
    layered = [(pair, rel) for pair, rels in found.items() for rel in rels if rel in ("inside", "on top of")]
    flat = [(pair, rels) for pair, rels in found.items() if not {"inside", "on top of"} & set(rels)]
    for (i, j), rel in layered:
        stated.append([name_of[i], rel, name_of[j]])
        used_pairs.add(frozenset((i, j)))
    for k in rng.permutation(len(flat)):
        (i, j), rels = flat[k]
        if len(stated) >= 3:
            break
        if frozenset((i, j)) in used_pairs:
            continue
        stated.append([name_of[i], rels[int(rng.integers(len(rels)))], name_of[j]])
        used_pairs.add(frozenset((i, j)))

    template_id, opening = fill_template(rng, "stickers", [counted(n, name) for name, n in counts.items()],
                                         background_phrase)
    sentences = [f"The {a} {be(a)} {RELATION_PHRASES[rel]} the {b}." for a, rel, b in stated]
    prompt = " ".join([opening] + sentences)
    return Sample(op="stickers", images={"tgt": rendered.rgb},
                  meta={"prompt": prompt, "objects": objects, "facts": {"counts": counts, "relations": stated},
                        "template_id": template_id, "background": background_phrase})


@register("t2i", OPS, requires={"text": ("font",)})  # text draws in the manifests' fonts
def generate(rng: np.random.Generator, assets: AssetLibrary, cfg: GenConfig) -> Sample:
    if cfg.op == "text":
        return generate_text(rng, assets, cfg.width, cfg.height)
    if cfg.op == "shapes":
        return generate_shapes(rng, assets, cfg.width, cfg.height)
    if cfg.op == "stickers":
        return generate_stickers(rng, assets, cfg.width, cfg.height)
    raise ValueError(f"unknown t2i op {cfg.op!r}")
