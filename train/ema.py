"""An fp32 exponential moving average of a model's weights.

    ema = EMA(model, decay=0.9999, interval=1, start=0)
    ema.update(model, step)      # after each optimizer step; step = steps done so far (1-based)
    ema.copy_to(other_model)     # e.g. for sampling / export
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.9999, interval: int = 1, start: int = 0):
        self.decay, self.interval, self.start = decay, interval, start
        self.shadow = {name: t.detach().to(torch.float32, copy=True) for name, t in model.state_dict().items()
                       if t.is_floating_point()}
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Before `start` the EMA copies the weights; then every `interval` steps ema += (1-decay)(w - ema)."""
        state = model.state_dict()
        if step <= self.start:
            for name, t in self.shadow.items():
                t.copy_(state[name])
            return
        if step % self.interval:
            return
        for name, t in self.shadow.items():
            t.lerp_(state[name].to(torch.float32), 1.0 - self.decay)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        state = model.state_dict()
        for name, t in self.shadow.items():
            state[name].copy_(t.to(state[name].dtype))

    @contextlib.contextmanager
    def swapped(self, model: nn.Module):
        """Inside the block the model holds the EMA weights; its own come back afterwards (sharded or not)."""
        state = model.state_dict()
        saved = {name: state[name].detach().clone() for name in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, t in saved.items():
                    state[name].copy_(t)

    def state_dict(self) -> dict:
        return {"shadow": dict(self.shadow), "meta": {"decay": self.decay, "interval": self.interval,
                                                     "start": self.start, "updates": self.updates}}

    def load_state_dict(self, state: dict) -> None:
        shadow = state["shadow"]
        if set(shadow) != set(self.shadow):
            raise ValueError("EMA state does not match the model's tensors")
        for name, t in self.shadow.items():
            t.copy_(shadow[name])
        self.updates = int(state["meta"].get("updates", 0))
