"""Ctrl-C and SIGTERM as a clean stop: finished shards kept, temporaries removed, exit 130 / 143.

The handler raises at once, and also records the signal: a KeyboardInterrupt raised while Ray's C++ code
waits can be swallowed there (a Ctrl-C'd run once went on to finish, under load), so the runners call
`check()` between waits and stop on the record.
"""

from __future__ import annotations

import signal

from .errors import Terminated

received: list[int] = []


def _handler(signum, frame) -> None:
    received.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def install() -> None:
    """Called by the CLI's entry point (the main thread) before any work starts."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def check() -> None:
    """Raise the stop a signal asked for, if one came."""
    if received:
        raise Terminated() if signal.SIGTERM in received else KeyboardInterrupt()


def terminated() -> bool:
    return signal.SIGTERM in received
