"""What the gallery's readers hand on: a chosen sample, a run's summary, a problem met on the way, and the
tolerant conversions of json values that a damaged or hand-edited sample may hold."""

from __future__ import annotations

import json
import math
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

MAX_SIDE = 1 << 16  # a canvas side beyond this is not a size the engine writes

# What reading a damaged file can raise: the file system, tarfile, bad json or utf-8 (ValueError), nesting
# too deep for json (RecursionError) and pyarrow's own errors.
READ_ERRORS = (OSError, EOFError, tarfile.TarError, ValueError, TypeError, KeyError, RecursionError, pa.ArrowException)


@dataclass(frozen=True)
class Problem:
    """Something damaged that the gallery skipped or worked around, for the page's problems panel.

    kind: "shard" (not read at all), "sample" (its json is unusable: not shown), "image" (a member that does
    not decode: a placeholder on its card), "field" (wrong-typed json fields: ignored on its card) or "file"
    (an unreadable run.json, sizes.json, stats or parquet index: the gallery did without it).
    path: a local pathlib path, or an object store's UPath."""
    kind: str
    path: Path
    detail: str
    key: str = ""


@dataclass
class Picked:
    """One chosen sample: its json and the raw bytes of its image members by stem (`tgt`, `src`, …)."""
    key: str
    shard: Path
    run: int
    meta: dict
    images: dict[str, bytes]


@dataclass
class RunInfo:
    """What the summary panel says about one run directory (or one folder of loose shards)."""
    path: Path
    config: dict
    shards_total: int
    stats: dict = field(default_factory=dict)  # summed over every shard's stats.json
    shards_read: int = 0
    indexed: int = 0  # samples of the shards read (the base of the histograms)
    task_op: Counter = field(default_factory=Counter)
    caption_sources: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    bytes_read: int = 0  # of its shards and indexes fetched from an object store (0 when local): what a gallery costs there


def why(exc: BaseException) -> str:
    """An exception as a few words for the page (its first line, or its type when it has no message)."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def as_number(value) -> float | None:
    """A finite json number, else None: text, true/false, null, NaN and infinities are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float
        return None
    return number if math.isfinite(number) else None


def as_size(value) -> int:
    """A canvas side in pixels, 0 when the value is not one (so histograms and overlays skip it)."""
    number = as_number(value)
    return int(number) if number is not None and number == int(number) and 0 < number <= MAX_SIDE else 0


def as_text(value) -> str | None:
    """Text as itself, null as None, anything else as its json (so a wrong type still shows what it holds)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)[:300]


def json_type(value) -> str:
    return {list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(type(value), "a number")


def json_object(data: bytes) -> dict:
    """A small json file's bytes that must hold an object; raises ValueError saying what it holds instead."""
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError(f"holds {json_type(value)}, not an object")
    return value
