"""Choosing what the gallery shows: a seeded random subset of shards, a random few samples from each.

Big runs stay cheap: shards are visited in a random order and the walk stops once `n` samples are chosen,
so a 200-sample gallery of a 12k-shard run opens about 200 shards. A shard's index (task, op, size,
caption source per key) comes from its parquet file when there is one, else from its json members; only
the chosen samples' images are read, straight from the tar (no webdataset pipeline, no decoding).
"""

from __future__ import annotations

import json
import math
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..errors import UserError
from ..reader import shard_urls

INDEX_COLUMNS = ["key", "task", "op", "caption_source", "width", "height"]


@dataclass
class Picked:
    """One chosen sample: its json and the raw bytes of its image members by stem (`tgt`, `src`, …)."""
    key: str
    shard: Path
    run: int
    meta: dict
    images: dict[str, bytes]


@dataclass
class RunInfo:
    """What the summary panel says about one run directory (or one folder of loose shards)."""
    path: Path
    config: dict
    shards_total: int
    stats: dict = field(default_factory=dict)  # summed over every shard's stats.json
    shards_read: int = 0
    indexed: int = 0  # samples of the shards read (the base of the histograms)
    task_op: Counter = field(default_factory=Counter)
    caption_sources: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)


@dataclass
class Filters:
    tasks: frozenset[str] = frozenset()
    ops: frozenset[str] = frozenset()

    def match(self, row: dict) -> bool:
        return (not self.tasks or row.get("task") in self.tasks) and (not self.ops or row.get("op") in self.ops)


def find_shards(sources: list[str]) -> tuple[list[tuple[Path, int]], list[RunInfo]]:
    """Every finished shard of each source (a run directory or a .tar shard), tagged with its run's number."""
    if not sources:
        raise UserError("give a run directory or shard files to build the gallery from")
    runs: dict[Path, RunInfo] = {}
    shards: list[tuple[Path, int]] = []
    seen: set[Path] = set()
    for source in sources:
        path = Path(source)
        if path.is_dir():
            tars = [Path(u) for u in shard_urls(path)]
            tars = [t for t in tars if t.exists()]
            if not tars:
                raise UserError(f"{source}: no finished shards (no sizes.json or *.stats.json next to .tar files)")
        elif path.is_file() and path.name.endswith(".tar"):
            tars = [path]
        elif path.exists():
            raise UserError(f"{source}: not a run directory or a .tar shard")
        else:
            raise UserError(f"{source}: no such run directory or shard")
        for tar in tars:
            tar = tar.resolve()
            if tar in seen:
                continue
            seen.add(tar)
            folder = tar.parent
            if folder not in runs:
                runs[folder] = _run_info(folder)
            shards.append((tar, list(runs).index(folder)))
    infos = list(runs.values())
    for number, info in enumerate(infos):  # loose shards may have no stats markers
        info.shards_total = max(info.shards_total, sum(1 for _, run in shards if run == number))
    return shards, infos


def _run_info(folder: Path) -> RunInfo:
    """The run's config and its stats summed over every finished shard (small files: cheap even for 10k)."""
    try:
        config = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        config = {}
    totals: Counter = Counter()
    markers = sorted(folder.glob("*.stats.json"))
    for marker in markers:
        try:
            stats = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        for name in ("samples", "bytes", "failures", "rejects"):
            value = stats.get(name)
            if isinstance(value, (int, float)):
                totals[name] += value
        # Skipped assets are a property of the asset library every shard used, not a per-shard count.
        totals["assets_skipped"] = max(totals["assets_skipped"], stats.get("assets_skipped") or 0)
    return RunInfo(path=folder, config=config, shards_total=len(markers), stats=dict(totals))


def _shard_index(tar: tarfile.TarFile, tar_path: Path, members: dict[str, dict[str, tarfile.TarInfo]]) -> list[dict]:
    parquet = tar_path.with_name(tar_path.name[:-len(".tar")] + ".parquet")
    if parquet.exists():
        try:
            rows = pq.read_table(parquet, columns=INDEX_COLUMNS).to_pylist()
            if all(row["key"] in members for row in rows):
                return rows
        except (OSError, ValueError, KeyError):
            pass  # an index we cannot trust: read the json members instead
    rows = []
    for key, parts in members.items():
        member = parts.get("json")
        if member is None:
            continue
        meta = json.loads(tar.extractfile(member).read())
        rows.append({"key": key, **{c: meta.get(c) for c in INDEX_COLUMNS[1:]}})
    return rows


def _members_by_key(tar: tarfile.TarFile) -> dict[str, dict[str, tarfile.TarInfo]]:
    """webdataset grouping: the key is the member name up to the first dot of its base name."""
    out: dict[str, dict[str, tarfile.TarInfo]] = {}
    for member in tar.getmembers():
        if not member.isfile():
            continue
        folder, _, base = member.name.rpartition("/")
        stem, dot, suffix = base.partition(".")
        if not dot:
            continue
        out.setdefault(f"{folder}/{stem}" if folder else stem, {})[suffix] = member
    return out


def _read_sample(tar: tarfile.TarFile, key: str, parts: dict[str, tarfile.TarInfo], shard: Path, run: int) -> Picked:
    meta = json.loads(tar.extractfile(parts["json"]).read())
    images = {suffix.split(".")[0]: tar.extractfile(member).read() for suffix, member in parts.items() if suffix != "json"}
    return Picked(key=key, shard=shard, run=run, meta=meta, images=images)


def pick_samples(shards: list[tuple[Path, int]], runs: list[RunInfo], n: int, seed: int,
                 filters: Filters) -> list[Picked]:
    """Up to n samples matching `filters`: shards in a seeded random order, at most ⌈n / shards⌉ from each
    on the first pass (so the gallery spreads over the run), then more from the shards already open."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(shards))
    cap = max(1, math.ceil(n / max(1, len(shards))))
    picked: list[Picked] = []
    leftovers: list[tuple[int, list[tuple[str, dict[str, tarfile.TarInfo]]]]] = []  # (shard, [(key, members)])
    for index in order:
        if len(picked) >= n:
            break
        tar_path, run = shards[index]
        info = runs[run]
        with tarfile.open(tar_path, "r:") as tar:
            members = _members_by_key(tar)
            rows = _shard_index(tar, tar_path, members)
            info.shards_read += 1
            info.indexed += len(rows)
            for row in rows:
                info.task_op[(row.get("task"), row.get("op"))] += 1
                info.caption_sources[row.get("caption_source")] += 1
                info.sizes[(row.get("width"), row.get("height"))] += 1
            matching = [row["key"] for row in rows if filters.match(row) and "json" in members.get(row["key"], {})]
            take = min(cap, n - len(picked), len(matching))
            chosen = set(rng.choice(len(matching), size=take, replace=False).tolist()) if take else set()
            for i in sorted(chosen):
                key = matching[i]
                picked.append(_read_sample(tar, key, members[key], tar_path, run))
            rest = [(key, members[key]) for i, key in enumerate(matching) if i not in chosen]
            if rest:
                leftovers.append((int(index), rest))
    for index, rest in leftovers:  # a second pass only when filters left the first one short
        if len(picked) >= n:
            break
        tar_path, run = shards[index]
        take = min(n - len(picked), len(rest))
        chosen = sorted(rng.choice(len(rest), size=take, replace=False).tolist())
        with tarfile.open(tar_path, "r:") as tar:  # the first pass's member headers locate the bytes again
            for i in chosen:
                key, parts = rest[i]
                picked.append(_read_sample(tar, key, parts, tar_path, run))
    picked.sort(key=lambda p: (p.run, p.key))
    return picked
