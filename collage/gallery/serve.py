"""`collage gallery --serve`: the built folder over HTTP on the loopback interface only."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002  (the base class's name)
        pass


def make_server(folder: str | Path, port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server for `folder` bound to 127.0.0.1 (port 0: any free port; see `server.server_address`)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    return ThreadingHTTPServer(("127.0.0.1", port), handler)
