"""Thumbnails: JPEG, long side bounded, and the mask overlay (the target with the mask tinted).

A member that does not decode gets no thumbnail but a reason (`Thumbnails.undecodable`), which its card
shows in the panel's place.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

MASK_TINT_BGR = (255, 0, 255)  # magenta: rare in the images, so the tinted region reads at a glance
MASK_TINT_ALPHA = 0.55
JPEG_QUALITY = 88
PANELS = ("src", "tgt", "mask", "cond")

# What libjpeg, libpng and OpenCV's logger print on their own (to fd 2) about a damaged image. The gallery
# reports those images on its page, so `quiet_decoders` holds these lines back.
CODEC_NOISE = re.compile(r"^(\[ ?(WARN|ERROR|INFO|DEBUG)[:\]]|Corrupt JPEG data|Premature end of JPEG|Invalid (SOS|JPEG)|"
                         r"Unsupported (marker|JPEG)|Bogus |Not a JPEG|JPEG datastream|libpng (warning|error)|Warning: )")


@dataclass
class Thumbnails:
    files: dict[str, str] = field(default_factory=dict)        # panel → thumbnail file name
    undecodable: dict[str, str] = field(default_factory=dict)  # panel → why it has no thumbnail


@contextmanager
def quiet_decoders() -> Iterator[None]:
    """Hold back the codecs' own complaints about damaged images while in the block; anything else written
    to stderr meanwhile is passed on when it ends."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no stderr file descriptor to guard
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if not CODEC_NOISE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def decode(data: bytes) -> np.ndarray | None:
    """BGR (or L) pixels of a jpg/png/webp member; None when the bytes are not an 8- or 16-bit image."""
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # OpenCV asserts on an empty buffer
        return None
    if image is None or image.size == 0 or image.dtype not in (np.uint8, np.uint16):
        return None
    if image.dtype == np.uint16:  # 16-bit PNG: keep the high byte
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image if image.ndim == 2 or image.shape[2] == 3 else None


def fit(image: np.ndarray, long_side: int) -> np.ndarray:
    """Shrink (never enlarge) so the longer side is at most `long_side`."""
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def tint(target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The target with the mask's region blended toward the tint colour (same size as the target)."""
    if target.ndim == 2:
        target = cv2.cvtColor(target, cv2.COLOR_GRAY2BGR)
    if mask.ndim == 3:
        mask = cv2.cvtColor(mask, cv2.COLOR_BGR2GRAY)
    if mask.shape[:2] != target.shape[:2]:
        mask = cv2.resize(mask, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_AREA)
    weight = (mask.astype(np.float32) * (MASK_TINT_ALPHA / 255.0))[..., None]
    tinted = target.astype(np.float32) * (1 - weight) + np.float32(MASK_TINT_BGR) * weight
    return np.clip(tinted + 0.5, 0, 255).astype(np.uint8)


def write_jpeg(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"cannot encode {path.name}")
    path.write_bytes(data.tobytes())


def make_thumbnails(images: dict[str, bytes], folder: Path, stem: str, long_side: int) -> Thumbnails:
    """Write `{stem}.{src,tgt,mask,cond}.jpg` under `folder` for the members present; the mask panel is the
    target with the mask tinted (the mask alone when the target does not decode). Returns the files
    written and, for each member that does not decode, why."""
    decoded = {name: decode(data) for name, data in images.items() if name in PANELS}
    out = Thumbnails(undecodable={name: f"{name} image does not decode ({len(images[name]):,} bytes)"
                                  for name, image in decoded.items() if image is None})
    fitted = {name: fit(decoded[name], long_side) for name in ("src", "tgt", "cond") if decoded.get(name) is not None}
    for name, small in fitted.items():
        out.files[name] = f"{stem}.{name}.jpg"
        write_jpeg(folder / out.files[name], small)
    if decoded.get("mask") is not None:  # the mask shown tinted over the fitted target
        out.files["mask"] = f"{stem}.mask.jpg"
        shown = tint(fitted["tgt"], decoded["mask"]) if "tgt" in fitted else fit(decoded["mask"], long_side)
        write_jpeg(folder / out.files["mask"], shown)
    return out
