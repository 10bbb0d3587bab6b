"""Processes and model wrapping: torchrun's environment -> a process group; a DiT -> activation checkpointing,
torch.compile, DDP or FSDP2.

    world = init_distributed("auto")          # rank, world size, device; a process group when under torchrun
    model = wrap_model(model, cfg.train, world)
    ...
    world.close()

The same code runs one CPU process (no process group), gloo on CPU processes (the tests) and NCCL on GPUs.
FSDP2 shards each joint block (`fully_shard` per block, then the root), as torchtitan does; its parameters
become DTensors, which the optimizer, the EMA and torch.distributed.checkpoint handle as they are.
"""

from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from collage.errors import UserError

from .config import TrainLoopConfig


@dataclass
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device
    distributed: bool  # a process group is up

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_max(self, value: float) -> float:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def any(self, flags: list[bool]) -> list[bool]:
        """Per flag: is it set on any rank (one all-reduce for all of them)."""
        if not self.distributed:
            return [bool(f) for f in flags]
        t = torch.tensor([float(f) for f in flags], device=self.comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def broadcast_object(self, obj):
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj) -> list:
        if not self.distributed:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
            self.distributed = False


def init_distributed(device: str = "auto") -> World:
    """One process, or a process group from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("train.device cuda: no GPU is visible here; use --set train.device=cpu")
        dev = torch.device("cuda", local_rank if size > 1 else (torch.device(device).index or 0))
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(device)
    if size == 1:
        return World(0, 1, 0, dev, False)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30),
                            device_id=dev if backend == "nccl" else None)
    return World(dist.get_rank(), dist.get_world_size(), local_rank, dev, True)


def compute_dtype(cfg: TrainLoopConfig, device: torch.device) -> torch.dtype:
    """bf16 autocast on GPU unless fp32 is asked for; fp32 on CPU unless bf16 is asked for."""
    if cfg.precision == "bf16":
        return torch.bfloat16
    if cfg.precision == "fp32":
        return torch.float32
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast to `dtype` (bf16 on GPU); a no-op for fp32."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def set_backend_flags(cfg: TrainLoopConfig) -> None:
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32


def wrap_model(model: nn.Module, cfg: TrainLoopConfig, world: World) -> nn.Module:
    """Activation checkpointing and compile per block, then DDP or FSDP2 across processes. Returns the module
    to call in training; with DDP that is a wrapper (its `.module` is the model), otherwise the model itself."""
    blocks = model.blocks
    if cfg.activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        for i, block in enumerate(blocks):
            blocks[i] = checkpoint_wrapper(block, preserve_rng_state=False)
    if cfg.compile:  # in place (nn.Module.compile): parameter and state-dict names stay the same
        for block in blocks:
            block.compile()
    if not world.distributed:
        return model
    if cfg.parallel == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # The joint blocks return (x, c) as views of one tensor; nothing writes into them in place.
        warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
        dtype = compute_dtype(cfg, world.device)
        policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
        for block in blocks:
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(unwrap(model), FSDPModule)


def set_gradient_sync(model: nn.Module, enabled: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulated step."""
    import contextlib

    if is_fsdp(model):
        model.set_requires_gradient_sync(enabled)
        return contextlib.nullcontext()
    if hasattr(model, "no_sync") and not enabled:
        return model.no_sync()
    return contextlib.nullcontext()
