"""Feature shards as random-access indexes: where each sample's tensors and json lie inside its tar.

Why not webdataset's tar iterators here: they read a shard front to back through `tarfile`'s stream mode
(10 KiB reads, joined), can neither start at a given sample nor say where one lies, and hand over bytes that
`safetensors.torch.load` then copies again. Exact resume without re-reading needs positions, and ~1 MB
samples at thousands per second need one copy. So a shard is scanned once into an index (the tar headers
and each `feats.safetensors` header: ~1 KB read per sample), and a batch is then filled by reading each
tensor straight into its slot of the batch tensor (`readinto`). The safetensors format (a little-endian u64
header length, a JSON header of dtype / shape / data_offsets, the raw bytes) is validated here the way
safetensors validates it. Members group into samples as webdataset groups them: consecutive members
sharing the part of the name before the first dot (`webdataset.tariterators.base_plus_ext`), suffixes
lower-cased, a repeated suffix is a corrupt sample.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, NamedTuple

import numpy as np
import torch
from webdataset.tariterators import base_plus_ext

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
MAX_HEADER = 1 << 20  # a feats header is ~200 bytes; anything near this is garbage


class ShardDamage(Exception):
    """The tar cannot be read past this point (garbage, a bad checksum, a truncated member)."""


class TensorLoc(NamedTuple):
    offset: int  # absolute byte offset of the tensor's data in the tar file
    dtype: torch.dtype
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Entry:
    """One readable sample of a shard."""

    key: str
    json_offset: int
    json_size: int
    latent: TensorLoc  # (C, h, w)
    vlm: TensorLoc  # (L, D)


_CODES = list(DTYPES.values())
# One row per readable sample (~50 bytes, not ~400 as objects): a loader keeps many shards' indexes at once.
TABLE = np.dtype([("json_offset", "<i8"), ("json_size", "<i8"), ("latent_offset", "<i8"), ("c", "<i4"),
                  ("h", "<i4"), ("w", "<i4"), ("latent_dtype", "<i1"), ("vlm_offset", "<i8"), ("length", "<i4"),
                  ("hidden", "<i4"), ("vlm_dtype", "<i1")])


@dataclass
class ShardIndex:
    path: str
    keys: list[str] = field(default_factory=list)  # readable samples, in tar order
    table: np.ndarray = field(default_factory=lambda: np.zeros(0, TABLE))  # their positions and shapes
    bad_samples: list[tuple[str, str]] = field(default_factory=list)  # (key, why) of unreadable ones
    damage: str | None = None  # why the shard (or its tail) could not be read

    def __len__(self) -> int:
        return len(self.keys)

    def entry(self, i: int) -> Entry:
        return entry_of(self.keys[i], self.table[i])


def entry_of(key: str, row: np.void) -> Entry:
    """The Entry of one TABLE row."""
    latent = TensorLoc(int(row["latent_offset"]), _CODES[row["latent_dtype"]], (int(row["c"]), int(row["h"]), int(row["w"])))
    vlm = TensorLoc(int(row["vlm_offset"]), _CODES[row["vlm_dtype"]], (int(row["length"]), int(row["hidden"])))
    return Entry(key, int(row["json_offset"]), int(row["json_size"]), latent, vlm)


def _number(field_: bytes) -> int:
    if field_ and field_[0] & 0x80:  # GNU base-256, for members over 8 GiB
        return int.from_bytes(field_[1:], "big")
    digits = field_.strip(b" \0")
    return int(digits, 8) if digits else 0


def _header_ok(hdr: bytes) -> bool:
    try:
        stored = _number(hdr[148:156])
    except ValueError:
        return False
    return stored == sum(hdr[:148]) + 8 * 32 + sum(hdr[156:])


def _pax(data: bytes) -> dict[str, str]:
    out, pos = {}, 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        out[key.decode()] = value.decode("utf-8", "replace")
        pos += length
    return out


def iter_members(f: BinaryIO, file_size: int) -> Iterator[tuple[str, int, int]]:
    """(name, data offset, size) of each regular member; ShardDamage where the tar stops making sense."""
    pos, longname, pax = 0, None, {}
    while True:
        f.seek(pos)
        hdr = f.read(BLOCK)
        if len(hdr) < BLOCK:
            raise ShardDamage(f"no end-of-archive marker after byte {pos} (truncated?)")
        if hdr == _ZERO_BLOCK:
            return
        if not _header_ok(hdr):
            raise ShardDamage(f"not a tar header at byte {pos}")
        kind = hdr[156:157]
        try:
            size = _number(hdr[124:136])
            if kind in (b"0", b"\0", b"7") and "size" in pax:
                size = int(pax["size"])
        except ValueError:
            raise ShardDamage(f"bad size field at byte {pos}") from None
        data = pos + BLOCK
        if data + size > file_size:
            raise ShardDamage(f"member at byte {pos} runs past the end of the file (truncated)")
        pos = data + -(-size // BLOCK) * BLOCK
        if kind in (b"x", b"L"):
            f.seek(data)
            payload = f.read(size)
            if kind == b"L":
                longname = payload.rstrip(b"\0").decode("utf-8", "replace")
            else:
                try:
                    pax = _pax(payload)
                except ValueError:
                    raise ShardDamage(f"bad pax header at byte {data - BLOCK}") from None
            continue
        if kind not in (b"0", b"\0", b"7"):  # directories, links, global pax: not sample members
            continue
        name = hdr[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = hdr[345:500].split(b"\0", 1)[0] if hdr[257:262] == b"ustar" else b""
        if prefix:
            name = prefix.decode("utf-8", "replace") + "/" + name
        name = pax.get("path", longname or name)
        longname, pax = None, {}
        yield name, data, size


def _tensor(header: dict, name: str, base: int, room: int, ndim: int) -> TensorLoc:
    info = header.get(name)
    if not isinstance(info, dict):
        raise ValueError(f"no tensor {name!r}")
    dtype = DTYPES.get(info.get("dtype"))
    shape = info.get("shape")
    begin, end = info.get("data_offsets", (None, None))
    if dtype is None:
        raise ValueError(f"{name}: dtype {info.get('dtype')!r} is not one of {', '.join(DTYPES)}")
    if not (isinstance(shape, list) and len(shape) == ndim and all(isinstance(d, int) and d >= 1 for d in shape)):
        raise ValueError(f"{name}: shape {shape!r}, expected {ndim} positive sides")
    if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= room):
        raise ValueError(f"{name}: data_offsets {begin, end} outside the {room} data bytes")
    if end - begin != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"{name}: {end - begin} bytes for shape {shape} in {info['dtype']}")
    return TensorLoc(base + begin, dtype, tuple(shape))


def _entry(f: BinaryIO, key: str, members: dict[str, tuple[int, int]]) -> Entry:
    if "feats.safetensors" not in members or "json" not in members:
        raise ValueError(f"members {sorted(members)}: needs feats.safetensors and json")
    offset, size = members["feats.safetensors"]
    f.seek(offset)
    head = f.read(8)
    n = int.from_bytes(head, "little") if len(head) == 8 else -1
    if not 2 <= n <= min(MAX_HEADER, size - 8):
        raise ValueError(f"feats.safetensors: header length {n} in a {size}-byte member")
    try:
        header = json.loads(f.read(n))
    except ValueError as exc:
        raise ValueError(f"feats.safetensors: header is not json ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError("feats.safetensors: header is not a json object")
    base, room = offset + 8 + n, size - 8 - n
    json_offset, json_size = members["json"]
    return Entry(key, json_offset, json_size, _tensor(header, "latent", base, room, 3),
                 _tensor(header, "vlm", base, room, 2))


def index_shard(path: str) -> ShardIndex:
    """Scan one shard. Never raises for bad bytes: damage and bad samples are recorded in the index."""
    index, rows = ShardIndex(path), []
    try:
        file_size = os.path.getsize(path)
        with open(path, "rb") as f:
            key, members = None, {}
            for name, offset, size in iter_members(f, file_size):
                prefix, suffix = base_plus_ext(name)
                if prefix is None:
                    continue
                if prefix != key:
                    _finish(f, index, rows, key, members)
                    key, members = prefix, {}
                suffix = suffix.lower()
                if suffix in members:
                    members["__duplicate__"] = (0, 0)  # webdataset refuses such a sample: so do we
                members[suffix] = (offset, size)
            _finish(f, index, rows, key, members)
    except ShardDamage as exc:
        index.damage = str(exc)  # the sample cut by the damage was never finished: it is dropped
    except OSError as exc:
        index.damage = f"cannot read it ({exc.strerror or exc})"
    index.table = np.array(rows, TABLE)
    return index


def _finish(f: BinaryIO, index: ShardIndex, rows: list, key: str | None, members: dict) -> None:
    if key is None:
        return
    if "__duplicate__" in members:
        index.bad_samples.append((key, "a member suffix repeats"))
        return
    try:
        e = _entry(f, key, members)
    except ValueError as exc:
        index.bad_samples.append((key, str(exc)))
        return
    index.keys.append(key)
    rows.append((e.json_offset, e.json_size, e.latent.offset, *e.latent.shape, _CODES.index(e.latent.dtype),
                 e.vlm.offset, *e.vlm.shape, _CODES.index(e.vlm.dtype)))


def read_json(f: BinaryIO, entry: Entry) -> dict:
    f.seek(entry.json_offset)
    raw = f.read(entry.json_size)
    meta = json.loads(raw)
    if not isinstance(meta, dict):
        raise ValueError("json member is not an object")
    return meta


def read_tensor(f: BinaryIO, loc: TensorLoc, out: torch.Tensor) -> None:
    """Fill `out` (contiguous) with the tensor's first out.numel() elements: one copy, file → out.
    Reading a prefix is how the VLM cap costs nothing (rows are contiguous)."""
    f.seek(loc.offset)
    if loc.dtype == out.dtype:
        _readinto(f, out)
    else:  # e.g. fp16 features into a bf16 batch: read, then convert
        tmp = torch.empty(out.numel(), dtype=loc.dtype)
        _readinto(f, tmp)
        out.copy_(tmp.view(out.shape))


def _readinto(f: BinaryIO, out: torch.Tensor) -> None:
    view = memoryview(out.view(-1).view(torch.uint8).numpy())
    done = 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            raise OSError(f"short read: {done} of {len(view)} bytes (file changed since it was indexed?)")
        done += n
