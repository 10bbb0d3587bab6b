"""Shut a local Ray instance down when its driver dies without doing so itself (kill -9, OOM killer).

Ray's own processes outlive a killed driver for a minute or two (GCS, raylet, agents, and the workers,
still writing shards). The watchdog is a small process of its own session: it learns the driver's
descendants every second and, when the driver is gone, ends them. The driver's death is seen at once:
the pipe the driver holds open hits end-of-file however the driver died. A clean exit says `done` first.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

POLL_SECONDS = 1.0
GRACE_SECONDS = 3.0  # between SIGTERM and SIGKILL


class Watchdog:
    def __init__(self, process: subprocess.Popen):
        self.process = process

    def stand_down(self) -> None:
        """The driver shut Ray down itself: the watchdog leaves without touching anything."""
        try:
            self.process.stdin.write(b"done\n")
            self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.process.kill()


def start_watchdog() -> Watchdog | None:
    try:
        process = subprocess.Popen([sys.executable, "-m", "collage.watchdog", str(os.getpid())],
                                   stdin=subprocess.PIPE, start_new_session=True)
    except OSError:
        return None  # no watchdog is no reason to refuse a run
    return Watchdog(process)


def _descendants(pid: int) -> dict[int, float]:
    import psutil

    try:
        return {p.pid: p.create_time() for p in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return {}


def _end(known: dict[int, float]) -> None:
    import psutil

    alive = []
    for pid, created in known.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == created:  # not a new process that reuses the number
                process.terminate()
                alive.append(process)
        except psutil.Error:
            pass
    _, survivors = psutil.wait_procs(alive, timeout=GRACE_SECONDS)
    for process in survivors:
        try:
            process.kill()
        except psutil.Error:
            pass


def _alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


def main(driver: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    me = os.getpid()
    known: dict[int, float] = {}
    while True:
        readable, _, _ = select.select([sys.stdin.buffer], [], [], POLL_SECONDS)
        if readable:
            line = sys.stdin.buffer.readline()
            if line.strip() == b"done":
                return 0
            if not line:  # end of file: the driver is gone
                break
        current = _descendants(driver)
        if not current and not _alive(driver):
            break
        current.pop(me, None)
        known.update(current)
    time.sleep(0.2)  # let Ray's own exit path (if any) start first
    _end(known)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
