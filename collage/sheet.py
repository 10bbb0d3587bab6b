"""`collage sheet`: one example per op of a task, as a small PNG contact sheet (source | target | mask | condition).

Samples come from the same path as a run (`worker.make_sample`), decoded from their encoded members, so a
sheet shows exactly what a shard holds. Drag points are drawn as arrows on the source.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .api import make_config
from .reader import decode_image
from .tasks import get_task
from .worker import make_sample, run_library

COLUMNS = ("src", "tgt", "mask", "cond")
FONT = Path(__file__).resolve().parents[1] / "fonts" / "DejaVuSans.ttf"


def _tile(image: np.ndarray | None, size: int) -> Image.Image:
    if image is None:
        return Image.new("RGB", (size, size), (235, 235, 235))
    pil = Image.fromarray(image).convert("RGB")
    pil.thumbnail((size, size), Image.LANCZOS)
    tile = Image.new("RGB", (size, size), (235, 235, 235))
    tile.paste(pil, ((size - pil.width) // 2, (size - pil.height) // 2))
    return tile


def _draw_points(tile: Image.Image, meta: dict, size: int) -> None:
    scale = min(size / meta["width"], size / meta["height"])
    ox, oy = (size - meta["width"] * scale) / 2, (size - meta["height"] * scale) / 2
    draw = ImageDraw.Draw(tile)
    for x, y, dx, dy in meta.get("points", []):
        a = (ox + x * meta["width"] * scale, oy + y * meta["height"] * scale)
        b = (ox + (x + dx) * meta["width"] * scale, oy + (y + dy) * meta["height"] * scale)
        draw.line([a, b], fill=(255, 40, 40), width=2)
        draw.ellipse([a[0] - 3, a[1] - 3, a[0] + 3, a[1] + 3], fill=(255, 40, 40))
        draw.ellipse([b[0] - 3, b[1] - 3, b[0] + 3, b[1] + 3], fill=(40, 120, 255))


def make_sheet(task: str, out: str | Path, size: int = 256, tile: int = 160, seed: int = 0) -> Path:
    spec = get_task(task)
    font = ImageFont.truetype(str(FONT), 12)
    rows = []
    for op in spec.ops:
        cfg = make_config(task=task, n=1, seed=seed, size=size, ops=[op], image_format="png")
        members, meta = make_sample(cfg, run_library(cfg, None), 0, 0, {"rejects": 0, "failures": 0})
        images = {name.split(".")[0]: decode_image(blob) for name, blob in members.items() if name != "json"}
        tiles = [_tile(images.get(c), tile) for c in COLUMNS]
        if task == "drag":
            _draw_points(tiles[0], meta, tile)
        text = f"{task}/{op}: " + meta["prompt"]
        lines = textwrap.wrap(text, width=tile * len(COLUMNS) // 7)[:3]
        row = Image.new("RGB", (tile * len(COLUMNS), tile + 16 * len(lines) + 6), "white")
        for i, t in enumerate(tiles):
            row.paste(t, (i * tile, 0))
        draw = ImageDraw.Draw(row)
        for i, line in enumerate(lines):
            draw.text((4, tile + 3 + 16 * i), line, fill=(20, 20, 20), font=font)
        rows.append(row)
    header = Image.new("RGB", (tile * len(COLUMNS), 18), (50, 50, 50))
    for i, c in enumerate(COLUMNS):
        ImageDraw.Draw(header).text((i * tile + 4, 2), c, fill="white", font=font)
    sheet = Image.new("RGB", (header.width, header.height + sum(r.height for r in rows)), "white")
    sheet.paste(header, (0, 0))
    y = header.height
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours keep a committed sheet small; it is an illustration, not data.
    sheet.quantize(256, dither=Image.Dither.NONE).save(out, optimize=True)
    return out
