"""`collage verify OUT`: re-hash every shard, check counts against stats and sizes.json, decode every sample."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections import defaultdict

import pyarrow.parquet as pq

from .config import RunConfig
from .reader import decode_image
from .storage import Storage
from .tasks import required_members
from .writer import shard_stem

COMMON_FIELDS = ("task", "op", "prompt", "caption", "caption_source", "width", "height", "seed", "objects")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+-\d{6}-\d{6}$")


def verify(out: str, decode: bool = True) -> tuple[list[str], dict]:
    """(problems, totals). An empty problem list means the run is whole and every sample decodes."""
    storage = Storage(out)
    problems: list[str] = []
    if not storage.exists("run.json"):
        return [f"{out}: no run.json (not a collage run directory)"], {}
    cfg = RunConfig.from_json(json.loads(storage.read_bytes("run.json")))
    sizes = json.loads(storage.read_bytes("sizes.json")) if storage.exists("sizes.json") else None
    if sizes is None:
        problems.append("sizes.json is missing (the run has not finished: rerun the same generate command)")
    names = set(storage.names())
    totals = {"samples": 0, "shards": 0, "bytes": 0}
    seen_keys: set[str] = set()
    for shard in range(cfg.num_shards):
        stem = shard_stem(cfg.name, shard)
        tar_name = f"{stem}.tar"
        if f"{stem}.stats.json" not in names:
            problems.append(f"{stem}: not finished (no stats file)")
            continue
        stats = json.loads(storage.read_bytes(f"{stem}.stats.json"))
        if tar_name not in names:
            problems.append(f"{tar_name}: missing, but its stats file says it is done")
            continue
        data = storage.read_bytes(tar_name)
        totals["shards"] += 1
        totals["bytes"] += len(data)
        if hashlib.sha256(data).hexdigest() != stats.get("sha256"):
            problems.append(f"{tar_name}: sha256 differs from its stats file (corrupt or rewritten)")
        if len(data) != stats.get("bytes"):
            problems.append(f"{tar_name}: {len(data)} bytes, stats say {stats.get('bytes')}")
        expected = cfg.shard_samples(shard)
        if stats.get("samples") != expected:
            problems.append(f"{tar_name}: stats say {stats.get('samples')} samples, the plan says {expected}")
        if sizes is not None and sizes.get(tar_name) != stats.get("samples"):
            problems.append(f"{tar_name}: sizes.json says {sizes.get(tar_name)}, stats say {stats.get('samples')}")
        if f"{stem}.parquet" not in names:
            problems.append(f"{stem}.parquet: missing")
        else:
            rows = pq.read_table(io.BytesIO(storage.read_bytes(f"{stem}.parquet"))).num_rows
            if rows != stats.get("samples"):
                problems.append(f"{stem}.parquet: {rows} rows, stats say {stats.get('samples')}")
        count = _check_tar(tar_name, data, cfg, seen_keys, problems, decode)
        totals["samples"] += count
        if count != stats.get("samples"):
            problems.append(f"{tar_name}: holds {count} samples, stats say {stats.get('samples')}")
    extra = sorted(n for n in names if n.endswith(".tar") and not re.fullmatch(rf"{re.escape(cfg.name)}-\d{{6}}\.tar", n))
    if sizes is not None and len(sizes) != cfg.num_shards:
        problems.append(f"sizes.json lists {len(sizes)} shards, the plan has {cfg.num_shards}")
    if totals["samples"] != cfg.n and not any("not finished" in p for p in problems):
        problems.append(f"the run holds {totals['samples']} samples, run.json asks for {cfg.n}")
    problems += [f"{n}: a tar that is not part of this run's plan" for n in extra]
    return problems, totals


def _check_tar(tar_name: str, data: bytes, cfg: RunConfig, seen_keys: set[str], problems: list[str], decode: bool) -> int:
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    order: list[str] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                if key not in samples:
                    order.append(key)
                samples[key][ext] = tar.extractfile(member).read()
    except tarfile.TarError as exc:
        problems.append(f"{tar_name}: not a readable tar ({exc})")
        return 0
    for key in order:
        where = f"{tar_name}:{key}"
        if not KEY_PATTERN.match(key):
            problems.append(f"{where}: key does not follow {{name}}-{{shard:06d}}-{{index:06d}}")
        if key in seen_keys:
            problems.append(f"{where}: key appears twice in the run")
        seen_keys.add(key)
        members = samples[key]
        try:
            meta = json.loads(members["json"])
        except (KeyError, ValueError) as exc:
            problems.append(f"{where}: json member missing or unreadable ({exc})")
            continue
        missing = [f for f in COMMON_FIELDS if f not in meta]
        if missing:
            problems.append(f"{where}: json lacks {missing}")
            continue
        want = {f"{m}.{cfg.image_format}" if m in ("src", "tgt") else f"{m}.png"
                for m in required_members(meta["task"], meta["op"])}
        absent = sorted(want - set(members))
        if absent:
            problems.append(f"{where}: missing members {absent}")
        if decode:
            for ext, blob in members.items():
                if ext == "json":
                    continue
                try:
                    image = decode_image(blob)
                except Exception as exc:
                    problems.append(f"{where}.{ext}: does not decode ({exc})")
                    continue
                if image.shape[:2] != (meta["height"], meta["width"]):
                    problems.append(f"{where}.{ext}: {image.shape[1]}x{image.shape[0]}, json says {meta['width']}x{meta['height']}")
    return len(order)
