"""Where a run's files go: a local folder, shared storage, or an object store (`s3://…`) through fsspec.

The commit step of a shard lives here alone: bytes are written to a local temporary file, fsynced, then
published under their final name (an atomic rename locally, one upload elsewhere). Readers therefore
never see a partial file under a final name.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from typing import Iterator

import fsspec

from .errors import StorageError, UserError

EPHEMERAL_PROTOCOLS = ("memory",)  # gone when the process ends: each Ray worker would write into its own
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"


def open_storage(url: str, what: str = "--out") -> "Storage":
    """A Storage for `url`, or one line saying what is wrong with it: checked before any work starts."""
    if not isinstance(url, str) or not url.strip():
        raise UserError(f"{what} {url!r}: give a folder path, or an object-store URL such as s3://bucket/prefix")
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    if protocol in EPHEMERAL_PROTOCOLS:
        raise UserError(f"{what} {url}: a {protocol}:// store does not outlive this process (its shards would be "
                        "lost when it ends); use a folder or an object store such as s3://bucket/prefix")
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise UserError(f"{what} {url}: unknown storage protocol {protocol!r}; use a folder path or a URL such as "
                        "s3://bucket/prefix") from None
    except ImportError as exc:
        raise UserError(f"{what} {url}: the {protocol}:// driver is not installed ({exc}); install it "
                        f"(e.g. pip install s3fs for s3://) or use a folder path") from None
    try:
        return Storage(url)
    except Exception as exc:  # a driver that cannot even be set up (bad credentials format, bad host)
        raise UserError(f"{what} {url}: cannot open this store ({type(exc).__name__}: {exc})") from None


def storage_error(exc: OSError, where: str) -> StorageError | None:
    """A disk-full / read-only / permission error as one StorageError naming the path; None for others."""
    if exc.errno not in FULL_OR_READ_ONLY:
        return None
    return StorageError(f"{exc.strerror or os.strerror(exc.errno)}: {exc.filename or where}")


@contextmanager
def refusals_as_storage_errors(where: str) -> Iterator[None]:
    """Inside: a disk-full / read-only / permission OSError leaves as one StorageError naming `where`."""
    try:
        yield
    except OSError as exc:
        refused = storage_error(exc, where)
        if refused is None:
            raise
        raise refused from None


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
        return sorted(self.listing())

    def listing(self) -> dict[str, int]:
        """{name: size in bytes} of the files directly in the run folder, from one listing."""
        if self.local:  # os.scandir: one syscall per entry instead of fsspec's per-file info dicts
            try:
                with os.scandir(self.root) as entries:
                    return {e.name: e.stat().st_size for e in entries if e.is_file(follow_symlinks=False)}
            except (FileNotFoundError, NotADirectoryError):
                return {}
        if not self.fs.exists(self.root):
            return {}
        return {info["name"].rstrip("/").rsplit("/", 1)[-1]: int(info.get("size") or 0)
                for info in self.fs.ls(self.root, detail=True) if info.get("type") != "directory"}

    def is_file(self) -> bool:
        """True when the run folder's own path is a file (not usable as a run folder)."""
        return self.fs.isfile(self.root)

    def remove(self, name: str) -> None:
        if self.exists(name):
            self.fs.rm(self.path(name))

    @contextmanager
    def staged(self, name: str) -> Iterator[str]:
        """A local temporary path to write `name` to; published only if the block finishes."""
        directory = self.root if self.local else None
        if directory:
            os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{name}.", suffix=TEMP_SUFFIX, dir=directory)
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

    def temporaries(self) -> list[str]:
        """Temporaries of unfinished writes in the run folder (local folders stage there; others locally)."""
        return sorted(n for n in self.listing() if n.startswith(TEMP_PREFIX) and n.endswith(TEMP_SUFFIX))

    def clean_stale_temporaries(self) -> int:
        """Remove temporaries a killed writer left behind. Only the run's lock holder may call this: another
        live writer's temporaries would be pulled from under it."""
        stale = self.temporaries() if self.local else []
        for n in stale:
            try:
                os.unlink(self.path(n))
            except FileNotFoundError:  # its writer finished or gave up meanwhile
                pass
        return len(stale)
