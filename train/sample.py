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

import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from collage.config import aspect_buckets
from collage.errors import UserError
from collage.palette import PALETTE

from .conditioning import VLMRequest, caption_coin, rule_for, vlm_request
from .inputs import _fit, decode, nearest_bucket

if TYPE_CHECKING:
    from model.dit import DreamOmniDiT

    from .encoders import Encoders

TASKS = ("t2i", "inpaint", "edit", "drag", "reference")
# The op a task gets when --op is not given. The VLM's input does not depend on the op within these tasks
# (train.conditioning's table gives every op of each the same rule); reference has no default: its op says
# what the image is.
DEFAULT_OPS = {"t2i": "external", "inpaint": "inpaint", "edit": "replace", "drag": "translate"}
# Precompute reads an inpaint sample's description for the keys where caption_coin(key) is true; a sampler's
# request uses such a key, so the VLM reads the whole prompt the user wrote.
INFERENCE_KEY = "prompt"
assert caption_coin(INFERENCE_KEY), "INFERENCE_KEY must be a key whose inpaint request keeps the description"
HOLE_FILL = PALETTE["gray"]  # collage/tasks/inpaint.py's fill of the masked source pixels
MASK_THRESHOLD = 128  # mask pixels at or above it are the hole (training masks are hard 0 / 255)
SIZE_MULTIPLE = 16  # latent sides (image / 8) must be even for the DiT's 2×2 patches
SIZE_RANGE = (64, 4096)
STEP_DIR = re.compile(r"^step-(\d{6,})$")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
POINT = re.compile(rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)")


# --------------------------------------------------------------------------- the condition

@dataclass
class Condition:
    """One request as precompute would have made it from a sample, and the image size to generate."""

    task: str
    op: str
    width: int
    height: int
    bucket: int | None  # index into collage.config.aspect_buckets(size); None for t2i (square --size)
    meta: dict  # the sample-like json vlm_request read
    images: dict[str, np.ndarray] = field(repr=False)  # members by name, fitted to (width, height)
    request: VLMRequest = field(repr=False)  # what the VLM reads


def check_size(size: int) -> None:
    """--size: a multiple of 16 in 64..4096 (the latent sides must be even), else a UserError."""
    low, high = SIZE_RANGE
    if not isinstance(size, int) or size % SIZE_MULTIPLE or not low <= size <= high:
        raise UserError(f"--size {size}: use a multiple of {SIZE_MULTIPLE} between {low} and {high} (e.g. 512)")


def resolve_task(task: str | None, op: str | None, has_image: bool, has_mask: bool) -> tuple[str, str]:
    """(task, op) from the flags: the task inferred when not given (--mask → inpaint, --image → edit, else
    t2i), the op defaulted per task and checked against train.conditioning's table; a UserError for a
    combination the task cannot take (--mask without --image, an image for t2i, …)."""
    if has_mask and not has_image:
        raise UserError("--mask needs --image (the source whose masked area is to be filled)")
    if task is None:
        task = "inpaint" if has_mask else "edit" if has_image else "t2i"
    if task not in TASKS:
        raise UserError(f"--task {task!r}: choose one of {', '.join(TASKS)}")
    if task == "t2i" and has_image:
        raise UserError("--task t2i takes no --image (give --task edit, drag or reference, or drop --image)")
    if task != "t2i" and not has_image:
        raise UserError(f"--task {task} needs --image (the source image"
                        f"{' or condition map' if task == 'reference' else ''})")
    if task == "inpaint" and not has_mask:
        raise UserError("--task inpaint needs --mask (grayscale, white where the image is to be filled)")
    if task != "inpaint" and has_mask:
        raise UserError(f"--mask is for --task inpaint, not {task}")
    if op is None:
        if task not in DEFAULT_OPS:
            raise UserError(f"--task {task} needs --op: one of {', '.join(_ops(task))}")
        op = DEFAULT_OPS[task]
    try:
        rule_for(task, op)
    except ValueError:
        raise UserError(f"--op {op!r} is not an op of {task}: choose one of {', '.join(_ops(task))}") from None
    return task, op


def _ops(task: str) -> list[str]:
    from .conditioning import ANY_OP, CONDITIONING

    return [op for op in CONDITIONING[task] if op != ANY_OP]


def build_condition(*, prompt: str, task: str | None = None, op: str | None = None, image: np.ndarray | None = None,
                    mask: np.ndarray | None = None, size: int = 512) -> Condition:
    """The VLM request and the output size for one image, built as precompute builds a sample's.

    `image`: uint8 (H, W, 3) RGB, the source (edit, drag, inpaint, reference subject) or condition map
    (reference canny / depth / seg), any size: it is fitted to its nearest aspect bucket at `size`, which
    is then the output size. `mask`: uint8 (H, W), the image's size, white where inpaint fills."""
    check_size(size)
    task, op = resolve_task(task, op, image is not None, mask is not None)
    meta: dict = {"task": task, "op": op}
    images: dict[str, np.ndarray] = {}
    width = height = size
    bucket = None
    text = str(prompt)
    if image is not None:
        image = _check_image(image, "--image")
        source_h, source_w = image.shape[:2]
        bucket = nearest_bucket(source_w, source_h, size)
        width, height = aspect_buckets(size)[bucket]
        fitted = _fit(image, width, height, nearest=False)
        name = rule_for(task, op).images[0]  # "src", or "cond" for a reference map
        if mask is not None:
            mask = _check_mask(mask, image.shape[:2])
            hole = _fit(mask, width, height, nearest=True) >= MASK_THRESHOLD
            images["mask"] = np.where(hole, 255, 0).astype(np.uint8)
            fitted = fitted.copy()
            fitted[hole] = HOLE_FILL  # the masked source, as every inpaint sample's src is
        images[name] = np.ascontiguousarray(fitted)
        meta.update(width=width, height=height, bucket=bucket, source_size=[source_w, source_h])
        if task == "drag":
            text, meta["points"] = drag_prompt(text, (source_w, source_h), (width, height))
    else:
        meta.update(width=width, height=height)
    meta.update(prompt=text, caption=text)  # an unrefined sample: caption == prompt
    try:
        request = vlm_request(meta, images, INFERENCE_KEY)
    except ValueError as exc:  # not reachable through resolve_task; kept one line all the same
        raise UserError(str(exc)) from None
    return Condition(task, op, width, height, bucket, meta, images, request)


def _check_image(image: np.ndarray, who: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UserError(f"{who}: expected a uint8 (H, W, 3) RGB image, got {image.dtype} {image.shape}")
    return image


def _check_mask(mask: np.ndarray, image_hw: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] in (3, 4):  # an RGB(A) array from a caller: its first channel
        mask = mask[:, :, 0]
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise UserError(f"--mask: expected a uint8 (H, W) grayscale image, got {mask.dtype} {mask.shape}")
    if mask.shape != tuple(image_hw):
        raise UserError(f"--mask is {mask.shape[1]}x{mask.shape[0]}, --image is {image_hw[1]}x{image_hw[0]}: "
                        "give a mask of the image's size")
    return np.ascontiguousarray(mask)


def _places(value: float) -> str:
    """Three places, as collage's drag prompts write them (never "-0.000")."""
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def drag_prompt(prompt: str, source_size: tuple[int, int],
                fitted_size: tuple[int, int]) -> tuple[str, list[list[float]]]:
    """A drag prompt with `(x, y, dx, dy)` points → (the prompt as training wrote them, the points).

    Numbers beyond ±1 are pixels of the source (`source_size` = (w, h)); otherwise fractions of its width
    and height. Each point is mapped through precompute's fitting (cover-resize, centre-crop) to the fitted
    image (`fitted_size`) and written as fractions of it to three places: "Drag the cat: (0.234, 0.156,
    0.059, -0.020); (…)". The text before the first point is kept (its trailing ':' normalised), and so is
    any text after the last one."""
    matches = list(POINT.finditer(prompt))
    if not matches:
        raise UserError("--task drag: the prompt has no drag points: write them as (x, y, dx, dy), e.g. "
                        "\"Drag the cat: (120, 80, 30, -10)\" in pixels of --image, or as fractions of its sides")
    values = [[float(v) for v in m.groups()] for m in matches]
    pixels = any(abs(v) > 1 for point in values for v in point)
    (w, h), (width, height) = source_size, fitted_size
    # inputs._fit's geometry: resize by `scale` to cover, then crop (x0, y0) off the top left.
    scale = max(width / w, height / h)
    resized = (max(width, round(w * scale)), max(height, round(h * scale))) if (w, h) != (width, height) else (w, h)
    sx, sy = resized[0] / w, resized[1] / h
    x0, y0 = (resized[0] - width) // 2, (resized[1] - height) // 2
    points = []
    for x, y, dx, dy in values:
        if not pixels:
            x, y, dx, dy = x * w, y * h, dx * w, dy * h
        fx, fy = (x + 0.5) * sx - 0.5 - x0, (y + 0.5) * sy - 0.5 - y0  # pixel centres map to pixel centres
        if not (-0.5 <= fx <= width - 0.5 and -0.5 <= fy <= height - 0.5):
            raise UserError(f"--task drag: the point ({_num(x)}, {_num(y)}) falls outside the image once it is "
                            f"fitted to {width}x{height} (its centre crop): give a point inside the kept part")
        fx, fy = min(max(fx, 0.0), width - 1.0), min(max(fy, 0.0), height - 1.0)  # a pixel of the fitted image
        points.append([round(fx / width, 6), round(fy / height, 6), round(dx * sx / width, 6),
                       round(dy * sy / height, 6)])
    joined = "; ".join("(" + ", ".join(_places(v) for v in p) + ")" for p in points)
    head = prompt[:matches[0].start()].rstrip().removesuffix(":").rstrip()
    tail = prompt[matches[-1].end():]
    return (f"{head}: {joined}" if head else joined) + tail.rstrip(), points


def _num(value: float) -> str:
    return f"{value:g}"


# --------------------------------------------------------------------------- images in and out

def load_image(path: str | Path, gray: bool = False, who: str = "--image") -> np.ndarray:
    """A file decoded as precompute decodes sample members: uint8 RGB (H, W, 3), or L (H, W) for a mask."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{who} {path}: no such file")
    try:
        return decode(path.read_bytes(), gray=gray)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: UnidentifiedImageError is an OSError
        raise UserError(f"{who} {path}: not a readable image ({type(exc).__name__}: "
                        f"{(str(exc).splitlines() or [''])[0]})") from None


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """`image` (uint8 H×W×3) as a PNG at `path`, atomically: a temporary file beside it, fsynced, renamed."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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
