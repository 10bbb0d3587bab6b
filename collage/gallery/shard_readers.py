"""Reading one shard for the gallery: its index rows first, then the bytes of the few samples chosen.

Two readers, one interface (`rows`, `has_json(key)`, `read(keys)`, `close()`):
- `WalkedShard` walks the tar header by header: every member located and the whole tar checked (its
  end-of-archive marker), so damage is named. Local shards, and a store's shards without byte ranges (read
  through a buffered remote file: about the whole shard is fetched).
- `RangedShard` is for a shard in an object store whose parquet index gives each sample's byte range
  (collage ≥ 0.5.1): the index, then one ranged GET per chosen sample, all in flight at once. A gallery of
  a 12k-shard run in S3 then fetches a few MB per shard it visits, not the shards.
A shard's index is its parquet file when that is readable and of the right types, else its json members.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa

from ..storage import is_remote
from ..tables import read_parquet
from .records import READ_ERRORS, Picked, Problem, RunInfo, as_size, as_text, json_type, why

INDEX_COLUMNS = ["key", "task", "op", "caption_source", "width", "height"]
RANGE_COLUMNS = ["tar_offset", "tar_length"]
REMOTE_BLOCK = 8 << 20  # a store's tar walked through a buffered file: large reads, few requests


class DamagedShard(Exception):
    """A shard that cannot be read whole; the message says why, for the problems panel."""


def read_shard(path: Path, info: RunInfo) -> "WalkedShard | RangedShard":
    """A reader for the shard at `path` (DamagedShard when it cannot be read at all); its index rows are
    counted into `info`'s histograms."""
    table = _index_table(path, info)
    if table is not None and is_remote(path) and set(RANGE_COLUMNS) <= set(table.column_names):
        reader: WalkedShard | RangedShard = RangedShard(path, table, info)
    else:
        reader = WalkedShard(path, table, info)
    info.shards_read += 1
    info.indexed += len(reader.rows)
    for row in reader.rows:
        info.task_op[(row.get("task"), row.get("op"))] += 1
        info.caption_sources[row.get("caption_source")] += 1
        info.sizes[(row.get("width"), row.get("height"))] += 1
    return reader


def _index_table(tar_path: Path, info: RunInfo) -> pa.Table | None:
    """The shard's parquet index when it is there, readable and of the right column types; else None (and
    a problem when it is there but unusable)."""
    parquet = tar_path.with_name(tar_path.name[:-len(".tar")] + ".parquet")
    if not parquet.exists():
        return None
    try:
        data = parquet.read_bytes()
        info.bytes_read += len(data) if is_remote(parquet) else 0
        table = read_parquet(data)
        wrong = [c for c in INDEX_COLUMNS + [c for c in RANGE_COLUMNS if c in table.column_names]
                 if not _column_type_ok(c, table.schema.field(c).type)]
        if not wrong:
            return table
        detail = f"columns of the wrong type ({', '.join(wrong)})"
    except READ_ERRORS as exc:
        detail = f"unreadable index ({why(exc)})"
    info.problems.append(Problem("file", parquet, f"{detail}: the shard's json members were read instead"))
    return None


def _column_type_ok(column: str, kind: pa.DataType) -> bool:
    """Sizes and ranges are integers, the rest text; an all-null column (e.g. no caption source yet) has the
    null type."""
    if pa.types.is_null(kind):
        return column not in ["key"] + RANGE_COLUMNS
    if column in ["width", "height"] + RANGE_COLUMNS:
        return pa.types.is_integer(kind)
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _index_row(key, fields: dict) -> dict:
    """An index row as the filters and histograms need it: text (or None) and sizes (0 when unusable)."""
    return {"key": key, **{c: as_text(fields.get(c)) for c in ("task", "op", "caption_source")},
            "width": as_size(fields.get("width")), "height": as_size(fields.get("height"))}


def _meta(data: bytes, shard: Path, key: str, problems: list[Problem]) -> dict | None:
    """A sample's json member as an object; None (and a problem) when it is unreadable or not an object."""
    try:
        meta = json.loads(data)
    except READ_ERRORS as exc:
        problems.append(Problem("sample", shard, f"json member unreadable ({why(exc)})", key))
        return None
    if not isinstance(meta, dict):
        problems.append(Problem("sample", shard, f"json member holds {json_type(meta)}, not an object", key))
        return None
    return meta


def _picked(key: str, parts: dict[str, bytes], shard: Path, run: int, problems: list[Problem]) -> Picked | None:
    meta = _meta(parts["json"], shard, key, problems)
    if meta is None:
        return None
    images = {suffix.split(".")[0]: data for suffix, data in parts.items() if suffix != "json"}
    return Picked(key=key, shard=shard, run=run, meta=meta, images=images)


# --- walking a tar -----------------------------------------------------------------------------------------

def open_shard(path: Path, fileobj=None) -> tarfile.TarFile:
    """The shard with every member header read and checked; DamagedShard when it is not a whole tar.
    `fileobj`: the shard's bytes opened elsewhere (a store's buffered file)."""
    size = 0
    try:
        size = path.stat().st_size
        if not size:
            raise DamagedShard("empty (0 bytes)")
        tar = tarfile.open(fileobj=fileobj, mode="r:") if fileobj is not None else tarfile.open(path, "r:")
    except READ_ERRORS as exc:
        raise DamagedShard(f"not a readable tar ({why(exc)}; {size:,} bytes)") from None
    try:
        try:
            tar.getmembers()
        except READ_ERRORS as exc:
            cut = "truncated: " if "end of data" in str(exc) else ""
            raise DamagedShard(f"{cut}unreadable after {len(tar.members):,} member(s) ({why(exc)}; {size:,} bytes)") from None
        _check_end(tar, size)
    except DamagedShard:
        tar.close()
        raise
    return tar


def _check_end(tar: tarfile.TarFile, size: int) -> None:
    # tarfile stops without a word at a corrupt header or at the end of the file, so only the end-of-archive
    # marker (a zero block) right after the last member shows that every member was read.
    tar.fileobj.seek(tar.offset)
    block = tar.fileobj.read(tarfile.BLOCKSIZE)
    count = len(tar.members)
    if not block:
        raise DamagedShard(f"truncated: the file ends after {count:,} member(s) without the end-of-archive marker "
                           f"({size:,} bytes)")
    if block.strip(tarfile.NUL):
        raise DamagedShard(f"corrupt member header at byte {tar.offset:,}: only the {count:,} member(s) before it "
                           "are readable")
    if not count:
        raise DamagedShard(f"holds no members ({size:,} bytes)")


def _members_by_key(tar: tarfile.TarFile) -> dict[str, dict[str, tarfile.TarInfo]]:
    """webdataset grouping: the key is the member name up to the first dot of its base name."""
    out: dict[str, dict[str, tarfile.TarInfo]] = {}
    for member in tar.getmembers():
        if not member.isfile():
            continue
        folder, _, base = member.name.rpartition("/")
        stem, dot, suffix = base.partition(".")
        if not dot:
            continue
        out.setdefault(f"{folder}/{stem}" if folder else stem, {})[suffix] = member
    return out


class WalkedShard:
    """A shard read through its tar headers (see the module's docstring)."""

    def __init__(self, path: Path, table: pa.Table | None, info: RunInfo):
        self.path, self.remote = path, is_remote(path)
        self._open()
        info.bytes_read += path.stat().st_size if self.remote else 0  # the buffered walk fetches about all of it
        self.members = _members_by_key(self.tar)
        info.problems += [Problem("sample", path, f"no json member (only {', '.join(sorted(parts))})", key)
                          for key, parts in self.members.items() if "json" not in parts]
        self.rows = self._rows(table, info.problems)

    def has_json(self, key: str) -> bool:
        return "json" in self.members.get(key, {})

    def _open(self, walk: bool = True) -> None:
        """Open the tar: walked and checked whole (`walk`), or only opened again for a second look, whose
        member headers from the first walk locate the bytes."""
        self._file = self.path.open("rb", block_size=REMOTE_BLOCK) if self.remote else None
        try:
            if walk:
                self.tar = open_shard(self.path, self._file)
            else:
                self.tar = tarfile.open(fileobj=self._file, mode="r:") if self._file else tarfile.open(self.path, "r:")
        except BaseException:
            self.close()
            raise

    def _rows(self, table: pa.Table | None, problems: list[Problem]) -> list[dict]:
        if table is not None:
            rows = table.select(INDEX_COLUMNS).to_pylist()
            if all(row["key"] in self.members for row in rows):
                return [_index_row(row["key"], row) for row in rows]
            parquet = self.path.with_name(self.path.name[:-len(".tar")] + ".parquet")
            problems.append(Problem("file", parquet, "lists keys the shard does not hold: the shard's json members "
                                                     "were read instead"))
        rows = []
        for key, parts in self.members.items():
            if "json" in parts:
                meta = self._member_meta(key, parts, problems)
                if meta is not None:
                    rows.append(_index_row(key, meta))
        return rows

    def _member_meta(self, key: str, parts: dict[str, tarfile.TarInfo], problems: list[Problem]) -> dict | None:
        try:
            data = self.tar.extractfile(parts["json"]).read()
        except READ_ERRORS as exc:
            problems.append(Problem("sample", self.path, f"json member unreadable ({why(exc)})", key))
            return None
        return _meta(data, self.path, key, problems)

    def read(self, keys: list[str], run: int, problems: list[Problem]) -> list[Picked]:
        """The samples of `keys` (each has a json member); a second look reopens the closed tar, whose
        first walk's member headers locate the bytes again."""
        if self.tar is None:
            try:
                self._open(walk=False)
            except READ_ERRORS as exc:
                problems.append(Problem("shard", self.path, f"unreadable on a second look ({why(exc)})"))
                return []
        out = []
        for key in keys:
            try:
                parts = {suffix: self.tar.extractfile(member).read() for suffix, member in self.members[key].items()}
            except READ_ERRORS as exc:
                problems.append(Problem("sample", self.path, f"members unreadable ({why(exc)})", key))
                continue
            picked = _picked(key, parts, self.path, run, problems)
            if picked is not None:
                out.append(picked)
        return out

    def close(self) -> None:
        for handle in (getattr(self, "tar", None), self._file):
            if handle is not None:
                handle.close()
        self.tar = self._file = None


# --- byte ranges in an object store ------------------------------------------------------------------------

class RangedShard:
    """A store's shard read by the byte ranges its index gives (see the module's docstring)."""

    def __init__(self, path: Path, table: pa.Table, info: RunInfo):
        self.path, self.info = path, info
        index = table.select(INDEX_COLUMNS + RANGE_COLUMNS).to_pylist()
        self.rows = [_index_row(row["key"], row) for row in index]
        self.ranges = {row["key"]: (row["tar_offset"], row["tar_length"]) for row in index}

    def has_json(self, key: str) -> bool:
        return key in self.ranges  # known only once read: a range without one is a problem then

    def read(self, keys: list[str], run: int, problems: list[Problem]) -> list[Picked]:
        """The samples of `keys`, fetched at once (one ranged GET each); a range that does not hold its
        sample (an index that does not match its tar) is a problem on that sample, not the end of the walk."""
        fs, where = self.path.fs, self.path.path
        starts = [self.ranges[key][0] for key in keys]
        ends = [start + self.ranges[key][1] for start, key in zip(starts, keys)]
        try:
            chunks = fs.cat_ranges([where] * len(keys), starts, ends, on_error="return")
        except READ_ERRORS as exc:
            problems.append(Problem("shard", self.path, f"unreadable by its byte ranges ({why(exc)})"))
            return []
        out = []
        for key, chunk, start, end in zip(keys, chunks, starts, ends):
            if isinstance(chunk, BaseException):
                problems.append(Problem("sample", self.path, f"its byte range could not be read ({why(chunk)})", key))
                continue
            self.info.bytes_read += len(chunk)
            parts = self._members(key, chunk, end - start, problems)
            picked = _picked(key, parts, self.path, run, problems) if parts is not None else None
            if picked is not None:
                out.append(picked)
        return out

    def _members(self, key: str, chunk: bytes, length: int, problems: list[Problem]) -> dict[str, bytes] | None:
        """{suffix: bytes} of the sample's members in `chunk`; None (and a problem) unless the chunk holds
        exactly this sample's members, json included."""
        parts: dict[str, bytes] = {}
        found = []
        try:
            if len(chunk) != length:
                raise ValueError(f"the shard ends {length - len(chunk):,} bytes into it")
            # its members, then an end-of-archive marker: a whole tar of one sample
            with tarfile.open(fileobj=io.BytesIO(chunk + tarfile.NUL * (2 * tarfile.BLOCKSIZE)), mode="r:") as tar:
                for member in tar:
                    stem, _, suffix = member.name.partition(".")
                    found.append(stem)
                    if member.isfile() and stem == key:
                        parts[suffix] = tar.extractfile(member).read()
        except READ_ERRORS as exc:
            problems.append(Problem("sample", self.path, f"its byte range in the index does not hold a whole "
                                                         f"sample ({why(exc)}); run collage verify", key))
            return None
        if not found or set(found) != {key} or "json" not in parts:
            held = ", ".join(sorted(set(found))[:3]) or "no members"
            problems.append(Problem("sample", self.path, f"its byte range in the index holds {held}, not this "
                                                         "sample's members and json; run collage verify", key))
            return None
        return parts

    def close(self) -> None:
        pass
