"""`collage caption OUT`: refine the captions of a finished run, shard by shard, resumable, never half-written.

A shard is done for this pass when its stats marker names this pass (settings.pass_id) and no sample of it
failed on the server; a shard of this pass with failures is revisited for those samples alone; any other
shard is captioned whole. Each shard is replaced atomically (ShardWriter's journal); OUT/captions.json
holds the pass's config and summary, and `complete` only when every shard is done.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import FIRST_EXCEPTION, wait
from dataclasses import dataclass, field

from .. import interrupts
from ..config import RunConfig
from ..errors import UserError
from ..runlock import RunLock
from ..shards import finish_replacements, finished_shards, read_json, shard_stem, write_sizes
from ..storage import Storage, open_storage, refusals_as_storage_errors
from ..errors import ServerDown
from .client import ServerFault, ServerRefused
from .refine import KINDS
from .pool import Shards, auto_workers, list_models
from .settings import CaptionConfig, CaptionRuntime, pass_id

log = logging.getLogger(__name__)

SUMMARY_NAME = "captions.json"



@dataclass
class CaptionSummary:
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    shards: int = 0
    done_before: int = 0  # shards this pass had finished earlier
    captioned: int = 0  # shards replaced by this invocation
    seconds: float = 0.0
    requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    circuit_opened: int = 0
    asked: int = 0  # samples this invocation asked about

    @property
    def complete(self) -> bool:
        return self.counts["failed"] == 0 and self.done_before + self.captioned == self.shards

    @property
    def kept_template(self) -> int:
        return self.counts["rejected"] + self.counts["failed"] + self.counts["skipped"]

    def line(self) -> str:
        c = self.counts
        return (f"{c['refined']:,} refined, {c['cache']:,} from cache, {c['rejected']:,} rejected by the guard, "
                f"{c['failed']:,} failed, {self.kept_template:,} kept as template")

    def to_json(self) -> dict:
        return {**self.counts, "kept_template": self.kept_template, "shards": self.shards,
                "requests": self.requests, "faults": self.faults, "circuit_opened": self.circuit_opened}


def load_run(storage: Storage) -> RunConfig:
    data, why = read_json(storage, "run.json")
    if why:
        raise UserError(f"{storage.url}: no readable run.json ({why}); give the OUT of a `collage generate` run")
    try:
        return RunConfig.from_json(data)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{storage.url}/run.json: not a collage run config ({type(exc).__name__}); give the OUT of "
                        "a `collage generate` run") from None


def plan_shards(storage: Storage, cfg: RunConfig, pid: str) -> tuple[dict[int, dict], dict[int, bool]]:
    """(every shard's stats, shard → only its failed samples to redo) for the shards still to caption."""
    found = finished_shards(storage, cfg.name, cfg.num_shards, cfg.shard_samples, cfg.digest())
    if len(found.done) != cfg.num_shards:
        missing = sorted(set(range(cfg.num_shards)) - set(found.done))
        why = found.damaged.get(missing[0], "not finished")
        raise UserError(f"{storage.url} is not a finished run: {len(missing):,} of {cfg.num_shards:,} shards are not "
                        f"done (first: {shard_stem(cfg.name, missing[0])}: {why}); finish it with the same "
                        "`collage generate` command first")
    todo = {}
    for shard, stats in found.done.items():
        mine = (stats.get("captions") or {}).get("pass") == pid
        if not mine:
            todo[shard] = False
        elif (stats["captions"].get("failed") or 0) > 0:
            todo[shard] = True
    return found.done, dict(sorted(todo.items()))


def check_previous_pass(storage: Storage, config: CaptionConfig, pid: str, force: bool) -> None:
    old, why = read_json(storage, SUMMARY_NAME)
    if why is None and isinstance(old, dict) and old.get("pass") != pid and not force:
        model = (old.get("config") or {}).get("model", "?")
        raise UserError(f"{storage.url} was captioned by another caption config (model {model}, pass "
                        f"{old.get('pass')}); use --force to caption it again with this one")


def caption_run(out: str, config: CaptionConfig, runtime: CaptionRuntime, force: bool = False,
                dry_run: bool = False, progress: bool = True, note=None) -> CaptionSummary:
    note = note or (lambda line: log.warning("%s", line))
    storage = open_storage(out, "OUT")
    cfg = load_run(storage)
    pid = pass_id(cfg.digest(), config)
    with RunLock(storage, f"collage caption {cfg.name}"):
        for line in finish_replacements(storage):
            note(line)
        check_previous_pass(storage, config, pid, force)
        all_stats, todo = plan_shards(storage, cfg, pid)
        summary = CaptionSummary(shards=cfg.num_shards, done_before=cfg.num_shards - len(todo))
        for shard, stats in all_stats.items():
            if shard not in todo:
                _add_counts(summary, stats["captions"])
        if dry_run:
            return summary
        workers = runtime.workers or auto_workers(runtime.concurrency)
        with Shards(storage, cfg.name, config, runtime, pid, workers) as shards:
            _check_server(shards.list_models, runtime, config, note)
            storage.clean_stale_temporaries()  # of a pass killed earlier (we hold the lock)
            _write_summary(storage, config, pid, summary)
            started = time.time()
            try:
                with refusals_as_storage_errors(f"{out} (replacing a shard)"):
                    _caption_shards(shards, all_stats, todo, summary, progress)
            finally:
                summary.seconds = time.time() - started
                summary.__dict__.update(shards.stats())
                summary.asked = shards.asked()
                write_sizes(storage, cfg.name, all_stats)
                _write_summary(storage, config, pid, summary)
    return summary


def preflight(captions: dict, runtime: CaptionRuntime, note) -> None:
    """Inline captioning's check, in the driver before any worker starts (see _check_server)."""
    config = CaptionConfig.from_json(captions)
    _check_server(lambda: list_models(config, runtime), runtime, config, note, flag="--caption-base-url")


def write_inline_summary(storage: Storage, cfg: RunConfig, done: dict[int, dict]) -> None:
    """captions.json of a generate run with inline captions, from its shards' stats."""
    config = CaptionConfig.from_json(cfg.captions)
    summary = CaptionSummary(shards=cfg.num_shards, done_before=len(done))
    for stats in done.values():
        _add_counts(summary, stats.get("captions") or {})
    _write_summary(storage, config, pass_id(cfg.digest(), config), summary)


def _check_server(list_models, runtime: CaptionRuntime, config: CaptionConfig, note, flag: str = "--base-url") -> None:
    """One listing before any work: an unreachable server or a refused key is one line, exit 2."""
    try:
        models = list_models()
    except ServerFault as exc:
        raise UserError(f"{flag} {runtime.base_url}: no server answers there ({exc}); start it or fix the URL") from None
    except ServerRefused as exc:
        raise UserError(f"{flag} {runtime.base_url}: {exc}") from None
    if models and config.model not in models:
        note(f"the server lists {', '.join(models[:5])}{'…' if len(models) > 5 else ''} but not {config.model}; "
             "requests may be refused")


def _caption_shards(shards: Shards, all_stats, todo, summary, progress) -> None:
    bar = _Progress(len(todo), summary, enabled=progress)
    queue = list(todo.items())
    pending: dict = {}
    try:
        while queue or pending:
            while queue and len(pending) < shards.in_flight:
                shard, only_failed = queue.pop(0)
                pending[shards.submit(shard, all_stats[shard], only_failed)] = shard
            done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_EXCEPTION)
            bar.update(shards)
            interrupts.check()
            for future in done:
                shard = pending.pop(future)
                try:
                    all_stats[shard] = shards.result(future)
                except ServerDown as exc:
                    queue.clear()
                    _abandon(pending)
                    raise ServerDown(str(exc)) from None
                summary.captioned += 1
                _add_counts(summary, all_stats[shard]["captions"])
                bar.shard_done()
    except BaseException:
        _abandon(pending)
        shards.cancel_all()  # the shard threads stop waiting on answers; their temporaries are dropped
        raise
    finally:
        bar.close()


def _abandon(pending: dict) -> None:
    for future in pending:
        future.cancel()


def _add_counts(summary: CaptionSummary, captions: dict) -> None:
    for kind in KINDS:
        summary.counts[kind] += int(captions.get(kind, 0))


def _write_summary(storage: Storage, config: CaptionConfig, pid: str, summary: CaptionSummary) -> None:
    data = {"config": config.to_json(), "pass": pid, "complete": summary.complete, "summary": summary.to_json()}
    storage.write_bytes(SUMMARY_NAME, json.dumps(data, indent=1).encode())


class _Progress:
    """captions/s and outcome counts, on a terminal only."""

    def __init__(self, shards: int, summary: CaptionSummary, enabled: bool):
        self.bar = None
        self.summary = summary
        if enabled and shards:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]caption"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=False)
            self.task = self.bar.add_task("caption", total=shards, info="")
            self.start = time.time()
            self.bar.start()

    def update(self, shards: Shards) -> None:
        if self.bar:
            live = shards.live() or dict(self.summary.counts)  # worker processes: counts of finished shards
            asked = sum(v for k, v in live.items() if k != "skipped")
            rate = asked / max(time.time() - self.start, 1e-9)
            faults = shards.faults()
            self.bar.update(self.task, info=f"{rate:,.1f} captions/s · {live['refined']:,} refined · "
                                            f"{live['cache']:,} cache · {live['rejected']:,} rejected · "
                                            f"{live['failed']:,} failed · {faults:,} server faults")

    def shard_done(self) -> None:
        if self.bar:
            self.bar.advance(self.task)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()
