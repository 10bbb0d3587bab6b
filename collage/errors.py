"""Errors that carry a one-line message for the user (no traceback)."""


class UserError(Exception):
    """A user mistake: the CLI prints `error: <message>` and exits with code 2."""


class Reject(Exception):
    """A generator drew a scene that breaks its own label rules; the sample is redrawn (not a failure)."""


class StorageError(Exception):
    """The run's storage refused a write (disk full, read-only, no permission): the run stops with one line."""


class ServerDown(Exception):
    """The caption server failed every request for a while, or refuses us as such: the run stops with one
    line (exit 1); finished shards are kept and a rerun resumes."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (finished shards kept, temporaries removed), exit code 143."""
