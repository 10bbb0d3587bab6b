"""The shard writer: samples in, one webdataset tar + parquet index + stats marker out. Knows no task."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

from .shards import journal_name, shard_stem
from .storage import Storage

__all__ = ["ShardWriter", "TarMembers", "shard_stem"]

TAR_MTIME = 0  # fixed member metadata: the same samples give the same bytes
TAR_OWNER = "collage"
TAR_MODE = 0o644


class TarMembers:
    """A webdataset tar written member by member, hashed as it passes, so it is never read back to be hashed.

    The same bytes as webdataset's TarWriter (tarfile headers, members of one sample in sorted order, then
    tarfile's end of archive), written whole: TarWriter streams each member through tarfile's 10 KiB
    pieces, which cost a third of the writer's time per sample (bench/generate.py's encode-only bound).
    """

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def _write(self, data: bytes) -> None:
        self.sha.update(data)
        self.size += len(data)
        self.f.write(data)

    def add(self, key: str, members: dict[str, bytes]) -> None:
        for suffix in sorted(members):
            data = members[suffix]
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size, info.mtime, info.mode, info.uname, info.gname = \
                len(data), TAR_MTIME, TAR_MODE, TAR_OWNER, TAR_OWNER
            # tarfile's own defaults for its format and name encoding, as TarWriter's tarfile.open uses
            self._write(info.tobuf(tarfile.DEFAULT_FORMAT, tarfile.ENCODING, "surrogateescape"))
            self._write(data)
            if len(data) % tarfile.BLOCKSIZE:
                self._write(tarfile.NUL * (tarfile.BLOCKSIZE - len(data) % tarfile.BLOCKSIZE))

    def close(self) -> None:
        """End of archive: two zero blocks, then zeros up to a whole record (as tarfile closes)."""
        self._write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
        if self.size % tarfile.RECORDSIZE:
            self._write(tarfile.NUL * (tarfile.RECORDSIZE - self.size % tarfile.RECORDSIZE))


class ShardWriter:
    """Write one shard. Use as a context manager; `commit(stats)` publishes it (tar, parquet, then stats)."""

    def __init__(self, storage: Storage, name: str, shard: int):
        self.storage, self.name, self.shard = storage, name, shard
        self.stem = shard_stem(name, shard)
        self.rows: list[dict] = []
        self.started = time.time()

    def __enter__(self) -> "ShardWriter":
        self._stage = self.storage.staged(f"{self.stem}.tar")
        self._tmp = self._stage.__enter__()
        self._file = open(self._tmp, "wb")
        self._tar = TarMembers(self._file)
        return self

    def write(self, key: str, members: dict[str, bytes], row: dict) -> None:
        start = self._tar.size
        self._tar.add(key, members)
        # The sample's byte range in the tar (its members' headers and data): a reader with random access (an
        # object store's range GET) reads one sample without walking every header before it.
        self.rows.append({"key": key, **row, "tar_offset": start, "tar_length": self._tar.size - start,
                          **{f"bytes_{k.split('.')[0]}": len(v) for k, v in members.items()}})

    def commit(self, stats: dict, replacing: bool = False) -> dict:
        """Publish the tar, then the parquet index, then the stats file that marks the shard done.

        `replacing`: the shard replaces a published one (a caption pass). Its parquet and stats are first
        written to a journal, so a crash between the three files is rolled forward (shards.finish_replacements)
        instead of leaving a tar that disagrees with its stats."""
        self._tar.close()
        self._file.close()
        parquet = _parquet_bytes(self.rows)
        stats = {"shard": self.shard, "name": self.name, "tar": f"{self.stem}.tar", "samples": len(self.rows),
                 "bytes": self._tar.size, "sha256": self._tar.sha.hexdigest(), **stats,
                 "seconds": round(time.time() - self.started, 3)}
        stats_bytes = json.dumps(stats, indent=1).encode()
        if replacing:
            self.storage.write_bytes(journal_name(self.stem), json.dumps(
                {"stats": stats, "parquet": base64.b64encode(parquet).decode()}).encode())
        self._stage.__exit__(None, None, None)  # fsync + rename/upload of the tar
        if replacing and os.environ.get("COLLAGE_TEST_REPLACE_PAUSE"):  # tests: a kill between the files
            time.sleep(float(os.environ["COLLAGE_TEST_REPLACE_PAUSE"]))
        self.storage.write_bytes(f"{self.stem}.parquet", parquet)
        self.storage.write_bytes(f"{self.stem}.stats.json", stats_bytes)
        if replacing:
            self.storage.remove(journal_name(self.stem))
        return stats

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:  # abandon: the temporary is removed, nothing is published
            self._file.close()
            self._stage.__exit__(exc_type, exc, tb)


def _parquet_bytes(rows: list[dict]) -> bytes:
    columns = sorted({k for r in rows for k in r}, key=lambda k: (k.startswith("bytes_"), k))
    table = pa.table({c: [r.get(c) for r in rows] for c in columns})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
