"""The worker: make one whole shard from (config, shard index) alone. Knows no task (the registry does)."""

from __future__ import annotations

import bisect
import ctypes
import hashlib
import itertools
import json
import logging
import resource
import struct
import sys
import traceback
from functools import lru_cache

import cv2
import numpy as np

from .assets import AssetLibrary
from .assets.library import sprite_side_for
from .config import ASPECT_BUCKETS, MixEntry, RunConfig, aspect_buckets, aspect_cumulative
from .errors import Reject
from .sample import Sample, encode_members, index_row
from .storage import Storage, refusals_as_storage_errors
from .tasks import GenConfig, get_task
from .writer import ShardWriter, shard_stem

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 64  # redraws per sample before the shard is declared broken


@lru_cache(maxsize=2)
def library(manifest_dir: str | None, sprite_max_side: int = 192, max_upscale: float = 1.25) -> AssetLibrary:
    """One library per process (the pixel cache is shared by memory map)."""
    return AssetLibrary(manifest_dir, warn=False, sprite_max_side=sprite_max_side, max_upscale=max_upscale)


def run_library(cfg: RunConfig, manifest_dir: str | None) -> AssetLibrary:
    """The library a run draws from: sprites cached at the size its canvases draw them (sprite_side_for)."""
    return library(manifest_dir, sprite_side_for(cfg.size), cfg.max_upscale)


@lru_cache(maxsize=1)
def tune_worker_process() -> None:
    """Process-wide settings for a process that makes shards (not for a driver that only plans them)."""
    cv2.setNumThreads(1)  # a worker is one core: OpenCV's own threads would fight the other workers
    keep_freed_memory()


def keep_freed_memory() -> None:
    """Have glibc's malloc keep freed canvases for reuse instead of returning them to the kernel.

    Every sample allocates a dozen canvas-sized arrays. By default each is a fresh mmap, and its first
    touch costs a page fault per 4 KiB: about a tenth of a drag sample's time (bench/generate.py).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    libc.mallopt(m_mmap_threshold, 256 << 20)
    libc.mallopt(m_trim_threshold, 1 << 30)
    libc.mallopt(m_top_pad, 64 << 20)


def _key_hash(*key: int) -> int:
    """64 well-mixed bits of a tuple of non-negative ints: BLAKE2b, a tenth of the cost of a SeedSequence."""
    return int.from_bytes(hashlib.blake2b(struct.pack(f"<{len(key)}Q", *key), digest_size=8).digest(), "little")


def sample_seed(run_seed: int, shard: int, index: int, attempt: int, stream: int = 0) -> int:
    """A 53-bit seed from (run seed, shard, index, attempt, the run's stream — RunConfig.stream) alone: any
    worker, any time, same sample. 53 bits, so every json reader keeps it exactly (JavaScript numbers are
    doubles: the gallery, browsers)."""
    return _key_hash(run_seed, stream, shard, index, attempt) >> 11


@lru_cache(maxsize=16)
def _cumulative_weights(mix: tuple[MixEntry, ...]) -> list[float]:
    return list(itertools.accumulate(m.weight for m in mix))


def choose(cfg: RunConfig, shard: int, index: int) -> tuple[MixEntry, str, int, int, int]:
    """(mix entry, op, width, height, bucket) of a sample, from its own hash so redraws keep the mix."""
    bits = _key_hash(cfg.seed, cfg.stream, shard, index, 2**32)
    # three independent uniforms in [0, 1) from 21 bits each: plenty for picking among a few choices
    u_entry, u_op, u_bucket = ((bits >> shift & 0x1FFFFF) / 0x200000 for shift in (0, 21, 42))
    cumulative = _cumulative_weights(cfg.mix)
    entry = cfg.mix[min(bisect.bisect(cumulative, u_entry * cumulative[-1]), len(cumulative) - 1)]
    op = entry.ops[int(u_op * len(entry.ops))]
    if cfg.aspect_ratios in ("all", "uniform"):
        buckets, weights = aspect_buckets(cfg.size), aspect_cumulative(cfg.size, cfg.aspect_ratios)
        bucket = min(bisect.bisect(weights, u_bucket * weights[-1]), len(buckets) - 1)
        width, height = buckets[bucket]
    else:
        bucket, width, height = ASPECT_BUCKETS // 2, cfg.size, cfg.size  # the middle bucket is the square
    return entry, op, width, height, bucket


def draw_sample(cfg: RunConfig, assets: AssetLibrary, shard: int, index: int, counters: dict) -> tuple[Sample, dict]:
    """Sample `index` and its json; rejected draws are redrawn, a crashing draw is counted and redrawn."""
    entry, op, width, height, bucket = choose(cfg, shard, index)
    task, spec = entry.task, get_task(entry.task)
    gen_config = GenConfig(op, width, height, dict(entry.options))
    for attempt in range(MAX_ATTEMPTS):
        seed = sample_seed(cfg.seed, shard, index, attempt, cfg.stream)
        assets.begin_sample()
        try:
            sample = spec.generate(np.random.default_rng(seed), assets, gen_config)
        except Reject:
            counters["rejects"] += 1
            continue
        except Exception as exc:  # one bad draw (a broken asset, a bug on a rare path) must not end the run
            counters["failures"] += 1
            if counters["failures"] <= 3:
                log.warning("%s sample %d attempt %d failed: %s\n%s", task, index, attempt, exc, traceback.format_exc())
            continue
        meta = {"task": task, "op": sample.op, "prompt": sample.meta["prompt"], "caption": sample.meta["prompt"],
                "caption_source": "template", "width": width, "height": height, "seed": seed, "bucket": bucket,
                **{k: v for k, v in sample.meta.items() if k != "prompt"}, "photo_upscale": assets.photo_upscale}
        return sample, meta
    raise RuntimeError(f"{task}/{op} sample {index} of shard {shard}: no valid draw in {MAX_ATTEMPTS} attempts")


def make_sample(cfg: RunConfig, assets: AssetLibrary, shard: int, index: int,
                counters: dict) -> tuple[dict[str, bytes], dict]:
    """Tar members and json of sample `index`."""
    sample, meta = draw_sample(cfg, assets, shard, index, counters)
    return encode_members(sample, meta, cfg.image_format), meta


def make_shard(cfg: RunConfig, shard: int, out: str, manifest_dir: str | None = None,
               caption_runtime=None) -> dict:
    """Generate, write and commit shard `shard`; returns its stats. Pure in (cfg, shard): reruns give the same tar.

    The stats marker carries the config's digest: a shard of another config, whoever wrote it, is never
    taken for one of this run. A full or read-only disk raises StorageError (not worth a retry). With inline
    captions (`cfg.captions`, served as `caption_runtime` says) each sample is asked for as soon as it is
    drawn, and the shard is written once every answer is in (collage.captions.rewrite, as `collage caption`)."""
    tune_worker_process()
    assets = run_library(cfg, manifest_dir)
    storage = Storage(out)
    counters = {"rejects": 0, "failures": 0}
    stem = shard_stem(cfg.name, shard)
    records = ((f"{stem}-{index:06d}", make_sample(cfg, assets, shard, index, counters)[0])
               for index in range(cfg.shard_samples(shard)))
    extra = {}
    if cfg.captions:
        from .captions.rewrite import caption_records, inline_captioner

        captioner = inline_captioner(cfg, caption_runtime)
        records, counts = caption_records(records, captioner)
        extra = {"captions": {"pass": captioner.pass_id, **counts}}
    with refusals_as_storage_errors(f"{out} (writing {stem})"), ShardWriter(storage, cfg.name, shard) as writer:
        for key, members in records:
            writer.write(key, members, index_row(json.loads(members["json"])))
        return writer.commit({"config": cfg.digest(), "seed": cfg.seed, "failures": counters["failures"],
                              "rejects": counters["rejects"], "assets_skipped": len(assets.skipped),
                              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                              "node": ray_node_id(), **extra})


def ray_node_id() -> str | None:
    """The id of the Ray node this process runs on; None outside Ray (the local backend). Ray is not imported
    here: a Ray worker has it loaded already, and a process without it has no node."""
    ray = sys.modules.get("ray")
    try:
        return ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - only a label in the stats; never worth failing a shard over
        return None
