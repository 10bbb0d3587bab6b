"""The streaming loader: aspect-bucketed batches of precomputed features (FEATURE_FORMAT.md), the same bucket on
every rank at every step, mixed sources, exact resume.

    loader = FeatureLoader(LoaderConfig(sources=[("feats/dreamomni", 0.35), ("feats/laion", 0.65)],
                                        batch_size=32, epoch_samples=10_000_000, num_workers=8, seed=1))
    loader.load_state_dict(ckpt["loader"])          # optional: resume
    for batch in loader:                            # one epoch (endless without epoch_samples)
        ...                                         # batch["latent"] (B,16,h,w), batch["vlm"] (B,L,D), …
        ckpt["loader"] = loader.state_dict()        # the position after this batch

Design (why it resumes exactly without re-reading):
- The data is a pure function of the config and the shards' bytes. Each rank runs S = max(1, num_workers)
  *streams*; stream ρ of rank r is global stream j = r·S + ρ of N = world·S and reads the shard positions
  j, j+N, … of an endless sequence of seeded shard permutations (passes), each shard in a seeded sample
  permutation (train/stream.py). A shard is first indexed (tar and safetensors headers, train/shards.py),
  so every sample's bucket is known before its tensors are read.
- Step t is built whole by stream ρ = t mod S of each rank; its bucket is the next draw of schedule ρ, which
  every rank runs identically (train/buckets.py: smooth weighted round robin over the probed bucket
  frequencies, seeded jitter; one schedule per ρ, so each stream's demand tracks its own data).
- A bucket's samples come from per-(bucket, source) cursors walking the stream's sequence through that
  bucket's samples only: every sample is taken exactly once per pass, by its own bucket, and there are no
  queues — so no remainder to carry, nothing dropped, and the position is a few integers per bucket.
  The batch: VLM features padded to the longest (capped at max_vlm_len, True = real token in vlm_mask),
  each tensor read with one copy from the file into the batch (in shared memory inside workers). CFG
  dropout draws from a generator seeded by (seed, rank, t). Batch t is a function of stream ρ's position.
- With DataLoader workers, worker w hosts stream (start + w) mod S and yields its steps in order, so the
  DataLoader's round robin yields steps start, start+1, … in order; each batch carries its stream's
  position after it, and the loader keeps the position of the last batch *handed out* (not of prefetched
  ones). `state_dict()`: step; per stream its schedule credits, cursors (k, i) per bucket and source, draw
  counts, indexed frontier and skip counters — O(buckets × sources) integers, whatever the batch or data
  size. `load_state_dict` + iterating restarts every stream there; only the headers of the shards under
  its cursors are read again.
- Epochs are a fixed number of steps (epoch_samples / average samples per step), the same on every rank;
  streams never run dry (they read on into the next pass). Remainder policy: nothing is held back or
  dropped at an epoch's end — cursors just continue. So an epoch of epoch_samples ≤ the data shows each
  sample at most once, unless a stream's schedule asked a bucket for more than that stream's share of the
  pass holds (the schedule follows the probed frequencies, a stream's shards their own): that bucket then
  reads on into its next pass early. Samples of unscheduled buckets, excluded keys, damaged samples and
  shards are skipped and counted (`counters`), with rate-limited log lines (logger "train.data").
- Exact resume needs the same config, world size, num_workers and shard bytes (checked where possible).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from collage.reader import excluded_keys

from .batches import Plan, WorkerBatches, identity, release_later, schedules, stream_batches
from .buckets import Bucket, batch_sizes, bucket_of, step_shares
from .shards import index_shard
from .stream import StreamPlan

log = logging.getLogger("train.data")
STATE_VERSION = 1
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class LoaderConfig:
    sources: Sequence[tuple[str, float] | str]  # feature dirs (or a shard, a glob), each with its mixing weight
    batch_size: int = 32  # per rank, for every bucket unless tokens_per_batch / bucket_batch_sizes
    global_batch_size: int | None = None  # instead of batch_size: split evenly over the ranks
    tokens_per_batch: int | None = None  # per-bucket batch = this // the bucket's DiT tokens ((h/2)·(w/2))
    bucket_batch_sizes: Mapping[int, int] | None = None  # explicit per-bucket batch sizes, by bucket index
    max_vlm_len: int | None = 512  # VLM features are cut to their first max_vlm_len tokens
    seed: int = 0
    epoch_samples: int | None = None  # samples (all ranks) per epoch; None: one endless epoch
    num_workers: int = 0  # DataLoader workers per rank (0: in the main process)
    prefetch_factor: int = 2
    pin_memory: bool = False
    mp_context: str | None = None  # DataLoader multiprocessing context ("fork", "spawn", …)
    cfg_dropout: float = 0.0  # probability that a sample's condition is replaced by the unconditional one
    uncond: str | None = None  # its safetensors (key `vlm`); default: uncond.safetensors in a source dir
    exclude: str | Sequence[str] | frozenset[str] | None = None  # QA exclusion list path(s) (gallery flags.json,
    # csv, txt), or a set of keys (a trainer's held-out samples)
    shuffle_shards: bool = True
    shuffle_samples: bool = True  # False: each bucket reads a shard front to back (storage bad at random reads)
    bucket_weights: Mapping[Bucket, float] | None = None  # {(size, index): sample share}; default: probed
    probe_shards: int = 2  # shards per source read (headers only) to learn bucket frequencies
    schedule_jitter: float = 1.0  # randomness of the bucket order (0: a fixed round robin)
    dtype: str = "bf16"  # of the batch tensors (features in another dtype are converted)
    log_interval_s: float = 60.0  # at most one log line per skip kind per this many seconds per process
    # The raw path (small runs): sample sources (collage runs, img2dataset data) are encoded in this process
    # by the precompute code into a cache (train/raw.py), then streamed like feature directories.
    encoders: tuple[str, str] | None = None  # (vlm_dir, vae_dir) for sources that are not feature directories
    raw_size: int = 256  # the precompute --size for raw sources
    raw_cache: str | None = None  # where their features are kept (default ~/.cache/collage/features)


class FeatureLoader:
    """Iterate for one epoch of batches (dicts: latent, vlm, vlm_mask, cfg_drop, keys, json, bucket, size, step);
    `state_dict()` / `load_state_dict()` carry the exact position; `counters` are the skips so far."""

    def __init__(self, config: LoaderConfig, rank: int | None = None, world_size: int | None = None,
                 uncond: torch.Tensor | None = None):
        if rank is None or world_size is None:
            dist = torch.distributed.is_available() and torch.distributed.is_initialized()
            rank = rank if rank is not None else (torch.distributed.get_rank() if dist else 0)
            world_size = world_size if world_size is not None else (torch.distributed.get_world_size() if dist else 1)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        if config.dtype not in DTYPES:
            raise ValueError(f"dtype {config.dtype!r}: choose one of {', '.join(DTYPES)}")
        if not 0 <= config.cfg_dropout < 1:
            raise ValueError(f"cfg_dropout {config.cfg_dropout}: use a probability in [0, 1)")
        self.config, self.rank, self.world_size = config, rank, world_size
        per_rank = config.batch_size
        if config.global_batch_size is not None:
            if config.global_batch_size % world_size:
                raise ValueError(f"global_batch_size {config.global_batch_size} does not split over {world_size} ranks")
            per_rank = config.global_batch_size // world_size
        names, shards, weights = _sources(_featurize_raw(config))
        counts, channels, hidden = _probe(names, shards, config.probe_shards)
        if config.bucket_weights:
            freq = {tuple(b): float(w) for b, w in config.bucket_weights.items() if w > 0}
        else:
            freq = Counter()
            for w, c in zip(weights, counts):
                total = sum(c.values())
                for bucket, n in c.items():
                    freq[bucket] += w * n / total
        slots = tuple(sorted(freq))
        sizes = batch_sizes(list(slots), per_rank, config.tokens_per_batch, config.bucket_batch_sizes)
        shares = step_shares([freq[b] for b in slots], sizes)
        mix = []  # per bucket, the sources' shares of its samples: w_s · f_sb (so overall, w_s)
        for bucket in slots:
            share = np.array([w * c[bucket] / sum(c.values()) for w, c in zip(weights, counts)])
            share = share if share.sum() > 0 else np.asarray(weights)
            mix.append(tuple(float(x) for x in share / share.sum()))
        self.streams = max(1, config.num_workers)
        if isinstance(config.exclude, (set, frozenset)):  # the keys themselves
            exclude = frozenset(config.exclude)
        elif isinstance(config.exclude, (str, Path)):
            exclude = excluded_keys(config.exclude)
        else:
            exclude = frozenset().union(*(excluded_keys(p) for p in config.exclude or ()))
        stream_plan = StreamPlan(names, shards, tuple(mix), slots, channels, hidden, int(config.seed), exclude,
                                 config.shuffle_shards, config.shuffle_samples)
        dtype = DTYPES[config.dtype]
        self._plan = Plan(stream_plan, world_size, self.streams, tuple(sizes), tuple(float(q) for q in shares),
                          config.schedule_jitter, config.max_vlm_len, config.cfg_dropout,
                          _uncond(config, uncond, shards, hidden, dtype), dtype, config.log_interval_s)
        self.buckets: tuple[Bucket, ...] = slots
        self.latent_channels, self.vlm_dim = channels, hidden  # what every sample must have
        self.batch_sizes: dict[Bucket, int] = dict(zip(slots, sizes))
        self.samples_per_step = world_size * float(np.dot(shares, sizes))  # all ranks, on average
        self.steps_per_epoch = (None if config.epoch_samples is None
                                else max(1, int(config.epoch_samples // self.samples_per_step)))
        self._step = 0
        self._schedule = [sched.state_dict() for sched in schedules(self._plan)]  # per stream
        self._states: list[dict | None] = [None] * self.streams  # per stream: sample position, counters
        self._generation = 0

    # -- position -----------------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self._step

    @property
    def epoch(self) -> int:
        return 0 if self.steps_per_epoch is None else self._step // self.steps_per_epoch

    def __len__(self) -> int:
        if self.steps_per_epoch is None:
            raise TypeError("an endless loader (epoch_samples=None) has no length")
        return self.steps_per_epoch

    @property
    def counters(self) -> dict[str, int]:
        out = Counter()
        for state in self._states:
            out.update((state or {}).get("counters", {}))
        return dict(out)

    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "seed": int(self.config.seed), "world_size": self.world_size,
                "rank": self.rank, "streams": self.streams, "buckets": [list(b) for b in self.buckets],
                "step": self._step, "schedule": json.loads(json.dumps(self._schedule)),
                "stream_states": json.loads(json.dumps(self._states))}

    def load_state_dict(self, state: Mapping) -> None:
        mine = self.state_dict()
        for key in ("version", "seed", "world_size", "rank", "streams", "buckets"):
            if state.get(key) != mine[key]:
                raise ValueError(f"loader state is of another setup: {key} {state.get(key)!r}, this loader "
                                 f"{mine[key]!r} (exact resume needs the same seed, ranks, workers and buckets)")
        self._step = int(state["step"])
        self._schedule = json.loads(json.dumps(list(state["schedule"])))
        self._states = json.loads(json.dumps(list(state["stream_states"])))
        self._generation += 1  # an iterator still running from before stops

    # -- iteration ----------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        start, generation, per = self._step, self._generation, self.steps_per_epoch
        end = None if per is None else (start // per + 1) * per
        live, releases = [True], []
        if self.config.num_workers == 0:
            source = stream_batches(self._plan, self.rank, 0, start, end, self._schedule[0], self._states[0])
        else:
            context = multiprocessing.get_context(self.config.mp_context)
            releases = [context.Queue() for _ in range(self.streams)]
            for q in releases:
                q.cancel_join_thread()  # never block exit on a buffer notice nobody will read
            dataset = WorkerBatches(self._plan, self.rank, start, end, self._schedule, self._states, releases)
            source = iter(DataLoader(dataset, batch_size=None, num_workers=self.config.num_workers,
                                     collate_fn=identity, pin_memory=self.config.pin_memory,
                                     prefetch_factor=self.config.prefetch_factor, multiprocessing_context=context,
                                     persistent_workers=False))
        try:
            for batch in source:
                if generation != self._generation:
                    return
                rho, state = batch.pop("_stream"), batch.pop("_state")
                for name, buffer in zip(("latent", "vlm"), batch.pop("_buffers", ())):
                    release_later(batch[name], releases[rho], buffer, live)
                if batch["step"] != self._step or rho != self._step % self.streams:
                    raise RuntimeError(f"loader out of order: got step {batch['step']} from stream {rho}, "
                                       f"expected step {self._step}")
                self._states[rho], self._schedule[rho] = state["sample"], state["schedule"]
                self._step += 1
                yield batch
        finally:
            live[0] = False
            shutdown = getattr(source, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            for q in releases:
                q.close()


# -- construction helpers --------------------------------------------------------------------------------
def _featurize_raw(config: LoaderConfig) -> list[tuple[str, float]]:
    """The sources with every sample source replaced by its feature folder (the raw path)."""
    from .raw import featurized, is_feature_source

    spec = [config.sources] if isinstance(config.sources, (str, Path)) else list(config.sources)
    out = []
    for item in spec:
        path, weight = (item, 1.0) if isinstance(item, (str, Path)) else item
        path = str(path)
        if not is_feature_source(path) and (os.path.isdir(path) or path.endswith(".tar")):
            if config.encoders is None:
                raise ValueError(f"source {path} holds sample shards, not features: precompute it "
                                 "(python -m train.precompute) or give encoders=(vlm_dir, vae_dir) for the raw path")
            path = featurized(path, *config.encoders, size=config.raw_size, cache_root=config.raw_cache)
        out.append((path, weight))
    return out


def _sources(spec: Sequence) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], tuple[float, ...]]:
    if isinstance(spec, (str, Path)):
        spec = [spec]
    names, shards, weights = [], [], []
    for item in spec:
        path, weight = (item, 1.0) if isinstance(item, (str, Path)) else item
        weight = float(weight)
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"source {path}: weight {weight} (use a positive number)")
        found = shard_paths(str(path))
        if not found:
            raise ValueError(f"source {path}: no feature shards there")
        names.append(str(path))
        shards.append(tuple(found))
        weights.append(weight)
    total = sum(weights)
    return tuple(names), tuple(shards), tuple(w / total for w in weights)


def shard_paths(path: str) -> list[str]:
    """A feature dir's finished shards (sizes.json, else stats markers, else *.tar), a shard, or a glob."""
    if os.path.isdir(path):
        sizes = os.path.join(path, "sizes.json")
        if os.path.exists(sizes):
            with open(sizes) as f:
                return [os.path.join(path, name) for name in sorted(json.load(f))]
        markers = sorted(glob.glob(os.path.join(glob.escape(path), "*.stats.json")))
        if markers:
            return [m[: -len(".stats.json")] + ".tar" for m in markers]
        return sorted(glob.glob(os.path.join(glob.escape(path), "*.tar")))
    if os.path.exists(path):
        return [path]
    return sorted(glob.glob(path))


def _probe(names, shards, probe_shards: int) -> tuple[list[Counter], int, int]:
    """Bucket counts per source from the headers of a few evenly spread shards (the same on every rank),
    and the latent channels and VLM hidden size every sample must have."""
    counts, shapes = [], Counter()
    for name, paths in zip(names, shards):
        m = max(1, min(probe_shards, len(paths)))
        spread = sorted({round(i * (len(paths) - 1) / max(1, m - 1)) for i in range(m)})
        order = spread + [i for i in range(len(paths)) if i not in spread]  # damaged ones: try others
        c, good = Counter(), 0
        for i in order:
            table = index_shard(paths[i]).table
            for (h, w), n in Counter(zip(table["h"].tolist(), table["w"].tolist())).items():
                bucket = bucket_of(h, w)
                if bucket is not None:
                    c[bucket] += n
            shapes.update(zip(table["c"].tolist(), table["hidden"].tolist()))
            good += bool(len(table))
            if good >= m:
                break
        if not c:
            raise ValueError(f"source {name}: no readable sample of a known bucket in its shards")
        counts.append(c)
    if len(shapes) > 1:
        log.warning("feature shapes differ between samples %s: keeping the most common", dict(shapes))
    (channels, hidden), _ = shapes.most_common(1)[0]
    return counts, channels, hidden


def _uncond(config: LoaderConfig, tensor: torch.Tensor | None, shards, hidden: int, dtype) -> torch.Tensor | None:
    if config.cfg_dropout <= 0:
        return None
    if tensor is None:
        from safetensors.torch import load_file

        path = config.uncond
        if path is None:
            dirs = dict.fromkeys(os.path.dirname(p) for paths in shards for p in paths)
            path = next((os.path.join(d, "uncond.safetensors") for d in dirs
                         if os.path.exists(os.path.join(d, "uncond.safetensors"))), None)
        if path is None:
            raise ValueError("cfg_dropout needs the unconditional features: give uncond (a path or a tensor), "
                             "or put uncond.safetensors in a source directory")
        tensor = load_file(path)["vlm"]
    tensor = tensor.squeeze(0) if tensor.dim() == 3 else tensor
    if tensor.dim() != 2 or tensor.shape[1] != hidden or tensor.shape[0] < 1:
        raise ValueError(f"unconditional features of shape {tuple(tensor.shape)}: expected (L, {hidden})")
    return tensor.to(dtype).contiguous()
