"""Choosing what the gallery shows: a seeded random subset of shards, a random few samples from each.

Big runs stay cheap: shards are visited in a random order and the walk stops once `n` samples are chosen,
so a 200-sample gallery of a 12k-shard run opens about 200 shards. A shard's index (task, op, size,
caption source per key) comes from its parquet file when there is one, else from its json members; only
the chosen samples' images are read, straight from the tar (no webdataset pipeline, no decoding).

Damage never stops the walk: a shard that cannot be read whole, a sample whose json is not an object, an
unreadable index, stats or run file each become a `Problem` on its run, which the page lists.
"""

from __future__ import annotations

import json
import math
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import UserError
from ..reader import shard_urls
from ..tables import read_parquet

INDEX_COLUMNS = ["key", "task", "op", "caption_source", "width", "height"]
MAX_SIDE = 1 << 16  # a canvas side beyond this is not a size the engine writes

# What reading a damaged file can raise: the file system, tarfile, bad json or utf-8 (ValueError), nesting
# too deep for json (RecursionError) and pyarrow's own errors.
READ_ERRORS = (OSError, EOFError, tarfile.TarError, ValueError, TypeError, KeyError, RecursionError, pa.ArrowException)


@dataclass(frozen=True)
class Problem:
    """Something damaged that the gallery skipped or worked around, for the page's problems panel.

    kind: "shard" (not read at all), "sample" (its json is unusable: not shown), "image" (a member that does
    not decode: a placeholder on its card), "field" (wrong-typed json fields: ignored on its card) or "file"
    (an unreadable run.json, sizes.json, stats or parquet index: the gallery did without it)."""
    kind: str
    path: Path
    detail: str
    key: str = ""


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
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Filters:
    tasks: frozenset[str] = frozenset()
    ops: frozenset[str] = frozenset()

    def match(self, row: dict) -> bool:
        return (not self.tasks or row.get("task") in self.tasks) and (not self.ops or row.get("op") in self.ops)


class DamagedShard(Exception):
    """A shard that cannot be read whole; the message says why, for the problems panel."""


def why(exc: BaseException) -> str:
    """An exception as a few words for the page (its first line, or its type when it has no message)."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def as_number(value) -> float | None:
    """A finite json number, else None: text, true/false, null, NaN and infinities are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float
        return None
    return number if math.isfinite(number) else None


def as_size(value) -> int:
    """A canvas side in pixels, 0 when the value is not one (so histograms and overlays skip it)."""
    number = as_number(value)
    return int(number) if number is not None and number == int(number) and 0 < number <= MAX_SIDE else 0


def as_text(value) -> str | None:
    """Text as itself, null as None, anything else as its json (so a wrong type still shows what it holds)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)[:300]


def find_shards(sources: list[str]) -> tuple[list[tuple[Path, int]], list[RunInfo]]:
    """Every finished shard of each source (a run directory or a .tar shard), tagged with its run's number."""
    if not sources:
        raise UserError("give a run directory or shard files to build the gallery from")
    runs: dict[Path, RunInfo] = {}
    shards: list[tuple[Path, int]] = []
    seen: set[Path] = set()
    listing_problems: dict[Path, list[Problem]] = {}
    for source in sources:
        path = Path(source)
        if path.is_dir():
            listed, problems = _listed_tars(path)
            tars = [t for t in listed if t.is_file()]
            if not tars:
                raise UserError(f"{source}: no finished shards (no sizes.json or *.stats.json next to .tar files)")
            problems += [Problem("shard", t, "missing: the run lists it as finished but it is not there")
                         for t in listed if not t.is_file()]
            listing_problems.setdefault(path.resolve(), []).extend(problems)
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
    for folder, problems in listing_problems.items():
        if folder in runs:
            runs[folder].problems.extend(problems)
    infos = list(runs.values())
    for number, info in enumerate(infos):  # loose shards may have no stats markers
        info.shards_total = max(info.shards_total, sum(1 for _, run in shards if run == number))
    return shards, infos


def _listed_tars(folder: Path) -> tuple[list[Path], list[Problem]]:
    """The run's finished shards per `shard_urls`; when sizes.json is unreadable, per the stats markers."""
    try:
        listed = [Path(u) for u in shard_urls(folder)]
        if all(p.name.endswith(".tar") for p in listed):
            return listed, []
        detail = "lists names that are not .tar shards"
    except READ_ERRORS as exc:
        detail = f"unreadable ({why(exc)})"
    problem = Problem("file", folder / "sizes.json", f"{detail}: the shards were found by their stats files instead")
    markers = sorted(folder.glob("*.stats.json"))
    return [m.with_name(m.name[:-len(".stats.json")] + ".tar") for m in markers], [problem]


def _json_object(path: Path) -> dict:
    """A small json file that must hold an object; raises ValueError saying what it holds instead."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"holds {_json_type(data)}, not an object")
    return data


def _json_type(value) -> str:
    return {list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(type(value), "a number")


def _run_info(folder: Path) -> RunInfo:
    """The run's config and its stats summed over every finished shard (small files: cheap even for 10k)."""
    problems: list[Problem] = []
    config: dict = {}
    if (folder / "run.json").exists():  # loose shards have none; a run.json we cannot read is a problem
        try:
            config = _json_object(folder / "run.json")
        except READ_ERRORS as exc:
            problems.append(Problem("file", folder / "run.json", f"unreadable ({why(exc)}): the run's config is not shown"))
    totals: Counter = Counter()
    markers = sorted(folder.glob("*.stats.json"))
    for marker in markers:
        try:
            stats = _json_object(marker)
        except READ_ERRORS as exc:
            problems.append(Problem("file", marker, f"unreadable ({why(exc)}): its counts are left out of the summary"))
            continue
        for name in ("samples", "bytes", "failures", "rejects"):
            value = as_number(stats.get(name))
            if value is not None:
                totals[name] += value
        # Skipped assets are a property of the asset library every shard used, not a per-shard count.
        totals["assets_skipped"] = max(totals["assets_skipped"], as_number(stats.get("assets_skipped")) or 0)
    return RunInfo(path=folder, config=config, shards_total=len(markers), stats=dict(totals), problems=problems)


def _index_row(key, fields: dict) -> dict:
    """An index row as the filters and histograms need it: text (or None) and sizes (0 when unusable)."""
    return {"key": key, **{c: as_text(fields.get(c)) for c in ("task", "op", "caption_source")},
            "width": as_size(fields.get("width")), "height": as_size(fields.get("height"))}


def _column_type_ok(column: str, kind: pa.DataType) -> bool:
    """Sizes are integers, the rest text; an all-null column (e.g. no caption source yet) has the null type."""
    if pa.types.is_null(kind):
        return column != "key"
    if column in ("width", "height"):
        return pa.types.is_integer(kind)
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _shard_index(tar: tarfile.TarFile, tar_path: Path, members: dict[str, dict[str, tarfile.TarInfo]],
                 problems: list[Problem]) -> list[dict]:
    """Index rows of a shard: its parquet file when that matches the tar, else its json members."""
    parquet = tar_path.with_name(tar_path.name[:-len(".tar")] + ".parquet")
    if parquet.exists():
        try:
            table = read_parquet(parquet, columns=INDEX_COLUMNS)
            wrong = [c for c in INDEX_COLUMNS if not _column_type_ok(c, table.schema.field(c).type)]
            rows = [] if wrong else table.to_pylist()
            if wrong:
                detail = f"columns of the wrong type ({', '.join(wrong)})"
            elif all(row["key"] in members for row in rows):
                return [_index_row(row["key"], row) for row in rows]
            else:
                detail = "lists keys the shard does not hold"
        except READ_ERRORS as exc:
            detail = f"unreadable index ({why(exc)})"
        problems.append(Problem("file", parquet, f"{detail}: the shard's json members were read instead"))
    rows = []
    for key, parts in members.items():
        if "json" in parts:
            meta = _read_meta(tar, parts["json"], tar_path, key, problems)
            if meta is not None:
                rows.append(_index_row(key, meta))
    return rows


def _read_meta(tar: tarfile.TarFile, member: tarfile.TarInfo, shard: Path, key: str,
               problems: list[Problem]) -> dict | None:
    """A sample's json member as an object; None (and a problem) when it is unreadable or not an object."""
    try:
        meta = json.loads(tar.extractfile(member).read())
    except READ_ERRORS as exc:
        problems.append(Problem("sample", shard, f"json member unreadable ({why(exc)})", key))
        return None
    if not isinstance(meta, dict):
        problems.append(Problem("sample", shard, f"json member holds {_json_type(meta)}, not an object", key))
        return None
    return meta


def open_shard(path: Path) -> tarfile.TarFile:
    """The shard with every member header read and checked; DamagedShard when it is not a whole tar."""
    try:
        size = path.stat().st_size
        if not size:
            raise DamagedShard("empty (0 bytes)")
        tar = tarfile.open(path, "r:")
    except READ_ERRORS as exc:
        raise DamagedShard(f"not a readable tar ({why(exc)}; {size:,} bytes)") from None
    try:
        try:
            tar.getmembers()
        except READ_ERRORS as exc:
            cut = "truncated: " if "end of data" in str(exc) else ""
            raise DamagedShard(f"{cut}unreadable after {len(tar.members):,} member(s) ({why(exc)}; {size:,} bytes)") from None
        _check_end(tar, size)
    except DamagedShard:
        tar.close()
        raise
    return tar


def _check_end(tar: tarfile.TarFile, size: int) -> None:
    # tarfile stops without a word at a corrupt header or at the end of the file, so only the end-of-archive
    # marker (a zero block) right after the last member shows that every member was read.
    tar.fileobj.seek(tar.offset)
    block = tar.fileobj.read(tarfile.BLOCKSIZE)
    count = len(tar.members)
    if not block:
        raise DamagedShard(f"truncated: the file ends after {count:,} member(s) without the end-of-archive marker "
                           f"({size:,} bytes)")
    if block.strip(tarfile.NUL):
        raise DamagedShard(f"corrupt member header at byte {tar.offset:,}: only the {count:,} member(s) before it "
                           "are readable")
    if not count:
        raise DamagedShard(f"holds no members ({size:,} bytes)")


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


def _read_sample(tar: tarfile.TarFile, key: str, parts: dict[str, tarfile.TarInfo], shard: Path, run: int,
                 problems: list[Problem]) -> Picked | None:
    """The sample's json and image bytes; None (and a problem) when they cannot be read."""
    meta = _read_meta(tar, parts["json"], shard, key, problems)
    if meta is None:
        return None
    try:
        images = {suffix.split(".")[0]: tar.extractfile(member).read() for suffix, member in parts.items()
                  if suffix != "json"}
    except READ_ERRORS as exc:
        problems.append(Problem("sample", shard, f"image members unreadable ({why(exc)})", key))
        return None
    return Picked(key=key, shard=shard, run=run, meta=meta, images=images)


def _index_shard(tar: tarfile.TarFile, tar_path: Path, info: RunInfo) -> tuple[list[dict], dict]:
    """The shard's index rows and members by key, counted into its run's histograms."""
    members = _members_by_key(tar)
    info.problems += [Problem("sample", tar_path, f"no json member (only {', '.join(sorted(parts))})", key)
                      for key, parts in members.items() if "json" not in parts]
    rows = _shard_index(tar, tar_path, members, info.problems)
    info.shards_read += 1
    info.indexed += len(rows)
    for row in rows:
        info.task_op[(row.get("task"), row.get("op"))] += 1
        info.caption_sources[row.get("caption_source")] += 1
        info.sizes[(row.get("width"), row.get("height"))] += 1
    return rows, members


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
        try:
            tar = open_shard(tar_path)
        except DamagedShard as exc:  # skipped: the walk goes on to the next shard
            info.problems.append(Problem("shard", tar_path, str(exc)))
            continue
        with tar:
            rows, members = _index_shard(tar, tar_path, info)
            matching = [row["key"] for row in rows if filters.match(row) and "json" in members.get(row["key"], {})]
            take = min(cap, n - len(picked), len(matching))
            chosen = set(rng.choice(len(matching), size=take, replace=False).tolist()) if take else set()
            for i in sorted(chosen):
                key = matching[i]
                _append(picked, _read_sample(tar, key, members[key], tar_path, run, info.problems))
            rest = [(key, members[key]) for i, key in enumerate(matching) if i not in chosen]
            if rest:
                leftovers.append((int(index), rest))
    for index, rest in leftovers:  # a second pass only when filters left the first one short
        if len(picked) >= n:
            break
        tar_path, run = shards[index]
        take = min(n - len(picked), len(rest))
        chosen = sorted(rng.choice(len(rest), size=take, replace=False).tolist())
        problems = runs[run].problems
        try:
            tar = tarfile.open(tar_path, "r:")  # the first pass's member headers locate the bytes again
        except READ_ERRORS as exc:
            problems.append(Problem("shard", tar_path, f"unreadable on a second look ({why(exc)})"))
            continue
        with tar:
            for i in chosen:
                key, parts = rest[i]
                _append(picked, _read_sample(tar, key, parts, tar_path, run, problems))
    picked.sort(key=lambda p: (p.run, p.key))
    return picked


def _append(picked: list[Picked], sample: Picked | None) -> None:
    if sample is not None:
        picked.append(sample)
