"""One sample's json in, its caption out: ask (or replay from the cache), clean, guard; retry; else the template.

`Captioner` runs its own event loop in a background thread, so a caller that is not async — a shard being
rewritten, or a generate worker still drawing the next samples — submits metas and collects outcomes.
Both `collage caption` and inline captioning (`collage generate --caption-…`) go through `Captioner`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import Counter
from dataclasses import dataclass

from .cache import AnswerCache, request_key
from .client import LLMClient, ServerFault
from .guard import check
from .prompt import Refused, build_request, clean_answer, retry_request
from .settings import CaptionConfig, CaptionRuntime

KINDS = ("refined", "cache", "rejected", "failed", "skipped")  # outcome counts, in summary order


@dataclass(frozen=True)
class Outcome:
    caption: str
    source: str  # caption_source: llm | cache | template
    error: str | None  # caption_error: why the template was kept after asking
    kind: str  # one of KINDS


def request_seed(sample_seed: int, attempt: int) -> int:
    """Per sample and attempt: samples with the same template get different rewrites, re-asks new ones."""
    return (int(sample_seed) * 1_000_003 + attempt * 7_919) % 2**31


def apply_outcome(meta: dict, outcome: Outcome) -> dict:
    """The sample's json with the outcome's caption (caption_error only when the template was kept after asking)."""
    meta = dict(meta)
    meta["caption"], meta["caption_source"] = outcome.caption, outcome.source
    meta.pop("caption_error", None)
    if outcome.error:
        meta["caption_error"] = outcome.error
    return meta


class Captioner:
    def __init__(self, config: CaptionConfig, runtime: CaptionRuntime, pass_id: str):
        self.config, self.runtime, self.pass_id = config, runtime, pass_id
        self.cache = AnswerCache(runtime.cache_path())
        self.live = Counter({k: 0 for k in KINDS})  # outcomes so far (for progress)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="captioner", daemon=True)
        self._thread.start()
        self.client: LLMClient = self._run(self._make_client())

    async def _make_client(self) -> LLMClient:
        r = self.runtime
        return LLMClient(r.base_url, self.config.model, r.api_key(), r.concurrency, r.timeout, self.config.max_retries,
                         r.give_up_after)

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def check_server(self) -> list[str]:
        """The models the server lists; raises ServerFault / ServerRefused (see client.check)."""
        return self._run(self.client.check())

    def submit(self, meta: dict) -> concurrent.futures.Future:
        """A future of the sample's Outcome (ServerDown / ServerRefused propagate through it)."""
        return asyncio.run_coroutine_threadsafe(self.refine(meta), self.loop)

    async def refine(self, meta: dict) -> Outcome:
        outcome = await self._refine(meta)
        self.live[outcome.kind] += 1  # the event loop's thread alone writes it
        return outcome

    async def _refine(self, meta: dict) -> Outcome:
        template = meta["prompt"]
        if meta.get("task") not in self.config.tasks:
            return Outcome(template, "template", None, "skipped")
        first = request = build_request(template)
        why, content = "", None
        for attempt in range(self.config.max_retries + 1):
            if attempt:  # a re-ask carries the refused answer and the reason (see prompt.retry_request)
                request = retry_request(first, content, why.split(": ", 1)[1])
            params = {"temperature": self.config.temperature, "max_tokens": self.config.max_tokens,
                      "seed": request_seed(meta.get("seed", 0), attempt)}
            key = request_key(self.config.model, request.messages, params, self.config.prompt_version)
            hit = self.cache.get(key)
            if hit is not None:
                content, finish_reason, made_for = hit
                source = "llm" if made_for == self.pass_id else "cache"
            else:
                try:
                    answer = await self.client.complete(request.messages, params)
                except ServerFault as exc:
                    return Outcome(template, "template", f"server: {exc}", "failed")
                content, finish_reason, source = answer.content, answer.finish_reason, "llm"
                self.cache.put(key, content, finish_reason, self.pass_id)
            try:
                caption = clean_answer(content, finish_reason, request)
            except Refused as exc:
                why = f"answer: {exc}"
                continue
            problems = check(meta, caption)
            if problems:
                why = "guard: " + "; ".join(problems)
                continue
            return Outcome(caption, source, None, "refined" if source == "llm" else "cache")
        return Outcome(template, "template", self.client.redact(why), "rejected")

    @property
    def asked(self) -> int:
        """Samples asked about so far (outcomes other than skipped)."""
        return sum(v for k, v in self.live.items() if k != "skipped")

    def cancel_all(self) -> None:
        """End every request in flight now (an interrupt): their futures raise CancelledError."""
        def cancel():
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
        self.loop.call_soon_threadsafe(cancel)

    def stats(self) -> dict:
        breaker = self.client.breaker
        return {"requests": self.client.requests, "faults": dict(sorted(self.client.faults.items())),
                "circuit_opened": breaker.opened}

    def close(self) -> None:
        try:
            self._run(self.client.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.cache.close()
