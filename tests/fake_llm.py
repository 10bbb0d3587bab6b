"""A fault-injecting, OpenAI-compatible chat-completions server for tests and benchmarks (stdlib only).

Run it as its own process::

    python tests/fake_llm.py --port 0 --plan PLAN.json [--latency 0.0] [--port-file F]

It prints ``LISTENING <port>`` on stdout once it accepts connections (and writes the port to ``--port-file``).
From tests, ``start_server(plan, latency, tmp_path)`` launches it and returns ``(process, base_url)``;
``stop_server(process)`` ends it; ``server_stats(base_url)`` / ``reset_server(base_url)`` read / clear its stats.

It is plain asyncio streams, HTTP/1.1 with keep-alive (Content-Length or chunked request bodies, no pipelining),
so one process serves hundreds of concurrent requests; every wait (latency, hang, trickle) is an asyncio sleep
that gives up as soon as the client disconnects.

Endpoints: ``GET /v1/models``, ``GET /v1/models/<id>``, ``POST /v1/chat/completions``, ``GET /stats``,
``POST /reset`` (the last two also under ``/v1/``).  Every chat answer carries an ``X-Fake-Behaviour`` header.

Plan (a JSON object; every key optional)::

    {"first": {"faithful": 0.8, "http500": 0.2},   # weights for try 0 of a request body (default faithful)
     "retry": {"faithful": 1},                       # weights for tries >= 1 (default: same as "first")
     "by_content": {"drag": "hang"},                 # user text contains the key -> that behaviour, every try
     "retry_after": 1,                               # Retry-After of http429
     "hang_seconds": 60,                             # how long `hang` waits before answering faithfully
     "seed": 0}                                      # mixes into the draw

A weight table may also be a single behaviour name (``"retry": "faithful"``).  The try number counts requests
with the same body digest (sha256 of canonical JSON of model, messages, seed, temperature); the behaviour is
drawn from ``sha256(seed | digest | try)`` -> uniform [0, 1) -> cumulative weights over the behaviour names in
sorted order, so two processes with the same plan answer the same request sequence the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BEHAVIOURS = (
    "faithful", "wrong", "think", "echo_system", "foreign", "empty", "length",
    "http429", "http500", "hang", "garbage", "close", "slow_stream",
)

MODEL_ID = "fake-model"
RETRY_PREFIX = "That rewrite is not faithful"
OPENERS = ("Picture this: ", "Imagine this: ", "Scene: ", "In this image: ")
THINK = "<think>The user wants the caption rewritten. I must keep every placeholder and quoted string.</think>\n"
FOREIGN = (
    "Une image avec un chat rouge sur une table en bois, très jolie.",
    "Ein Bild mit einem roten Auto vor einem alten Haus, sehr schön.",
    "Une photo d'un chien qui court dans un parc ensoleillé.",
    "Ein kleiner Hund sitzt neben einer blauen Tasse auf dem Tisch.",
)
LENGTH_WORDS = ("and", "then", "the", "scene", "goes", "on", "with", "more", "details", "about", "everything",
                "that", "can", "be", "seen", "in", "it")
GARBAGE = b"\xff\xfe<html>oops</html>"
TRICKLE_SECONDS = 0.5

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray")
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
SIDES = {"left": "right", "right": "left", "above": "below", "below": "above"}
_COLOUR_RE = re.compile(r"\b(" + "|".join(COLOURS + ("grey",)) + r")\b", re.IGNORECASE)
_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)
_DIGITS_RE = re.compile(r"\b\d+\b")
_SIDE_RE = re.compile(r"\b(left|right|above|below)\b", re.IGNORECASE)
_PLACEHOLDER_RE = re.compile(r"\[[A-Z]+\d+\]")


# ----------------------------------------------------------------------------------------------- texts


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _same_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def opener_for(text: str) -> str:
    """The neutral opener `faithful` (and `wrong`) put before `text`, chosen by hash of the text."""
    return OPENERS[_h(text) % len(OPENERS)]


def _with_opener(body: str, key: str) -> str:
    if body.startswith(("A ", "An ", "The ")):
        body = body[0].lower() + body[1:]
    return opener_for(key) + body


def faithful_text(text: str) -> str:
    """Opener + the text, with a leading "A "/"An "/"The " lowercased; everything else byte-for-byte."""
    return _with_opener(text, text)


def wrong_text(text: str) -> str:
    """The faithful answer with ONE wrong fact: a colour, else a number, else left/right or above/below, else a
    dropped placeholder, else an appended purple elephant."""
    m = _COLOUR_RE.search(text)
    if m:
        old = m.group(1).lower()
        old = "gray" if old == "grey" else old
        new = COLOURS[(COLOURS.index(old) + 1) % len(COLOURS)]
        out = text[:m.start()] + _same_case(new, m.group(1)) + text[m.end():]
        return _with_opener(out, text)
    m = _NUMBER_WORD_RE.search(text)
    if m:
        old = m.group(1).lower()
        new = NUMBER_WORDS[(NUMBER_WORDS.index(old) + 1) % len(NUMBER_WORDS)]
        out = text[:m.start()] + _same_case(new, m.group(1)) + text[m.end():]
        return _with_opener(out, text)
    m = _DIGITS_RE.search(text)
    if m:
        out = text[:m.start()] + str(int(m.group(0)) + 1) + text[m.end():]
        return _with_opener(out, text)
    m = _SIDE_RE.search(text)
    if m:
        out = text[:m.start()] + _same_case(SIDES[m.group(1).lower()], m.group(1)) + text[m.end():]
        return _with_opener(out, text)
    m = _PLACEHOLDER_RE.search(text)
    if m:
        start, end = m.start(), m.end()
        if start > 0 and text[start - 1] == " ":
            start -= 1
        elif end < len(text) and text[end] == " ":
            end += 1
        return _with_opener(text[:start] + text[end:], text)
    return _with_opener(text + " There is also a purple elephant.", text)


def think_text(text: str) -> str:
    return THINK + faithful_text(text)


def foreign_text(text: str) -> str:
    return FOREIGN[_h(text) % len(FOREIGN)]


def length_text(n_words: int) -> str:
    return " ".join(LENGTH_WORDS[i % len(LENGTH_WORDS)] for i in range(max(1, n_words)))


# ----------------------------------------------------------------------------------------------- plan


def _weights(table, name: str) -> dict:
    if isinstance(table, str):
        table = {table: 1}
    if not isinstance(table, dict) or not table:
        raise ValueError(f"plan[{name!r}] must be a behaviour name or a non-empty {{behaviour: weight}}")
    out = {}
    for b, w in table.items():
        if b not in BEHAVIOURS:
            raise ValueError(f"plan[{name!r}]: unknown behaviour {b!r} (known: {', '.join(BEHAVIOURS)})")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
            raise ValueError(f"plan[{name!r}][{b!r}]: weight must be a number >= 0, got {w!r}")
        out[b] = float(w)
    if sum(out.values()) <= 0:
        raise ValueError(f"plan[{name!r}]: weights sum to 0")
    return dict(sorted(out.items()))


def normalize_plan(plan: dict | None) -> dict:
    """The plan with defaults filled in and checked; ValueError on a bad one."""
    plan = dict(plan or {})
    unknown = set(plan) - {"first", "retry", "by_content", "retry_after", "hang_seconds", "seed"}
    if unknown:
        raise ValueError(f"plan: unknown keys {sorted(unknown)}")
    first = _weights(plan.get("first", {"faithful": 1}), "first")
    retry = _weights(plan["retry"], "retry") if plan.get("retry") is not None else first
    by_content = plan.get("by_content") or {}
    if not isinstance(by_content, dict):
        raise ValueError("plan['by_content'] must be {substring: behaviour}")
    for sub, b in by_content.items():
        if b not in BEHAVIOURS:
            raise ValueError(f"plan['by_content'][{sub!r}]: unknown behaviour {b!r}")
    return {
        "first": first,
        "retry": retry,
        "by_content": dict(by_content),
        "retry_after": plan.get("retry_after", 1),
        "hang_seconds": float(plan.get("hang_seconds", 60)),
        "seed": plan.get("seed", 0),
    }


def body_digest(body: dict) -> str:
    """sha256 of the canonical JSON of the fields that make two requests "the same request"."""
    key = {k: body.get(k) for k in ("model", "messages", "seed", "temperature")}
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def draw(weights: dict, digest: str, try_n: int, seed) -> str:
    """Deterministic pick from `weights` for (digest, try number, plan seed)."""
    u = _h(f"{seed}|{digest}|{try_n}") / 2.0**64
    total = sum(weights.values())
    acc = 0.0
    last = None
    for b, w in weights.items():
        if w <= 0:
            continue
        last = b
        acc += w / total
        if u < acc:
            return b
    return last


def choose_behaviour(plan: dict, digest: str, try_n: int, user_text: str) -> str:
    """by_content first (plan order), else a draw from "first" (try 0) or "retry" (tries >= 1)."""
    for sub, b in plan["by_content"].items():
        if sub in user_text:
            return b
    return draw(plan["first"] if try_n == 0 else plan["retry"], digest, try_n, plan["seed"])


# ----------------------------------------------------------------------------------------------- HTTP


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _message_text(messages, roles) -> tuple[str, ...]:
    return tuple(_content_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") in roles)


def _words(s: str) -> int:
    return len(s.split())


def _error_body(message: str, type_: str, code) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


class _Request:
    __slots__ = ("method", "path", "version", "headers", "body")

    def __init__(self, method, path, version, headers, body):
        self.method, self.path, self.version, self.headers, self.body = method, path, version, headers, body

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


class _BadRequest(Exception):
    pass


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """One request off the connection; None on a clean EOF between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise _BadRequest("truncated request head") from None
    except asyncio.LimitOverrunError:
        raise _BadRequest("request head too large") from None
    lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise _BadRequest(f"bad request line {lines[0]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        try:
            n = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequest("bad Content-Length") from None
        body = await reader.readexactly(n) if n > 0 else b""
    return _Request(method.upper(), target.split("?", 1)[0], version.strip().upper(), headers, body)


def _head(status: int, headers: dict, length: int, keep_alive: bool) -> bytes:
    phrase = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else "Unknown"
    out = [f"HTTP/1.1 {status} {phrase}"]
    h = {"Content-Type": "application/json", "Content-Length": str(length),
         "Connection": "keep-alive" if keep_alive else "close"}
    h.update(headers)
    out += [f"{k}: {v}" for k, v in h.items()]
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


class FakeLLM:
    """The server state: plan, per-body try counters, stats.  `handle` is the asyncio.start_server callback."""

    def __init__(self, plan: dict | None = None, latency: float = 0.0):
        self.plan = normalize_plan(plan)
        self.latency = float(latency)
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        self.tries: dict[str, int] = {}
        self.chat_requests = 0
        self.behaviours: dict[str, int] = {}
        self.sequence: list[str] = []
        self.arrivals: list[float] = []
        self.max_in_flight = self.in_flight
        self.auth_seen = False
        self.other_requests = 0

    def stats(self) -> dict:
        return {
            "chat_requests": self.chat_requests,
            "behaviours": dict(self.behaviours),
            "sequence": list(self.sequence),
            "arrivals": list(self.arrivals),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "auth_seen": self.auth_seen,
            "distinct_bodies": len(self.tries),
            "other_requests": self.other_requests,
            "latency": self.latency,
            "plan": self.plan,
        }

    # -- connection loop

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    req = await _read_request(reader)
                except _BadRequest as e:
                    body = _error_body(str(e), "invalid_request_error", "bad_request")
                    writer.write(_head(400, {}, len(body), False) + body)
                    await writer.drain()
                    break
                if req is None:
                    break
                if not await self.dispatch(req, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _send(self, writer, status: int, body: bytes, keep: bool, headers: dict | None = None) -> bool:
        writer.write(_head(status, headers or {}, len(body), keep) + body)
        await writer.drain()
        return keep

    async def _wait(self, reader: asyncio.StreamReader, seconds: float) -> str:
        """Sleep `seconds` unless the client goes away first: "ok", "gone" (EOF/reset) or "data" (pipelined
        bytes arrived, which this server does not support: the connection closes after this answer)."""
        if seconds <= 0:
            return "ok"
        read = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({read}, timeout=seconds)
        finally:
            if not read.done():
                read.cancel()
                try:
                    await read
                except (asyncio.CancelledError, Exception):
                    pass
        if read.cancelled():
            return "ok"
        if read.exception() is not None:
            return "gone"
        return "data" if read.result() else "gone"

    async def dispatch(self, req: _Request, reader, writer) -> bool:
        path = req.path.rstrip("/") or "/"
        keep = req.keep_alive
        if path in ("/v1/chat/completions", "/chat/completions") and req.method == "POST":
            return await self.chat(req, reader, writer)
        self.other_requests += 1
        if path in ("/v1/models", "/models") and req.method == "GET":
            body = {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "test"}]}
            return await self._send(writer, 200, json.dumps(body).encode(), keep)
        if path.startswith(("/v1/models/", "/models/")) and req.method == "GET":
            body = {"id": path.split("/models/", 1)[1], "object": "model", "created": 0, "owned_by": "test"}
            return await self._send(writer, 200, json.dumps(body).encode(), keep)
        if path in ("/stats", "/v1/stats") and req.method == "GET":
            return await self._send(writer, 200, json.dumps(self.stats()).encode(), keep)
        if path in ("/reset", "/v1/reset") and req.method == "POST":
            self.reset()
            return await self._send(writer, 200, b'{"ok":true}', keep)
        body = _error_body(f"no route {req.method} {req.path}", "invalid_request_error", "not_found")
        return await self._send(writer, 404, body, keep)

    # -- chat completions

    async def chat(self, req: _Request, reader, writer) -> bool:
        arrival = time.time()
        keep = req.keep_alive
        try:
            body = json.loads(req.body or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not a JSON object")
            messages = body.get("messages") or []
            if not isinstance(messages, list):
                raise ValueError("messages must be a list")
        except ValueError as e:
            self.other_requests += 1
            return await self._send(writer, 400, _error_body(f"bad JSON body: {e}", "invalid_request_error", None), keep)

        users = _message_text(messages, ("user",))
        systems = _message_text(messages, ("system", "developer"))
        # the caption to rewrite: the last user message that is not a re-ask ("That rewrite is not faithful …",
        # which follows the refused answer)
        captions = [u for u in users if not u.startswith(RETRY_PREFIX)]
        user_text = captions[-1] if captions else (users[-1] if users else "")
        digest = body_digest(body)
        try_n = self.tries.get(digest, 0)
        self.tries[digest] = try_n + 1
        behaviour = choose_behaviour(self.plan, digest, try_n, user_text)

        self.chat_requests += 1
        self.behaviours[behaviour] = self.behaviours.get(behaviour, 0) + 1
        self.sequence.append(behaviour)
        self.arrivals.append(arrival)
        if req.headers.get("authorization", "").lower().startswith("bearer "):
            self.auth_seen = True
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            waited = await self._wait(reader, self.latency)
            if waited == "gone":
                return False
            keep = keep and waited == "ok"
            return await self._answer(behaviour, body, messages, user_text, systems, digest, try_n, reader, writer, keep)
        finally:
            self.in_flight -= 1

    async def _answer(self, behaviour, body, messages, user_text, systems, digest, try_n, reader, writer, keep) -> bool:
        hdr = {"X-Fake-Behaviour": behaviour}
        if behaviour == "http429":
            hdr["Retry-After"] = str(self.plan["retry_after"])
            return await self._send(writer, 429, _error_body("Rate limit reached (fake).", "rate_limit_error",
                                                             "rate_limit_exceeded"), keep, hdr)
        if behaviour == "http500":
            return await self._send(writer, 500, _error_body("The server had an error (fake).", "server_error",
                                                             None), keep, hdr)
        if behaviour == "garbage":
            return await self._send(writer, 200, GARBAGE, keep, hdr)
        if behaviour == "hang":
            waited = await self._wait(reader, self.plan["hang_seconds"])
            if waited == "gone":
                return False
            keep = keep and waited == "ok"

        finish = "stop"
        if behaviour in ("faithful", "hang", "close", "slow_stream"):
            content = faithful_text(user_text)
        elif behaviour == "wrong":
            content = wrong_text(user_text)
        elif behaviour == "think":
            content = think_text(user_text)
        elif behaviour == "echo_system":
            content = systems[0] if systems else ""
        elif behaviour == "foreign":
            content = foreign_text(user_text)
        elif behaviour == "empty":
            content = ""
        elif behaviour == "length":
            n = body.get("max_completion_tokens") or body.get("max_tokens") or 256
            content, finish = length_text(int(n)), "length"
        else:  # pragma: no cover - normalize_plan rejects unknown names
            raise AssertionError(behaviour)

        prompt_tokens = sum(_words(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))
        completion_tokens = _words(content)
        payload = json.dumps({
            "id": f"chatcmpl-{digest[:20]}{try_n}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model") or MODEL_ID,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }, ensure_ascii=False).encode("utf-8")

        if behaviour == "close":
            writer.write(_head(200, hdr, len(payload), True) + payload[: len(payload) // 2])
            await writer.drain()
            for _ in range(100):  # let the half body reach the socket before the reset
                if writer.transport.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.01)
            writer.transport.abort()
            return False
        if behaviour == "slow_stream":
            writer.write(_head(200, hdr, len(payload), keep))
            await writer.drain()
            for i in range(len(payload)):
                writer.write(payload[i:i + 1])
                await writer.drain()
                if i + 1 < len(payload):
                    waited = await self._wait(reader, TRICKLE_SECONDS)
                    if waited == "gone" or writer.transport.is_closing():
                        return False
                    keep = keep and waited == "ok"
            return keep
        return await self._send(writer, 200, payload, keep, hdr)


# ----------------------------------------------------------------------------------------------- process


def _load_plan(arg: str | None) -> dict:
    if not arg:
        return {}
    if arg.lstrip().startswith("{"):
        return json.loads(arg)
    return json.loads(Path(arg).read_text(encoding="utf-8"))


async def _serve(app: FakeLLM, host: str, port: int, port_file: str | None) -> None:
    server = await asyncio.start_server(app.handle, host, port, backlog=2048)
    real_port = server.sockets[0].getsockname()[1]
    if port_file:
        tmp = f"{port_file}.tmp{os.getpid()}"
        Path(tmp).write_text(str(real_port), encoding="utf-8")
        os.replace(tmp, port_file)
    print(f"LISTENING {real_port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Fault-injecting OpenAI-compatible chat-completions server.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = any free port")
    ap.add_argument("--plan", default=None, help="plan JSON file (or an inline JSON object)")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added before every chat answer")
    ap.add_argument("--port-file", default=None, help="write the listening port here")
    args = ap.parse_args(argv)
    try:
        app = FakeLLM(_load_plan(args.plan), latency=args.latency)
    except (ValueError, OSError) as e:
        print(f"fake_llm: bad plan: {e}", file=sys.stderr, flush=True)
        return 2
    try:
        asyncio.run(_serve(app, args.host, args.port, args.port_file))
    except KeyboardInterrupt:
        pass
    return 0


# ----------------------------------------------------------------------------------------------- test helpers


def start_server(plan: dict | None = None, latency: float = 0.0, tmp_path=None, timeout: float = 20.0,
                 host: str = "127.0.0.1") -> tuple[subprocess.Popen, str]:
    """Launch the server in a subprocess; wait (<= `timeout` s) until it listens; return (process, base_url)
    with base_url like ``http://127.0.0.1:PORT/v1``.  RuntimeError (with its stderr) when it does not come up."""
    normalize_plan(plan)  # fail here, not in the child, on a bad plan
    folder = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp(prefix="fake_llm_"))
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}_{time.monotonic_ns()}"
    plan_file = folder / f"fake_llm_plan_{tag}.json"
    port_file = folder / f"fake_llm_port_{tag}"
    err_file = folder / f"fake_llm_stderr_{tag}.txt"
    plan_file.write_text(json.dumps(plan or {}), encoding="utf-8")
    with open(err_file, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).resolve()), "--host", host, "--port", "0",
             "--plan", str(plan_file), "--latency", str(latency), "--port-file", str(port_file)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )
    proc.fake_llm_stderr = err_file  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while True:
        if port_file.exists():
            text = port_file.read_text(encoding="utf-8").strip()
            if text.isdigit():
                return proc, f"http://{host}:{int(text)}/v1"
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not listening after {timeout} s"
            stop_server(proc)
            raise RuntimeError(f"fake_llm server {why}; stderr:\n{err_file.read_text(errors='replace')}")
        time.sleep(0.02)


def stop_server(process: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """Terminate (then kill) a server from start_server; safe to call twice or on a dead process."""
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def _root(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def server_stats(base_url: str, timeout: float = 10.0) -> dict:
    """GET /stats of the server at base_url (with or without the /v1)."""
    with urllib.request.urlopen(_root(base_url) + "/stats", timeout=timeout) as r:
        return json.loads(r.read())


def reset_server(base_url: str, timeout: float = 10.0) -> None:
    """POST /reset: clear stats and per-body try counters."""
    req = urllib.request.Request(_root(base_url) + "/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        r.read()


if __name__ == "__main__":
    sys.exit(main())
