"""Aspect buckets for the loader: which bucket a latent is, how many samples a bucket's batch holds, and the
bucket schedule every rank follows.

A bucket is `(size, index)`: `index` into `collage.config.aspect_buckets(size)` (31 of them, 15 = square),
the same number a collage json carries as `bucket`. It is read off the latent's shape (8× the pixels), the
one thing collation depends on, so feature sets of several sizes can be mixed.

The schedule: step t's bucket must be the same on every rank without any communication, and it must follow
the data, or the buckets' read cursors drift ever further apart. It is smooth weighted round robin
with seeded jitter: each step every bucket earns its step share q_b (∝ sample frequency / batch size) as
credit, the bucket with the most credit plus a uniform jitter in [0, jitter) is drawn and pays 1. Credits
stay within a few units of zero, so after T steps each bucket has had T·q_b steps give or take a few; an
i.i.d. draw would drift by √T. The jitter comes from a generator seeded by (seed, stream, t), so the
schedule is a pure function of (seed, frequencies, credits at a step): all ranks agree, and a resume needs
only the step and the credit vector. Below 256², neighbouring buckets can round to one shape (at 128²,
14–16 are all square): they are one bucket here, reported as the middle index.

The loader runs one schedule per stream index ρ (the steps t ≡ ρ mod streams-per-rank, built by stream ρ
of every rank): a shared global schedule split round robin over workers would leave each worker's share
of a bucket drifting like a random walk.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping

import numpy as np

from collage.config import aspect_buckets

Bucket = tuple[int, int]  # (size, index into aspect_buckets(size))
LATENT_DOWN = 8  # FLUX VAE
PATCH = 2  # the DiT's patch side, in latent pixels: a bucket's tokens are (h/2)·(w/2)
_TAG_SCHEDULE = 0x5C4E


@functools.lru_cache(maxsize=4096)
def bucket_of(latent_h: int, latent_w: int) -> Bucket | None:
    """The (size, index) whose bucket is (latent_w·8) × (latent_h·8) pixels, or None."""
    width, height = latent_w * LATENT_DOWN, latent_h * LATENT_DOWN
    around = math.sqrt(width * height) / 16
    for size in sorted(range(max(4, int(around * 0.85)), int(around * 1.15) + 2), key=lambda s: abs(s - around)):
        same = [i for i, wh in enumerate(aspect_buckets(size * 16)) if wh == (width, height)]
        if same:  # below 256², neighbours can round to one shape (128²: 14–16 are all square): the middle one
            return size * 16, same[len(same) // 2]
    return None


def latent_hw(bucket: Bucket) -> tuple[int, int]:
    width, height = aspect_buckets(bucket[0])[bucket[1]]
    return height // LATENT_DOWN, width // LATENT_DOWN


def batch_sizes(buckets: list[Bucket], batch_size: int, tokens_per_batch: int | None = None,
                overrides: Mapping[int, int] | None = None) -> list[int]:
    """Per-bucket batch sizes: `batch_size`, or tokens_per_batch // the bucket's tokens (steady tokens per
    batch across sizes and aspect ratios), then explicit overrides by bucket index."""
    out = []
    for bucket in buckets:
        size = batch_size
        if tokens_per_batch:
            h, w = latent_hw(bucket)
            size = max(1, tokens_per_batch // ((h // PATCH) * (w // PATCH)))
        if overrides and bucket[1] in overrides:
            size = int(overrides[bucket[1]])
        if size < 1:
            raise ValueError(f"bucket {bucket}: batch size {size} < 1")
        out.append(size)
    return out


def step_shares(frequencies: list[float], sizes: list[int]) -> np.ndarray:
    """q_b ∝ f_b / B_b: a bucket with twice the samples, or half the batch, gets twice the steps."""
    q = np.asarray(frequencies, np.float64) / np.asarray(sizes, np.float64)
    return q / q.sum()


class BucketSchedule:
    """The shared bucket sequence; `next()` gives step `step`'s bucket slot and moves on."""

    def __init__(self, shares: np.ndarray, seed: int, jitter: float = 1.0, stream: int = 0, step: int = 0,
                 credits: list[float] | None = None):
        self.shares = np.asarray(shares, np.float64)
        self.seed, self.jitter, self.stream, self.step = int(seed), float(jitter), int(stream), int(step)
        self.credits = np.zeros(len(self.shares)) if credits is None else np.asarray(credits, np.float64)
        self._live = self.shares > 0

    def next(self) -> int:
        self.credits += self.shares
        noise = np.random.default_rng([self.seed, _TAG_SCHEDULE, self.stream, self.step]).random(len(self.shares))
        score = np.where(self._live, self.credits + self.jitter * noise, -np.inf)
        slot = int(np.argmax(score))
        self.credits[slot] -= 1.0
        self.step += 1
        return slot

    def state_dict(self) -> dict:
        return {"stream": self.stream, "step": self.step, "credits": [float(c) for c in self.credits]}
