"""`collage assets build` and `collage assets import`: write manifests for built-in and user-owned sets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from ..errors import UserError
from .manifest import DEFAULT_MANIFEST_DIR, sha256_file, write_manifest
from .sources import BUILTIN_SETS

IMAGE_SUFFIXES = {".png", ".webp", ".tif", ".tiff", ".jpg", ".jpeg"}


def build_builtin(out_dir: str | Path | None = None, sets: list[str] | None = None,
                  note: Callable[[str], None] = print) -> dict[str, int]:
    """Write `builtin-<set>.parquet` for every built-in set (or `sets`); returns rows per set."""
    out_dir = Path(out_dir) if out_dir else DEFAULT_MANIFEST_DIR
    unknown = set(sets or []) - set(BUILTIN_SETS)
    if unknown:
        raise UserError(f"unknown asset set(s) {sorted(unknown)}: choose from {', '.join(BUILTIN_SETS)}")
    counts = {}
    for name in sets or list(BUILTIN_SETS):
        rows = BUILTIN_SETS[name](note)
        target = out_dir / f"builtin-{name}.parquet"
        if rows:
            counts[name] = write_manifest(rows, target)
        elif target.exists():
            target.unlink()  # the package is gone: its manifest would point at nothing
    return counts


def _name_from(path: Path, root: Path, name_from: str) -> str:
    raw = path.parent.name if name_from == "folder" and path.parent != root else path.stem
    raw = re.sub(r"[_\-]+", " ", raw)
    raw = re.sub(r"\s*\d+$", "", raw).strip().lower()
    return raw or path.stem.lower()


def import_folder(folder: str | Path, kind: str, prefix: str, license_: str, attribution: str = "",
                  name_from: str = "filename", out_dir: str | Path | None = None) -> int:
    """A folder of images (RGBA for stickers/cutouts) → `user-<prefix>.parquet`. Names come from the file
    or its folder (`cat_03.png` → `cat`; `cat/0001.png` → `cat` with name_from='folder')."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--folder {folder} is not a directory: point it at a folder of images")
    if kind not in ("sticker", "cutout", "background"):
        raise UserError(f"--kind {kind!r}: choose sticker, cutout or background (fonts: --kind font with a font folder)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"--folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    rows = []
    for path in files:
        rel = path.relative_to(folder).with_suffix("").as_posix()
        rows.append(dict(
            id=f"{prefix}:{rel}", kind=kind, name=_name_from(path, folder, name_from), source="file",
            path=str(path.resolve()), license=license_, attribution=attribution or str(folder),
            sha256=sha256_file(path), bytes=path.stat().st_size, width=None, height=None, extra=None,
        ))
    return write_manifest(rows, Path(out_dir or DEFAULT_MANIFEST_DIR) / f"user-{prefix}.parquet")


def import_fonts(folder: str | Path, prefix: str, license_: str, out_dir: str | Path | None = None) -> int:
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".ttf", ".otf")) if folder.is_dir() else []
    if not files:
        raise UserError(f"--folder {folder} holds no .ttf/.otf fonts")
    rows = [dict(id=f"{prefix}:{p.stem}", kind="font", name=p.stem, source="file", path=str(p.resolve()),
                 license=license_, attribution=str(folder), sha256=sha256_file(p), bytes=p.stat().st_size,
                 width=None, height=None, extra=None) for p in files]
    return write_manifest(rows, Path(out_dir or DEFAULT_MANIFEST_DIR) / f"user-{prefix}.parquet")


def import_coco(annotations: str | Path, images: str | Path, prefix: str, license_: str,
                min_area: float = 1024.0, out_dir: str | Path | None = None) -> int:
    """COCO-style instance annotations → cutouts: one row per polygon-annotated, non-crowd instance,
    named by its category. The polygon becomes the cutout's alpha when the cache decodes it."""
    annotations, images = Path(annotations), Path(images)
    try:
        coco = json.loads(annotations.read_text())
        categories = {c["id"]: c["name"] for c in coco["categories"]}
        files = {im["id"]: im for im in coco["images"]}
        instances = coco["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--annotations {annotations} is not COCO instances json ({exc}); it needs images, annotations, categories") from None
    if not images.is_dir():
        raise UserError(f"--images {images} is not a directory: point it at the COCO image folder")
    rows = []
    for ann in instances:
        seg = ann.get("segmentation")
        if ann.get("iscrowd") or not isinstance(seg, list) or ann.get("area", 0) < min_area:
            continue  # crowd regions and RLE masks are not single objects
        image = files.get(ann["image_id"])
        if image is None or ann.get("category_id") not in categories:
            continue
        x, y, w, h = ann["bbox"]
        # Store the polygon relative to a padded crop so decoding reads only what it needs.
        rows.append(dict(
            id=f"{prefix}:{ann['id']}", kind="cutout", name=categories[ann["category_id"]].lower(), source="file",
            path=str((images / image["file_name"]).resolve()), license=license_, attribution=str(annotations),
            sha256=f"coco-ann-{ann['id']}", bytes=0, width=int(round(w)), height=int(round(h)),
            extra=json.dumps({"polygons": seg, "bbox": [x, y, w, h]}),
        ))
    if not rows:
        raise UserError(f"--annotations {annotations} has no usable instances (non-crowd polygons of area ≥ {min_area})")
    return write_manifest(rows, Path(out_dir or DEFAULT_MANIFEST_DIR) / f"user-{prefix}.parquet")
