"""Where a run's files go: a local folder, shared storage, or an object store (`s3://…`) through fsspec.

The commit step of a shard lives here alone: bytes are written to a local temporary file, fsynced, then
published under their final name (an atomic rename locally, one upload elsewhere). Readers therefore
never see a partial file under a final name.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Iterator

import fsspec


class Storage:
    def __init__(self, url: str):
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def makedirs(self) -> None:
        self.fs.makedirs(self.root, exist_ok=True)

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name))

    def read_bytes(self, name: str) -> bytes:
        return self.fs.cat_file(self.path(name))

    def names(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        return sorted(p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False))

    def remove(self, name: str) -> None:
        if self.exists(name):
            self.fs.rm(self.path(name))

    @contextmanager
    def staged(self, name: str) -> Iterator[str]:
        """A local temporary path to write `name` to; published only if the block finishes."""
        directory = self.root if self.local else None
        if directory:
            os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        os.close(fd)
        try:
            yield tmp
            self._publish(tmp, name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.staged(name) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)

    def _publish(self, tmp: str, name: str) -> None:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if self.local:
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path(name))
            dir_fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the rename itself must survive a crash
            finally:
                os.close(dir_fd)
        else:
            self.fs.put_file(tmp, self.path(name))

    def clean_stale_temporaries(self) -> int:
        """Remove temporaries a killed writer left behind (local folders only)."""
        if not self.local:
            return 0
        stale = [n for n in self.names() if n.startswith(".") and n.endswith(".tmp")]
        for n in stale:
            self.remove(n)
        return len(stale)
