"""Where a run's files go: a local folder, shared storage, or an object store (`s3://…`) through fsspec.

The commit step of a shard lives here alone: bytes are written to a local temporary file, fsynced, then
published under their final name (an atomic rename locally, one upload elsewhere). Readers therefore
never see a partial file under a final name.
"""

from __future__ import annotations

import errno
import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import fsspec

from .errors import StorageError, UserError

EPHEMERAL_PROTOCOLS = ("memory",)  # gone when the process ends: each Ray worker would write into its own
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"


def open_storage(url: str, what: str = "--out", write: bool = True) -> "Storage":
    """A Storage for `url`, or one line saying what is wrong with it: checked before any work starts.

    An object store is probed here (within seconds, see PROBE_OPTIONS): its prefix listed and, for an
    output (`write`), a small probe object written and deleted, so an unreachable endpoint, a missing
    bucket, absent credentials or a read-only bucket is one line before any Ray start."""
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
        storage = Storage(url)
    except Exception as exc:  # a driver that cannot even be set up (bad credentials format, bad host)
        raise UserError(f"{what} {url}: cannot open this store ({type(exc).__name__}: {exc})") from None
    if not storage.local:
        probe_store(storage, what, write)
    return storage


def is_remote(location: str | os.PathLike) -> bool:
    """True for an fsspec URL other than file:// (s3://bucket/prefix, gs://…), False for a local path."""
    protocol = fsspec.core.split_protocol(str(location))[0]
    return protocol not in (None, "file", "local")


def as_path(location: str | os.PathLike, what: str = "source", probe: bool = True) -> Path:
    """A path object for a local path or an object-store URL, for readers that walk folders: pathlib's for
    a local one; universal_pathlib's UPath (pathlib's methods over the store's fsspec driver) for a store,
    whose prefix is first probed for reading (`open_storage`, unless `probe` is False: a path found by an
    earlier probe) so a store fault is one line, not a traceback."""
    if not is_remote(location):
        return Path(str(location).removeprefix("file://"))
    if probe:
        open_storage(str(location), what, write=False)
    from upath import UPath

    return UPath(str(location))


# Only for the probe: a store that does not answer must fail in seconds, not after minutes of retries.
PROBE_OPTIONS = {"s3": {"config_kwargs": {"connect_timeout": 5, "read_timeout": 15,
                                          "retries": {"max_attempts": 1, "mode": "standard"}}}}
CREDENTIALS_HINT = {"s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); for a server other "
                          "than AWS also AWS_ENDPOINT_URL"}


def probe_store(storage: "Storage", what: str, write: bool) -> None:
    """List the store's prefix (and, for `write`, put and delete a probe object): UserError on any refusal."""
    protocol = storage.protocol
    fs = storage.fs
    if protocol in PROBE_OPTIONS:
        fs = fsspec.filesystem(protocol, skip_instance_cache=True, **{**storage.fs.storage_options,
                                                                      **PROBE_OPTIONS[protocol]})
        if hasattr(fs, "retries"):
            fs.retries = 1  # s3fs retries some errors itself (5 times by default)
    root = storage.root.rstrip("/")
    bucket = root.split("/", 1)[0]
    step = "listing"
    try:
        if protocol == "s3":  # one listing call: a missing bucket differs from an empty (new) prefix
            key = root.split("/", 1)[1] + "/" if "/" in root else ""
            fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=key, MaxKeys=1)
        elif fs.exists(root):
            fs.ls(root)
        if write:
            step = "writing"
            probe = f"{root}/{TEMP_PREFIX}collage-probe-{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"
            fs.pipe_file(probe, b"")
            step = "deleting"
            fs.rm_file(probe)
    except Exception as exc:
        raise UserError(f"{what} {storage.url}: {_store_refusal(exc, protocol, bucket, step)}") from None


def _store_refusal(exc: Exception, protocol: str, bucket: str, step: str) -> str:
    name = type(exc).__name__
    text = str(exc).splitlines()[0][:200] if str(exc) else name
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return f"no credentials for the store ({text}); {CREDENTIALS_HINT.get(protocol, 'configure them')}"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
                "ProxyConnectionError", "SSLError") or isinstance(exc, (ConnectionError, TimeoutError)):
        return (f"cannot reach the store ({text}); check the endpoint"
                + (" (AWS_ENDPOINT_URL)" if protocol == "s3" else "") + " and the network")
    if isinstance(exc, FileNotFoundError) and step == "listing":
        return f"bucket {bucket!r} does not exist (or these credentials cannot see it); create it first"
    if isinstance(exc, PermissionError):
        if step == "listing":
            return f"access denied listing it ({text}); these credentials cannot read this bucket/prefix"
        return (f"not writable with these credentials ({step} a probe object was refused: {text}); "
                "use credentials that may write there, or another --out")
    return f"cannot use this store ({step} failed: {name}: {text})"


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
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.protocol = protocols[0]
        self.local = "file" in protocols

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def makedirs(self) -> None:
        self.fs.makedirs(self.root, exist_ok=True)

    def _fresh(self) -> None:
        """Other processes (Ray workers, another writer) change a store: never answer from a cached listing."""
        if not self.local:
            self.fs.invalidate_cache()

    def exists(self, name: str) -> bool:
        self._fresh()
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
        self._fresh()
        if not self.fs.exists(self.root):
            return {}
        return {info["name"].rstrip("/").rsplit("/", 1)[-1]: int(info.get("size") or 0)
                for info in self.fs.ls(self.root, detail=True) if info.get("type") != "directory"}

    def is_file(self) -> bool:
        """True when the run folder's own path is a file (not usable as a run folder)."""
        self._fresh()
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
