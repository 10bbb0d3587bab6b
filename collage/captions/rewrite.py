"""Caption the samples of one shard: inline before it is first committed, or by replacing a committed one.

Only the json members change (`caption`, `caption_source`, `caption_error`); images keep their bytes.
Counts are read back from the final jsons, so a shard's outcome counts are true whatever path it took.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from typing import Iterable

from ..sample import encode_json, index_row
from ..storage import Storage
from ..writer import ShardWriter
from .refine import KINDS, Captioner, apply_outcome

Record = tuple[str, dict[str, bytes]]  # (key, members by suffix)


def kind_of(meta: dict) -> str:
    """The outcome a sample's json records (see refine.KINDS)."""
    source, error = meta.get("caption_source"), str(meta.get("caption_error") or "")
    if source == "llm":
        return "refined"
    if source == "cache":
        return "cache"
    if error.startswith("server:"):
        return "failed"
    return "rejected" if error else "skipped"


def count_kinds(metas) -> dict[str, int]:
    counts = Counter(kind_of(m) for m in metas)
    return {k: counts.get(k, 0) for k in KINDS}


def read_records(storage: Storage, tar_name: str) -> list[Record]:
    """The samples of a tar in order, members grouped by key (as webdataset groups them)."""
    records: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(tar_name)), mode="r:") as tar:
        for member in tar:
            if member.isfile():
                key, _, suffix = member.name.partition(".")
                records.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    return list(records.items())


def caption_records(records: Iterable[Record], captioner: Captioner,
                    only_failed: bool = False) -> tuple[list[Record], dict[str, int]]:
    """Caption the records (their json members; images untouched): (records, outcome counts). Each is asked
    for as soon as it is read, so a generator of records keeps drawing while answers come in. `only_failed`:
    ask again only for samples whose last try failed on the server; the others keep what they have."""
    done: list[Record] = []
    metas: list[dict] = []
    futures: list = []
    try:
        for key, members in records:
            meta = json.loads(members["json"])
            done.append((key, members))
            metas.append(meta)
            futures.append(None if only_failed and kind_of(meta) != "failed" else captioner.submit(meta))
        for i, future in enumerate(futures):
            if future is not None:
                metas[i] = apply_outcome(metas[i], future.result())
                done[i][1]["json"] = encode_json(metas[i])
    finally:
        for future in futures:  # on ServerDown or an interrupt: nothing more is waited for
            if future is not None:
                future.cancel()
    return done, count_kinds(metas)


_INLINE: dict = {}


def inline_captioner(cfg, runtime) -> Captioner:
    """One Captioner per generate worker process and caption setup (its loop, connections and breaker are
    shared by the shards the process makes)."""
    from .settings import CaptionConfig, pass_id

    config = CaptionConfig.from_json(cfg.captions)
    key = (cfg.digest(), config, repr(runtime))
    if key not in _INLINE:
        _INLINE[key] = Captioner(config, runtime, pass_id(cfg.digest(), config))
    return _INLINE[key]


def replace_shard(storage: Storage, name: str, shard: int, old_stats: dict, captioner: Captioner,
                  only_failed: bool) -> dict:
    """Caption a committed shard and replace it atomically (ShardWriter's journal); returns its new stats."""
    stem = old_stats["tar"][:-len(".tar")]
    records, counts = caption_records(read_records(storage, old_stats["tar"]), captioner, only_failed)
    keep = {k: v for k, v in old_stats.items()
            if k not in ("shard", "name", "tar", "samples", "bytes", "sha256", "seconds", "captions")}
    with ShardWriter(storage, name, shard) as writer:
        assert writer.stem == stem
        for key, members in records:
            writer.write(key, members, index_row(json.loads(members["json"])))
        return writer.commit({**keep, "captions": {"pass": captioner.pass_id, **counts}}, replacing=True)
