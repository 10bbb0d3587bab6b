"""The t2i `text` op (imported by t2i.py), and the palette-colour helpers it shares with the shapes op.

1-3 strings per sample, each one a word or phrase of `t2i_words` on one line, or a phrase broken at its
spaces onto 2-3 lines (MULTILINE_SHARE), upright or turned by up to ±MAX_ANGLE degrees (ROTATED_SHARE),
plain or with an outline (OUTLINE_SHARE) in a second palette colour that is never the fill's own. Fonts:
every usable font row (the repo's and the `debian-fonts` set); a family is drawn first, then one of its
faces (row `extra.family`; a row without one is its own family).

How a string is drawn (what a checker re-renders):
- each line alone with Pillow (FreeType) at `font_size` px, `stroke` px of stroke (0 without an outline),
  anchored at its baseline's left end ("ls"); the lines' baselines `line_pitch` px apart, each line's box
  (Pillow's getbbox with the stroke) aligned `align` (left / center / right) to the widest; the lines'
  coverages combined by their maximum, cropped to the tight box of coverage > 0 (the upright ink);
- turned by `angle` degrees (counter-clockwise on screen, 0 = level): cv2.getRotationMatrix2D about the
  upright crop's centre ((w - 1) / 2, (h - 1) / 2), shifted so the turned crop's corners lie 1 px inside a
  new image, warped with INTER_CUBIC, coverage under 16 then cleared (upright strings are not warped);
- the fill's coverage (the same, without the stroke) goes through the same steps; the outline colour
  paints the ink, then the fill colour paints the fill coverage.

Labels (json `facts.texts`): `bbox` is the tight axis-aligned box of every canvas pixel the string's
(turned) ink touches; `quad` the upright ink box's corners (top left, top right, bottom right, bottom left
as read) after the turn, in canvas pixels whose edges are at integers (so an upright string's quad is its
bbox; a turned string's faint resampled edge may reach up to 1.5 px past it); `line_bboxes` each line's ink box the same way. `text` is the lines joined by one space (what the
prompt quotes), `lines` the lines. `size` is from `letter_height`, the tallest line's upright ink height.

Legibility, measured on the pixels around the glyphs: the ring of background pixels within
max(3, font_size / 6) px of the ink (inside the letters' holes too), taken before drawing. The colour that
meets that background (the outline's when there is one, else the fill's) must reach a WCAG contrast ratio
(relative luminance) of at least MIN_CONTRAST with 95 % of the ring's pixels (json `contrast`: that 5th
percentile ratio); a fill inside an outline must reach MIN_CONTRAST against the outline colour. Every
colour used is also one no more than 1 % of the background under the string comes near (BACKGROUND_TOL),
and after painting at least LEGIBLE of the glyphs' pixels (coverage ≥ 50 %) must show the fill colour
within COLOUR_TOL (and as much of the outline ring its colour). A string failing any of it is drawn again
(another string, font, place), up to TEXT_TRIES times; a sample with none placed is rejected.
"""

from __future__ import annotations

import functools
import json
from typing import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from shapely.geometry import Polygon

from ..assets import AssetLibrary
from ..assets.sources import resolve_path
from ..errors import Reject
from ..palette import NAMES, PALETTE
from ..render import mask_bbox
from ..sample import Sample
from ..words import join_words, number_word, sentence_case, with_article
from .common import describe_background, pick_template
from .labels import position_word
from .t2i_words import PHRASES, WORDS

COLOUR_TOL = 40  # a pixel "has" palette colour c when every channel is within this of c (the checkers' rule)
BACKGROUND_TOL = 72  # a colour is usable where the background has no pixel this close to it (room for JPEG)
TEXT_SIZE_LIMITS = (0.06, 0.12)  # letter height / shorter canvas side: < small ≤ medium < large
MIN_FONT_PX = 12
LEGIBLE = 0.6  # share of a string's stroke pixels that must show its colour within COLOUR_TOL
MIN_OUTLINE_PX = 2  # a 1 px outline blends into the fill and the background: it would not read as its colour
MIN_CONTRAST = 3.0  # WCAG contrast ratio (large text, AA) of the outer colour against the ring around the text
CONTRAST_PERCENTILE = 5  # ... reached by all but this percent of the ring's pixels
MULTILINE_SHARE, ROTATED_SHARE, OUTLINE_SHARE = 0.25, 0.3, 0.4
MAX_ANGLE = 30.0
MIN_ANGLE = 4.0  # a turned string is turned by at least this (a smaller turn reads as a sloppy level line)
TEXT_TRIES = 10
POSITION_PHRASES = {"top left": "at the top left", "top": "at the top", "top right": "at the top right",
                    "left": "on the left", "center": "in the center", "right": "on the right",
                    "bottom left": "at the bottom left", "bottom": "at the bottom",
                    "bottom right": "at the bottom right"}
TEXT_TEMPLATES = ("An image with {parts}, on {background}.",
                  "{Background} showing {parts}.",
                  "A graphic with {parts} over {background}.",
                  "A design on {background} featuring {parts}.")


def size_word(extent: float, reference: float, limits: tuple[float, float]) -> str:
    ratio = extent / reference
    return "small" if ratio < limits[0] else "medium" if ratio < limits[1] else "large"


# --- colours ---------------------------------------------------------------------------------------

def near_counts(image: np.ndarray, tol: int) -> dict[str, int]:
    """Per palette colour, an upper bound on the pixels with every channel within `tol` of it.

    One 16³ histogram instead of one pass per colour: bins overlapping the tolerance box are summed, so the
    count can only over-state (a colour reported absent is absent).
    """
    hist = cv2.calcHist([np.ascontiguousarray(image)], [0, 1, 2], None, [16, 16, 16], [0, 256, 0, 256, 0, 256])
    out = {}
    for name in NAMES:
        lo = [max(0, c - tol) // 16 for c in PALETTE[name]]
        hi = [min(255, c + tol) // 16 + 1 for c in PALETTE[name]]
        out[name] = int(hist[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].sum())
    return out


def colour_mask(image: np.ndarray, rgb: tuple[int, int, int], tol: int = COLOUR_TOL) -> np.ndarray:
    """uint8 0/255: pixels with every channel within `tol` of `rgb`."""
    lo = tuple(max(0, c - tol) for c in rgb)
    hi = tuple(min(255, c + tol) for c in rgb)
    return cv2.inRange(image, lo, hi)


def usable_colours(region: np.ndarray, max_fraction: float) -> list[str]:
    """Palette colours (in palette order: never a set, whose order changes with the hash seed) that at most
    `max_fraction` of the region's pixels come near (BACKGROUND_TOL)."""
    limit = max_fraction * region.shape[0] * region.shape[1]
    return [name for name, n in near_counts(region, BACKGROUND_TOL).items() if n <= limit]


_LINEAR = np.where(np.arange(256) / 255 <= 0.04045, np.arange(256) / 255 / 12.92,
                   ((np.arange(256) / 255 + 0.055) / 1.055) ** 2.4)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of uint8 RGB values (..., 3) → (...)."""
    lin = _LINEAR[np.asarray(rgb, np.uint8)]
    return lin[..., 0] * 0.2126 + lin[..., 1] * 0.7152 + lin[..., 2] * 0.0722


def contrast_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """WCAG contrast ratio (1-21) between luminances a and b (broadcast)."""
    return (np.maximum(a, b) + 0.05) / (np.minimum(a, b) + 0.05)


PALETTE_LUMINANCE = luminance(np.array([PALETTE[n] for n in NAMES]))


def ring_contrast(ring_pixels: np.ndarray) -> tuple[set[str], Callable[[str], float]]:
    """(the palette colours that reach MIN_CONTRAST with all but CONTRAST_PERCENTILE % of the ring's pixels;
    a function giving a colour's contrast there: the ratio that all but that share of the pixels reach).

    A colour of luminance L falls short of ratio R exactly on the pixels whose luminance lies strictly
    between (L + 0.05) / R − 0.05 and R·(L + 0.05) − 0.05: two binary searches in the sorted luminances per
    colour, not a ratio per pixel and colour (which was most of a text sample's cost)."""
    lum = np.sort(luminance(ring_pixels.reshape(-1, 3)))
    k = int(CONTRAST_PERCENTILE / 100 * (len(lum) - 1))  # the order statistic that must reach the ratio
    lo = (PALETTE_LUMINANCE + 0.05) / MIN_CONTRAST - 0.05
    hi = MIN_CONTRAST * (PALETTE_LUMINANCE + 0.05) - 0.05
    short = np.searchsorted(lum, hi, side="left") - np.searchsorted(lum, lo, side="right")
    passing = {n for n, s in zip(NAMES, short.tolist()) if s <= k}

    def contrast(name: str) -> float:
        ratios = contrast_ratio(PALETTE_LUMINANCE[NAMES.index(name)], lum)
        return float(np.partition(ratios, k)[k])
    return passing, contrast


def ring_width(px: int) -> int:
    """How far around the glyphs of a px-size string the legibility ring reaches."""
    return max(3, px // 6)


def text_ring(ink: np.ndarray, px: int) -> tuple[np.ndarray, int]:
    """(mask of the background pixels around the ink, padded by r on every side; r)."""
    r = ring_width(px)
    solid = np.pad((ink > 0).astype(np.uint8), r)
    near = cv2.dilate(solid, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return (near > 0) & (solid == 0), r


# --- drawing ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=512)
def load_font(path: str, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, px)


def line_pitch(font: ImageFont.FreeTypeFont, stroke: int) -> int:
    """Baseline-to-baseline distance of a multi-line string."""
    ascent, descent = font.getmetrics()
    return int(round(1.08 * (ascent + descent))) + 2 * stroke


def upright_masks(font: ImageFont.FreeTypeFont, lines: list[str], stroke: int, align: str, pitch: int,
                  with_fill: bool = False) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
    """(ink, fill or None, per-line ink), uint8 coverage, all cropped to the ink's tight box (fill ⊆ ink)."""
    boxes = [font.getbbox(line, stroke_width=stroke, anchor="ls") for line in lines]
    width = max(b[2] - b[0] for b in boxes)
    lefts = [0 if align == "left" else (width - (b[2] - b[0])) // 2 if align == "center" else width - (b[2] - b[0])
             for b in boxes]
    top = min(b[1] + i * pitch for i, b in enumerate(boxes))
    bottom = max(b[3] + i * pitch for i, b in enumerate(boxes))
    size = (width + 2, bottom - top + 2)
    per_line, fills = [], []
    for i, (line, b) in enumerate(zip(lines, boxes)):
        origin = (1 + lefts[i] - b[0], 1 - top + i * pitch)
        image = Image.new("L", size)
        ImageDraw.Draw(image).text(origin, line, fill=255, font=font, anchor="ls", stroke_width=stroke,
                                   stroke_fill=255)
        per_line.append(np.asarray(image))
        if with_fill:
            image = Image.new("L", size)
            ImageDraw.Draw(image).text(origin, line, fill=255, font=font, anchor="ls")
            fills.append(np.asarray(image))
    ink = functools.reduce(np.maximum, per_line)
    bbox = mask_bbox(ink > 0)
    if bbox is None:
        return ink[:0, :0], None, []
    x0, y0, x1, y1 = bbox
    crop = (slice(y0, y1), slice(x0, x1))
    fill = functools.reduce(np.maximum, fills)[crop] if with_fill else None
    return ink[crop], fill, [m[crop] for m in per_line]


def turn_matrix(h: int, w: int, angle: float) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    """(2×3 matrix, (out w, out h), the crop's corners after it, cv2 pixel-centre coordinates)."""
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    mapped = corners @ m[:, :2].T + m[:, 2]
    lo, hi = np.floor(mapped.min(axis=0)), np.ceil(mapped.max(axis=0))
    m[:, 2] += 1 - lo
    return m, (int(hi[0] - lo[0]) + 2, int(hi[1] - lo[1]) + 2), mapped + (1 - lo)


def turn(mask: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The coverage turned; the cubic kernel's faint ringing (under 16/255) is cleared, so that no pixel past
    the turned glyphs counts as ink."""
    turned = cv2.warpAffine(mask, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.threshold(turned, 15, 255, cv2.THRESH_TOZERO)[1]


def render_text(font: ImageFont.FreeTypeFont, lines: list[str], stroke: int, align: str, angle: float,
                with_fill: bool = False) -> dict | None:
    """The string's coverages as drawn: {"ink", "fill", "lines" (per-line ink), "quad" (corners, edge
    coordinates relative to the ink crop), "letter_height"}, all cropped to the (turned) ink's tight box."""
    pitch = line_pitch(font, stroke)
    ink, fill, per_line = upright_masks(font, lines, stroke, align, pitch, with_fill)
    if ink.size == 0:
        return None
    letter_height = max(b[3] - b[1] for b in (mask_bbox(m > 0) for m in per_line) if b)
    h, w = ink.shape
    quad = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    if angle:
        m, size, corners = turn_matrix(h, w, angle)
        ink = turn(ink, m, size)
        fill = turn(fill, m, size) if fill is not None else None
        per_line = [turn(p, m, size) for p in per_line]
        x0, y0, x1, y1 = mask_bbox(ink > 0)
        crop = (slice(y0, y1), slice(x0, x1))
        ink, per_line = ink[crop], [p[crop] for p in per_line]
        fill = fill[crop] if fill is not None else None
        quad = corners + 0.5 - (x0, y0)
    return {"ink": ink, "fill": fill, "lines": per_line, "quad": quad, "pitch": pitch,
            "letter_height": int(letter_height)}


def paint(region: np.ndarray, coverage: np.ndarray, rgb: tuple[int, int, int]) -> None:
    """In place: region ← region·(1 − a) + rgb·a, with a = coverage / 255."""
    a = cv2.merge((coverage, coverage, coverage))
    colour = np.empty_like(region)
    colour[:] = rgb
    # cv2's saturating uint8 arithmetic (each product rounded) is several times faster than widening numpy math.
    region[:] = cv2.add(cv2.multiply(region, cv2.bitwise_not(a), scale=1 / 255), cv2.multiply(colour, a, scale=1 / 255))


def legible(painted: np.ndarray, strokes: np.ndarray, colour: str) -> bool:
    """Whether at least LEGIBLE of the stroke pixels really show `colour` (within COLOUR_TOL) after painting."""
    shown = np.count_nonzero(colour_mask(painted, PALETTE[colour])[strokes])
    return shown >= max(8, LEGIBLE * np.count_nonzero(strokes))


def cased(text: str, case: float) -> str:
    if case < 0.25:
        return text.upper()
    if case < 0.5:  # capitalise each word (str.title would also capitalise after an apostrophe: "Let'S")
        return " ".join(word[:1].upper() + word[1:] for word in text.split(" "))
    return text


def draw_lines(rng: np.random.Generator) -> list[str]:
    """The string's lines: one word or phrase, or (MULTILINE_SHARE) a phrase broken at its spaces into 2-3."""
    if rng.random() < MULTILINE_SHARE:
        text = cased(PHRASES[int(rng.integers(len(PHRASES)))], rng.random())
        words = text.split(" ")
        if len(words) >= 2:
            n = min(len(words), int(rng.choice([2, 3], p=[0.65, 0.35])))
            cuts = sorted(int(c) + 1 for c in rng.permutation(len(words) - 1)[:n - 1])
            return [" ".join(words[a:b]) for a, b in zip([0] + cuts, cuts + [len(words)])]
        return [text]
    text = PHRASES[int(rng.integers(len(PHRASES)))] if rng.random() < 0.3 else WORDS[int(rng.integers(len(WORDS)))]
    return [cased(text, rng.random())]


def draw_string(rng: np.random.Generator) -> str:
    """One string as it is quoted: its lines joined by a space."""
    return " ".join(draw_lines(rng))


def font_families(fonts: list[dict]) -> list[list[dict]]:
    """The font rows grouped by family (row extra "family", else the row itself), in manifest order."""
    groups: dict[str, list[dict]] = {}
    for row in fonts:
        extra = json.loads(row["extra"]) if row.get("extra") else {}
        groups.setdefault(extra.get("family") or row["id"], []).append(row)
    return list(groups.values())


def pick_text_colours(rng: np.random.Generator, region: np.ndarray, ring_pixels: np.ndarray,
                      outlined: bool) -> tuple[str, str | None, float] | None:
    """(fill, outline or None, measured contrast of the outer colour) legible over the background, or None."""
    usable = usable_colours(region, 0.01)
    passing, contrast = ring_contrast(ring_pixels)
    outer = [n for n in usable if n in passing]
    if not outer:
        return None
    first = outer[int(rng.integers(len(outer)))]
    if not outlined:
        return first, None, contrast(first)
    lum = dict(zip(NAMES, PALETTE_LUMINANCE))
    fills = [n for n in usable if n != first and contrast_ratio(lum[n], lum[first]) >= MIN_CONTRAST]
    if not fills:
        return None
    return fills[int(rng.integers(len(fills)))], first, contrast(first)


def text_phrase(t: dict) -> str:
    """How the prompt states one string."""
    outline = f" with {with_article(t['outline'] + ' outline')}" if t["outline"] else ""
    layout = []
    if len(t["lines"]) > 1:
        layout.append(f"on {number_word(len(t['lines']))} lines")
    if t["angle"]:
        layout.append("set at a slant")
    extra = (" " + " and ".join(layout)) if layout else ""
    return (f'the text "{t["text"]}" in {t["size"]} {t["color"]} letters{outline}{extra} '
            f'{POSITION_PHRASES[t["position"]]}')


def generate_text(rng: np.random.Generator, assets: AssetLibrary, width: int, height: int) -> Sample:
    if not assets.fonts:
        raise Reject("no fonts in the asset library")
    families = font_families(assets.fonts)
    asset_id, canvas = assets.background(rng, width, height, without_text=True)
    background = describe_background(assets, asset_id, canvas)
    canvas = np.array(canvas)  # own the pixels we draw on
    short = min(width, height)
    gap = max(4, round(0.02 * short))
    taken: list[tuple[Polygon, int]] = []  # each string's turned box and the width of its legibility ring
    texts, objects = [], []
    for _ in range(int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))):
        for _ in range(TEXT_TRIES):
            lines = draw_lines(rng)
            family = families[int(rng.integers(len(families)))]
            font_row = family[int(rng.integers(len(family)))]
            px = max(MIN_FONT_PX, round(rng.uniform(0.045, 0.2) * short / (1 + 0.25 * (len(lines) - 1))))
            outlined = rng.random() < OUTLINE_SHARE
            stroke_frac = rng.uniform(0.04, 0.08)
            angle = float(round(rng.uniform(MIN_ANGLE, MAX_ANGLE) * rng.choice([-1, 1]), 1)) \
                if rng.random() < ROTATED_SHARE else 0.0
            align = ("left", "center", "right")[int(rng.choice(3, p=[0.3, 0.5, 0.2]))] if len(lines) > 1 else "left"
            path = str(resolve_path(font_row))
            stroke = max(MIN_OUTLINE_PX, round(px * stroke_frac)) if outlined else 0
            drawn = render_text(load_font(path, px), lines, stroke, align, angle, with_fill=outlined)
            if drawn is None:
                continue
            fit = min((width - 8) / drawn["ink"].shape[1], (height - 8) / drawn["ink"].shape[0])
            if fit < 1:  # too long for this canvas: shrink to fit
                px = int(px * fit * 0.95)
                if px < MIN_FONT_PX:
                    continue
                stroke = max(MIN_OUTLINE_PX, round(px * stroke_frac)) if outlined else 0
                drawn = render_text(load_font(path, px), lines, stroke, align, angle, with_fill=outlined)
                if drawn is None:
                    continue
            ink, fill = drawn["ink"], drawn["fill"]
            h, w = ink.shape
            if w > width - 4 or h > height - 4:
                continue
            x0, y0 = int(rng.integers(2, width - w - 1)), int(rng.integers(2, height - h - 1))
            quad = drawn["quad"] + (x0, y0)
            shape = Polygon(quad).buffer(0)
            r = ring_width(px)  # no other string may paint into either string's ring
            if any(shape.distance(other) < max(gap, r, other_r) + 1 for other, other_r in taken):
                continue
            region = canvas[y0:y0 + h, x0:x0 + w]
            ring, r = text_ring(ink, px)  # the ring's window: the ink's box padded by r, clipped to the canvas
            wy0, wx0 = max(0, y0 - r), max(0, x0 - r)
            wy1, wx1 = min(height, y0 + h + r), min(width, x0 + w + r)
            ring = ring[wy0 - (y0 - r):wy1 - (y0 - r), wx0 - (x0 - r):wx1 - (x0 - r)]
            ring_pixels = canvas[wy0:wy1, wx0:wx1][ring]
            if len(ring_pixels) < 16:
                continue
            colours = pick_text_colours(rng, region, ring_pixels, outlined)
            if colours is None:
                continue  # no palette colour reads against this background here: draw again
            colour, outline, contrast = colours
            painted = region.copy()
            if outline is not None:
                paint(painted, ink, PALETTE[outline])
                paint(painted, fill, PALETTE[colour])
                if not legible(painted, (ink >= 128) & (fill == 0), outline):
                    continue
            else:
                paint(painted, ink, PALETTE[colour])
            if not legible(painted, (fill if outline else ink) >= 128, colour):
                continue  # thin strokes at a small size blend away: not text "in <colour>"
            region[:] = painted
            taken.append((shape, r))
            bbox = [x0, y0, x0 + w, y0 + h]
            line_bboxes = [[x0 + b[0], y0 + b[1], x0 + b[2], y0 + b[3]] for b in
                           (mask_bbox(m > 0) for m in drawn["lines"])]
            text = " ".join(lines)
            texts.append({
                "text": text, "lines": lines, "color": colour, "rgb": list(PALETTE[colour]),
                "font": font_row["name"], "font_size": px, "stroke": stroke, "outline": outline,
                "angle": angle, "align": align, "line_pitch": drawn["pitch"],
                "letter_height": drawn["letter_height"],
                "size": size_word(drawn["letter_height"], short, TEXT_SIZE_LIMITS),
                "position": position_word(bbox, width, height), "bbox": bbox,
                "quad": [[round(float(x), 2), round(float(y), 2)] for x, y in quad],
                "line_bboxes": line_bboxes, "contrast": round(contrast, 2),
            })
            objects.append({"id": len(objects), "asset": font_row["id"], "name": text, "bbox": bbox})
            break
    if not texts:
        raise Reject("no string could be placed legibly")
    template_id, template = pick_template(rng, "t2i", "text", TEXT_TEMPLATES)
    prompt = template.format(parts=join_words([text_phrase(t) for t in texts]), background=background,
                             Background=sentence_case(background))
    return Sample(op="text", images={"tgt": canvas}, meta={"prompt": prompt, "objects": objects,
                                                           "facts": {"texts": texts}, "template_id": template_id,
                                                           "background": background})
