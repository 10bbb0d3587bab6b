"""`python -m train.precompute SOURCES… --out FEATS --vlm DIR --vae DIR`: encode sample shards into feature shards.

The distributor: checks everything before Ray starts, plans one job per source shard, skips the feature
shards that are finished (the same checks as `collage generate`'s resume: collage.shards), and runs the
rest on Ray actors that load the encoders once (one per GPU with `num_gpus=1`, else one per CPU core).
Commit, lock and resume are collage's own (collage.storage, collage.runlock, collage.shards).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from collage import __version__, interrupts
from collage.errors import StorageError, UserError
from collage.runlock import RunLock
from collage.shards import finished_shards, read_json, shard_stem
from collage.storage import Storage, open_storage

from .encoders import HIDDEN_LAYER, check_vae_dir, check_vlm_dir, file_digest
from .featurize import DTYPES, Settings, featurize_shard
from .inputs import SIZES, SourceShard, resolve_sources

log = logging.getLogger(__name__)

FEATURE_FORMAT_VERSION = 1
RETRIES = 3


@dataclass
class Summary:
    samples: int = 0
    shards: int = 0
    skipped_shards: int = 0
    skipped_samples: int = 0
    damaged_sources: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)


def identity(sources: list[SourceShard], vlm: dict, vae: dict, size: int, dtype: str, max_pixels: int | None) -> dict:
    """What FEATS/run.json records; a rerun with anything else into the same FEATS is refused unless forced."""
    runs = sorted({(os.path.dirname(s.path), s.run_digest) for s in sources})
    return {"kind": "features", "format_version": FEATURE_FORMAT_VERSION, "version": __version__,
            "sources": [{"path": p, "run_digest": d} for p, d in runs],
            "shards": [s.stem for s in sources],
            "encoders": {"vlm": {**vlm, "hidden_layer": HIDDEN_LAYER}, "vae": vae},
            "size": size, "dtype": dtype, "max_pixels": max_pixels}


def encoder_identity(path: str, config: dict) -> dict:
    """An encoder as run.json records it: its config's digest, the sizes of its weight files (hashing
    gigabytes of weights on every run would cost more than it tells), and what the features depend on."""
    folder = os.path.abspath(path)
    weights = sorted((n, os.path.getsize(os.path.join(folder, n))) for n in os.listdir(folder) if n.endswith(".safetensors"))
    out = {"path": folder, "config_digest": file_digest(Path(folder) / "config.json")[:16],
           "weights": [f"{n}:{size}" for n, size in weights]}
    if config.get("model_type") == "qwen2_vl":
        out["hidden_size"] = int(config.get("hidden_size") or (config.get("text_config") or {}).get("hidden_size"))
    else:
        out.update(scaling_factor=config.get("scaling_factor"), shift_factor=config.get("shift_factor"))
    return out


def digest_of(ident: dict) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def check_feats(storage: Storage, ident: dict, force: bool) -> None:
    if storage.is_file():
        raise UserError(f"--out {storage.url} is a file; give a new or empty folder")
    names = [n for n in storage.names() if not n.startswith(".")]
    if "run.json" in names:
        old, why = read_json(storage, "run.json")
        if why is None and isinstance(old, dict) and old != ident and not force:
            old_hidden = (old.get("encoders") or {}).get("vlm", {}).get("hidden_size")
            if old_hidden not in (None, ident["encoders"]["vlm"]["hidden_size"]):
                raise UserError(f"--vlm: hidden size {ident['encoders']['vlm']['hidden_size']} does not match "
                                f"{storage.url}, made with hidden size {old_hidden}; use another --out or --force")
            diff = sorted(k for k in ident if old.get(k) != ident[k])
            raise UserError(f"{storage.url} holds features of another config ({', '.join(diff)}); "
                            "use another --out, or --force to replace them")
        if why is not None and not force:
            raise UserError(f"{storage.url}/run.json is {why}; use another --out, or --force to replace it")
    elif names and not force:
        raise UserError(f"--out {storage.url} is a non-empty folder that is not a feature run (it holds "
                        f"{names[0]!r}…); pick a new or empty folder")


def prepare_feats(storage: Storage, ident: dict) -> None:
    storage.makedirs()
    old, why = read_json(storage, "run.json")
    if why != "missing" and old != ident:  # forced (check_feats let it through): clear the old features
        for name in storage.names():
            if name.endswith((".tar", ".parquet", ".stats.json")) or name in ("sizes.json", "run.json",
                                                                               "uncond.safetensors"):
                storage.remove(name)
    storage.clean_stale_temporaries()
    storage.write_bytes("run.json", json.dumps(ident, indent=1).encode())


def precompute(sources: list[str], out: str, vlm_dir: str, vae_dir: str, size: int = 512, dtype: str = "bf16",
               device: str = "auto", batch_size: int = 8, workers: int | None = None, address: str | None = None,
               force: bool = False, max_pixels: int | None = None, progress: bool = False,
               backend: str = "ray") -> Summary:
    if size not in SIZES:
        raise UserError(f"--size {size}: choose one of {', '.join(map(str, SIZES))}")
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: choose bf16 or fp16")
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device {device!r}: choose auto, cpu or cuda")
    if not 1 <= batch_size <= 4096:
        raise UserError(f"--batch-size {batch_size}: use 1 to 4096")
    storage = open_storage(out)
    shards = resolve_sources(list(sources))
    vlm = encoder_identity(vlm_dir, check_vlm_dir(vlm_dir))
    vae = encoder_identity(vae_dir, check_vae_dir(vae_dir))
    ident = identity(shards, vlm, vae, size, dtype, max_pixels)
    check_feats(storage, ident, force)
    settings = Settings(size, dtype, batch_size, max_pixels, digest_of(ident))
    with RunLock(storage, "train.precompute"):
        try:
            prepare_feats(storage, ident)
            return _run(storage, shards, settings, vlm_dir, vae_dir, device, workers, address, progress, backend)
        except StorageError as exc:
            raise StorageError(f"{exc}; free space or fix permissions, then rerun the same command to resume") from None
        finally:
            storage.clean_stale_temporaries()


def _finished(storage: Storage, shards: list[SourceShard], digest: str) -> tuple[dict[str, dict], dict[str, str]]:
    """Finished feature shards by stem, checked like generate's (config, shard, size, sha256 when cheap).
    A feature shard holds what its source gave (corrupt samples skipped), so any sample count is its own."""
    wanted = {s.stem for s in shards}
    done, damaged = {}, {}
    for name in sorted({s.name for s in shards}):
        numbers = [s.shard for s in shards if s.name == name]
        found = finished_shards(storage, name, max(numbers) + 1, lambda k: None, digest)
        done.update({shard_stem(name, k): v for k, v in found.done.items() if shard_stem(name, k) in wanted})
        damaged.update({shard_stem(name, k): v for k, v in found.damaged.items()})
    return done, damaged


def _run(storage, shards, settings, vlm_dir, vae_dir, device, workers, address, progress, backend) -> Summary:
    started = time.time()
    done, damaged = _finished(storage, shards, settings.config_digest)
    for stem in damaged:
        storage.remove(f"{stem}.stats.json")
    summary = Summary(skipped_shards=len(done))
    for stats in done.values():
        _add(summary, stats)
    todo = [s for s in shards if s.stem not in done]
    bar = _bar(len(shards), len(done), progress)
    load = (vlm_dir, vae_dir, device, settings)
    need_uncond = not storage.exists("uncond.safetensors")
    uncond = None
    try:
        if not todo and not need_uncond:
            pass  # all done: no encoder is loaded, no Ray instance started
        elif backend == "local":
            import torch

            if device == "auto":
                load = (vlm_dir, vae_dir, "cuda" if torch.cuda.is_available() else "cpu", settings)
            threads = torch.get_num_threads()  # the in-process worker pins one thread: the caller's comes back
            try:
                worker = _Worker(*load)
                for source in todo:
                    done[source.stem] = worker.run(source, storage.url)
                    _add(summary, done[source.stem])
                    bar(1)
                uncond = worker.unconditional() if need_uncond else None
            finally:
                torch.set_num_threads(threads)
        else:
            uncond = _run_ray(load, todo, storage.url, workers, address, summary, done, bar, need_uncond)
    finally:
        bar(None)
    if uncond is not None:
        storage.write_bytes("uncond.safetensors", uncond)
    storage.write_bytes("sizes.json", json.dumps(
        {f"{stem}.tar": stats["samples"] for stem, stats in sorted(done.items())}, indent=1).encode())
    summary.seconds = time.time() - started
    return summary


def _add(summary: Summary, stats: dict) -> None:
    summary.samples += stats["samples"]
    summary.shards += 1
    summary.bytes += stats["bytes"]
    summary.skipped_samples += stats.get("skipped", 0)
    summary.damaged_sources += bool(stats.get("source_damage"))


class _Worker:
    """Loads the encoders once; then encodes shard after shard (in-process or as a Ray actor)."""

    def __init__(self, vlm_dir: str, vae_dir: str, device: str, settings: Settings):
        import diffusers
        import torch
        import transformers

        from .encoders import Encoders

        transformers.utils.logging.disable_progress_bar()  # a bar per load, per worker, is noise in the run's output
        diffusers.utils.logging.disable_progress_bar()

        if device == "cpu":
            torch.set_num_threads(1)  # one core per worker; also makes CPU results independent of the machine
        compute = torch.float32 if device == "cpu" else DTYPES[settings.dtype]
        self.encoders = Encoders.load(vlm_dir, vae_dir, device=device, dtype=compute, max_pixels=settings.max_pixels)
        self.settings = settings

    def run(self, source: SourceShard, out: str) -> dict:
        return featurize_shard(self.encoders, self.settings, source, out)

    def unconditional(self) -> bytes:
        from safetensors.torch import save

        return save({"vlm": self.encoders.unconditional_vlm().to(DTYPES[self.settings.dtype]).contiguous().cpu()})


def _run_ray(load, todo, out, workers, address, summary, done, bar, need_uncond: bool) -> bytes | None:
    from collage.runner import ray_session

    with ray_session(workers, address) as ray:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        if load[2] == "auto":  # GPU actors when the cluster has GPUs, one CPU worker per core otherwise
            load = (load[0], load[1], "cuda" if gpus else "cpu", load[3])
        use_gpu = load[2] == "cuda"
        if use_gpu and not gpus:
            raise UserError("--device cuda: the Ray cluster has no GPUs; use --device cpu")
        count = max(1, min(len(todo) or 1, workers or (gpus if use_gpu else cpus)))
        actor = ray.remote(num_gpus=1 if use_gpu else 0, num_cpus=0 if use_gpu else 1,
                           max_restarts=RETRIES, max_task_retries=RETRIES)(_Worker)
        actors = [actor.remote(*load) for _ in range(count)]
        idle, pending, queue = list(actors), {}, list(reversed(todo))
        while queue or pending:
            while queue and idle:
                source, worker = queue.pop(), idle.pop()
                pending[worker.run.remote(source, out)] = (source, worker)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            interrupts.check()  # a Ctrl-C that Ray's wait swallowed still stops the run
            for ref in ready:
                source, worker = pending.pop(ref)
                idle.append(worker)
                try:
                    done[source.stem] = ray.get(ref)
                    _add(summary, done[source.stem])
                except StorageError as exc:
                    raise StorageError(str(exc).strip().splitlines()[-1]) from None
                except UserError:
                    raise
                except Exception as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, UserError):  # an encoder folder a worker could not load
                        raise cause from None
                    summary.failed[source.stem] = (str(cause or exc).strip().splitlines() or ["?"])[-1][:300]
                bar(1)
        return ray.get(actors[0].unconditional.remote()) if need_uncond else None


def _bar(total: int, completed: int, enabled: bool):
    """A progress callback: bar(n) advances by n shards, bar(None) closes."""
    if not enabled:
        return lambda n: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(TextColumn("[bold]precompute"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    task = progress.add_task("precompute", total=total, completed=completed)
    progress.start()

    def update(n):
        if n is None:
            progress.stop()
        else:
            progress.advance(task, n)
    return update


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.argument("sources", nargs=-1)
@click.option("--out", required=True, help="Feature directory (local path, or s3://… through fsspec).")
@click.option("--vlm", "vlm_dir", required=True, help="Local Qwen2-VL folder (save_pretrained layout).")
@click.option("--vae", "vae_dir", required=True, help="Local FLUX VAE folder (diffusers AutoencoderKL).")
@click.option("--size", type=int, default=512, show_default=True, help="Bucket base side: 256, 512 or 1024.")
@click.option("--dtype", default="bf16", show_default=True, help="Storage dtype: bf16 or fp16.")
@click.option("--device", default="auto", show_default=True, help="auto (cuda when the cluster has GPUs), cpu or cuda.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--max-pixels", type=click.IntRange(28 * 28, None), help="Cap on VLM image pixels (tokens = pixels / 28²).")
@click.option("--workers", type=click.IntRange(1, 4096), help="Encoder workers (default: one per GPU or core).")
@click.option("--address", help="An existing Ray cluster, e.g. 10.0.0.1:6379 or auto.")
@click.option("--backend", type=click.Choice(["ray", "local"]), default="ray", show_default=True)
@click.option("--force", is_flag=True, help="Replace features of another config in --out.")
@click.option("--no-progress", is_flag=True)
def cli(sources, out, vlm_dir, vae_dir, size, dtype, device, batch_size, max_pixels, workers, address, backend,
        force, no_progress) -> None:
    """Encode SOURCES (collage runs, shards or globs, img2dataset folders; local or s3://…) into feature shards in
    --out."""
    summary = precompute(list(sources), out, vlm_dir, vae_dir, size=size, dtype=dtype, device=device,
                         batch_size=batch_size, workers=workers, address=address, force=force, max_pixels=max_pixels,
                         progress=not no_progress and sys.stderr.isatty(), backend=backend)
    word = "done" if not summary.failed else "incomplete"
    click.echo(f"{word}: {summary.samples:,} samples in {summary.shards:,} feature shards ({summary.skipped_shards:,} "
               f"already done), {summary.bytes / 1e6:,.1f} MB, {summary.skipped_samples} corrupt samples skipped, "
               f"{summary.damaged_sources} damaged source shards, {summary.seconds:,.1f} s → {out}")
    if summary.failed:
        for stem, why in sorted(summary.failed.items()):
            click.echo(f"shard {stem} failed: {why}", err=True)
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    from collage.cli import main as collage_main

    return collage_main(argv, command=cli, prog_name="python -m train.precompute")


if __name__ == "__main__":
    sys.exit(main())
