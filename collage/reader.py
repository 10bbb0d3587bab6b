"""Reading shards back with the webdataset library: what trainers, the gallery and tests use."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import webdataset as wds
from webdataset.gopen import gopen_schemes
from PIL import Image

from .errors import UserError
from .storage import as_path, is_remote


def shard_urls(source: str | Path | list) -> list[str]:
    """A run directory (its finished shards, per sizes.json or stats markers), a shard, a URL webdataset
    reads, or a list mixing any of them (flattened in order)."""
    if isinstance(source, (list, tuple)):
        return [url for item in source for url in shard_urls(item)]
    text = str(source)
    if "://" not in text and "{" not in text and not text.startswith("pipe:") and not Path(text).exists():
        raise UserError(f"{text}: no such run directory or shard")
    if isinstance(source, str) and "{" in text or text.split("://", 1)[0] in gopen_schemes:
        return [text]  # a URL webdataset streams itself (http, gs, pipe, …): a shard, not a folder to list
    # a path object (pathlib's, or a store's UPath) is used as it is; text is a local path or a store URL
    path = (as_path(text) if is_remote(text) else Path(text)) if isinstance(source, str) else source
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


def excluded_keys(exclude: str | Path | Iterable[str] | None) -> frozenset[str]:
    """Keys to skip: a flags export of `collage gallery` (flags.json / flags.csv), a json list of keys or of
    {"key": …} rows, a csv with a `key` column, a text file of one key a line, or any iterable of keys."""
    if exclude is None:
        return frozenset()
    if not isinstance(exclude, (str, Path)):
        return frozenset(str(k) for k in exclude)
    path = Path(exclude)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"exclude list {path}: cannot read it ({exc.strerror})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UserError(f"exclude list {path} is not valid json ({exc})") from None
        if isinstance(data, dict):
            data = data.get("flags", data.get("keys", []))
        if not isinstance(data, list):
            raise UserError(f"exclude list {path}: expected a list of keys or of {{\"key\": …}} rows")
        return frozenset(str(row["key"]) if isinstance(row, dict) else str(row) for row in data)
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        if rows and "key" not in rows[0]:
            raise UserError(f"exclude list {path}: the csv needs a `key` column")
        return frozenset(row["key"] for row in rows if row.get("key"))
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def iter_samples(source: str | Path | list, decode: bool = True,
                 exclude: str | Path | Iterable[str] | None = None) -> Iterator[dict]:
    """Samples in shard order: `__key__`, `json` (dict) and images as numpy (RGB, or L for masks).

    `exclude`: keys to skip (see `excluded_keys`), e.g. the flags a QA person exported from the gallery.
    """
    skip = excluded_keys(exclude)
    dataset = wds.WebDataset(shard_urls(source), shardshuffle=False, empty_check=False)
    for sample in dataset:
        if sample["__key__"] in skip:
            continue
        yield _decode(sample) if decode else sample
