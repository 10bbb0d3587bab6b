"""The distributor: plans shards, skips finished ones, runs the rest on Ray (or in-process), reports.

Ray lives here alone. The driver holds no per-sample state: a plan is (n, shard size), a shard is an
index, and progress is counted from the stats each finished shard returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from .assets import AssetLibrary
from .config import RunConfig, validate
from .errors import UserError
from .storage import Storage
from .worker import library, make_shard
from .writer import shard_stem

log = logging.getLogger(__name__)

SHARD_RETRIES = 3  # Ray retries a shard this often on a worker death or an exception inside it


@dataclass
class RunSummary:
    samples: int = 0
    shards: int = 0
    skipped_shards: int = 0
    bytes: int = 0
    failures: int = 0
    rejects: int = 0
    assets_skipped: int = 0
    seconds: float = 0.0
    failed_shards: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed_shards


def finished_shards(storage: Storage, cfg: RunConfig) -> dict[int, dict]:
    """Shards whose stats marker exists (the marker is written last, so its tar is complete)."""
    done = {}
    names = set(storage.names())
    for shard in range(cfg.num_shards):
        stem = shard_stem(cfg.name, shard)
        if f"{stem}.stats.json" in names and f"{stem}.tar" in names:
            done[shard] = json.loads(storage.read_bytes(f"{stem}.stats.json"))
    return done


def prepare_out(storage: Storage, cfg: RunConfig, force: bool) -> None:
    """Refuse a different config in the same OUT (unless forced, which clears the old run's shards)."""
    try:
        storage.makedirs()
    except OSError as exc:
        raise UserError(f"--out {storage.url}: cannot use it as a run folder ({exc.strerror}); pass a writable folder path") from None
    if storage.exists("run.json"):
        try:
            old = RunConfig.from_json(json.loads(storage.read_bytes("run.json"))).identity()
        except (ValueError, TypeError, KeyError):
            old = {}
        if old != cfg.identity():
            if not force:
                diff = sorted(k for k, v in cfg.identity().items() if old.get(k) != v) if old else ["unreadable run.json"]
                raise UserError(f"{storage.url} holds a run with a different config ({', '.join(diff)}); "
                                "use another --out, or --force to replace it")
            for name in storage.names():
                if name.endswith((".tar", ".parquet", ".stats.json")) or name in ("sizes.json", "run.json"):
                    storage.remove(name)
    elif not force:
        strangers = [n for n in storage.names() if not n.startswith(".")]
        if strangers:
            raise UserError(f"--out {storage.url} is a non-empty folder that is not a collage run (it holds "
                            f"{strangers[0]!r}…); pick a new or empty folder, or --force to write there anyway")
    storage.clean_stale_temporaries()
    storage.write_bytes("run.json", json.dumps(cfg.to_json(), indent=1).encode())


def write_licenses(storage: Storage, assets: AssetLibrary) -> None:
    entries = assets.licenses()
    storage.write_bytes("LICENSES.json", json.dumps(entries, indent=1).encode())
    lines = ["# Assets used by this run and their licences", "",
             "| source | licence | attribution | assets |", "|---|---|---|---|"]
    lines += [f"| {e['source']} | {e['license']} | {e['attribution']} | {e['assets']} |" for e in entries]
    storage.write_bytes("ATTRIBUTION.md", ("\n".join(lines) + "\n").encode())


def write_sizes(storage: Storage, cfg: RunConfig, done: dict[int, dict]) -> None:
    """sizes.json from the finished shards' stats (one small dict per shard, never per sample)."""
    sizes = {f"{shard_stem(cfg.name, k)}.tar": s["samples"] for k, s in sorted(done.items())}
    storage.write_bytes("sizes.json", json.dumps(sizes, indent=1).encode())


def plan_text(cfg: RunConfig, bytes_per_sample: float | None = None) -> str:
    last = cfg.shard_samples(cfg.num_shards - 1)
    lines = [f"run {cfg.name}: {cfg.n:,} samples in {cfg.num_shards:,} shards of {cfg.shard_size:,}"
             + (f" (last shard {last:,})" if last != cfg.shard_size else ""),
             "mix: " + ", ".join(f"{m.task}[{','.join(m.ops)}]×{m.weight:g}" for m in cfg.mix),
             f"canvas: {cfg.size}² {'(31 aspect buckets)' if cfg.aspect_ratios == 'all' else 'square'}, images {cfg.image_format}, seed {cfg.seed}"]
    if bytes_per_sample:
        total = bytes_per_sample * cfg.n
        lines.append(f"estimated size: {_human_bytes(total)} ({_human_bytes(bytes_per_sample)} per sample, "
                     f"{_human_bytes(bytes_per_sample * cfg.shard_size)} per shard)")
    return "\n".join(lines)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} PB"


def estimate_bytes_per_sample(cfg: RunConfig, manifest_dir: str | None, probes: int = 8) -> float:
    """Encode a few real samples in memory (nothing is written)."""
    from .worker import make_sample

    assets = library(manifest_dir)
    counters = {"rejects": 0, "failures": 0}
    sizes = [sum(len(v) for v in make_sample(cfg, assets, 0, i, counters)[0].values()) + 512 * 5 for i in range(probes)]
    return sum(sizes) / len(sizes)


def run(cfg: RunConfig, out: str, backend: str = "ray", workers: int | None = None, address: str | None = None,
        manifest_dir: str | None = None, force: bool = False, progress: bool = True) -> RunSummary:
    validate(cfg)
    if backend not in ("ray", "local"):
        raise UserError(f"--backend {backend!r}: choose ray or local")
    assets = library(manifest_dir)  # the same one a local-backend worker then draws from
    # Connect before touching OUT: a wrong --address must leave nothing behind.
    with (ray_session(workers, address) if backend == "ray" else contextlib.nullcontext()):
        storage = Storage(out)
        prepare_out(storage, cfg, force)
        write_licenses(storage, assets)
        started = time.time()
        done = finished_shards(storage, cfg)
        todo = [k for k in range(cfg.num_shards) if k not in done]
        summary = RunSummary(skipped_shards=len(done))
        for stats in done.values():
            _add(summary, stats)
        bar = _Progress(cfg.n, summary.samples, enabled=progress)
        try:
            if backend == "local":
                for shard in todo:
                    done[shard] = make_shard(cfg, shard, out, manifest_dir)
                    _add(summary, done[shard])
                    bar.update(summary.samples)
            else:
                _run_ray(cfg, out, todo, workers, manifest_dir, summary, bar, done)
        finally:
            bar.close()
    write_sizes(storage, cfg, done)
    summary.seconds = time.time() - started
    return summary


def _add(summary: RunSummary, stats: dict) -> None:
    summary.samples += stats["samples"]
    summary.shards += 1
    summary.bytes += stats["bytes"]
    summary.failures += stats.get("failures", 0)
    summary.rejects += stats.get("rejects", 0)
    summary.assets_skipped = max(summary.assets_skipped, stats.get("assets_skipped", 0))


def _check_reachable(address: str) -> None:
    """Fail fast with one line: ray.init retries an unreachable address for minutes."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise UserError(f"--address {address}: no Ray cluster answers there ({exc}); start one with "
                        "`ray start --head` or drop --address for a local instance") from None


@contextlib.contextmanager
def ray_session(workers: int | None, address: str | None):
    """Join the cluster at `address`, or start a local instance sized to the machine (or --workers)."""
    if address:
        _check_reachable(address)
        # Ray ≥ 2.59 clusters started with `ray start` require their token (~/.ray/auth_token or RAY_AUTH_TOKEN).
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    else:
        # A local instance stays on loopback instead of binding to the machine's public interface.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            try:
                ray.init(address=address, logging_level=logging.WARNING)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UserError(f"--address {address}: cannot join the Ray cluster ({str(exc).splitlines()[0]})") from None
        else:
            # ERROR: a local loopback instance needs no notice about its (default) token authentication.
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, logging_level=logging.ERROR)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def _run_ray(cfg, out, todo, workers, manifest_dir, summary, bar, done: dict[int, dict]) -> None:
    import ray

    remote = ray.remote(num_cpus=1, max_retries=SHARD_RETRIES, retry_exceptions=True)(make_shard)
    capacity = int(ray.cluster_resources().get("CPU", 1))
    window = max(2, 2 * (workers or capacity))  # bounded in-flight: the driver never holds the whole plan
    pending, queue = {}, list(reversed(todo))
    while queue or pending:
        while queue and len(pending) < window:
            shard = queue.pop()
            pending[remote.remote(cfg, shard, out, manifest_dir)] = shard
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in ready:
            shard = pending.pop(ref)
            try:
                done[shard] = ray.get(ref)
                _add(summary, done[shard])
            except Exception as exc:  # retries exhausted: report, keep going with the other shards
                summary.failed_shards[shard] = str(exc).strip().splitlines()[-1][:300]
            bar.update(summary.samples)


class _Progress:
    def __init__(self, total: int, completed: int, enabled: bool):
        self.bar = None
        if enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                TimeRemainingColumn(), transient=False)
            self.task = self.bar.add_task("generate", total=total, completed=completed, rate="")
            self.start, self.start_count = time.time(), completed
            self.bar.start()

    def update(self, completed: int) -> None:
        if self.bar:
            rate = (completed - self.start_count) / max(time.time() - self.start, 1e-9)
            self.bar.update(self.task, completed=completed, rate=f"{rate:,.0f} samples/s")

    def close(self) -> None:
        if self.bar:
            self.bar.stop()
