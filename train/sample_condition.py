"""What `python -m train.sample` feeds the VLM: the sample-like json and images precompute would have made
from a sample of the task (train.conditioning builds the request from them), the drag points mapped through
the bucket fitting, the output size; and the images in and out."""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collage.config import aspect_buckets
from collage.errors import UserError
from collage.palette import PALETTE

from .conditioning import VLMRequest, caption_coin, rule_for, vlm_request
from .inputs import _fit, decode, nearest_bucket

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


