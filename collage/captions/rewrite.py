"""Caption the samples of one shard: inline before it is first committed, or by replacing a committed one.

Only the json members change (`caption`, `caption_source`, `caption_error`); images keep their bytes.
Counts are read back from the final jsons, so a shard's outcome counts are true whatever path it took.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter

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


def caption_records(records: list[Record], captioner: Captioner, only_failed: bool = False) -> dict[str, int]:
    """Caption the records in place (their json members); returns the outcome counts. `only_failed`: ask
    again only for samples whose last try failed on the server; the others keep what they have."""
    metas = [json.loads(members["json"]) for _, members in records]
    futures = [None if only_failed and kind_of(m) != "failed" else captioner.submit(m) for m in metas]
    try:
        for i, future in enumerate(futures):
            if future is not None:
                metas[i] = apply_outcome(metas[i], future.result())
                records[i][1]["json"] = encode_json(metas[i])
    finally:
        for future in futures:  # on ServerDown: the rest are not waited for
            if future is not None:
                future.cancel()
    return count_kinds(metas)


def replace_shard(storage: Storage, name: str, shard: int, old_stats: dict, captioner: Captioner,
                  only_failed: bool) -> dict:
    """Caption a committed shard and replace it atomically (ShardWriter's journal); returns its new stats."""
    stem = old_stats["tar"][:-len(".tar")]
    records = read_records(storage, old_stats["tar"])
    counts = caption_records(records, captioner, only_failed)
    keep = {k: v for k, v in old_stats.items()
            if k not in ("shard", "name", "tar", "samples", "bytes", "sha256", "seconds", "captions")}
    with ShardWriter(storage, name, shard) as writer:
        assert writer.stem == stem
        for key, members in records:
            writer.write(key, members, index_row(json.loads(members["json"])))
        return writer.commit({**keep, "captions": {"pass": captioner.pass_id, **counts}}, replacing=True)
