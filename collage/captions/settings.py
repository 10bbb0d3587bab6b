"""What a caption pass is (identity: it decides the bytes) and how it runs (server, concurrency, timeouts).

`CaptionConfig` goes into `OUT/captions.json` and, for inline captioning, into the run config: two passes
with the same config over the same samples, served by the same answers (the cache), write the same bytes.
`CaptionRuntime` holds where and how requests go; it is never written anywhere (the API key lives only
in the environment, `OPENAI_API_KEY`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UserError
from .prompt import PROMPT_VERSION

TASKS = ("t2i", "edit", "drag", "inpaint", "reference", "segdet")


@dataclass(frozen=True)
class CaptionConfig:
    model: str
    temperature: float = 0.7
    max_tokens: int = 256
    max_retries: int = 2  # re-asks after a refused or guarded-out answer, and retries after a server fault
    tasks: tuple[str, ...] = TASKS
    prompt_version: str = PROMPT_VERSION

    def to_json(self) -> dict:
        data = asdict(self)
        data["tasks"] = list(self.tasks)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "CaptionConfig":
        data = dict(data)
        data["tasks"] = tuple(data.get("tasks", TASKS))
        return cls(**data)

    def digest(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def pass_id(run_digest: str, config: CaptionConfig) -> str:
    """One caption pass = one run's samples under one caption config. The cache remembers which pass asked
    for an answer: a hit asked by this pass (before an interruption) is `llm`, one asked by another pass is
    `cache`, so a resumed pass writes the same bytes as an uninterrupted one."""
    return f"{run_digest}:{config.digest()}"


@dataclass
class CaptionRuntime:
    base_url: str
    concurrency: int = 32
    timeout: float = 30.0  # seconds per request, whatever the server does
    cache_dir: str | None = None
    give_up_after: float = 120.0  # seconds with the circuit open and no success: the pass stops (resumable)
    workers: int | None = None  # processes of a `collage caption` pass (None: run.auto_workers)

    @staticmethod
    def api_key() -> str | None:
        """Read where it is used, from the environment: never a field, so never pickled, logged or written."""
        return os.environ.get("OPENAI_API_KEY") or None

    def cache_path(self) -> Path:
        root = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        return root / "captions.sqlite"


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "collage" / "captions"


def parse_tasks(text: str | None) -> tuple[str, ...]:
    if not text:
        return TASKS
    tasks = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise UserError(f"--tasks {text!r}: unknown task {', '.join(unknown) or '(none given)'}; choose from "
                        f"{', '.join(TASKS)}")
    return tasks


def make_caption_settings(base_url: str | None, model: str | None, concurrency: int = 32, timeout: float = 30.0,
                          max_retries: int = 2, temperature: float = 0.7, tasks: str | None = None,
                          cache_dir: str | None = None, max_tokens: int = 256, give_up_after: float = 120.0,
                          flag: str = "--") -> tuple[CaptionConfig, CaptionRuntime]:
    """Config and runtime from flags, falling back to OPENAI_BASE_URL; one line for what is missing or wrong."""
    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    if not base_url:
        raise UserError(f"{flag}base-url: give the server's URL (e.g. http://127.0.0.1:8000/v1) or set OPENAI_BASE_URL")
    if not base_url.startswith(("http://", "https://")):
        raise UserError(f"{flag}base-url {base_url!r}: not an http(s) URL; give e.g. http://127.0.0.1:8000/v1")
    if not model or not model.strip():
        raise UserError(f"{flag}model: give the model name the server serves (e.g. the one `GET /v1/models` lists)")
    for name, value, low, high in (("concurrency", concurrency, 1, 4096), ("timeout", timeout, 0.1, 3600),
                                   ("max-retries", max_retries, 0, 20), ("temperature", temperature, 0.0, 2.0),
                                   ("max-tokens", max_tokens, 16, 8192), ("give-up-after", give_up_after, 1, 86400)):
        if not low <= value <= high:
            raise UserError(f"{flag}{name} {value}: must be between {low} and {high}")
    config = CaptionConfig(model=model.strip(), temperature=float(temperature), max_tokens=int(max_tokens),
                           max_retries=int(max_retries), tasks=parse_tasks(tasks))
    runtime = CaptionRuntime(base_url=base_url.rstrip("/"), concurrency=int(concurrency), timeout=float(timeout),
                             cache_dir=cache_dir, give_up_after=float(give_up_after))
    return config, runtime
