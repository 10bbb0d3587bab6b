"""The distributor: plans shards, skips finished ones, runs the rest on Ray (or in-process), reports.

Ray lives here alone. The driver holds no per-sample state: a plan is (n, shard size), a shard is an
index, and progress is counted from the stats each finished shard returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field

from . import interrupts
from .assets import AssetLibrary
from .config import RunConfig, validate
from .errors import ServerDown, StorageError, UserError
from .runlock import RunLock
from .shards import finish_replacements, finished_shards, read_json, shard_stem, write_sizes
from .storage import Storage, open_storage
from .tasks import check_assets
from .watchdog import start_watchdog
from .worker import make_shard, run_library

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

    resumed_samples: int = 0  # of shards found finished
    captions: dict[str, int] = field(default_factory=dict)  # inline caption outcome counts (refine.KINDS)

    @property
    def made(self) -> int:
        return self.samples - self.resumed_samples

    @property
    def ok(self) -> bool:
        return not self.failed_shards


def check_out(storage: Storage, cfg: RunConfig, force: bool) -> None:
    """Refuse an unusable OUT before anything starts (read-only: a refused run writes nothing)."""
    if storage.is_file():
        raise UserError(f"--out {storage.url} is a file; give a new or empty folder (or an earlier run of this config)")
    if storage.local and not os.access(_nearest_existing(storage.root), os.W_OK):
        raise UserError(f"--out {storage.url}: not writable by this user; pick a folder you can write to")
    names = [n for n in storage.names() if not n.startswith(".")]
    if "run.json" in names:
        old, why = read_json(storage, "run.json")
        try:
            old = RunConfig.from_json(old).identity() if why is None else {}
        except (ValueError, TypeError, KeyError, AttributeError):
            old = {}
        if old != cfg.identity() and not force:
            diff = sorted(k for k, v in cfg.identity().items() if old.get(k) != v) if old else ["unreadable run.json"]
            raise UserError(f"{storage.url} holds a run with a different config ({', '.join(diff)}); "
                            "use another --out, or --force to replace it")
    elif names and not force:
        raise UserError(f"--out {storage.url} is a non-empty folder that is not a collage run (it holds "
                        f"{names[0]!r}…); pick a new or empty folder, or --force to write there anyway")


def _nearest_existing(path: str) -> str:
    while path and not os.path.exists(path):
        parent = os.path.dirname(path.rstrip("/")) or "/"
        if parent == path:
            break
        path = parent
    return path or "."


def prepare_out(storage: Storage, cfg: RunConfig, force: bool) -> None:
    """Under the run lock: clear a replaced run (--force), remove what killed writers left, write run.json."""
    try:
        storage.makedirs()
    except OSError as exc:
        raise UserError(f"--out {storage.url}: cannot use it as a run folder ({exc.strerror}); pass a writable folder path") from None
    old, why = read_json(storage, "run.json")
    same = False
    if why is None:
        try:
            same = RunConfig.from_json(old).identity() == cfg.identity()
        except (ValueError, TypeError, KeyError, AttributeError):
            same = False
    if why != "missing" and not same:  # check_out allowed it, so --force was given: clear the old run
        for name in storage.names():
            if name.endswith((".tar", ".parquet", ".stats.json", ".replace.json")) or \
                    name in ("sizes.json", "run.json", "captions.json"):
                storage.remove(name)
    storage.clean_stale_temporaries()
    storage.write_bytes("run.json", json.dumps(cfg.to_json(), indent=1).encode())


def write_licenses(storage: Storage, assets: AssetLibrary) -> None:
    entries = assets.licenses()
    storage.write_bytes("LICENSES.json", json.dumps(entries, indent=1).encode())
    lines = ["# Assets used by this run and their licences", "",
             "| source | licence | attribution | assets |", "|---|---|---|---|"]
    lines += [f"| {e['source']} | {e['license']} | {e['attribution']} | {e['assets']} |" for e in entries]
    storage.write_bytes("ATTRIBUTION.md", ("\n".join(lines) + "\n").encode())


def plan_text(cfg: RunConfig, bytes_per_sample: float | None = None) -> str:
    last = cfg.shard_samples(cfg.num_shards - 1)
    lines = [f"run {cfg.name}: {cfg.n:,} samples in {cfg.num_shards:,} shards of {cfg.shard_size:,}"
             + (f" (last shard {last:,})" if last != cfg.shard_size else ""),
             "mix: " + ", ".join(f"{m.task}[{','.join(m.ops)}]×{m.weight:g}" for m in cfg.mix),
             f"canvas: {cfg.size}² {'square' if cfg.aspect_ratios == 'square' else f'(31 aspect buckets, {cfg.aspect_ratios})'}, images {cfg.image_format}, seed {cfg.seed}"]
    if cfg.captions:
        lines.append(f"captions: refined inline by {cfg.captions['model']} (tasks {','.join(cfg.captions['tasks'])}, "
                     f"prompt v{cfg.captions['prompt_version']})")
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

    assets = run_library(cfg, manifest_dir)
    counters = {"rejects": 0, "failures": 0}
    sizes = [sum(len(v) for v in make_sample(cfg, assets, 0, i, counters)[0].values()) + 512 * 5 for i in range(probes)]
    return sum(sizes) / len(sizes)


def run(cfg: RunConfig, out: str, backend: str = "ray", workers: int | None = None, address: str | None = None,
        manifest_dir: str | None = None, force: bool = False, progress: bool = True,
        check_existing: bool | None = None, note=None, caption_runtime=None) -> RunSummary:
    """Make every unfinished shard of `cfg` in `out`. `check_existing`: re-hash finished shards before
    trusting them (None: when cheap, see collage.shards.REHASH_BYTES; sizes and config are always checked).
    `note(line)` receives what the user should know (capped workers, shards redone). `caption_runtime`
    (collage.captions.settings.CaptionRuntime): where inline captions (`cfg.captions`) are asked for."""
    note = note or (lambda line: log.warning("%s", line))
    validate(cfg)
    if backend not in ("ray", "local"):
        raise UserError(f"--backend {backend!r}: choose ray or local")
    if address is not None and not address.strip():
        raise UserError("--address '': give HOST:PORT of a Ray head (or auto), or drop --address for a local instance")
    storage = open_storage(out)
    check_out(storage, cfg, force)  # all before Ray starts: a refused run costs no Ray start-up
    assets = run_library(cfg, manifest_dir)  # the same one a local-backend worker then draws from
    check_assets(cfg, assets)
    if address:
        _check_reachable(address)
    if cfg.captions:  # an unreachable caption server or a refused key: one line before any work
        from .captions.run import preflight

        preflight(cfg.captions, caption_runtime, note)
    workers = _cap_workers(workers, address, backend, note)
    with RunLock(storage, f"collage generate {cfg.name}"):
        try:
            with (ray_session(workers, address) if backend == "ray" else contextlib.nullcontext()):
                return _run_locked(cfg, storage, backend, workers, manifest_dir, force, progress, check_existing,
                                   note, assets, caption_runtime)
        except StorageError as exc:
            raise StorageError(f"{exc}; free space or fix permissions, then rerun the same command to resume") from None
        finally:
            storage.clean_stale_temporaries()  # Ray is down: what is left are pieces of killed workers


def _run_locked(cfg, storage, backend, workers, manifest_dir, force, progress, check_existing, note,
                assets, caption_runtime=None) -> RunSummary:
    prepare_out(storage, cfg, force)
    write_licenses(storage, assets)
    started = time.time()
    for line in finish_replacements(storage):  # a caption pass killed between a shard's files
        note(line)
    found = finished_shards(storage, cfg.name, cfg.num_shards, cfg.shard_samples, cfg.digest(), check_existing)
    for name in found.strays:  # they would give glob readers duplicate or foreign keys
        storage.remove(name)
    if found.strays:
        note(f"removed {len(found.strays)} file(s) of shards beyond this run's {cfg.num_shards:,} "
             f"(first: {found.strays[0]})")
    for shard, why in sorted(found.damaged.items()):
        storage.remove(f"{shard_stem(cfg.name, shard)}.stats.json")  # nothing may claim it done while it is redone
    if found.damaged:
        first = min(found.damaged)
        note(f"redoing {len(found.damaged):,} shard(s) whose files do not check out (first: "
             f"{shard_stem(cfg.name, first)}: {found.damaged[first]})")
    done = found.done
    todo = [k for k in range(cfg.num_shards) if k not in done]
    summary = RunSummary(skipped_shards=len(done))
    for stats in done.values():
        _add(summary, stats)
    summary.resumed_samples = summary.samples
    bar = _Progress(cfg.n, summary.samples, enabled=progress)
    try:
        if backend == "local":
            for shard in todo:
                interrupts.check()
                done[shard] = make_shard(cfg, shard, storage.url, manifest_dir, caption_runtime)
                _add(summary, done[shard])
                bar.update(summary.samples)
        else:
            _run_ray(cfg, storage.url, todo, workers, manifest_dir, summary, bar, done, caption_runtime)
    finally:
        bar.close()
    write_sizes(storage, cfg.name, done)
    if cfg.captions:
        from .captions.run import write_inline_summary

        write_inline_summary(storage, cfg, done)
    summary.seconds = time.time() - started
    return summary


def _cap_workers(workers: int | None, address: str | None, backend: str, note) -> int | None:
    """A local instance gets at most one worker per core: more only share the cores and cost memory."""
    cores = os.cpu_count() or 1
    if workers and not address and backend == "ray" and workers > cores:
        note(f"--workers {workers} is more than this machine's {cores} cores: using {cores} (a worker is one core "
             "and ~200 MB; more would only share the cores)")
        return cores
    return workers


def _add(summary: RunSummary, stats: dict) -> None:
    summary.samples += stats["samples"]
    summary.shards += 1
    summary.bytes += stats["bytes"]
    summary.failures += stats.get("failures", 0)
    summary.rejects += stats.get("rejects", 0)
    summary.assets_skipped = max(summary.assets_skipped, stats.get("assets_skipped", 0))
    for kind, count in (stats.get("captions") or {}).items():
        if kind != "pass":
            summary.captions[kind] = summary.captions.get(kind, 0) + count


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
        # Ray ≥ 2.59 clusters started with `ray start` require their token (~/.ray/auth_token or RAY_AUTH_TOKEN).
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    else:
        # A local instance stays on loopback instead of binding to the machine's public interface.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    started_here = not ray.is_initialized()
    watchdog = None
    if started_here:
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        if address:
            try:
                ray.init(address=address, logging_level=logging.WARNING)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UserError(f"--address {address}: cannot join the Ray cluster ({str(exc).splitlines()[0]})") from None
        else:
            # ERROR: a local loopback instance needs no notice about its (default) token authentication.
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, logging_level=logging.ERROR)
            watchdog = start_watchdog()  # a kill -9 of this driver must not leave the instance running
        for sig, handler in handlers.items():  # ray.init installs its own (SIGTERM: sys.exit): keep the caller's
            if handler is not None:
                signal.signal(sig, handler)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
        if watchdog:
            watchdog.stand_down()


class RetryableShardError(Exception):
    """A shard's code failed: worth Ray's retries (a full disk, raised as StorageError, is not)."""


def make_shard_task(cfg: RunConfig, shard: int, out: str, manifest_dir: str | None, caption_runtime=None) -> dict:
    try:
        return make_shard(cfg, shard, out, manifest_dir, caption_runtime)
    except (StorageError, ServerDown):
        raise
    except Exception as exc:
        raise RetryableShardError(f"{type(exc).__name__}: {exc}") from exc


def _run_ray(cfg, out, todo, workers, manifest_dir, summary, bar, done: dict[int, dict], caption_runtime=None) -> None:
    import ray

    remote = ray.remote(num_cpus=1, max_retries=SHARD_RETRIES, retry_exceptions=[RetryableShardError])(make_shard_task)
    capacity = int(ray.cluster_resources().get("CPU", 1))
    window = max(2, 2 * (workers or capacity))  # bounded in-flight: the driver never holds the whole plan
    pending, queue = {}, list(reversed(todo))
    # No ray.cancel on the way out (interrupt, full disk): a force-cancel racing a finishing task trips a
    # check in Ray 2.60's task manager (abort, exit -6); shutting the session down ends the tasks anyway.
    while queue or pending:
        while queue and len(pending) < window:
            shard = queue.pop()
            pending[remote.remote(cfg, shard, out, manifest_dir, caption_runtime)] = shard
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        interrupts.check()  # a Ctrl-C that Ray's wait swallowed still stops the run
        for ref in ready:
            shard = pending.pop(ref)
            try:
                done[shard] = ray.get(ref)
                _add(summary, done[shard])
            except StorageError as exc:  # every other shard would fail the same way: stop, say it once
                raise StorageError(_last_line(exc)) from None  # the message alone, without Ray's traceback
            except ServerDown as exc:  # the caption server is gone: as above
                raise ServerDown(_last_line(exc)) from None
            except Exception as exc:  # retries exhausted: report, keep going with the other shards
                summary.failed_shards[shard] = _last_line(exc)[:300]
            bar.update(summary.samples)


def _last_line(exc: BaseException) -> str:
    text = str(getattr(exc, "cause", None) or exc).strip()
    line = text.splitlines()[-1] if text else type(exc).__name__
    for prefix in ("collage.errors.StorageError: ", "StorageError: ", "RetryableShardError: ",
                   "collage.errors.ServerDown: ", "ServerDown: ", "collage.captions.client.ServerRefused: ",
                   "ServerRefused: "):
        line = line.removeprefix(prefix)
    return line


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
