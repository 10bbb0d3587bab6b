"""Which shards of a run are finished, and which only look finished.

Task-free and config-free: a run is a name, a plan (how many shards, how many samples each) and the digest
of the config that made it. Generate's resume and `collage verify` use it; so can any stage that commits
shards the same way (tar, then its stats marker, through collage.storage).
"""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from .storage import Storage

REHASH_BYTES = 2 << 30  # finished local shards up to this many bytes in all are re-hashed on resume (~2 s)


def shard_stem(name: str, shard: int) -> str:
    return f"{name}-{shard:06d}"


JOURNAL_SUFFIX = ".replace.json"


def journal_name(stem: str) -> str:
    """The journal of a shard being replaced (see ShardWriter.commit): parquet and stats of the new tar."""
    return f"{stem}{JOURNAL_SUFFIX}"


def finish_replacements(storage: Storage) -> list[str]:
    """Roll every interrupted shard replacement forward (its new tar is published: write its parquet and stats)
    or back (the old tar is still there: drop the journal). Only the run's lock holder may call this.
    Returns one line per journal handled."""
    import base64

    lines = []
    for file_name in sorted(n for n in storage.listing() if n.endswith(JOURNAL_SUFFIX)):
        stem = file_name[:-len(JOURNAL_SUFFIX)]
        journal, why = read_json(storage, file_name)
        tar = f"{stem}.tar"
        try:
            ok = why is None and storage.exists(tar) and sha256_of(storage, tar) == journal["stats"]["sha256"]
            if ok:
                storage.write_bytes(f"{stem}.parquet", base64.b64decode(journal["parquet"]))
                storage.write_bytes(f"{stem}.stats.json", json.dumps(journal["stats"], indent=1).encode())
        except (KeyError, TypeError, ValueError):
            ok = False
        storage.remove(file_name)
        lines.append(f"{stem}: an interrupted replacement was " + ("finished" if ok else "dropped (the shard keeps "
                                                                                           "its previous files)"))
    return lines


def write_sizes(storage: Storage, name: str, done: dict[int, dict]) -> None:
    """sizes.json from the finished shards' stats (one small dict per shard, never per sample)."""
    sizes = {f"{shard_stem(name, k)}.tar": s["samples"] for k, s in sorted(done.items())}
    storage.write_bytes("sizes.json", json.dumps(sizes, indent=1).encode())


def shard_pattern(name: str) -> re.Pattern:
    """`{name}-{shard:06d}` + one of the shard's file suffixes; group 1 is the shard number."""
    return re.compile(rf"^{re.escape(name)}-(\d{{6}})\.(tar|parquet|stats\.json)$")


def read_json(storage: Storage, name: str) -> tuple[object | None, str | None]:
    """(value, None) or (None, why it cannot be read): never raises for a damaged file."""
    try:
        return json.loads(storage.read_bytes(name)), None
    except FileNotFoundError:
        return None, "missing"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not valid json ({str(exc).splitlines()[0][:80]})"
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"


def sha256_of(storage: Storage, name: str) -> str:
    digest = hashlib.sha256()
    with storage.fs.open(storage.path(name), "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def stats_problem(stats: object, shard: int, expected_samples: int | None, config_digest: str) -> str | None:
    """Why a stats marker does not belong to shard `shard` of this run, or None (`expected_samples` None:
    any count, for stages whose shards hold what their source gave)."""
    if not isinstance(stats, dict):
        return "its stats file is not a json object"
    for key, kind in (("samples", int), ("bytes", int), ("sha256", str)):
        if not isinstance(stats.get(key), kind) or isinstance(stats.get(key), bool):
            return f"its stats file has no valid {key!r}"
    if stats.get("config") != config_digest:
        return (f"its stats file is of another run config ({stats.get('config') or 'none recorded'}; this run's is "
                f"{config_digest})")
    if stats.get("shard") != shard:
        return f"its stats file is of shard {stats.get('shard')!r}"
    if expected_samples is not None and stats["samples"] != expected_samples:
        return f"its stats say {stats['samples']} samples, the plan says {expected_samples}"
    return None


def content_problems(tar_name: str, data: bytes, stats: dict) -> list[str]:
    """Where a tar's bytes disagree with its stats marker (fields the marker lacks are not judged)."""
    problems = []
    if "sha256" in stats and hashlib.sha256(data).hexdigest() != stats["sha256"]:
        problems.append(f"{tar_name}: sha256 differs from its stats file (corrupt or rewritten)")
    if "bytes" in stats and len(data) != stats["bytes"]:
        problems.append(f"{tar_name}: {len(data)} bytes, stats say {stats['bytes']}")
    return problems


@dataclass
class FinishedShards:
    done: dict[int, dict] = field(default_factory=dict)  # shard → its stats
    damaged: dict[int, str] = field(default_factory=dict)  # shard → why it must be redone
    strays: list[str] = field(default_factory=list)  # in-pattern files of shards beyond the plan
    rehashed: bool = False


def finished_shards(storage: Storage, name: str, num_shards: int, expected_samples: Callable[[int], int | None],
                    config_digest: str, rehash: bool | None = None) -> FinishedShards:
    """Shards whose marker, tar and parquet all check out. A marker is written last, so a missing one means
    an unfinished shard; a marker that disagrees with its tar (size, or sha256 when `rehash`) means damage.
    `rehash=None`: re-hash when that is cheap (a local run of at most REHASH_BYTES)."""
    listing = storage.listing()
    pattern = shard_pattern(name)
    result = FinishedShards()
    markers: dict[int, str] = {}
    for file_name in listing:
        match = pattern.match(file_name)
        if not match:
            continue
        shard = int(match.group(1))
        if shard >= num_shards:
            result.strays.append(file_name)
        elif match.group(2) == "stats.json":
            markers[shard] = file_name
    for shard, marker in sorted(markers.items()):
        stem = shard_stem(name, shard)
        stats, why = read_json(storage, marker)
        problem = f"its stats file is {why}" if why else stats_problem(stats, shard, expected_samples(shard), config_digest)
        if problem is None and f"{stem}.tar" not in listing:
            problem = "its tar is missing"
        elif problem is None and listing[f"{stem}.tar"] != stats["bytes"]:
            problem = f"its tar has {listing[f'{stem}.tar']:,} bytes, its stats say {stats['bytes']:,}"
        elif problem is None and f"{stem}.parquet" not in listing:
            problem = "its parquet index is missing"
        if problem:
            result.damaged[shard] = problem
        else:
            result.done[shard] = stats
    if rehash is None:
        rehash = storage.local and sum(s["bytes"] for s in result.done.values()) <= REHASH_BYTES
    if rehash and result.done:
        result.rehashed = True
        shards = sorted(result.done)
        with ThreadPoolExecutor(max_workers=4) as pool:  # hashlib releases the GIL on big chunks
            digests = list(pool.map(lambda k: sha256_of(storage, f"{shard_stem(name, k)}.tar"), shards))
        for shard, digest in zip(shards, digests):
            if digest != result.done[shard]["sha256"]:
                del result.done[shard]
                result.damaged[shard] = "its tar's sha256 differs from its stats file"
    return result
