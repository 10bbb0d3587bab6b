"""Where a caption pass's shards are captioned: threads of this process sharing one Captioner, or worker
processes (spawned) with a Captioner each, the concurrency split between them, all on one answer cache."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from ..storage import Storage
from .refine import Captioner
from .rewrite import replace_shard
from .settings import CaptionConfig, CaptionRuntime

SHARDS_IN_FLIGHT = 2  # per process: the next shard's requests start while the last answers of one come in


def auto_workers(concurrency: int) -> int:
    """Processes for a pass: one event loop spends ~5 ms of a core a caption (the client, cleaning, the guard),
    so one process tops out near 150-200 captions/s; past ~48 requests in flight a second one pays."""
    return max(1, min(os.cpu_count() or 1, math.ceil(concurrency / 48)))


class Shards:
    """Where shards are captioned: threads of this process sharing one Captioner (workers=1), or worker
    processes with a Captioner each (the concurrency split between them), all on the same answer cache."""

    def __init__(self, storage: Storage, name: str, config: CaptionConfig, runtime: CaptionRuntime, pid: str,
                 workers: int):
        self.storage, self.name, self.workers = storage, name, workers
        self.captioner = None
        self._worker_stats: dict[int, dict] = {}
        if workers == 1:
            self.captioner = Captioner(config, runtime, pid)
            self.pool = ThreadPoolExecutor(max_workers=SHARDS_IN_FLIGHT, thread_name_prefix="caption-shard")
            self.in_flight = SHARDS_IN_FLIGHT
        else:
            share = dataclasses.replace(runtime, concurrency=math.ceil(runtime.concurrency / workers), workers=1)
            self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_worker,
                                            initargs=(storage.url, config.to_json(), share, pid))
            self.in_flight = workers
        self._runtime, self._config = runtime, config

    def list_models(self) -> list[str]:
        if self.captioner:
            return self.captioner.check_server()
        return list_models(self._config, self._runtime)

    def submit(self, shard: int, stats: dict, only_failed: bool):
        if self.captioner:
            return self.pool.submit(replace_shard, self.storage, self.name, shard, stats, self.captioner, only_failed)
        return self.pool.submit(_worker_replace, self.name, shard, stats, only_failed)

    def result(self, future) -> dict:
        if self.captioner:
            return future.result()
        stats, worker, worker_stats = future.result()
        # A worker's counters only grow, but two of its shards can finish in one wait() batch, which hands
        # them back in no set order: keep its latest snapshot, not the last one looked at.
        if _progress(worker_stats) >= _progress(self._worker_stats.get(worker)):
            self._worker_stats[worker] = worker_stats
        return stats

    def live(self) -> dict | None:
        return dict(self.captioner.live) if self.captioner else None

    def faults(self) -> int:
        return sum(self.stats()["faults"].values())

    def stats(self) -> dict:
        if self.captioner:
            return self.captioner.stats()
        total = {"requests": 0, "faults": {}, "circuit_opened": 0}
        for s in self._worker_stats.values():
            total["requests"] += s["requests"]
            total["circuit_opened"] += s["circuit_opened"]
            for kind, count in s["faults"].items():
                total["faults"][kind] = total["faults"].get(kind, 0) + count
        total["faults"] = dict(sorted(total["faults"].items()))
        return total

    def asked(self) -> int:
        if self.captioner:
            return self.captioner.asked
        return sum(s.get("asked", 0) for s in self._worker_stats.values())

    def cancel_all(self) -> None:
        if self.captioner:
            self.captioner.cancel_all()

    def __enter__(self) -> "Shards":
        return self

    def __exit__(self, *exc) -> None:
        self.cancel_all()
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.captioner:
            self.captioner.close()


def _progress(worker_stats: dict | None) -> tuple[int, int]:
    return (worker_stats["asked"], worker_stats["requests"]) if worker_stats else (-1, -1)


_WORKER: dict = {}


def _init_worker(url: str, config: dict, runtime: CaptionRuntime, pid: str) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the pool
    _WORKER["storage"] = Storage(url)
    _WORKER["captioner"] = Captioner(CaptionConfig.from_json(config), runtime, pid)


def _worker_replace(name: str, shard: int, stats: dict, only_failed: bool) -> tuple[dict, int, dict]:
    captioner = _WORKER["captioner"]
    new = replace_shard(_WORKER["storage"], name, shard, stats, captioner, only_failed)
    worker_stats = {**captioner.stats(), "asked": captioner.asked}
    return new, os.getpid(), worker_stats


def list_models(config: CaptionConfig, runtime: CaptionRuntime) -> list[str]:
    import asyncio

    from .client import LLMClient

    async def listing():
        client = LLMClient(runtime.base_url, config.model, runtime.api_key(), 1, runtime.timeout, 0, 1.0)
        try:
            return await client.check()
        finally:
            await client.aclose()
    return asyncio.run(listing())
