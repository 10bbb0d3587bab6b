"""The training loop, top to bottom: config -> model, data, optimizer, EMA -> resume -> steps -> checkpoints.

Single process (CPU fp32 or one GPU). Exact resume on CPU: the model init, timestep and noise draws come
from the seeded global RNGs, whose states are checkpointed with the loader's position, so a run killed at
any point and rerun into the same RUN ends with the same weights, bit for bit, as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from collage.errors import UserError
from model.dit import DreamOmniDiT
from model.flow import flow_loss, resolution_shift

from .checkpoint import load_latest, save_checkpoint, set_rng_state
from .config import Config, dit_config
from .data import FeatureLoader, LoaderConfig
from .ema import EMA
from .optim import build_optimizer, build_scheduler, clip_grad, load_scheduler_state, scheduler_state

log = logging.getLogger("train.loop")


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def build_loader(cfg: Config) -> FeatureLoader:
    d = cfg.data
    if not d.sources:
        raise UserError("no training data: give --data FEATS (a precomputed feature directory)")
    for src in d.sources:
        if not Path(src).exists():
            raise UserError(f"--data {src}: no such feature directory")
    weights = d.weights or [1.0] * len(d.sources)
    try:
        return FeatureLoader(LoaderConfig(sources=list(zip(d.sources, weights)), batch_size=d.batch_size,
                                          seed=d.seed, num_workers=d.num_workers, cfg_dropout=d.cfg_dropout,
                                          max_vlm_len=d.max_vlm_len, dtype="fp32"))
    except ValueError as exc:
        raise UserError(f"--data: {exc}") from None


def _truncate_metrics(path: Path, upto: int) -> None:
    """Drop metric lines past the checkpoint we resume from (they are recomputed, identically)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= upto:
                keep.append(line)
        except (ValueError, KeyError):
            continue
    path.write_text("".join(line + "\n" for line in keep))


def train(cfg: Config, run: str | Path, echo=print) -> dict:
    """Train cfg.train.steps steps into RUN (resuming from its latest checkpoint); returns a summary.
    The process-wide deterministic-algorithms setting is restored afterwards."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        return _train(cfg, run, echo)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _train(cfg: Config, run: str | Path, echo) -> dict:
    run = Path(run)
    t = cfg.train
    seed_everything(t.seed, t.deterministic)
    device = torch.device(t.device)

    # -- model, data, optimizer, EMA
    model = DreamOmniDiT(dit_config(cfg.model)).to(device)
    loader = build_loader(cfg)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, t.steps)
    ema = EMA(model, cfg.ema.decay, cfg.ema.interval, cfg.ema.start)

    # -- resume
    run.mkdir(parents=True, exist_ok=True)
    start = 0
    ckpt = load_latest(run)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optim"])
        load_scheduler_state(scheduler, ckpt["sched"])
        loader.load_state_dict(ckpt["loader"])
        set_rng_state(ckpt["rng"])
        start = ckpt["step"]
        echo(f"resumed from {ckpt['path'].name} (step {start})")
        del ckpt
    metrics_path = run / "metrics.jsonl"
    _truncate_metrics(metrics_path, start)
    (run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    def checkpoint(step: int) -> None:
        save_checkpoint(run, step, model=model, ema=ema, optimizer=optimizer,
                        scheduler_state=scheduler_state(scheduler), loader_state=loader.state_dict(),
                        config=cfg.to_dict(), keep_last=t.keep_last)

    # -- steps
    model.train()
    batches = iter(loader)
    skipped, in_a_row, last_loss, tic = 0, 0, float("nan"), time.perf_counter()
    wait, samples, tokens = 0.0, 0, 0
    with metrics_path.open("a") as metrics:
        for step in range(start, t.steps):
            t0 = time.perf_counter()
            batch = next(batches)
            wait += time.perf_counter() - t0
            x0 = batch["latent"].to(device, torch.float32)
            feats = batch["vlm"].to(device, torch.float32)
            mask = batch["vlm_mask"].to(device)
            if feats.shape[-1] != model.cfg.vlm_dim:
                raise UserError(f"the features' VLM width is {feats.shape[-1]}, the model's vlm_dim "
                                f"{model.cfg.vlm_dim}: --set model.vlm_dim={feats.shape[-1]}")
            loss = flow_loss(model, x0, feats, mask, shift=resolution_shift(*x0.shape[-2:]))
            optimizer.zero_grad(set_to_none=True)
            if math.isfinite(loss.item()):
                loss.backward()
                grad_norm = clip_grad(model, cfg.optim.grad_clip)
                optimizer.step()
                in_a_row = 0
            else:  # a non-finite loss: skip the update, keep the schedule moving
                grad_norm, skipped, in_a_row = float("nan"), skipped + 1, in_a_row + 1
                if in_a_row >= t.max_nonfinite:
                    raise RuntimeError(f"step {step + 1}: the loss was not finite {in_a_row} steps in a row; "
                                       f"stopping (lower optim.lr, check the data; resume from {run})")
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            ema.update(model, step + 1)
            last_loss = loss.item()
            samples += x0.shape[0]
            tokens += x0.shape[0] * (x0.shape[-2] // 2) * (x0.shape[-1] // 2)

            done = step + 1
            if done % t.log_every == 0 or done == t.steps:
                toc = time.perf_counter()
                span = max(toc - tic, 1e-9)
                record = {"step": done, "loss": last_loss, "lr": lr, "grad_norm": grad_norm,
                          "samples_per_s": samples / span, "tokens_per_s": tokens / span,
                          "data_wait": wait / span, "bucket": batch.get("bucket"), "skipped": skipped}
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                tic, wait, samples, tokens = toc, 0.0, 0, 0
            if done % t.ckpt_every == 0 or done == t.steps:
                checkpoint(done)
            if t.step_sleep > 0:
                time.sleep(t.step_sleep)
    if start >= t.steps and start > 0:
        echo(f"nothing to do: {run} is already at step {start}")
    return {"start": start, "steps": t.steps, "loss": last_loss, "skipped": skipped}
