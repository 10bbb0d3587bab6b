"""`python -m train.sample --model RUN --vlm DIR --vae DIR --prompt TEXT --out out.png [...]`: one image from a
trained DreamOmni DiT.

    python -m train.sample --model PATH [--ema] --vlm DIR --vae DIR [--size 512] [--steps 28] [--cfg 4.5]
        [--seed 0] --out out.png --prompt TEXT [--image SRC] [--mask M]
        [--task t2i|inpaint|edit|drag|reference] [--op OP] [--device auto|cpu|cuda] [--max-pixels N]

What it does, in the order the trainer's data went:

1. The condition is built by precompute's own code: a sample-like json (task, op, prompt, caption) and the
   images by member name (`src`, `mask`, `cond`) go to `train.conditioning.vlm_request`, and
   `train.encoders.VLMEncoder` encodes the request (hidden_states[-2]). --image / --mask are decoded as
   precompute decodes sample members (RGB; the mask grayscale) and fitted to the source's nearest aspect
   bucket at --size with precompute's resize-and-centre-crop (`train.inputs.nearest_bucket` / `_fit`).
2. The model integrates rectified flow from seeded noise (`model.flow.euler_sample`, the resolution shift
   training used) with classifier-free guidance against the VLM's unconditional features (the empty prompt
   without images: what the trainer's CFG dropout substitutes).
3. The VAE decodes the latent (`LatentEncoder.decode`); the PNG is written to a temporary name, then renamed.

Tasks (`--task`, inferred when not given: --mask → inpaint, --image alone → edit, neither → t2i):

| task      | needs            | the VLM sees                   | ops (--op; default first)         |
|-----------|------------------|--------------------------------|-----------------------------------|
| t2i       | --prompt         | the prompt                     | any (default external)            |
| inpaint   | --image, --mask  | masked source, mask, prompt    | inpaint, outpaint                 |
| edit      | --image          | source, prompt                 | replace, add, remove              |
| drag      | --image          | source, prompt with its points | translate, scale, rotate          |
| reference | --image          | the condition map / subject    | canny, depth, seg, subject (req.) |

Inpaint: the mask is white (≥ 128) where the image is to be filled; those source pixels are set to the
gray training used (collage's HOLE_FILL) before the VLM sees them, as in every inpaint sample. The prompt is
the instruction ("Fill in the gray area of the image.") optionally followed by a description of the full
image; the VLM reads both (precompute reads the description for half of its samples).

Drag: the points go in the prompt as `(x, y, dx, dy)` tuples, e.g. "Drag the cat: (120, 80, 30, -10)",
several separated by ';'. Numbers beyond ±1 are pixels of --image; otherwise they are fractions of its width
and height. They are mapped through the bucket fitting and rewritten as the training prompts write them:
fractions of the fitted image to three places, e.g. "Drag the cat: (0.234, 0.156, 0.059, -0.020)".

Output size: t2i gives --size × --size; with --image, the bucket the source's aspect falls in at --size
(sides multiples of 16, area ≈ --size²). Same arguments and seed on the same machine: the same PNG bytes.
User mistakes are one line on stderr and exit 2.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from collage.errors import UserError

from .sample_condition import (INFERENCE_KEY, TASKS, Condition, build_condition, check_size, drag_prompt,  # noqa: F401
                               load_image, resolve_task, write_png)

if TYPE_CHECKING:
    from model.dit import DreamOmniDiT

    from .encoders import Encoders


STEP_DIR = re.compile(r"^step-(\d{6,})$")


# --------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class CheckpointPaths:
    """Where a --model path's weights are."""

    model_dir: Path  # config.json + model.safetensors (DreamOmniDiT.save_pretrained)
    ema: Path | None  # ema.safetensors (same tensor names as the model), when the checkpoint has one
    step: int | None  # the training step, for a training checkpoint

    def describe(self) -> str:
        return str(self.model_dir.parent if self.model_dir.name == "model" and self.step is not None
                   else self.model_dir)


def resolve_checkpoint(path: str | Path) -> CheckpointPaths:
    """A training RUN directory (its `latest` checkpoint, else its newest complete one), one step-NNNNNN
    checkpoint directory, or a save_pretrained folder → the paths to load. Read-only: unlike
    train.checkpoint.load_latest it never cleans a run (a trainer may be writing into it)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--model {path}: no such directory (give a training run, one of its step-NNNNNN "
                        "checkpoints or a save_pretrained folder)")
    if not path.is_dir():
        raise UserError(f"--model {path}: not a directory (give a training run, one of its step-NNNNNN "
                        "checkpoints or a save_pretrained folder)")
    from .checkpoint import list_checkpoints

    if (path / "latest").is_file() or list_checkpoints(path):  # a training run (its config.json is the trainer's)
        return _run_checkpoint(path)
    if (path / "config.json").is_file():  # a save_pretrained folder (possibly a checkpoint's model/)
        parent_ema = path.parent / "ema.safetensors"
        if (path / "ema.safetensors").is_file():
            ema = path / "ema.safetensors"
        elif path.name == "model" and parent_ema.is_file():
            ema = parent_ema
        else:
            ema = None
        return CheckpointPaths(path, ema, None)
    if (path / "model" / "config.json").is_file() or (path / "dcp").is_dir():  # one checkpoint
        if not (path / "meta.json").is_file():
            raise UserError(f"--model {path}: an incomplete checkpoint (no meta.json: its save did not finish); "
                            "give the run directory or another step")
        if _sharded(path):
            raise UserError(f"--model {path}: a sharded (FSDP) checkpoint: export it to one folder first "
                            "(python -m train.export RUN --out DIR [--ema]) and give that folder")
        match = STEP_DIR.match(path.name)
        ema = path / "ema.safetensors"
        return CheckpointPaths(path / "model", ema if ema.is_file() else None, int(match[1]) if match else None)
    return _run_checkpoint(path)


def _run_checkpoint(path: Path) -> CheckpointPaths:
    """A training run's checkpoint: the one `latest` names, else the newest complete one."""
    from .checkpoint import list_checkpoints

    found = list_checkpoints(path)
    if not found:
        raise UserError(f"--model {path}: neither a model folder (config.json) nor a training run with a complete "
                        "checkpoint (step-NNNNNN/ with meta.json)")
    chosen = found[-1][1]
    pointer = path / "latest"
    if pointer.is_file():
        try:
            named = path / pointer.read_text(encoding="utf-8").strip()
        except OSError:
            named = None
        if any(p == named for _, p in found):
            chosen = named
    if not (chosen / "model" / "config.json").is_file() and not (chosen / "dcp").is_dir():
        raise UserError(f"--model {path}: its checkpoint {chosen.name} has no model/config.json")
    return resolve_checkpoint(chosen)


def _sharded(step_dir: Path) -> bool:
    """A torch.distributed.checkpoint save (dcp/ in place of model/ and ema.safetensors)."""
    try:
        meta = json.loads((step_dir / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    return bool(isinstance(meta, dict) and meta.get("sharded")) or not (step_dir / "model" / "config.json").is_file()


def read_model_config(model_dir: Path) -> dict:
    """A save_pretrained folder's config.json (the DiTConfig fields), or one line saying what is wrong."""
    config = model_dir / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"--model {config}: not readable json ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("vlm_dim"), int):
        raise UserError(f"--model {config}: not a DreamOmni DiT config (no vlm_dim)")
    if not (model_dir / "model.safetensors").is_file():
        raise UserError(f"--model {model_dir}: model.safetensors is missing")
    return data


def resolve_device(device: str = "auto") -> str:
    """auto → cuda when torch sees a GPU, else cpu; cuda without one is a UserError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA device (use --device cpu or auto)")
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device {device!r}: choose auto, cpu or cuda")
    return device


def load_model(path: str | Path, ema: bool = False, device: str = "cpu") -> DreamOmniDiT:
    """The DiT of a training run (its latest checkpoint), a step-NNNNNN checkpoint or a save_pretrained
    folder, in eval mode, frozen, float32 on `device`. `ema=True` loads the checkpoint's EMA weights
    (ema.safetensors) instead of the raw ones: a UserError where there are none (e.g. an export folder)."""
    return load_checkpoint(resolve_checkpoint(path), ema=ema, device=device)


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


def load_checkpoint(paths: CheckpointPaths, ema: bool = False, device: str = "cpu") -> DreamOmniDiT:
    """load_model for paths resolve_checkpoint already gave (no second look at a run's `latest`)."""
    import torch
    from safetensors.torch import load_file

    from model.dit import DiTConfig, DreamOmniDiT

    if ema and paths.ema is None:
        raise UserError(f"--ema: {paths.model_dir} has no ema.safetensors (a save_pretrained folder holds the raw "
                        "weights only): give a training run or step-NNNNNN checkpoint, or drop --ema")
    config = read_model_config(paths.model_dir)
    try:
        DiTConfig(**config)
    except (TypeError, AssertionError) as exc:
        raise UserError(f"--model {paths.model_dir}: config.json is not a DiTConfig ({exc})") from None
    try:
        model = DreamOmniDiT.from_pretrained(paths.model_dir, device=device, dtype=torch.float32)
    except Exception as exc:  # a damaged or mismatched weights file: one line
        raise UserError(f"--model {paths.model_dir}: cannot load it ({_first_line(exc)})") from None
    if ema:
        try:
            shadow = load_file(str(paths.ema), device=str(device))
        except Exception as exc:
            raise UserError(f"--ema {paths.ema}: cannot read it ({_first_line(exc)})") from None
        state = model.state_dict()
        wanted = {name for name, t in state.items() if t.is_floating_point()}
        if set(shadow) != wanted:
            odd = sorted(set(shadow) ^ wanted)
            raise UserError(f"--ema {paths.ema}: its tensors do not match the model's ({len(odd)} differ, "
                            f"e.g. {odd[0]})")
        with torch.no_grad():
            for name, tensor in shadow.items():
                if tensor.shape != state[name].shape:
                    raise UserError(f"--ema {paths.ema}: {name} is {tuple(tensor.shape)}, the model's "
                                    f"{tuple(state[name].shape)}")
                state[name].copy_(tensor)
    return model.eval().requires_grad_(False)


def check_vlm_width(vlm_dim: int, hidden_size: int, vlm_dir: str | Path = "") -> None:
    """The VLM's hidden size must be the width the model's vlm_proj was trained on."""
    if int(vlm_dim) != int(hidden_size):
        where = f" {vlm_dir}" if vlm_dir else ""
        raise UserError(f"--vlm{where}: the VLM's hidden size is {hidden_size}, the model's vlm_dim is {vlm_dim}: "
                        "give the VLM whose features the model was trained on")


def _vlm_hidden(config: dict) -> int | None:
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    hidden = text.get("hidden_size") or config.get("hidden_size")
    return int(hidden) if hidden is not None else None


def load_encoders(vlm_dir: str | Path, vae_dir: str | Path, device: str = "cpu", vlm_dim: int | None = None,
                  max_pixels: int | None = None) -> Encoders:
    """Qwen2-VL and the VAE from local folders (both checked first: one line naming what is wrong). With
    `vlm_dim`, a VLM of another width is refused before its weights load. The VLM runs in float32 on CPU
    and bfloat16 on CUDA (what precompute's encoders run in); the VAE decodes in float32."""
    import torch

    from .encoders import Encoders, LatentEncoder, VLMEncoder, check_vae_dir, check_vlm_dir

    vlm_config = check_vlm_dir(vlm_dir)
    check_vae_dir(vae_dir)
    hidden = _vlm_hidden(vlm_config)
    if vlm_dim is not None and hidden is not None:
        check_vlm_width(vlm_dim, hidden, vlm_dir)
    _quiet_loaders()
    vlm_dtype = torch.float32 if device == "cpu" else torch.bfloat16
    encoders = Encoders(VLMEncoder.load(vlm_dir, device, vlm_dtype, max_pixels),
                        LatentEncoder.load(vae_dir, device, torch.float32))
    if vlm_dim is not None:
        check_vlm_width(vlm_dim, encoders.hidden_size, vlm_dir)
    return encoders


def _quiet_loaders() -> None:
    """No progress bars from transformers / diffusers: the command's output is its one line."""
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()


# --------------------------------------------------------------------------- sampling

def sample_condition(model: DreamOmniDiT, encoders: Encoders, condition: Condition, *, steps: int = 28,
                     cfg: float = 4.5, seed: int = 0) -> np.ndarray:
    """Encode `condition`'s VLM request, integrate the flow from seeded noise with CFG, decode: uint8
    (height, width, 3). The noise is drawn on the CPU from torch.Generator().manual_seed(seed), so a seed
    gives the same noise on every device."""
    import torch

    from model.flow import euler_sample, resolution_shift

    from .encoders import LATENT_CHANNELS

    if steps < 1:
        raise UserError(f"--steps {steps}: use at least 1")
    check_vlm_width(model.cfg.vlm_dim, encoders.hidden_size)
    down = encoders.vae.downsample
    if condition.height % (2 * down) or condition.width % (2 * down):
        raise UserError(f"{condition.width}x{condition.height}: the sides must be multiples of {2 * down} "
                        f"for this VAE ({down}x down) and the DiT's 2x2 patches")
    device = next(model.parameters()).device
    feats = encoders.encode_vlm([condition.request])[0].to(device, torch.float32)[None]  # (1, L, D)
    neg = encoders.unconditional_vlm().to(device, torch.float32)[None] if cfg != 1.0 else None
    h, w = condition.height // down, condition.width // down
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn((1, LATENT_CHANNELS, h, w), generator=generator, dtype=torch.float32).to(device)
    latent = euler_sample(model, noise, feats, None, steps=steps, guidance=float(cfg), neg_feats=neg,
                          shift=resolution_shift(h, w))
    return encoders.vae.decode(latent)[0]


def sample_image(model: DreamOmniDiT, encoders: Encoders, *, prompt: str, task: str | None = None,
                 op: str | None = None, image: np.ndarray | None = None, mask: np.ndarray | None = None,
                 size: int = 512, steps: int = 28, cfg: float = 4.5, seed: int = 0) -> np.ndarray:
    """One image, uint8 (H, W, 3): t2i at size × size, or, with `image` (uint8 RGB, any size), at its
    nearest aspect bucket at `size`. `task` is inferred when None (mask → inpaint, image → edit, else
    t2i); see build_condition for the inputs and sample_condition for the sampling."""
    condition = build_condition(prompt=prompt, task=task, op=op, image=image, mask=mask, size=size)
    return sample_condition(model, encoders, condition, steps=steps, cfg=cfg, seed=seed)


# --------------------------------------------------------------------------- the command

@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--model", "model_path", required=True,
              help="A training run (its latest checkpoint), a step-NNNNNN checkpoint or a save_pretrained folder.")
@click.option("--ema", is_flag=True, help="Use the checkpoint's EMA weights (ema.safetensors).")
@click.option("--vlm", "vlm_dir", required=True, help="Local Qwen2-VL folder (the one the features were made with).")
@click.option("--vae", "vae_dir", required=True, help="Local FLUX VAE folder (diffusers AutoencoderKL).")
@click.option("--size", type=int, default=512, show_default=True,
              help="Side of a t2i image; with --image, the bucket base side (area ≈ size²).")
@click.option("--steps", type=click.IntRange(1, 10_000), default=28, show_default=True, help="Euler steps.")
@click.option("--cfg", type=click.FloatRange(0, None), default=4.5, show_default=True,
              help="Classifier-free guidance scale (1: no guidance).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--out", required=True, help="The PNG to write (written to a temporary name, then renamed).")
@click.option("--prompt", required=True, help="The text (drag: with its (x, y, dx, dy) points).")
@click.option("--image", "image_path", help="Source image (edit, drag, inpaint) or reference condition map / subject.")
@click.option("--mask", "mask_path", help="Inpaint mask: grayscale, white where the image is to be filled.")
@click.option("--task", type=click.Choice(TASKS), help="Default: inpaint with --mask, edit with --image, else t2i.")
@click.option("--op", help="The task's op (reference: canny, depth, seg or subject).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--max-pixels", type=click.IntRange(28 * 28, None),
              help="Cap on VLM image pixels, as given to precompute (default: the VLM's preprocessor config).")
def cli(model_path, ema, vlm_dir, vae_dir, size, steps, cfg, seed, out, prompt, image_path, mask_path, task, op,
        device, max_pixels):
    """Sample one image from a trained DreamOmni DiT."""
    # Everything a user can get wrong is checked before anything heavy loads.
    check_size(size)
    if Path(out).suffix.lower() != ".png":
        raise UserError(f"--out {out}: give a .png path (the image is written as PNG)")
    resolve_task(task, op, image_path is not None, mask_path is not None)
    image = load_image(image_path) if image_path is not None else None
    mask = load_image(mask_path, gray=True, who="--mask") if mask_path is not None else None
    condition = build_condition(prompt=prompt, task=task, op=op, image=image, mask=mask, size=size)
    paths = resolve_checkpoint(model_path)
    vlm_dim = read_model_config(paths.model_dir)["vlm_dim"]
    if ema and paths.ema is None:
        raise UserError(f"--ema: {model_path} has no ema.safetensors (a save_pretrained folder holds the raw "
                        "weights only): give a training run or step-NNNNNN checkpoint, or drop --ema")
    from .encoders import check_vae_dir, check_vlm_dir

    hidden = _vlm_hidden(check_vlm_dir(vlm_dir))
    check_vae_dir(vae_dir)
    if hidden is not None:
        check_vlm_width(vlm_dim, hidden, vlm_dir)

    device = resolve_device(device)
    model = load_checkpoint(paths, ema=ema, device=device)
    encoders = load_encoders(vlm_dir, vae_dir, device, vlm_dim=model.cfg.vlm_dim, max_pixels=max_pixels)
    picture = sample_condition(model, encoders, condition, steps=steps, cfg=cfg, seed=seed)
    written = write_png(out, picture)
    weights = " (ema)" if ema else ""
    click.echo(f"wrote {written}: {condition.width}x{condition.height} {condition.task}/{condition.op}, "
               f"{steps} steps, cfg {cfg:g}, seed {seed}, model {paths.describe()}{weights}")


def main(argv: list[str] | None = None) -> int:
    from collage.cli import main as collage_main

    return collage_main(argv, command=cli, prog_name="python -m train.sample")


if __name__ == "__main__":
    sys.exit(main())
