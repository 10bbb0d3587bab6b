"""Training configuration: plain dataclasses, loaded from yaml, overridden with `--set key.sub=value`.

    cfg = load_config("train/configs/tiny.yaml", overrides=["optim.lr=3e-4", "train.steps=100"])

Every yaml key and every `--set` key must name a field; an unknown one is a one-line UserError naming it.
Values given on the command line are parsed as yaml scalars/lists (`optim.betas=[0.9,0.95]`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collage.errors import UserError


@dataclass
class ModelConfig:
    preset: str = "tiny"  # a key of model.dit.PRESETS
    # Overrides of the preset's DiTConfig fields (None: the preset's value).
    conv_channels: int | None = None
    conv_blocks: int | None = None
    width: int | None = None
    depth: int | None = None
    heads: int | None = None
    mlp_ratio: float | None = None
    vlm_dim: int | None = None  # must equal the features' VLM hidden size
    time_freq_dim: int | None = None
    rope_theta: float | None = None
    qk_norm: bool | None = None
    # Start a fresh run from these weights (stage 2 from stage 1, ...): a previous RUN (its latest
    # checkpoint), a step-NNNNNN directory, or a save_pretrained directory. Ignored when RUN resumes.
    init_from: str | None = None
    init_from_ema: bool = False  # take the EMA weights of init_from instead of the raw ones


@dataclass
class DataConfig:
    sources: list[str] = field(default_factory=list)  # feature dirs (FEATS); --data sets this
    weights: list[float] | None = None  # mixing weight per source (default: equal)
    batch_size: int = 4  # per micro-batch per process (GPU)
    # Samples per optimizer step over all processes; gradient accumulation makes up the difference:
    # accumulation = global_batch_size / (processes x batch_size). None: processes x batch_size.
    global_batch_size: int | None = None
    seed: int = 0
    num_workers: int = 0  # DataLoader workers per micro-batch stream (each accumulation slot has one)
    cfg_dropout: float = 0.1
    max_vlm_len: int | None = 512


@dataclass
class OptimConfig:
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"  # constant | cosine
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    grad_clip: float = 1.0  # max global grad norm; <= 0: no clipping (the norm is still logged)


@dataclass
class EMAConfig:
    decay: float = 0.9999
    interval: int = 1  # update every this many steps
    start: int = 0  # before this step the EMA just copies the weights


@dataclass
class EvalConfig:
    every: int = 0  # validation loss every this many steps (and at the end); 0: never
    holdout: int = 32  # samples held out of training for validation and sample images (fixed at the first start)
    timesteps: int = 8  # the fixed t grid each held-out sample is scored at (bin midpoints)
    ema: bool = True  # also score the EMA weights
    sample_every: int = 0  # sample images of held-out conditions every this many steps (and at the end); 0: never
    samples: int = 4  # how many held-out conditions to draw
    sample_steps: int = 20
    cfg: float = 4.5
    vae: str | None = None  # VAE folder to decode with (default: the one the features were made with, if present)


@dataclass
class TrainLoopConfig:
    steps: int = 1000
    log_every: int = 1
    ckpt_every: int = 1000
    keep_last: int = 3
    seed: int = 0
    device: str = "cpu"
    deterministic: bool = True
    max_nonfinite: int = 10  # stop after this many non-finite losses in a row (each skips its step)
    step_sleep: float = 0.0  # seconds to sleep after each step (tests: a window to kill the process)
    parallel: str = "ddp"  # ddp | fsdp (FSDP2, fully_shard per joint block); one process: neither
    precision: str = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU) | bf16 | fp32
    tf32: bool = True  # TF32 matmuls for what runs in fp32 on GPU
    compile: bool = False  # torch.compile each block
    activation_checkpointing: bool = False  # recompute each joint block's activations in the backward
    peak_tflops: float | None = None  # per device, for MFU (default: known GPUs' dense bf16 peak; CPU: none)
    timestep_bins: int = 4  # the loss is also logged per bin of t (equal widths on [0, 1])
    progress: bool = True  # a progress bar with ETA on an interactive terminal
    tensorboard: bool = True  # also log to RUN/tensorboard when tensorboard is installed


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert a yaml value to a field's annotated type; UserError naming the key otherwise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except UserError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key {key}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # yaml 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise UserError(f"config key {key}: expected {tp.__name__}, got {value!r}")


def _set(obj: Any, path: list[str], value: Any, full: str) -> None:
    hints = typing.get_type_hints(type(obj))
    name = path[0]
    if name not in hints:
        parts = full.split(".")
        parent = ".".join(parts[: len(parts) - len(path)]) or "the config"
        known = ", ".join(f.name for f in dataclasses.fields(obj))
        raise UserError(f"unknown config key {full!r}: {parent} has no {name!r} (its keys: {known})")
    current = getattr(obj, name)
    if dataclasses.is_dataclass(current):
        if len(path) == 1:
            if not isinstance(value, dict):
                raise UserError(f"config key {full}: expected a mapping of its fields, got {value!r}")
            for sub, v in value.items():
                _set(current, [str(sub)], v, f"{full}.{sub}")
            return
        _set(current, path[1:], value, full)
        return
    if len(path) > 1:
        raise UserError(f"unknown config key {full!r}: {name} has no sub-keys")
    setattr(obj, name, _coerce(value, hints[name], full))


def apply(cfg: Config, mapping: dict, prefix: str = "") -> Config:
    """Merge a nested mapping (a yaml document) into cfg."""
    for key, value in (mapping or {}).items():
        _set(cfg, [str(key)], value, f"{prefix}{key}")
    return cfg


def apply_override(cfg: Config, item: str) -> Config:
    """One `key.sub=value` override; the value is parsed as yaml."""
    key, eq, raw = item.partition("=")
    key = key.strip()
    if not eq or not key:
        raise UserError(f"--set {item!r}: use KEY=VALUE, e.g. optim.lr=1e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    _set(cfg, key.split("."), value, key)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    cfg = Config()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"--config {path}: no such file")
        try:
            doc = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise UserError(f"--config {path}: not valid yaml ({str(exc).splitlines()[0]})") from None
        if doc is not None and not isinstance(doc, dict):
            raise UserError(f"--config {path}: expected a mapping at the top level")
        apply(cfg, doc or {})
    for item in overrides:
        apply_override(cfg, item)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    from model.dit import PRESETS

    if cfg.model.preset not in PRESETS:
        raise UserError(f"model.preset {cfg.model.preset!r} does not exist: choose one of {', '.join(PRESETS)}")
    if cfg.optim.schedule not in ("constant", "cosine"):
        raise UserError(f"optim.schedule {cfg.optim.schedule!r}: choose constant or cosine")
    if len(cfg.optim.betas) != 2:
        raise UserError(f"optim.betas {cfg.optim.betas}: give two numbers")
    if cfg.data.batch_size < 1:
        raise UserError(f"data.batch_size {cfg.data.batch_size}: use 1 or more")
    if cfg.data.weights is not None and len(cfg.data.weights) != len(cfg.data.sources):
        raise UserError(f"data.weights: {len(cfg.data.weights)} weights for {len(cfg.data.sources)} sources")
    for name in ("steps", "log_every", "ckpt_every", "keep_last"):
        if getattr(cfg.train, name) < (0 if name == "steps" else 1):
            raise UserError(f"train.{name} {getattr(cfg.train, name)}: too small")
    if cfg.ema.interval < 1 or not 0 <= cfg.ema.decay <= 1:
        raise UserError("ema: interval must be >= 1 and decay in [0, 1]")
    if cfg.data.global_batch_size is not None and cfg.data.global_batch_size < cfg.data.batch_size:
        raise UserError(f"data.global_batch_size {cfg.data.global_batch_size} is smaller than data.batch_size "
                        f"{cfg.data.batch_size}")
    choices = {"parallel": ("ddp", "fsdp"), "precision": ("auto", "bf16", "fp32")}
    for name, allowed in choices.items():
        if getattr(cfg.train, name) not in allowed:
            raise UserError(f"train.{name} {getattr(cfg.train, name)!r}: choose one of {', '.join(allowed)}")
    if cfg.train.timestep_bins < 1:
        raise UserError(f"train.timestep_bins {cfg.train.timestep_bins}: use 1 or more")
    for name in ("every", "holdout", "sample_every", "samples"):
        if getattr(cfg.eval, name) < 0:
            raise UserError(f"eval.{name} {getattr(cfg.eval, name)}: use 0 or more")
    if cfg.eval.timesteps < 1 or cfg.eval.sample_steps < 1:
        raise UserError("eval.timesteps and eval.sample_steps: use 1 or more")
    if cfg.model.init_from is not None and not Path(cfg.model.init_from).exists():
        raise UserError(f"model.init_from {cfg.model.init_from}: no such run or model directory")


def dit_config(cfg: ModelConfig):
    """The DiTConfig of a ModelConfig: the preset with its overrides."""
    from model.dit import PRESETS

    over = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.name not in ("preset", "init_from", "init_from_ema")}
    over = {k: v for k, v in over.items() if v is not None}
    try:
        return dataclasses.replace(PRESETS[cfg.preset], **over)
    except AssertionError as exc:
        raise UserError(f"model: {exc}") from None
