"""One writer per run folder: an advisory lock that a dead process cannot hold forever.

Two mechanisms, because run folders live on local disks, on shared file systems and in object stores:

- a **flock** on `OUT/.collage.lock` (local and shared folders): the kernel drops it the moment its holder
  dies, however it dies, so a `kill -9` never leaves a folder locked;
- a **lease** (the same file's content, or the object `.collage.lock` in a store): who holds it (host, pid,
  start) and a heartbeat the holder renews every HEARTBEAT_SECONDS. Where flock does not reach across hosts
  (some shared file systems, every object store) a lease younger than LEASE_SECONDS keeps other hosts out;
  an older one, or one whose holder on this host is gone, is stale and taken over.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid

from .errors import UserError
from .storage import Storage

LOCK_NAME = ".collage.lock"
HEARTBEAT_SECONDS = 10.0
LEASE_SECONDS = 60.0  # six missed heartbeats: the holder is gone (or cut off from the store)


class RunLock:
    """`with RunLock(storage, what="collage generate"):` — refuses (UserError) while another writer holds OUT."""

    def __init__(self, storage: Storage, what: str = "a collage run"):
        self.storage, self.what = storage, what
        self.token = uuid.uuid4().hex
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._created_root = False
        self._started = time.time()

    # --- acquire / release ----------------------------------------------------------------------

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if self.storage.local:
            self._acquire_flock()
        holder = self._read_lease()
        if holder and holder.get("token") != self.token and not self._stale(holder):
            self._close_flock()
            raise UserError(self._held_message(holder))
        self._write_lease()
        if not self.storage.local:  # no flock to arbitrate: the last lease written wins, the other backs off
            time.sleep(0.2)
            holder = self._read_lease()
            if holder and holder.get("token") != self.token:
                raise UserError(self._held_message(holder))
        self._thread = threading.Thread(target=self._heartbeat, name="collage-run-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            holder = self._read_lease()
            if holder is None or holder.get("token") == self.token:
                self.storage.remove(LOCK_NAME)  # still under our flock: nobody else can be inside
        except OSError:
            pass  # the folder went away or turned read-only: the flock still ends with the process
        self._close_flock()
        if self._created_root and self.storage.local:
            try:
                os.rmdir(self.storage.root)  # we made an empty folder for a run that never started
            except OSError:
                pass

    # --- flock (local and shared folders) ---------------------------------------------------------

    def _acquire_flock(self) -> None:
        root = self.storage.root
        if not os.path.isdir(root):
            self._created_root = not os.path.exists(root)
            os.makedirs(root, exist_ok=True)
        path = self.storage.path(LOCK_NAME)
        for _ in range(10):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UserError(self._held_message(self._read_lease() or {})) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)  # its holder removed the file as we opened it: lock the new one
        raise UserError(f"{self.storage.url}: cannot take the run lock {LOCK_NAME} (it keeps changing); retry")

    def _close_flock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- the lease ------------------------------------------------------------------------------

    def _lease(self) -> bytes:
        return json.dumps({"token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                           "what": self.what, "started": self._started, "heartbeat": time.time()}).encode()

    def _write_lease(self) -> None:
        data = self._lease()
        if self._fd is not None:  # rewritten in place: the file is the flock's, it must keep its inode
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
            os.fsync(self._fd)
        else:
            self.storage.write_bytes(LOCK_NAME, data)

    def _read_lease(self) -> dict | None:
        try:
            data = os.pread(self._fd, 4096, 0) if self._fd is not None else self.storage.read_bytes(LOCK_NAME)
        except (FileNotFoundError, OSError):
            return None
        try:
            lease = json.loads(data)
        except ValueError:
            return None  # empty or torn: the flock (where there is one) already settled who holds it
        return lease if isinstance(lease, dict) else None

    def _stale(self, lease: dict) -> bool:
        if lease.get("host") == socket.gethostname() and isinstance(lease.get("pid"), int):
            if self._fd is not None:
                return True  # we hold the flock, so its holder on this host is gone
            return not pid_alive(lease["pid"])
        heartbeat = lease.get("heartbeat")
        return not isinstance(heartbeat, (int, float)) or time.time() - heartbeat > LEASE_SECONDS

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._write_lease()
            except OSError:
                pass  # a full disk must not kill the lock; the flock holds, the lease ages

    def _held_message(self, holder: dict) -> str:
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        since = holder.get("started")
        when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else ""
        return (f"{self.storage.url} is being written by another run ({holder.get('what', 'collage')}, {who}{when}); "
                "wait for it to finish or stop it, or use another --out (one writer per run folder)")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_holder(storage: Storage) -> dict | None:
    """The lease of a writer that holds `storage` now, or None (a lock file left by a dead one is not a holder)."""
    probe = RunLock(storage)
    try:
        if storage.local:
            path = storage.path(LOCK_NAME)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    probe._fd = fd
                    return probe._read_lease() or {}
                probe._fd = fd
                lease = probe._read_lease()  # nobody on this host holds it: only another host's fresh lease counts
                return lease if lease and not probe._stale(lease) else None
            finally:
                probe._fd = None
                os.close(fd)
        lease = probe._read_lease()
        return lease if lease and not probe._stale(lease) else None
    except OSError:
        return None
