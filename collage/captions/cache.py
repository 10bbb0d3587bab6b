"""The persistent answer cache: reruns and resumes never pay twice for an answer, and replay the same bytes.

One SQLite file (WAL, so several worker processes of one machine can share it). Key: sha256 of (model,
messages, generation parameters, prompt version) — the messages hold the template text and the system
prompt, and the parameters the per-sample seed, so two samples never share an answer by accident. Every
answer the server gave is kept, refused ones too (a replay must refuse them the same way); server faults
are not. Each entry remembers the caption pass that asked for it (see settings.pass_id). No API key, URL or
other secret is stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from ..errors import UserError

SCHEMA = """CREATE TABLE IF NOT EXISTS answers (
  key TEXT PRIMARY KEY, content TEXT, finish_reason TEXT, made_for TEXT NOT NULL)"""


def request_key(model: str, messages, params: dict, prompt_version: str) -> str:
    canonical = json.dumps({"model": model, "messages": list(messages), "params": params, "prompt": prompt_version},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class AnswerCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a committed answer survives kill -9 (the OS has it)
            self._db.execute(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"--cache {self.path.parent}: cannot open the caption cache there ({exc}); pass a "
                            "writable folder with --cache") from None
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[str | None, str | None, str] | None:
        """(content, finish_reason, made_for) or None."""
        with self._lock:
            row = self._db.execute("SELECT content, finish_reason, made_for FROM answers WHERE key = ?",
                                   (key,)).fetchone()
        return tuple(row) if row else None

    def put(self, key: str, content: str | None, finish_reason: str | None, made_for: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?)",
                             (key, content, finish_reason, made_for))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
