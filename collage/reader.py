"""Reading shards back with the webdataset library: what trainers, the gallery and tests use."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import webdataset as wds
from PIL import Image


def shard_urls(source: str | Path | list) -> list[str]:
    """A run directory (its finished shards, per sizes.json or stats markers), a shard, or a list of them."""
    if isinstance(source, (list, tuple)):
        return [str(s) for s in source]
    path = Path(source)
    if path.is_dir():
        sizes = path / "sizes.json"
        if sizes.exists():
            return [str(path / name) for name in sorted(json.loads(sizes.read_text()))]
        return [str(p.with_name(p.name.replace(".stats.json", ".tar"))) for p in sorted(path.glob("*.stats.json"))]
    return [str(source)]


def decode_image(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        if im.mode in ("L", "1", "I;16"):
            return np.asarray(im.convert("L"))
        return np.asarray(im.convert("RGB"))


def _decode(sample: dict) -> dict:
    out = {"__key__": sample["__key__"], "__url__": sample.get("__url__")}
    for name, value in sample.items():
        if name.startswith("__"):
            continue
        stem = name.split(".")[0]
        out[stem] = json.loads(value) if name == "json" else decode_image(value)
    return out


def iter_samples(source: str | Path | list, decode: bool = True) -> Iterator[dict]:
    """Samples in shard order: `__key__`, `json` (dict) and images as numpy (RGB, or L for masks)."""
    dataset = wds.WebDataset(shard_urls(source), shardshuffle=False, empty_check=False)
    for sample in dataset:
        yield _decode(sample) if decode else sample
