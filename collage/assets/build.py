"""`collage assets build` and `collage assets import`: write manifests for built-in and user-owned sets."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UserError
from .manifest import DEFAULT_MANIFEST_DIR, sha256_file, write_manifest
from .sources import BUILTIN_SETS

IMAGE_SUFFIXES = {".png", ".webp", ".tif", ".tiff", ".jpg", ".jpeg"}
FONT_SUFFIXES = {".ttf", ".otf"}


@dataclass
class ImportResult:
    """What an importer wrote (`imported` rows) and what it refused, as {reason: count}."""

    imported: int
    skipped: dict[str, int] = field(default_factory=dict)

    def skipped_text(self) -> str:
        """'skipped 3: 2 outside --images, 1 malformed bbox' (most frequent first), or '' when none were."""
        if not self.skipped:
            return ""
        reasons = sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0]))
        return f"skipped {sum(self.skipped.values()):,}: " + ", ".join(f"{n:,} {why}" for why, n in reasons)


class _Skip(Exception):
    """One input entry refused for `reason`: counted by the importer, never shown as a traceback."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _resolve_inside(path: Path, root: Path, outside: str) -> Path:
    """`path` with '..' and every symlink resolved; raises _Skip(outside) unless that lies strictly inside
    `root` (already resolved). A symlink inside the folder that points outside it is refused like '../x'."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError):  # symlink loops (RuntimeError before 3.13), NUL bytes
        raise _Skip("unresolvable path") from None
    if resolved == root or not resolved.is_relative_to(root):
        raise _Skip(outside)
    return resolved


def _files_inside(folder: Path, suffixes: set[str], skipped: Counter[str]) -> list[tuple[Path, Path]]:
    """(path as found, resolved path) of the files under `folder` with one of `suffixes`, sorted. Anything
    that resolves outside the folder (a file symlink, or a directory symlink, which rglob does not enter)
    is counted in `skipped` instead."""
    root = folder.resolve()
    found = []
    for path in sorted(folder.rglob("*")):
        wanted = path.suffix.lower() in suffixes
        if not wanted and not (path.is_symlink() and path.is_dir()):
            continue
        try:
            resolved = _resolve_inside(path, root, "outside --folder")
        except _Skip as skip:
            skipped[skip.reason] += 1
            continue
        if resolved.is_dir():
            continue  # a folder named like an image, or a symlink to a folder inside: rglob lists its files
        if not resolved.is_file():
            skipped["not a regular file"] += 1  # a dangling symlink, a fifo: nothing to hash or decode
            continue
        found.append((path, resolved))
    return found


def _file_row(resolved: Path, skipped: Counter[str], **fields) -> dict | None:
    """A manifest row for one imported file, or None (counted) when it cannot be read."""
    try:
        digest, size = sha256_file(resolved), resolved.stat().st_size
    except OSError:
        skipped["unreadable"] += 1
        return None
    return dict(source="file", path=str(resolved), sha256=digest, bytes=size, width=None, height=None, extra=None,
                **fields)


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


# Camera and export file names ("IMG_0042.jpg", "DSC01234.jpg"): no word of what the picture shows.
CAMERA_STEMS = frozenset("img image dsc dscn dscf dcim pxl mvimg pic picture photo gopr dji sam wp screenshot".split())
GENERIC_NAMES = {"background": "photo", "sticker": "object", "cutout": "object"}


def _name_from(path: Path, root: Path, name_from: str, fallback: str = "photo") -> str:
    """The prompt name of an imported file: its words (`cat_03.png` → "cat"), without numbers. A name with no
    word left ("000000397133.jpg" from COCO or LAION, "IMG_0042.jpg", a hash) is `fallback`, never a number."""
    raw = path.parent.name if name_from == "folder" and path.parent != root else path.stem
    words = re.sub(r"[_\-]+", " ", raw).lower().split()
    words = [w for w in words if not re.search(r"\d", w)]  # "03", "2x", "a3f9c0"
    if not words or all(w in CAMERA_STEMS for w in words):
        return fallback
    return " ".join(words)


def import_folder(folder: str | Path, kind: str, prefix: str, license_: str, attribution: str = "",
                  name_from: str = "filename", out_dir: str | Path | None = None) -> ImportResult:
    """A folder of images (RGBA for stickers/cutouts) → `user-<prefix>.parquet`. Names come from the file
    or its folder (`cat_03.png` → `cat`; `cat/0001.png` → `cat` with name_from='folder'); a file name with no
    word (`000000397133.jpg`) gives "photo" for a background, "object" otherwise. Files that resolve
    outside the folder (symlinks included) are refused and counted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--folder {folder} is not a directory: point it at a folder of images")
    if kind not in ("sticker", "cutout", "background"):
        raise UserError(f"--kind {kind!r}: choose sticker, cutout or background (fonts: --kind font with a font folder)")
    skipped: Counter[str] = Counter()
    rows = []
    for path, resolved in _files_inside(folder, IMAGE_SUFFIXES, skipped):
        rel = path.relative_to(folder).with_suffix("").as_posix()
        name = _name_from(path, folder, name_from, GENERIC_NAMES[kind])
        row = _file_row(resolved, skipped, id=f"{prefix}:{rel}", kind=kind, name=name,
                        license=license_, attribution=attribution or str(folder))
        if row:
            rows.append(row)
    if not rows:
        raise UserError(f"--folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                        + _skipped_suffix(skipped))
    count = write_manifest(rows, Path(out_dir or DEFAULT_MANIFEST_DIR) / f"user-{prefix}.parquet")
    return ImportResult(count, dict(skipped))


def import_fonts(folder: str | Path, prefix: str, license_: str, out_dir: str | Path | None = None) -> ImportResult:
    """A folder of .ttf/.otf fonts → `user-<prefix>.parquet`, one row per font named by its file stem."""
    folder = Path(folder)
    skipped: Counter[str] = Counter()
    rows, seen = [], set()
    for path, resolved in _files_inside(folder, FONT_SUFFIXES, skipped) if folder.is_dir() else []:
        if path.stem in seen:  # `a/X.ttf` and `b/X.ttf` would share an id, which a manifest cannot hold
            skipped["duplicate name"] += 1
            continue
        row = _file_row(resolved, skipped, id=f"{prefix}:{path.stem}", kind="font", name=path.stem,
                        license=license_, attribution=str(folder))
        if row:
            seen.add(path.stem)
            rows.append(row)
    if not rows:
        raise UserError(f"--folder {folder} holds no .ttf/.otf fonts" + _skipped_suffix(skipped))
    count = write_manifest(rows, Path(out_dir or DEFAULT_MANIFEST_DIR) / f"user-{prefix}.parquet")
    return ImportResult(count, dict(skipped))


def _skipped_suffix(skipped: Counter[str]) -> str:
    """'; skipped 2: 2 outside --folder' for a UserError message, or '' when nothing was skipped."""
    text = ImportResult(0, dict(skipped)).skipped_text()
    return f"; {text}" if text else ""


def import_coco(annotations: str | Path, images: str | Path, prefix: str, license_: str,
                min_area: float = 1024.0, out_dir: str | Path | None = None) -> ImportResult:
    """COCO-style instance annotations → cutouts: one row per polygon-annotated, non-crowd instance,
    named by its category. The polygon becomes the cutout's alpha when the cache decodes it. Entries that
    are malformed, or whose file_name resolves outside `images`, are skipped and counted by reason."""
    annotations, images = Path(annotations), Path(images)
    try:
        coco = json.loads(annotations.read_text())
        parts = coco["categories"], coco["images"], coco["annotations"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise UserError(f"--annotations {annotations} is not COCO instances json ({exc}); it needs images, annotations, categories") from None
    if not all(isinstance(part, list) for part in parts):
        raise UserError(f"--annotations {annotations} is not COCO instances json: "
                        "images, annotations and categories must be lists")
    if not images.is_dir():
        raise UserError(f"--images {images} is not a directory: point it at the COCO image folder")
    skipped: Counter[str] = Counter()
    categories = _coco_index(parts[0], "category without name", skipped, _has_name)
    files = _coco_index(parts[1], "image without id", skipped)
    root, paths = images.resolve(), {}  # paths: image id → resolved path or skip reason, resolved once
    rows, ids = [], set()
    for ann in parts[2]:
        try:
            row = _coco_row(ann, categories, files, root, paths, min_area)
            if row["id"] in ids:
                raise _Skip("duplicate id")
        except _Skip as skip:
            skipped[skip.reason] += 1
            continue
        ids.add(row["id"])
        rows.append(dict(row, id=f"{prefix}:{row['id']}", license=license_, attribution=str(annotations)))
    if not rows:
        raise UserError(f"--annotations {annotations} has no usable instances (non-crowd polygons of area ≥ {min_area})"
                        + _skipped_suffix(skipped))
    count = write_manifest(rows, Path(out_dir or DEFAULT_MANIFEST_DIR) / f"user-{prefix}.parquet")
    return ImportResult(count, dict(skipped))


def _is_id(value: object) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)  # hashable, and 1 is not True


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _has_name(category: dict) -> bool:
    name = category.get("name")
    return isinstance(name, str) and bool(name.strip())


def _coco_index(entries: list, reason: str, skipped: Counter[str],
                usable: Callable[[dict], bool] = lambda entry: True) -> dict:
    """{id: entry} of the COCO images or categories that are dicts with an id and `usable` (counted otherwise).
    An image's file_name is checked later, once per referenced image, against --images."""
    index = {}
    for entry in entries:
        if not isinstance(entry, dict) or not _is_id(entry.get("id")) or not usable(entry):
            skipped[reason] += 1
            continue
        index[entry["id"]] = entry
    return index


def _coco_polygons(seg: object) -> list:
    """The annotation's polygons: a list of [x0, y0, x1, y1, …] with ≥ 3 points each; _Skip otherwise."""
    if isinstance(seg, dict):
        raise _Skip("RLE mask")  # a run-length mask, not polygons: not a single object outline
    if not isinstance(seg, list) or not seg or not all(
            isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0 and all(map(_is_number, poly))
            for poly in seg):
        raise _Skip("malformed segmentation")
    return seg


def _coco_bbox(bbox: object) -> list:
    """[x, y, w, h] of finite numbers with a positive size that fits the manifest's int32 width/height."""
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))
            and 0 < bbox[2] < 2**31 and 0 < bbox[3] < 2**31):
        raise _Skip("malformed bbox")
    return bbox


def _coco_path(image: dict, root: Path) -> Path:
    """The image's file inside --images (resolved, symlinks included); _Skip for anything else."""
    name = image.get("file_name")
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        raise _Skip("malformed file_name")
    return _resolve_inside(root / name, root, "outside --images")  # an absolute name replaces root: refused


def _coco_row(ann: object, categories: dict, files: dict, root: Path, paths: dict[object, Path | str],
              min_area: float) -> dict:
    """The manifest row (id still without its prefix) of one annotation; raises _Skip with the reason."""
    if not isinstance(ann, dict):
        raise _Skip("malformed annotation")
    if ann.get("iscrowd"):
        raise _Skip("crowd")  # crowd regions are not single objects
    polygons = _coco_polygons(ann.get("segmentation"))
    area = ann.get("area", 0)
    if not _is_number(area):
        raise _Skip("malformed area")
    if area < min_area:
        raise _Skip("area below --min-area")
    if not _is_id(ann.get("id")):
        raise _Skip("malformed id")
    image_id, category_id = ann.get("image_id"), ann.get("category_id")
    if not _is_id(image_id) or image_id not in files:
        raise _Skip("unknown image_id")
    if not _is_id(category_id) or category_id not in categories:
        raise _Skip("unknown category_id")
    x, y, w, h = _coco_bbox(ann.get("bbox"))
    if image_id not in paths:
        try:
            paths[image_id] = _coco_path(files[image_id], root)
        except _Skip as skip:
            paths[image_id] = skip.reason
    path = paths[image_id]
    if isinstance(path, str):  # the image was refused: so is every annotation on it
        raise _Skip(path)
    # Store the polygon relative to a padded crop so decoding reads only what it needs.
    return dict(
        id=str(ann["id"]), kind="cutout", name=categories[category_id]["name"].lower(), source="file", path=str(path),
        sha256=f"coco-ann-{ann['id']}", bytes=0, width=int(round(w)), height=int(round(h)),
        extra=json.dumps({"polygons": polygons, "bbox": [x, y, w, h]}),
    )
