"""The Python API behind the CLI: build a config, run it, read it back."""

from __future__ import annotations

from .config import MixEntry, RunConfig, load_pipeline, parse_ops, parse_options
from .reader import iter_samples
from .runner import RunSummary, run

__all__ = ["make_config", "generate_run", "iter_samples", "RunSummary"]


def make_config(task: str | None = None, n: int = 1000, seed: int = 0, size: int = 512, ops: list[str] | str | None = None,
                shard_size: int = 1000, image_format: str = "jpg", pipeline: str | None = None,
                aspect_ratios: str = "square", manifest_dir: str | None = None,
                options: list[str] | dict | None = None, max_upscale: float = 1.25) -> RunConfig:
    from .assets import load_manifests, manifest_digest
    from .errors import UserError

    if (task is None) == (pipeline is None):
        raise UserError("give exactly one of --task or --pipeline")
    if pipeline:
        if ops:
            raise UserError("--ops goes with --task; a pipeline names its ops in its yaml")
        if options:
            raise UserError("--option goes with --task; a pipeline sets options per task in its yaml")
        name, mix, data = load_pipeline(pipeline)
    else:
        ops = ",".join(ops) if isinstance(ops, (list, tuple)) else ops
        name, mix, data = task, (MixEntry(task, parse_ops(task, ops), 1.0, parse_options(options)),), {}
    return RunConfig(name=name, mix=mix, n=n, seed=seed, size=size, aspect_ratios=aspect_ratios, shard_size=shard_size,
                     image_format=image_format, max_upscale=max_upscale, assets_digest=manifest_digest(load_manifests(manifest_dir)), pipeline=data)


def generate_run(out: str, task: str | None = None, n: int = 1000, seed: int = 0, size: int = 512,
                 ops: list[str] | str | None = None, shard_size: int = 1000, image_format: str = "jpg",
                 pipeline: str | None = None, aspect_ratios: str = "square", backend: str = "ray",
                 workers: int | None = None, address: str | None = None, manifest_dir: str | None = None,
                 force: bool = False, progress: bool = False, options: list[str] | dict | None = None) -> RunSummary:
    cfg = make_config(task, n, seed, size, ops, shard_size, image_format, pipeline, aspect_ratios, manifest_dir, options)
    return run(cfg, out, backend=backend, workers=workers, address=address, manifest_dir=manifest_dir, force=force,
               progress=progress)
