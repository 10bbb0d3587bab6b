"""A fixed held-out set: validation loss and sample images during training.

The held-out samples are chosen once, at a run's first start, from the training sources' feature shards
(round robin over tasks, by a seeded hash of the key, so every task is scored), written to RUN/holdout.json
and excluded from training. Each sample is scored at a fixed grid of t (bin midpoints) with fixed noise, so
the validation loss moves only when the weights do. Sample images: the first few held-out conditions drawn
with the EMA weights and fixed noise, decoded by the VAE the features were made with (or eval.vae), written
to RUN/samples/step-NNNNNN/.

Every rank computes the same thing (FSDP needs every rank in every forward); rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.flow import euler_sample, interpolate, resolution_shift, velocity_target

from .config import Config
from .parallel import autocast
from .shards import index_shard, read_json, read_tensor

log = logging.getLogger("train.evaluate")
HOLDOUT_FILE = "holdout.json"
SCAN_SHARDS = 16  # per source: the held-out set is drawn from this many evenly spread shards' samples


@dataclass
class HeldOut:
    key: str
    task: str
    latent: torch.Tensor  # (C, h, w) fp32
    vlm: torch.Tensor  # (L, D) fp32
    text: str  # what the VLM read


def _score(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def choose_holdout(sources: list[str], n: int, seed: int) -> list[dict]:
    """n samples [{"shard", "key", "task"}] spread over tasks, from up to SCAN_SHARDS evenly spread shards
    of each source (a feature run is often one task per shard range)."""
    from .data import shard_paths

    by_task: dict[str, list[tuple[str, str, str, str]]] = {}
    for source in sources:
        paths = shard_paths(source)
        picks = sorted({round(i * (len(paths) - 1) / max(1, SCAN_SHARDS - 1)) for i in range(SCAN_SHARDS)})
        for shard in (paths[i] for i in picks if paths):
            index = index_shard(shard)
            with open(shard, "rb") as f:
                for i, key in enumerate(index.keys):
                    try:
                        task = str(read_json(f, index.entry(i)).get("task", "other"))
                    except ValueError:
                        continue
                    by_task.setdefault(task, []).append((_score(seed, key), shard, key, task))
    queues = [sorted(rows) for _, rows in sorted(by_task.items())]
    chosen = []
    while len(chosen) < n and any(queues):
        for q in queues:
            if q and len(chosen) < n:
                _, shard, key, task = q.pop(0)
                chosen.append({"shard": os.path.abspath(shard), "key": key, "task": task})
    return chosen


def holdout_for(run: Path, cfg: Config, world) -> list[dict]:
    """RUN/holdout.json (chosen now at a first start, by rank 0), the same on every rank; [] when off."""
    e = cfg.eval
    if e.holdout == 0 or (e.every == 0 and e.sample_every == 0):
        return []
    path = run / HOLDOUT_FILE
    rows = None
    if world.main:
        if path.is_file():
            rows = json.loads(path.read_text())
        else:
            rows = choose_holdout(cfg.data.sources, e.holdout, cfg.data.seed)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(rows, indent=1))
            os.replace(tmp, path)
    return world.broadcast_object(rows)


def load_holdout(rows: list[dict], max_vlm_len: int | None) -> list[HeldOut]:
    out = []
    by_shard: dict[str, list[dict]] = {}
    for row in rows:
        by_shard.setdefault(row["shard"], []).append(row)
    for shard, wanted in by_shard.items():
        index = index_shard(shard)
        position = {k: i for i, k in enumerate(index.keys)}
        with open(shard, "rb") as f:
            for row in wanted:
                if row["key"] not in position:
                    log.warning("held-out sample %s is no longer readable in %s; scoring without it", row["key"], shard)
                    continue
                entry = index.entry(position[row["key"]])
                latent = torch.empty(entry.latent.shape, dtype=entry.latent.dtype)
                read_tensor(f, entry.latent, latent)
                length = entry.vlm.shape[0] if max_vlm_len is None else min(entry.vlm.shape[0], max_vlm_len)
                vlm = torch.empty((length, entry.vlm.shape[1]), dtype=entry.vlm.dtype)
                read_tensor(f, entry.vlm, vlm)
                meta = read_json(f, entry)
                out.append(HeldOut(row["key"], row["task"], latent.float(), vlm.float(), str(meta.get("vlm_text", ""))))
    order = {row["key"]: i for i, row in enumerate(rows)}
    return sorted(out, key=lambda h: order[h.key])


@torch.no_grad()
def validation_loss(model, samples: list[HeldOut], timesteps: int, seed: int, device: torch.device,
                    dtype: torch.dtype) -> dict:
    """{"val_loss": mean, "val_loss_task": {task: mean}} over every sample x the t grid, fixed noise."""
    was_training = model.training
    model.eval()
    t = (torch.arange(timesteps, dtype=torch.float32) + 0.5) / timesteps
    sums: dict[str, list[float]] = {}
    for i, s in enumerate(samples):
        g = torch.Generator().manual_seed(int(_score(seed, s.key)[:12], 16))
        x0 = s.latent.unsqueeze(0).expand(timesteps, -1, -1, -1)
        noise = torch.randn(x0.shape, generator=g)
        x0, noise, tt = x0.to(device), noise.to(device), t.to(device)
        vlm = s.vlm.unsqueeze(0).expand(timesteps, -1, -1).to(device)
        with autocast(device, dtype):
            pred = model(interpolate(x0, noise, tt), tt, vlm, None)
        loss = float((pred.float() - velocity_target(x0, noise)).square().mean())
        sums.setdefault(s.task, []).append(loss)
    model.train(was_training)
    flat = [v for vs in sums.values() for v in vs]
    return {"val_loss": float(np.mean(flat)) if flat else float("nan"),
            "val_loss_task": {k: float(np.mean(v)) for k, v in sorted(sums.items())}}


def vae_dir_for(cfg: Config) -> str | None:
    """eval.vae, else the VAE recorded in the first source's run.json when that folder still exists."""
    if cfg.eval.vae:
        return cfg.eval.vae
    for source in cfg.data.sources:
        try:
            ident = json.loads((Path(source) / "run.json").read_text())
            path = ident["encoders"]["vae"]["path"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if Path(path, "config.json").is_file():
            return path
    return None


def uncond_for(cfg: Config) -> torch.Tensor | None:
    from safetensors.torch import load_file

    for source in cfg.data.sources:
        path = Path(source) / "uncond.safetensors"
        if path.is_file():
            vlm = load_file(str(path))["vlm"].float()
            return vlm.reshape(-1, vlm.shape[-1])  # (L, D)
    return None


class SampleWriter:
    """Draws sample images of held-out conditions; decodes and writes on rank 0."""

    def __init__(self, cfg: Config, samples: list[HeldOut], world):
        self.cfg, self.samples, self.world = cfg, samples[: cfg.eval.samples], world
        self.uncond = uncond_for(cfg)
        self.vae = None
        vae_dir = vae_dir_for(cfg)
        if vae_dir is None:
            if world.main and self.samples:
                log.warning("no VAE to decode sample images with (set eval.vae): writing their latents only")
        elif world.main:
            from .encoders import LatentEncoder

            self.vae = LatentEncoder.load(vae_dir, device="cpu")

    @torch.no_grad()
    def write(self, model, run: Path, step: int, device: torch.device, dtype: torch.dtype) -> Path | None:
        if not self.samples:
            return None
        was_training = model.training
        model.eval()
        e, latents = self.cfg.eval, []
        for i, s in enumerate(self.samples):
            g = torch.Generator().manual_seed(int(_score(self.cfg.train.seed, s.key)[:12], 16) + 1)
            noise = torch.randn((1, *s.latent.shape), generator=g).to(device)
            neg = None if self.uncond is None else self.uncond.unsqueeze(0).to(device)
            with autocast(device, dtype):
                x = euler_sample(model, noise, s.vlm.unsqueeze(0).to(device), None, steps=e.sample_steps,
                                 guidance=e.cfg if neg is not None else 1.0, neg_feats=neg,
                                 shift=resolution_shift(*s.latent.shape[-2:]))
            latents.append(x.float().cpu())
        model.train(was_training)
        if not self.world.main:
            return None
        out = run / "samples" / f"step-{step:06d}"
        out.mkdir(parents=True, exist_ok=True)
        index = []
        for i, (s, z) in enumerate(zip(self.samples, latents)):
            stem = f"{i:02d}-{s.task}"
            if self.vae is not None:
                from PIL import Image

                image = self.vae.decode(z)[0]
                Image.fromarray(image).save(out / f"{stem}.png")
            else:
                torch.save(z, out / f"{stem}.latent.pt")
            index.append({"file": stem, "key": s.key, "task": s.task, "vlm_text": s.text})
        (out / "samples.json").write_text(json.dumps(index, indent=1))
        return out
