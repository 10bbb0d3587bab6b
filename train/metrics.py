"""What a training run reports: RUN/metrics.jsonl (+ TensorBoard when installed), a progress bar with ETA,
per-task and per-timestep-bin losses, throughput, MFU from the model's analytic FLOPs, data wait, peak memory.

One jsonl line per logged step (rank 0 writes; sums are reduced over every rank first):
    step, loss, loss_task {task: mean}, loss_t {"0.00-0.25": mean, ...}, lr, grad_norm, samples_per_s,
    tokens_per_s, tflops (achieved per device), mfu (null when the device's peak is unknown), data_wait (the
    fraction of the interval spent waiting on the loader), peak_mem_gib, bucket, skipped
and, on validation steps, val_loss, val_loss_task, val_loss_ema.
"""

from __future__ import annotations

import json
import math
import resource
import sys
from pathlib import Path

import torch

from model.dit import DiTConfig, forward_flops

TASKS = ("t2i", "inpaint", "edit", "drag", "reference", "segdet", "other")
# Dense bf16 tensor-core peaks (TFLOP/s per device, no sparsity), matched against the device name.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "B200": 2250.0, "A100": 312.0, "A800": 312.0,
                    "L40S": 362.0, "L4": 121.0, "A10G": 125.0, "RTX 4090": 165.0}


def peak_tflops(device: torch.device, dtype: torch.dtype, configured: float | None) -> float | None:
    """The device's peak for MFU: train.peak_tflops when set, else a known GPU's dense bf16 peak (halved for
    TF32/fp32 work); None on CPU or an unknown GPU."""
    if configured:
        return float(configured)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16_TFLOPS.items():
        if key in name:
            return peak if dtype in (torch.bfloat16, torch.float16) else peak / 2
    return None


def train_flops(cfg: DiTConfig, batch_size: int, height: int, width: int, vlm_len: int) -> float:
    """Model FLOPs of one training step on one micro-batch: forward + backward = 3x forward (recomputation by
    activation checkpointing is not counted: MFU counts the model's work, not the implementation's)."""
    return 3.0 * batch_size * forward_flops(cfg, height, width, vlm_len)


def peak_memory_gib(device: torch.device) -> float:
    """Peak allocated GPU memory since the last reset, or this process's peak resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


class LossTally:
    """Sums and counts of per-sample losses by task and by bin of t over one logging interval."""

    def __init__(self, bins: int, device: torch.device):
        self.bins, self.device = bins, device
        self.task_index = {t: i for i, t in enumerate(TASKS)}
        self.reset()

    def reset(self) -> None:
        self.by_task = torch.zeros(len(TASKS), 2, dtype=torch.float64, device=self.device)
        self.by_bin = torch.zeros(self.bins, 2, dtype=torch.float64, device=self.device)

    @torch.no_grad()
    def add(self, losses: torch.Tensor, t: torch.Tensor, tasks: list[str]) -> None:
        """losses, t: (B,); tasks: B task names (from the samples' json)."""
        losses = losses.detach().to(torch.float64)
        ones = torch.ones_like(losses)
        rows = torch.stack([losses, ones], dim=1)
        task_ids = torch.tensor([self.task_index.get(t_, self.task_index["other"]) for t_ in tasks],
                                device=self.device)
        self.by_task.index_add_(0, task_ids, rows)
        bins = (t.detach() * self.bins).long().clamp_(0, self.bins - 1).to(self.device)
        self.by_bin.index_add_(0, bins, rows)

    def summary(self, world) -> dict:
        """Reduced over ranks: {"loss": mean over every sample, "loss_task": {...}, "loss_t": {...}} (only
        non-empty entries)."""
        both = torch.cat([self.by_task, self.by_bin])
        if world.distributed:
            both = both.to(world.comm_device())
            world.all_reduce_sum(both)
        by_task, by_bin = both[: len(TASKS)].tolist(), both[len(TASKS):].tolist()
        total, count = map(sum, zip(*by_task))
        out = {"loss": total / count if count else float("nan"),
               "loss_task": {t: s / n for t, (s, n) in zip(TASKS, by_task) if n > 0},
               "loss_t": {f"{i / self.bins:.2f}-{(i + 1) / self.bins:.2f}": s / n
                          for i, (s, n) in enumerate(by_bin) if n > 0}}
        self.reset()
        return out


def _scalars(record: dict, prefix: str = ""):
    for key, value in record.items():
        if isinstance(value, dict):
            yield from _scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            yield f"{prefix}{key}", float(value)


class MetricsLog:
    """Appends records to RUN/metrics.jsonl and TensorBoard (rank 0 only; other ranks' calls do nothing);
    a progress bar with ETA on an interactive terminal."""

    def __init__(self, run: Path, world, start: int, total: int, progress: bool, tensorboard: bool):
        self.main = world.main
        self.file = (run / "metrics.jsonl").open("a") if self.main else None
        self.tb = None
        if self.main and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: jsonl only
                pass
            else:
                self.tb = SummaryWriter(str(run / "tensorboard"), purge_step=start + 1)
        self.bar = None
        if self.main and progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr,
                            disable=None)  # None: only on a terminal

    def step(self, loss: float, lr: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

    def write(self, record: dict) -> None:
        if not self.main:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for name, value in _scalars({k: v for k, v in record.items() if k != "step"}):
                self.tb.add_scalar(name, value, record["step"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.file is not None:
            self.file.close()


def truncate_metrics(path: Path, upto: int) -> None:
    """Drop metric lines past the checkpoint a run resumes from (they are recomputed, identically)."""
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
