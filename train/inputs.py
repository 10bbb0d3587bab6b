"""Precompute's reader: which source shards there are, their samples, and the size policy.

Sources are collage run directories (their finished shards), single shard files or globs, and plain
text-to-image data as img2dataset writes it: webdataset tars of `jpg` + `txt` (+ `json`), or folders of
such loose files; each local or in an object store (s3://…, walked through universal_pathlib, read as one
buffered stream per shard). Every source shard maps to one feature shard of the same name and index, so a feature
run mirrors its sources shard for shard and key for key (FEATURE_FORMAT.md).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import re
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import fsspec
import numpy as np
from PIL import Image

from collage.config import ASPECT_BUCKETS, aspect_buckets
from collage.errors import UserError
from collage.storage import as_path, is_remote

SIZES = (256, 512, 1024)
IMAGE_MEMBERS = ("tgt", "src", "mask", "cond")
EXTERNAL_IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
_SHARD_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)-(?P<shard>\d{6})\.tar$")
SQUARE_BUCKET = ASPECT_BUCKETS // 2
REMOTE_BLOCK = 16 << 20  # a store's shard is read front to back: large blocks, few requests


@dataclass(frozen=True)
class SourceShard:
    """One source shard and the feature shard it becomes (`{name}-{shard:06d}`)."""

    name: str
    shard: int
    path: str  # a .tar, or a folder of loose files (img2dataset "files" layout)
    external: bool  # plain text-to-image data (task t2i, op external)
    run_digest: str  # sha256 of its run's run.json (collage) or "" (external)

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.shard:06d}"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "external"


def _run_shards(folder: Path) -> list[SourceShard]:
    """A collage run's finished shards (those with a stats marker), or an img2dataset folder's shards."""
    names = {p.name for p in folder.iterdir()}  # one listing: not a request per shard in a store
    run_json = folder / "run.json"
    if "run.json" in names and run_json.is_file():
        digest = _digest(run_json)
        out = []
        for name in sorted(n for n in names if n.endswith(".tar")):
            match = _SHARD_NAME.match(name)
            if match and name[:-4] + ".stats.json" in names:
                out.append(SourceShard(match["name"], int(match["shard"]), str(folder / name), False, digest))
        return out
    tars = [folder / name for name in sorted(n for n in names if n.endswith(".tar"))]
    if tars:
        return [_external_tar(tar, i) for i, tar in enumerate(tars)]
    # img2dataset "files" layout: numbered subfolders of loose files, or the folder itself
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and _has_images(p))
    folders = subfolders or ([folder] if _has_images(folder) else [])
    name = _sanitize(folder.name)
    return [SourceShard(name, int(f.name) if f.name.isdigit() and f != folder else i, str(f), True, "")
            for i, f in enumerate(folders)]


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower().lstrip(".") in EXTERNAL_IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file())


def _external_tar(tar: Path, index: int) -> SourceShard:
    match = _SHARD_NAME.match(tar.name)
    if match:
        return SourceShard(match["name"], int(match["shard"]), str(tar), True, "")
    shard = int(tar.stem) if tar.stem.isdigit() else index
    return SourceShard(_sanitize(tar.parent.name), shard, str(tar), True, "")


def resolve_sources(sources: list[str]) -> list[SourceShard]:
    """Every source shard of SOURCES, or one line naming the source that does not exist or holds none."""
    if not sources:
        raise UserError("give at least one source: a collage run directory, shard files or globs, or an "
                        "img2dataset-style folder")
    shards: list[SourceShard] = []
    for source in sources:
        paths = _expand(source)
        found: list[SourceShard] = []
        for path in paths:
            if path.is_dir():
                found += _run_shards(path)
            elif path.is_file() and path.suffix == ".tar":
                run_json = path.parent / "run.json"
                match = _SHARD_NAME.match(path.name)
                if run_json.is_file() and match:
                    found.append(SourceShard(match["name"], int(match["shard"]), str(path), False, _digest(run_json)))
                else:
                    found.append(_external_tar(path, len(found)))
        if not paths or (len(paths) == 1 and not paths[0].exists()):
            raise UserError(f"source {source}: no such run directory, shard or folder")
        if not found:
            raise UserError(f"source {source}: holds no shards (no finished collage shards, .tar files or "
                            "jpg + txt files)")
        shards += found
    stems: dict[str, str] = {}
    for s in shards:
        if s.stem in stems and stems[s.stem] != s.path:
            raise UserError(f"sources {stems[s.stem]} and {s.path} would both become {s.stem}.tar; "
                            "precompute them into separate --out folders")
        stems[s.stem] = s.path
    return sorted({s.stem: s for s in shards}.values(), key=lambda s: (s.name, s.shard))


def _expand(source: str) -> list[Path]:
    """The paths a source names: itself, or a glob's matches (sorted); a store's are UPaths, its prefix
    probed once (one line and exit 2 for an unreachable store, a missing bucket or no credentials)."""
    if not is_remote(source):
        return [Path(p) for p in sorted(glob.glob(source))] if glob.has_magic(source) else [Path(source)]
    if not glob.has_magic(source):
        return [as_path(source, "source")]
    magic = min(source.index(c) for c in "*?[" if c in source)
    as_path(source[:source.rindex("/", 0, magic)], "source")  # the fixed part of the glob
    fs, _ = fsspec.core.url_to_fs(source)
    protocol = source.split("://", 1)[0]
    return [as_path(f"{protocol}://{match}", probe=False) for match in sorted(fs.glob(source))]


# --- reading samples -------------------------------------------------------------------------------

def iter_raw_samples(source: SourceShard) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {suffix: bytes}) in shard order, grouped as webdataset groups members. A damaged tar ends
    the iteration with the samples read so far; the caller counts what was lost (OSError/TarError)."""
    if not source.path.endswith(".tar"):
        yield from _iter_folder(as_path(source.path, probe=False))
        return
    current, members = None, {}
    with _open_shard(source.path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            base = member.name.rsplit("/", 1)[-1]
            key, dot, suffix = base.partition(".")
            if not dot:
                continue
            if key != current:
                if current is not None:
                    yield current, members
                current, members = key, {}
            members[suffix.lower()] = tar.extractfile(member).read()
    if current is not None:
        yield current, members


@contextmanager
def _open_shard(path: str) -> Iterator[tarfile.TarFile]:
    """The tar at a local path, or at a store URL through one buffered file read front to back."""
    if not is_remote(path):
        with tarfile.open(path, "r:") as tar:
            yield tar
        return
    fs, where = fsspec.core.url_to_fs(path)
    with fs.open(where, "rb", block_size=REMOTE_BLOCK) as f, tarfile.open(fileobj=f, mode="r:") as tar:
        yield tar


def _iter_folder(folder: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    groups: dict[str, dict[str, bytes]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and "." in path.name:
            key, _, suffix = path.name.partition(".")
            groups.setdefault(key, {})[suffix.lower()] = path.read_bytes()
    yield from groups.items()


@dataclass
class PreparedSample:
    key: str
    meta: dict  # the source json (plus width/height after the size policy and source_size)
    images: dict[str, np.ndarray]  # RGB (H, W, 3) or L (H, W) uint8 at the encoded size


def decode(data: bytes, gray: bool = False) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im.convert("L" if gray else "RGB"))


def nearest_bucket(width: int, height: int, size: int) -> int:
    """The aspect bucket (index into aspect_buckets(size)) nearest to width:height in log-ratio."""
    target = math.log(width / height)
    buckets = aspect_buckets(size)
    return min(range(len(buckets)), key=lambda i: abs(math.log(buckets[i][0] / buckets[i][1]) - target))


def _fit(image: np.ndarray, width: int, height: int, nearest: bool) -> np.ndarray:
    """Resize to cover (width, height) keeping the aspect, then centre-crop: exact for a bucket's own aspect."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    scale = max(width / w, height / h)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    interpolation = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    resized = cv2.resize(image, size, interpolation=interpolation)
    x0, y0 = (size[0] - width) // 2, (size[1] - height) // 2
    return np.ascontiguousarray(resized[y0:y0 + height, x0:x0 + width])


def prepare(key: str, members: dict[str, bytes], size: int, external: bool) -> PreparedSample:
    """Decode a sample and bring its images to the size policy's bucket (raises on a corrupt sample)."""
    if external:
        suffix = next((s for s in EXTERNAL_IMAGE_SUFFIXES if s in members), None)
        if suffix is None or "txt" not in members:
            raise ValueError("an external sample needs an image (jpg/png/webp) and a txt caption")
        caption = members["txt"].decode("utf-8").strip()
        extra = json.loads(members["json"]) if "json" in members else {}
        raw = {"tgt": decode(members[suffix])}
        meta = {**(extra if isinstance(extra, dict) else {}), "task": "t2i", "op": "external",
                "prompt": caption, "caption": caption, "caption_source": "external"}
        bucket = nearest_bucket(raw["tgt"].shape[1], raw["tgt"].shape[0], size)
    else:
        meta = json.loads(members["json"])
        if not isinstance(meta, dict) or not isinstance(meta.get("task"), str):
            raise ValueError("its json is not a collage sample's json")
        raw = {}
        for name in IMAGE_MEMBERS:
            member = next((s for s in members if s.split(".")[0] == name), None)
            if member is not None:
                raw[name] = decode(members[member], gray=name == "mask")
        if "tgt" not in raw:
            raise ValueError("no target image")
        bucket = meta.get("bucket", SQUARE_BUCKET)
        if not isinstance(bucket, int) or not 0 <= bucket < ASPECT_BUCKETS:
            bucket = nearest_bucket(raw["tgt"].shape[1], raw["tgt"].shape[0], size)
    width, height = aspect_buckets(size)[bucket]
    images = {name: _fit(image, width, height, nearest=name == "mask") for name, image in raw.items()}
    meta = {**meta, "source_size": [int(raw["tgt"].shape[1]), int(raw["tgt"].shape[0])], "width": width,
            "height": height, "bucket": bucket}
    return PreparedSample(key, meta, images)
