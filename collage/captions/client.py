"""Requests to an OpenAI-compatible server through the official `openai` client, bounded whatever it does.

- At most `concurrency` requests in flight (a semaphore, and a connection pool of that size).
- Every request ends in bounded time: an httpx timeout per connect/read/write, and a hard deadline
  around the whole call (a server that trickles bytes never trips a per-read timeout).
- Retries are ours (the client's own are off): bounded, with exponential backoff and jitter, honouring
  `Retry-After` / `retry-after-ms` (capped) — a 429 pauses every request, not only the one that got it.
- A circuit breaker: after BREAKER_THRESHOLD consecutive faults nothing is sent for a cool-down (5 s,
  doubling to 60 s); then one probe goes, and its answer closes or reopens the circuit. Requests wait
  for the probe rather than failing; when no request has succeeded for `give_up_after` seconds with the
  circuit open, ServerDown stops the pass (which resumes on a rerun) instead of waiting forever.
- The API key is only ever handed to the client; `redact` keeps it out of every message we record.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass

import openai

from ..errors import ServerDown

BREAKER_THRESHOLD = 5
COOLDOWN_FIRST, COOLDOWN_MAX = 5.0, 60.0
RETRY_AFTER_MAX = 60.0  # a Retry-After beyond this is taken as this (the pass must not stall on one header)
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 8.0
DEADLINE_GRACE = 1.0  # the hard deadline is the timeout plus this
FATAL_STATUS = (401, 403, 404)  # a wrong key, no access, no such model: every request would fail alike


@dataclass(frozen=True)
class Answer:
    content: str | None
    finish_reason: str | None


class ServerFault(Exception):
    """A request that failed after its retries (the sample keeps its template; `str` is recorded)."""


class ServerRefused(ServerDown):
    """The server refuses us as such (401/403/404): every request would fail alike."""


class CircuitBreaker:
    def __init__(self, give_up_after: float, clock=time.monotonic):
        self.give_up_after, self.clock = give_up_after, clock
        self.failures = 0  # consecutive
        self.open_until = 0.0
        self.cooldown = COOLDOWN_FIRST
        self.paused_until = 0.0  # a Retry-After for everyone
        self.probing = False
        self.failing_since: float | None = None
        self.opened = 0  # how often the circuit opened (for the summary)
        self.last_fault = ""
        self._changed = asyncio.Event()

    @property
    def is_open(self) -> bool:
        return self.open_until > 0

    async def acquire(self) -> bool:
        """Wait until a request may go; True if it goes as the circuit's probe. ServerDown when giving up."""
        while True:
            now = self.clock()
            if self.failing_since is not None and self.is_open and now - self.failing_since > self.give_up_after:
                raise ServerDown(f"no request has succeeded for {now - self.failing_since:.0f} s and the circuit is "
                                 f"open (last fault: {self.last_fault})")
            if now < self.paused_until:
                await self._wait(self.paused_until - now)
            elif not self.is_open:
                return False
            elif now >= self.open_until and not self.probing:
                self.probing = True
                return True
            else:  # open: wait for the cool-down to end or the probe to report
                await self._wait(max(0.05, self.open_until - now) if not self.probing else 1.0)

    async def _wait(self, seconds: float) -> None:
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout=min(seconds, 1.0))
        except asyncio.TimeoutError:
            pass

    def success(self, probe: bool) -> None:
        self.failures, self.open_until, self.cooldown, self.failing_since = 0, 0.0, COOLDOWN_FIRST, None
        if probe:
            self.probing = False
        self._changed.set()

    def failure(self, why: str, probe: bool) -> None:
        now = self.clock()
        self.failures += 1
        self.last_fault = why
        if self.failing_since is None:
            self.failing_since = now
        if probe or (not self.is_open and self.failures >= BREAKER_THRESHOLD):
            if probe:
                self.probing = False
                self.cooldown = min(COOLDOWN_MAX, self.cooldown * 2)
            self.open_until = now + self.cooldown
            self.opened += 1
        self._changed.set()

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self.clock() + min(seconds, RETRY_AFTER_MAX))
        self._changed.set()


def retry_after(exc: Exception) -> float | None:
    """Seconds the server asked us to wait (Retry-After in seconds or as a date, or retry-after-ms)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


class LLMClient:
    """One AsyncOpenAI client with the bounds above. Create and use it inside one event loop."""

    def __init__(self, base_url: str, model: str, api_key: str | None, concurrency: int, timeout: float,
                 max_retries: int, give_up_after: float):
        import httpx2

        self.model, self.timeout, self.max_retries = model, timeout, max_retries
        self._secret = api_key or ""  # only for redact: the key itself goes to the client alone
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        timeouts = openai.Timeout(timeout, connect=min(timeout, 10.0))
        self.client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "none", max_retries=0, timeout=timeouts,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeouts))
        self._raw = httpx2.Response
        self.slots = asyncio.Semaphore(concurrency)
        self.breaker = CircuitBreaker(give_up_after)
        self.requests = 0
        self.faults: dict[str, int] = {}
        self._jitter = random.Random()  # timing only: never decides bytes

    def redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    async def complete(self, messages, params: dict) -> Answer:
        """One answer, or ServerFault after the retries (ServerRefused / ServerDown stop the pass)."""
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempt - 1)) * self._jitter.uniform(0.5, 1.5))
            probe = False
            try:
                async with self.slots:  # the breaker is asked with a slot in hand: what it stops never goes
                    probe = await self.breaker.acquire()
                    self.requests += 1
                    # the client's post() rather than chat.completions.create(): the same request, auth, timeouts
                    # and status errors, without its recursive transform of the parameters and the pydantic
                    # model of the answer, which cost a third of our side's time per caption (bench/captions.py)
                    response = await asyncio.wait_for(
                        self.client.post("/chat/completions", cast_to=self._raw,
                                         body={"model": self.model, "messages": list(messages), **params}),
                        timeout=self.timeout + DEADLINE_GRACE)
                answer = _answer_of(response.json())
            except ServerDown:  # the breaker gave up (or the server refuses us): the pass stops
                raise
            except openai.RateLimitError as exc:
                wait = retry_after(exc)
                self.breaker.pause(wait if wait is not None else BACKOFF_FIRST * 2 ** attempt)
                last = self._fault("rate limited (429)" + (f", Retry-After {wait:g} s" if wait is not None else ""))
                if probe:
                    self.breaker.probing = False
                continue
            except openai.APIStatusError as exc:
                if exc.status_code in FATAL_STATUS:
                    raise ServerRefused(self.redact(f"the server refused the request: {exc.status_code} "
                                                    f"{_short(exc.message)}")) from None
                last = self._fault(f"HTTP {exc.status_code}: {_short(exc.message)}")
                if exc.status_code < 500 and exc.status_code not in (408, 409):
                    if probe:
                        self.breaker.probing = False
                    break  # this request is refused as such (e.g. 400): asking again gives the same
            except (openai.APITimeoutError, asyncio.TimeoutError):
                last = self._fault(f"no answer within {self.timeout:g} s")
            except openai.APIConnectionError as exc:
                last = self._fault(f"connection failed ({_short(str(exc.__cause__ or exc))})")
            except Exception as exc:  # noqa: BLE001  garbage bodies surface as UnicodeDecodeError, ValueError...
                last = self._fault(f"unreadable answer ({type(exc).__name__}: {_short(str(exc))})")
            else:
                self.breaker.success(probe)
                return answer
            self.breaker.failure(last, probe)
        raise ServerFault(last)

    def _fault(self, why: str) -> str:
        why = self.redact(why)
        kind = why.split(" (")[0].split(":")[0]
        self.faults[kind] = self.faults.get(kind, 0) + 1
        return why

    async def check(self) -> list[str]:
        """The model ids the server lists ([] if it lists none); ServerRefused / ServerFault if it cannot."""
        try:
            page = await asyncio.wait_for(self.client.models.list(), timeout=self.timeout + DEADLINE_GRACE)
            return [m.id for m in page.data]
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise ServerRefused(self.redact(f"the server refused the API key ({exc.status_code}); set "
                                                "OPENAI_API_KEY to a key it accepts")) from None
            return []  # servers without /models (404, 405...) can still answer chat requests
        except (openai.APITimeoutError, asyncio.TimeoutError):
            raise ServerFault(f"no answer within {self.timeout:g} s") from None
        except openai.APIConnectionError as exc:
            raise ServerFault(self.redact(_short(str(exc.__cause__ or exc)))) from None
        except Exception:  # noqa: BLE001  a listing we cannot read says nothing about chat requests
            return []

    async def aclose(self) -> None:
        await self.client.close()


def _answer_of(data) -> Answer:
    choice = data["choices"][0]  # no choices, or not this shape: an unreadable answer
    content, finish_reason = choice["message"].get("content"), choice.get("finish_reason")
    if not isinstance(content, (str, type(None))) or not isinstance(finish_reason, (str, type(None))):
        raise TypeError("the answer's content or finish_reason is not a string")
    return Answer(content=content, finish_reason=finish_reason)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
