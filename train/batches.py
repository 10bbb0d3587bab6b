"""Building batches where a stream runs (a DataLoader worker, or the main process with num_workers=0): take a
bucket's next samples from the stream, read them into batch tensors, hand them over with the stream's
position after them. The design is in train/data.py's docstring."""

from __future__ import annotations

import logging
import math
import queue
import time
import weakref
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .buckets import BucketSchedule
from .shards import Entry, read_json, read_tensor
from .stream import SampleStream, StreamPlan

log = logging.getLogger("train.data")
_TAG_CFG = 0xCF6
_OPEN_FILES = 32


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs, picklable."""

    stream: StreamPlan
    world: int
    streams: int  # per rank
    sizes: tuple[int, ...]  # batch size per slot
    shares: tuple[float, ...]  # schedule step share per slot
    jitter: float
    max_vlm_len: int | None
    cfg_dropout: float
    uncond: torch.Tensor | None
    dtype: torch.dtype
    log_interval_s: float


class Events:
    """Skip counters with rate-limited logging: the first of a kind at once, then one line per interval."""

    def __init__(self, interval_s: float, counters: Mapping[str, int] | None = None):
        self.counters: dict[str, int] = dict(counters or {})
        self.interval, self._last, self._quiet = interval_s, {}, Counter()

    def __call__(self, kind: str, detail: str = "", level: int = logging.WARNING) -> None:
        self.counters[kind] = self.counters.get(kind, 0) + 1
        now = time.monotonic()
        if kind in self._last and now - self._last[kind] < self.interval:
            self._quiet[kind] += 1
            return
        more = f", {self._quiet.pop(kind)} more since the last line" if self._quiet[kind] else ""
        log.log(level, "skipped (%s): %s [%d so far%s]", kind, detail, self.counters[kind], more)
        self._last[kind] = now


class _BatchMaker:
    """Builds one stream's batches: takes a bucket's next samples from the stream, reads them into tensors."""

    def __init__(self, plan: Plan, rank: int, rho: int, state: dict | None, releases=None):
        state = state or {}
        self.plan, self.rank = plan, rank
        self.buffers = _SharedBuffers(releases) if releases is not None else None
        self.events = Events(plan.log_interval_s, state.get("counters"))
        self.stream = SampleStream(plan.stream, rank * plan.streams + rho, plan.world * plan.streams,
                                   self.events, state.get("stream"))
        self._files: OrderedDict[str, object] = OrderedDict()

    def state_dict(self) -> dict:
        return {"stream": self.stream.state_dict(), "counters": dict(self.events.counters)}

    def batch(self, step: int, slot: int) -> dict:
        n = self.plan.sizes[slot]
        drop = self._drops(step, n)
        items = self._gather(slot, n)
        while True:
            try:
                return self._collate(step, slot, items, drop)
            except _ReadError as exc:  # rare (a file changed or vanished after indexing): replace and retry
                self.events("read_errors", f"{items[exc.position][1].key}: {exc}")
                items[exc.position] = self._gather(slot, 1)[0]

    def _gather(self, slot: int, n: int) -> list[tuple[str, Entry, dict]]:
        out = []
        while len(out) < n:
            for path, entry in self.stream.take(slot, n - len(out)):
                try:
                    out.append((path, entry, read_json(self._file(path), entry)))
                except (OSError, ValueError) as exc:
                    self.events("corrupt_samples", f"{path}: {entry.key}: json: {exc}")
        return out

    def _collate(self, step: int, slot: int, items: list, drop: np.ndarray) -> dict:
        plan, cap = self.plan, self.plan.max_vlm_len or 1 << 62
        uncond = plan.uncond
        lengths = [min(cap, len(uncond) if d else e.vlm.shape[0]) for (_, e, _), d in zip(items, drop)]
        longest, entry0 = max(lengths), items[0][1]
        latent, lid = self._empty((len(items), *entry0.latent.shape), plan.dtype)
        vlm, vid = self._empty((len(items), longest, plan.stream.hidden), plan.dtype)
        for i, ((path, entry, _), dropped, length) in enumerate(zip(items, drop, lengths)):
            try:
                f = self._file(path)
                read_tensor(f, entry.latent, latent[i])
                if dropped:
                    vlm[i, :length] = uncond[:length]
                else:
                    read_tensor(f, entry.vlm, vlm[i, :length])
                    if entry.vlm.shape[0] > length:
                        self.events("vlm_truncated", f"{entry.key}: {entry.vlm.shape[0]} → {length} tokens",
                                    level=logging.INFO)
            except OSError as exc:
                raise _ReadError(i, exc) from None
            if length < longest:
                vlm[i, length:].zero_()
        mask = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]
        size, bucket = plan.stream.slots[slot]
        batch = {"latent": latent, "vlm": vlm, "vlm_mask": mask, "cfg_drop": torch.from_numpy(drop),
                 "keys": [e.key for _, e, _ in items], "json": [m for _, _, m in items],
                 "bucket": bucket, "size": size, "step": step}
        if self.buffers is not None:
            batch["_buffers"] = (lid, vid)
        return batch

    def _empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, int | None]:
        if self.buffers is None:
            return torch.empty(shape, dtype=dtype), None
        return self.buffers.empty(shape, dtype)

    def _drops(self, step: int, n: int) -> np.ndarray:
        if self.plan.cfg_dropout <= 0:
            return np.zeros(n, bool)
        rng = np.random.default_rng([self.plan.stream.seed, _TAG_CFG, self.rank, step])
        return rng.random(n) < self.plan.cfg_dropout

    def _file(self, path: str):
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = open(path, "rb", buffering=0)  # big reads go straight into the batch
            if len(self._files) > _OPEN_FILES:
                self._files.popitem(last=False)[1].close()
        else:
            self._files.move_to_end(path)
        return f


class _ReadError(Exception):
    def __init__(self, position: int, exc: Exception):
        super().__init__(str(exc))
        self.position = position


class _SharedBuffers:
    """Batch tensors in shared memory (as default_collate makes them: no copy on the way to the main process),
    reused once the main process has let go of them. Fresh shared pages cost a page fault each, ~4× all the
    other work of a batch; the main process says when a buffer is free from a weakref finalizer on the
    storage it received, which PyTorch runs only when no tensor there uses that storage any more."""

    def __init__(self, releases):
        self.releases, self.free, self.lent, self.ids = releases, [], {}, 0

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, int]:
        self._collect()
        need = math.prod(shape) * dtype.itemsize
        fits = [i for i, st in enumerate(self.free) if st.nbytes() >= need]
        if fits:
            storage = self.free.pop(min(fits, key=lambda i: self.free[i].nbytes()))
        else:  # a little headroom, so the next batch of the bucket (another VLM length) fits too
            storage = torch.UntypedStorage._new_shared(need + need // 8)
        self.ids += 1
        self.lent[self.ids] = storage
        return torch.empty(0, dtype=dtype).set_(storage, 0, shape), self.ids

    def _collect(self) -> None:
        while True:
            try:
                storage = self.lent.pop(self.releases.get_nowait(), None)
            except queue.Empty:
                return
            if storage is not None:
                self.free.append(storage)
                del self.free[:-8]  # more than this were never all in use at once: let the oldest go


def release_later(tensor: torch.Tensor, releases, buffer: int, live: list[bool]) -> None:
    if tensor.is_pinned():  # pin_memory copied it: the shared original is already gone
        releases.put(buffer)
        return
    finalizer = weakref.finalize(tensor.untyped_storage(), _release, releases, buffer, live)
    finalizer.atexit = False


def _release(releases, buffer: int, live: list[bool]) -> None:
    if live[0]:  # the workers of an iteration that ended are gone: nobody to tell
        releases.put(buffer)


def schedules(plan: Plan, states: list[dict] | None = None) -> list[BucketSchedule]:
    states = states or [{"stream": rho} for rho in range(plan.streams)]
    return [BucketSchedule(np.asarray(plan.shares), plan.stream.seed, plan.jitter, **state) for state in states]


def stream_batches(plan: Plan, rank: int, rho: int, start: int, end: int | None, schedule: dict,
                   state: dict | None, releases=None) -> Iterator[dict]:
    """Stream ρ's batches for the steps t ≡ ρ (mod streams) in [start, end), each with its position after it."""
    maker = _BatchMaker(plan, rank, rho, state, releases)
    sched = schedules(plan, [schedule])[0]
    t = start + (rho - start) % plan.streams  # the first step at or after `start` that is this stream's
    while end is None or t < end:
        slot = sched.next()
        batch = maker.batch(t, slot)
        batch.update(_stream=rho, _state={"sample": maker.state_dict(), "schedule": sched.state_dict()})
        yield batch
        t += plan.streams


class WorkerBatches(IterableDataset):
    def __init__(self, plan: Plan, rank: int, start: int, end: int | None, schedule: list, states: list,
                 releases: list):
        self.plan, self.rank, self.start, self.end = plan, rank, start, end
        self.schedule, self.states, self.releases = schedule, states, releases

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        rho = (self.start + (info.id if info else 0)) % self.plan.streams  # worker 0 serves step `start`
        return stream_batches(self.plan, self.rank, rho, self.start, self.end, self.schedule[rho],
                              self.states[rho], self.releases[rho])


def identity(x):
    return x
