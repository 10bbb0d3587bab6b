"""Rectified flow for the DreamOmni DiT.

Time direction (as SD3 / minRF / diffusers FlowMatchEulerDiscreteScheduler): t = 1 is noise.

    x_t = (1 - t) * x0 + t * eps        target velocity  v = dx_t/dt = eps - x0

Training samples t from a logit-normal, then applies the resolution-dependent shift
    t' = s t / (1 + (s - 1) t),   s = sqrt(tokens / base_tokens)
which moves mass towards noise for larger images (more pixels, same noise, easier to
denoise, so spend more steps near t = 1). Sampling integrates dx/dt = v from t = 1 to 0
with Euler steps on the same shifted grid, with classifier-free guidance.

`model` below is anything called as model(x_t, t, vlm_feats, vlm_mask) -> velocity.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

VelocityModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t noise; t (B,) in [0, 1]."""
    t = _bcast(t, x0)
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def time_shift(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Monotone map of [0,1] onto itself; shift > 1 pushes t towards 1 (noise)."""
    return shift * t / (1 + (shift - 1) * t)


def resolution_shift(height: int, width: int, base_tokens: int = 256) -> float:
    """Shift for a latent of height x width (image / 8): sqrt(tokens / base_tokens), tokens at 2x down.
    256^2 px -> 1.0, 512^2 -> 2.0, 1024^2 -> 4.0 (SD3, Esser et al. 2024, sec. 5.3.2)."""
    return math.sqrt((height // 2) * (width // 2) / base_tokens)


def sample_t(
    batch: int,
    shift: float = 1.0,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Logit-normal t = sigmoid(N(mean, std^2)), then time_shift. Returns (batch,) float32."""
    z = torch.randn(batch, generator=generator, device=device) * std + mean
    return time_shift(torch.sigmoid(z), shift)


def flow_loss(
    model: VelocityModel,
    x0: torch.Tensor,
    vlm_feats: torch.Tensor,
    vlm_mask: torch.Tensor | None = None,
    *,
    shift: float = 1.0,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """MSE between predicted and target velocity, in float32: a scalar, or (B,) per sample with
    reduction="none" (for per-task and per-timestep accounting)."""
    if t is None:
        t = sample_t(x0.shape[0], shift=shift, device=x0.device)
    if noise is None:
        noise = torch.randn_like(x0)
    pred = model(interpolate(x0, noise, t), t, vlm_feats, vlm_mask)
    err = (pred.float() - velocity_target(x0, noise).float()).square()
    if reduction == "none":
        return err.flatten(1).mean(dim=1)
    return err.mean()


def sampling_schedule(steps: int, shift: float = 1.0, device: torch.device | str | None = None) -> torch.Tensor:
    """steps + 1 times from 1 (noise) down to 0 (data), uniform then shifted."""
    return time_shift(torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=torch.float64), shift).float()


def _pad(feats: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    extra = length - feats.shape[1]
    return F.pad(feats, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)


@torch.no_grad()
def euler_sample(
    model: VelocityModel,
    noise: torch.Tensor,
    vlm_feats: torch.Tensor,
    vlm_mask: torch.Tensor | None = None,
    *,
    steps: int = 28,
    guidance: float = 1.0,
    neg_feats: torch.Tensor | None = None,
    neg_mask: torch.Tensor | None = None,
    shift: float = 1.0,
) -> torch.Tensor:
    """Integrate from noise (t=1) to data (t=0). With guidance != 1 the unconditional branch
    uses neg_feats/neg_mask, or, if none are given, the empty condition (every VLM token
    masked out) -- the same thing a trainer gets by masking the whole prompt for CFG dropout.
    v = v_uncond + guidance * (v_cond - v_uncond)."""
    B = noise.shape[0]
    if vlm_mask is None:
        vlm_mask = torch.ones(vlm_feats.shape[:2], dtype=torch.bool, device=vlm_feats.device)
    cfg = guidance != 1.0
    if cfg:
        if neg_feats is None:
            neg_feats, neg_mask = vlm_feats, torch.zeros_like(vlm_mask)
        elif neg_mask is None:
            neg_mask = torch.ones(neg_feats.shape[:2], dtype=torch.bool, device=neg_feats.device)
        L = max(vlm_feats.shape[1], neg_feats.shape[1])
        feats_c, mask_c = _pad(vlm_feats, vlm_mask, L)
        feats_u, mask_u = _pad(neg_feats, neg_mask, L)
        feats, mask = torch.cat([feats_c, feats_u]), torch.cat([mask_c, mask_u])  # one batched forward
    else:
        feats, mask = vlm_feats, vlm_mask

    ts = sampling_schedule(steps, shift, device=noise.device)
    x = noise.float()
    for i in range(steps):
        t = ts[i].expand(B)
        if cfg:
            v_c, v_u = model(torch.cat([x, x]).to(noise.dtype), torch.cat([t, t]), feats, mask).float().chunk(2)
            v = v_u + guidance * (v_c - v_u)
        else:
            v = model(x.to(noise.dtype), t, feats, mask).float()
        x = x + (ts[i + 1] - ts[i]) * v  # dt < 0: walk towards data
    return x.to(noise.dtype)
