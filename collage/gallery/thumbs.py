"""Thumbnails: JPEG, long side bounded, and the mask overlay (the target with the mask tinted)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

MASK_TINT_BGR = (255, 0, 255)  # magenta: rare in the images, so the tinted region reads at a glance
MASK_TINT_ALPHA = 0.55
JPEG_QUALITY = 88


def decode(data: bytes) -> np.ndarray | None:
    """BGR (or L) pixels of a jpg/png/webp member; None when the bytes are not an image."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.dtype != np.uint8:  # 16-bit PNG: keep the high byte
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


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


def make_thumbnails(images: dict[str, bytes], folder: Path, stem: str, long_side: int) -> dict[str, str]:
    """Write `{stem}.{src,tgt,mask,cond}.jpg` under `folder` for the members present; the mask panel is the
    target with the mask tinted. Returns {panel: file name} for the panels written."""
    decoded = {name: decode(data) for name, data in images.items() if name in ("src", "tgt", "mask", "cond")}
    written: dict[str, str] = {}
    fitted = {name: fit(decoded[name], long_side) for name in ("src", "tgt", "cond") if decoded.get(name) is not None}
    for name, small in fitted.items():
        written[name] = f"{stem}.{name}.jpg"
        write_jpeg(folder / written[name], small)
    if "tgt" in fitted and decoded.get("mask") is not None:  # the mask shown tinted over the fitted target
        written["mask"] = f"{stem}.mask.jpg"
        write_jpeg(folder / written["mask"], tint(fitted["tgt"], decoded["mask"]))
    return written
