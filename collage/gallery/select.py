"""Choosing what the gallery shows: a seeded random subset of shards, a random few samples from each.

Big runs stay cheap: shards are visited in a random order and the walk stops once `n` samples are chosen,
so a 200-sample gallery of a 12k-shard run opens about 200 shards. A shard's index (task, op, size,
caption source per key) comes from its parquet file when there is one, else from its json members; only
the chosen samples' images are read, straight from the tar (no webdataset pipeline, no decoding). Sources
are local or in an object store (s3://…, through universal_pathlib and fsspec): see shard_readers.

Damage never stops the walk: a shard that cannot be read whole, a sample whose json is not an object, an
unreadable index, stats or run file each become a `Problem` on its run, which the page lists.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..reader import shard_urls
from ..storage import as_path, is_remote
from .records import READ_ERRORS, Picked, Problem, RunInfo, as_number, as_size, as_text, json_object, why
from .shard_readers import DamagedShard, read_shard

__all__ = ["Filters", "Picked", "Problem", "RunInfo", "as_number", "as_size", "as_text", "find_shards",
           "pick_samples"]


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
    listing_problems: dict[Path, list[Problem]] = {}
    for source in sources:
        path = as_path(source, "gallery source")  # a store URL is probed here: one line if it cannot be read
        if path.is_dir():
            listed, problems = _listed_tars(path)
            present = _present(path, listed)
            tars = [t for t in listed if t in present]
            if not tars:
                raise UserError(f"{source}: no finished shards (no sizes.json or *.stats.json next to .tar files)")
            problems += [Problem("shard", t, "missing: the run lists it as finished but it is not there")
                         for t in listed if t not in present]
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


def _present(folder: Path, listed: list[Path]) -> set[Path]:
    """Which of `listed` are files: one listing of a store's folder, not a request per shard."""
    if not is_remote(folder):
        return {t for t in listed if t.is_file()}
    names = {p.name for p in folder.iterdir()}
    return {t for t in listed if t.name in names}


def _listed_tars(folder: Path) -> tuple[list[Path], list[Problem]]:
    """The run's finished shards per `shard_urls`; when sizes.json is unreadable, per the stats markers."""
    try:
        listed = [folder / Path(u).name for u in shard_urls(folder)]
        if all(p.name.endswith(".tar") for p in listed):
            return listed, []
        detail = "lists names that are not .tar shards"
    except READ_ERRORS as exc:
        detail = f"unreadable ({why(exc)})"
    problem = Problem("file", folder / "sizes.json", f"{detail}: the shards were found by their stats files instead")
    markers = sorted(folder.glob("*.stats.json"))
    return [m.with_name(m.name[:-len(".stats.json")] + ".tar") for m in markers], [problem]


def _read_all(paths: list[Path]) -> list[bytes | BaseException]:
    """Each file's bytes (or what reading it raised): a store's files fetched concurrently in one call, as
    a run's 12k stats markers read one by one would take minutes there."""
    if not paths or not is_remote(paths[0]):
        out: list[bytes | BaseException] = []
        for path in paths:
            try:
                out.append(path.read_bytes())
            except OSError as exc:
                out.append(exc)
        return out
    fs = paths[0].fs
    got = fs.cat([p.path for p in paths], on_error="return")
    return [got.get(p.path, FileNotFoundError(str(p))) for p in paths]


def _run_info(folder: Path) -> RunInfo:
    """The run's config and its stats summed over every finished shard (small files: cheap even for 10k)."""
    problems: list[Problem] = []
    config: dict = {}
    if (folder / "run.json").exists():  # loose shards have none; a run.json we cannot read is a problem
        try:
            config = json_object((folder / "run.json").read_bytes())
        except READ_ERRORS as exc:
            problems.append(Problem("file", folder / "run.json", f"unreadable ({why(exc)}): the run's config is not shown"))
    totals: Counter = Counter()
    markers = sorted(folder.glob("*.stats.json"))
    for marker, data in zip(markers, _read_all(markers)):
        try:
            if isinstance(data, BaseException):
                raise data
            stats = json_object(data)
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


def pick_samples(shards: list[tuple[Path, int]], runs: list[RunInfo], n: int, seed: int,
                 filters: Filters) -> list[Picked]:
    """Up to n samples matching `filters`: shards in a seeded random order, at most ⌈n / shards⌉ from each
    on the first pass (so the gallery spreads over the run), then more from the shards already open."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(shards))
    cap = max(1, math.ceil(n / max(1, len(shards))))
    picked: list[Picked] = []
    leftovers = []  # (reader, run, [keys not chosen]): a second pass only when filters left the first short
    for index in order:
        if len(picked) >= n:
            break
        tar_path, run = shards[index]
        info = runs[run]
        try:
            reader = read_shard(tar_path, info)
        except DamagedShard as exc:  # skipped: the walk goes on to the next shard
            info.problems.append(Problem("shard", tar_path, str(exc)))
            continue
        try:
            matching = [row["key"] for row in reader.rows if filters.match(row) and reader.has_json(row["key"])]
            take = min(cap, n - len(picked), len(matching))
            chosen = set(rng.choice(len(matching), size=take, replace=False).tolist()) if take else set()
            picked += reader.read([matching[i] for i in sorted(chosen)], run, info.problems)
            rest = [key for i, key in enumerate(matching) if i not in chosen]
            if rest:
                leftovers.append((reader, run, rest))
        finally:
            reader.close()
    for reader, run, rest in leftovers:
        if len(picked) >= n:
            break
        take = min(n - len(picked), len(rest))
        chosen = sorted(rng.choice(len(rest), size=take, replace=False).tolist())
        try:
            picked += reader.read([rest[i] for i in chosen], run, runs[run].problems)
        finally:
            reader.close()
    picked.sort(key=lambda p: (p.run, p.key))
    return picked
