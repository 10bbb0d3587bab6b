"""One sample stream: the deterministic samples one (rank, worker) reads, served bucket by bucket.

Stream j of N (N = world_size · streams per rank) owns, for each source s with S shards, the global shard
positions g = j, j+N, j+2N, … of an endless sequence of passes; pass p = g // S is a seeded permutation of
the source's shards, so the first S positions cover every shard once across all streams, and no stream
runs dry (resampling: it reads on into the next pass). The stream's k-th shard of a source is read in a
seeded permutation (seed, s, g) of its samples (tar order with `shuffle_samples=False`).

Buckets are served by cursors, not queues: for every (bucket, source) a cursor (k, i) walks that source's
sequence through the samples *of that bucket only* (a shard's index tells every sample's bucket from its
headers, before any tensor is read). A batch of bucket b draws, per sample, the source from the weights
restricted to b (w_s · f_sb, so the overall mix is still w_s), by a generator seeded by (seed, j, b, draw
number), and takes that source's next bucket-b sample. Every sample of the sequence is thus taken exactly
once, by its own bucket's cursor: nothing waits in a queue, nothing is dropped. Where the schedule and the
data drift apart, cursors sit at different shards; each shard is indexed once, split into per-bucket parts
for the buckets that have yet to read it, and a part is freed when its bucket's cursor moves on, so a
lagging (rare) bucket costs only its own few samples per shard. The position is tiny and independent of
batch sizes: per (bucket, source) (k, i), per bucket its draw count, per source the furthest shard indexed
(so damage is counted once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .buckets import Bucket, bucket_of
from .shards import Entry, ShardIndex, entry_of, index_shard

_TAG_SHARDS, _TAG_SAMPLES, _TAG_SOURCE = 0x5A1, 0x5A2, 0x5A3
_SOURCE_BLOCK = 4096


@dataclass(frozen=True)
class StreamPlan:
    """What every stream of a run shares (picklable: it travels to DataLoader workers)."""

    names: tuple[str, ...]  # the sources, for messages
    shards: tuple[tuple[str, ...], ...]  # per source: its shard paths, sorted
    mix: tuple[tuple[float, ...], ...]  # per bucket slot: the sources' shares of it (sum 1)
    slots: tuple[Bucket, ...]  # the scheduled buckets
    channels: int  # latent channels (16)
    hidden: int  # VLM hidden size D
    seed: int
    exclude: frozenset[str]
    shuffle_shards: bool = True
    shuffle_samples: bool = True


class _Part:
    """One bucket's samples of one shard, in read order."""

    __slots__ = ("path", "keys", "rows")

    def __init__(self, path: str, keys: list[str], rows: np.ndarray):
        self.path, self.keys, self.rows = path, keys, rows


class SampleStream:
    def __init__(self, plan: StreamPlan, stream: int, num_streams: int, event: Callable[..., None],
                 state: dict | None = None):
        self.plan, self.j, self.n_streams, self.event = plan, stream, num_streams, event
        self._slot = {bucket: i for i, bucket in enumerate(plan.slots)}
        n_sources = len(plan.shards)
        state = state or {}
        self.cursors = [[list(c) for c in per] for per in state.get("cursors", [[[0, 0]] * n_sources] * len(plan.slots))]
        self.draws = list(state.get("draws", [0] * len(plan.slots)))
        self.frontier = list(state.get("frontier", [-1] * n_sources))  # per source: furthest k indexed
        self._parts: dict[tuple[int, int, int], _Part] = {}  # (slot, source, k)
        self._orders: dict[tuple[int, int], np.ndarray] = {}  # (source, pass) → shard order
        self._choices: dict[int, tuple[int, np.ndarray]] = {}  # slot → (block, sources)

    def state_dict(self) -> dict:
        return {"cursors": [[list(c) for c in per] for per in self.cursors], "draws": list(self.draws),
                "frontier": list(self.frontier)}

    def take(self, slot: int, n: int) -> list[tuple[str, Entry]]:
        """The next n samples of bucket `slot`: (shard path, where the sample lies in it)."""
        out = []
        for _ in range(n):
            source = self._source(slot, self.draws[slot])
            self.draws[slot] += 1
            out.append(self._next(slot, source))
        return out

    # -- the sequence ----------------------------------------------------------------------------------------
    def _source(self, slot: int, draw: int) -> int:
        mix = self.plan.mix[slot]
        if len(mix) == 1:
            return 0
        block = draw // _SOURCE_BLOCK
        cached = self._choices.get(slot)
        if cached is None or cached[0] != block:
            rng = np.random.default_rng([self.plan.seed, _TAG_SOURCE, self.j, slot, block])
            cached = self._choices[slot] = block, rng.choice(len(mix), _SOURCE_BLOCK, p=mix)
        return int(cached[1][draw % _SOURCE_BLOCK])

    def _next(self, slot: int, source: int) -> tuple[str, Entry]:
        cursor, passed = self.cursors[slot][source], 0
        while True:
            k, i = cursor
            part = self._parts.get((slot, source, k)) or self._load(slot, source, k)
            if i < len(part.keys):
                cursor[1] = i + 1
                return part.path, entry_of(part.keys[i], part.rows[i])
            del self._parts[(slot, source, k)]  # this bucket is done with shard k
            cursor[0], cursor[1] = k + 1, 0
            passed += 1
            if passed > len(self.plan.shards[source]) + 1:  # a whole pass without one: the probe was wrong
                raise RuntimeError(f"bucket {self.plan.slots[slot]} has no usable sample in a whole pass over "
                                   f"source {self.plan.names[source]}; give bucket_weights, or more probe_shards")

    def _load(self, slot: int, source: int, k: int) -> _Part:
        """Index shard (source, k) once and keep its part for every bucket that has yet to read it."""
        index = index_shard(self._path(source, k))
        first = k > self.frontier[source]  # counted once per read of a shard, never again (nor on resume)
        if first:
            self.frontier[source] = k
            if index.damage:
                self.event("corrupt_shards", f"{index.path}: {index.damage} ({len(index)} samples before it kept)")
            for key, why in index.bad_samples:
                self.event("corrupt_samples", f"{index.path}: {key}: {why}")
        for s, rows in enumerate(self._split(index, source, k, first)):
            if self.cursors[s][source][0] <= k and (s, source, k) not in self._parts:
                self._parts[(s, source, k)] = _Part(index.path, [index.keys[r] for r in rows], index.table[rows])
        return self._parts[(slot, source, k)]

    def _split(self, index: ShardIndex, source: int, k: int, count: bool) -> list[np.ndarray]:
        n, table, plan = len(index), index.table, self.plan
        if plan.shuffle_samples:
            g = self.j + k * self.n_streams
            order = np.random.default_rng([plan.seed, _TAG_SAMPLES, source, g]).permutation(n)
        else:
            order = np.arange(n)
        slot = np.full(n, -1)
        for h, w in set(zip(table["h"].tolist(), table["w"].tolist())):
            slot[(table["h"] == h) & (table["w"] == w)] = self._slot.get(bucket_of(h, w), -1)
        bad = (table["c"] != plan.channels) | (table["hidden"] != plan.hidden)
        excluded = np.array([key in plan.exclude for key in index.keys], bool) if plan.exclude else np.zeros(n, bool)
        if count:
            for i in np.flatnonzero(excluded):
                self.event("excluded", index.keys[i], level=10)
            for i in np.flatnonzero(bad & ~excluded):
                self.event("bad_shape", f"{index.keys[i]}: latent channels {table['c'][i]}, VLM hidden "
                                        f"{table['hidden'][i]}; this run has {plan.channels} and {plan.hidden}")
            for i in np.flatnonzero((slot < 0) & ~bad & ~excluded):
                self.event("unscheduled", f"{index.keys[i]}: latent {table['h'][i]}×{table['w'][i]} is not a "
                                          "scheduled bucket", level=20)
        slot[bad | excluded] = -1
        ordered = slot[order]
        return [order[ordered == s] for s in range(len(plan.slots))]

    def _path(self, source: int, k: int) -> str:
        shards = self.plan.shards[source]
        p, pos = divmod(self.j + k * self.n_streams, len(shards))
        order = self._orders.get((source, p))
        if order is None:
            if len(self._orders) > 64:  # passes are read roughly in order: old ones are not needed again
                self._orders.clear()
            rng = np.random.default_rng([self.plan.seed, _TAG_SHARDS, source, p])
            order = self._orders[(source, p)] = (rng.permutation(len(shards)) if self.plan.shuffle_shards
                                                 else np.arange(len(shards)))
        return shards[int(order[pos])]
