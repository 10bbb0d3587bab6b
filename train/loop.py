"""The training loop, top to bottom: processes -> model -> held-out set -> data -> wrapping, optimizer, EMA ->
resume -> steps (micro-batches, skip non-finite, EMA, metrics, validation, samples) -> checkpoints.

One CPU process, one GPU, or many under torchrun (DDP or FSDP2; gloo on CPU, NCCL on GPUs).

Data layout (why resume and scaling are exact): with P processes and A accumulation steps the run reads as
P·A *virtual ranks*; process r, micro-batch m is virtual rank v = r·A + m, with its own loader (rank v of
P·A) and its own noise generator (seeded by seed and v). So an optimizer step sees the same samples, t and
noise whichever way the global batch is split into processes and micro-batches: 2 processes x 1 equal
1 process x 2 accumulation, up to the order of float sums. Every generator's and loader's state is in
the checkpoint: on CPU a run killed at any point and rerun into the same RUN ends bitwise equal to an
uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from collage.errors import UserError
from model.dit import DreamOmniDiT
from model.flow import flow_loss, resolution_shift, sample_t

from .checkpoint import (CheckpointError, full_state, list_checkpoints, load_latest, restore, save_checkpoint,
                         set_rng_state)
from .config import Config, dit_config
from .data import FeatureLoader, LoaderConfig
from .ema import EMA
from .evaluate import SampleWriter, holdout_for, load_holdout, validation_loss
from .metrics import (LossTally, MetricsLog, peak_memory_gib, peak_tflops, reset_peak_memory, train_flops,
                      truncate_metrics)
from .optim import build_optimizer, build_scheduler, clip_grad, load_scheduler_state, scheduler_state
from .parallel import autocast, compute_dtype, init_distributed, set_backend_flags, set_gradient_sync, unwrap, wrap_model

log = logging.getLogger("train.loop")


class TrainingError(RuntimeError):
    """The run stopped for a reason that is not the user's input (non-finite losses, a failed final save)."""


class TrainingStopped(Exception):
    """SIGTERM or Ctrl-C: the step in flight finished, a checkpoint was saved, the run can be resumed."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class StopSignals:
    """Records SIGTERM / SIGINT instead of raising mid-step (a preempted job saves at the end of its step);
    a second signal stops at once. Only the main thread can install handlers; elsewhere this does nothing."""

    def __init__(self):
        self.received: list[int] = []
        self._old = {}

    def _record(self, signum, frame) -> None:
        if self.received:
            raise KeyboardInterrupt()
        self.received.append(signum)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def accumulation(cfg: Config, processes: int) -> int:
    d = cfg.data
    if d.global_batch_size is None:
        return 1
    per_step = processes * d.batch_size
    if d.global_batch_size % per_step:
        raise UserError(f"data.global_batch_size {d.global_batch_size} is not a multiple of {processes} processes "
                        f"x data.batch_size {d.batch_size}: change one of them")
    return d.global_batch_size // per_step


def build_loader(cfg: Config, rank: int = 0, world_size: int = 1,
                 exclude: frozenset[str] | None = None) -> FeatureLoader:
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
                                          max_vlm_len=d.max_vlm_len, dtype="fp32", exclude=exclude),
                             rank=rank, world_size=world_size)
    except ValueError as exc:
        raise UserError(f"--data: {exc}") from None


def noise_generator(seed: int, virtual_rank: int, device: torch.device) -> torch.Generator:
    digest = hashlib.sha256(f"noise:{seed}:{virtual_rank}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def init_weights(model: DreamOmniDiT, cfg: Config) -> None:
    """Stage 2/3: start from a previous stage's weights (a RUN, a checkpoint or a save_pretrained directory)."""
    m = cfg.model
    try:
        fields, state = full_state(m.init_from, ema=m.init_from_ema)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"model.init_from {m.init_from}: cannot read its weights ({exc})") from None
    mine = {k: getattr(model.cfg, k) for k in model.cfg.__dataclass_fields__ if k != "name"}
    other = {k: fields.get(k) for k in mine}
    if mine != other:
        diff = ", ".join(f"{k} {other[k]} vs {mine[k]}" for k in mine if mine[k] != other[k])
        raise UserError(f"model.init_from {m.init_from} is another architecture ({diff})")
    model.load_state_dict(state, strict=True)


def train(cfg: Config, run: str | Path, echo=print) -> dict:
    """Train cfg.train.steps steps into RUN (resuming from its latest checkpoint); returns a summary. Under
    torchrun every process calls this. The process-wide deterministic-algorithms setting is restored after."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    world = init_distributed(cfg.train.device)
    try:
        with _run_lock(Path(run), world), StopSignals() as stops:
            return _train(cfg, Path(run), world, echo if world.main else (lambda message: None), stops)
    finally:
        world.close()
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _run_lock(run: Path, world):
    """One trainer per RUN (rank 0 holds collage's run lock: a flock plus a heartbeat lease)."""
    if not world.main:
        return nullcontext()
    from collage.runlock import RunLock
    from collage.storage import open_storage

    run.mkdir(parents=True, exist_ok=True)
    return RunLock(open_storage(str(run), "--out"), what="python -m train")


def _train(cfg: Config, run: Path, world, echo, stops: StopSignals) -> dict:
    t, device = cfg.train, world.device
    seed_everything(t.seed, t.deterministic)  # the same on every rank: identical initial weights
    set_backend_flags(t)
    dtype = compute_dtype(t, device)
    accum = accumulation(cfg, world.size)
    if world.main:
        run.mkdir(parents=True, exist_ok=True)
    world.barrier()

    # -- model (initial weights on CPU, identical on every rank), held-out set, data
    model = DreamOmniDiT(dit_config(cfg.model))
    resuming = world.broadcast_object(bool(list_checkpoints(run)))
    if cfg.model.init_from and not resuming:
        init_weights(model, cfg)
        echo(f"initialised from {cfg.model.init_from}{' (EMA)' if cfg.model.init_from_ema else ''}")
    holdout = holdout_for(run, cfg, world)
    excluded = frozenset(row["key"] for row in holdout) or None
    loaders = [build_loader(cfg, world.rank * accum + m, world.size * accum, excluded) for m in range(accum)]
    if loaders[0].vlm_dim != model.cfg.vlm_dim:
        raise UserError(f"the features' VLM width is {loaders[0].vlm_dim}, the model's vlm_dim {model.cfg.vlm_dim}: "
                        f"--set model.vlm_dim={loaders[0].vlm_dim}")
    held = load_holdout(holdout, cfg.data.max_vlm_len)

    # -- wrapping, optimizer, schedule, EMA, noise
    model = wrap_model(model.to(device), t, world)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, t.steps)
    ema = EMA(unwrap(model), cfg.ema.decay, cfg.ema.interval, cfg.ema.start)
    generators = [noise_generator(t.seed, world.rank * accum + m, device) for m in range(accum)]

    # -- resume
    start = 0
    ckpt = load_latest(run, world)
    if ckpt is not None:
        saved = (ckpt["meta"].get("world_size", 1), len(ckpt["loader"]) if isinstance(ckpt["loader"], list) else 1)
        if saved != (world.size, accum):
            raise UserError(f"{run} was trained with {saved[0]} processes x {saved[1]} accumulation; resume it with "
                            f"the same (this launch: {world.size} x {accum}), or start a new RUN with model.init_from")
        try:
            restore(ckpt, model=model, ema=ema, optimizer=optimizer)
            for loader, state in zip(loaders, ckpt["loader"]):
                loader.load_state_dict(state)
            set_rng_state(ckpt["rng"], generators)
        except ValueError as exc:
            raise UserError(f"cannot resume {ckpt['path']}: {exc}") from None
        load_scheduler_state(scheduler, ckpt["sched"])
        start = ckpt["step"]
        echo(f"resumed from {ckpt['path'].name} (step {start})")
        del ckpt
    if world.main:
        truncate_metrics(run / "metrics.jsonl", start)
        (run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    world.barrier()

    def checkpoint(step: int) -> None:
        save_checkpoint(run, step, model=model, ema=ema, optimizer=optimizer,
                        scheduler_state=scheduler_state(scheduler), loader_state=[lo.state_dict() for lo in loaders],
                        config=cfg.to_dict(), keep_last=t.keep_last, world=world, generators=generators)

    samples_writer = SampleWriter(cfg, held, world) if cfg.eval.sample_every and held else None

    def evaluate(step: int, record: dict) -> None:
        e = cfg.eval
        final = step == t.steps
        if held and e.every and (step % e.every == 0 or final):
            record.update(validation_loss(model, held, e.timesteps, t.seed, device, dtype))
            if e.ema:
                with ema.swapped(unwrap(model)):
                    record["val_loss_ema"] = validation_loss(model, held, e.timesteps, t.seed, device, dtype)["val_loss"]
        if samples_writer is not None and step > 0 and (step % e.sample_every == 0 or final):
            with ema.swapped(unwrap(model)):
                samples_writer.write(model, run, step, device, dtype)

    # -- steps
    mcfg = unwrap(model).cfg
    peak = peak_tflops(device, dtype, t.peak_tflops)
    tally = LossTally(t.timestep_bins, device)
    metrics = MetricsLog(run, world, start, t.steps, t.progress, t.tensorboard)
    model.train()
    iters = [iter(loader) for loader in loaders]
    skipped, in_a_row, save_failures = 0, 0, 0
    last_loss, tic = float("nan"), time.perf_counter()
    wait, samples, tokens, flops = 0.0, 0, 0, 0.0
    reset_peak_memory(device)
    try:
        if start == 0:  # the untrained baseline of the validation loss (and samples)
            record = {"step": 0}
            evaluate(0, record)
            if len(record) > 1:
                metrics.write(record)
            tic = time.perf_counter()
        for step in range(start, t.steps):
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for m, (batches, gen) in enumerate(zip(iters, generators)):
                t0 = time.perf_counter()
                batch = next(batches)
                wait += time.perf_counter() - t0
                x0 = batch["latent"].to(device, torch.float32, non_blocking=True)
                feats = batch["vlm"].to(device, torch.float32, non_blocking=True)
                mask = batch["vlm_mask"]  # None when nothing is padded: SDPA may then take the flash kernel
                mask = None if bool(mask.all()) else mask.to(device, non_blocking=True)
                B, _, h, w = x0.shape
                tt = sample_t(B, shift=resolution_shift(h, w), generator=gen, device=device)
                noise = torch.randn(x0.shape, generator=gen, device=device)
                with set_gradient_sync(model, m == accum - 1), autocast(device, dtype):
                    per_sample = flow_loss(model, x0, feats, mask, t=tt, noise=noise, reduction="none")
                    loss = per_sample.mean() / accum
                    loss.backward()
                step_loss += float(loss.detach())
                tally.add(per_sample, tt, [j.get("task", "other") for j in batch["json"]])
                samples += B
                tokens += B * (h // 2) * (w // 2)
                flops += train_flops(mcfg, B, h, w, feats.shape[1])
            grad_norm = clip_grad(model, cfg.optim.grad_clip)  # the global norm: the same on every rank
            flags = world.any([not math.isfinite(step_loss), bool(stops.received)])  # one collective a step
            nonfinite, stopping = flags
            if not nonfinite and math.isfinite(grad_norm):
                optimizer.step()
                in_a_row = 0
            else:  # a non-finite loss or gradient (on any rank: the norm is global): skip the update
                optimizer.zero_grad(set_to_none=True)
                grad_norm, skipped, in_a_row = float("nan"), skipped + 1, in_a_row + 1
                if in_a_row >= t.max_nonfinite:
                    raise TrainingError(f"step {step + 1}: the loss was not finite {in_a_row} steps in a row; "
                                       f"stopping (lower optim.lr, check the data; resume from {run})")
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            ema.update(unwrap(model), step + 1)
            metrics.step(step_loss, lr)

            done = step + 1
            if done % t.log_every == 0 or done == t.steps:
                toc = time.perf_counter()
                span = max(toc - tic, 1e-9)
                losses = tally.summary(world)
                tflops = flops / span / 1e12
                record = {"step": done, **losses, "lr": lr,
                          "grad_norm": grad_norm, "samples_per_s": samples * world.size / span,
                          "tokens_per_s": tokens * world.size / span, "tflops": tflops,
                          "mfu": None if peak is None else tflops / peak,
                          "data_wait": world.all_reduce_max(wait / span),
                          "peak_mem_gib": world.all_reduce_max(peak_memory_gib(device)),
                          "bucket": batch.get("bucket"), "skipped": skipped}
                evaluate(done, record)
                metrics.write(record)
                last_loss = record["loss"]
                reset_peak_memory(device)
                tic, wait, samples, tokens, flops = time.perf_counter(), 0.0, 0, 0, 0.0
            elif (cfg.eval.every and done % cfg.eval.every == 0) or (cfg.eval.sample_every and done % cfg.eval.sample_every == 0):
                record = {"step": done}
                evaluate(done, record)
                if len(record) > 1:
                    metrics.write(record)
            if stopping and done < t.steps:  # (at the last step the run just finishes)
                checkpoint(done)
                why = "SIGTERM" if signal.SIGTERM in stops.received or not stops.received else "Ctrl-C"
                raise TrainingStopped(f"stopped by {why} after step {done}: checkpoint {run / f'step-{done:06d}'} "
                                      "saved; rerun the same command to resume",
                                      stops.received[0] if stops.received else signal.SIGTERM)
            if done % t.ckpt_every == 0 or done == t.steps:
                try:
                    checkpoint(done)
                except CheckpointError as exc:
                    if done == t.steps:
                        raise TrainingError(f"{exc}; free space and rerun the same command to finish") from None
                    save_failures += 1
                    echo(f"error: {exc}; training goes on and saves again at the next checkpoint step")
            if t.step_sleep > 0:
                time.sleep(t.step_sleep)
    finally:
        metrics.close()
    if start >= t.steps and start > 0:
        echo(f"nothing to do: {run} is already at step {start}")
    return {"start": start, "steps": t.steps, "loss": last_loss, "skipped": skipped, "save_failures": save_failures,
            "accumulation": accum, "world_size": world.size}

