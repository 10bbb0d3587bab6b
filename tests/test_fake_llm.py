"""The fake OpenAI-compatible server (tests/fake_llm.py), driven through the real `openai` client."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import openai
import pytest

import fake_llm
from fake_llm import reset_server, server_stats, start_server, stop_server

CAPTION = 'A red cup left of [P1] with the word "OPEN" and 3 stars.'
SYSTEM = "Rewrite the caption. Keep every placeholder like [P1] exactly once."


@pytest.fixture
def serve(tmp_path):
    """serve(plan, latency=0.0) -> base_url; every server started is stopped at teardown, pass or fail."""
    procs = []

    def start(plan=None, latency=0.0):
        proc, url = start_server(plan, latency, tmp_path)
        procs.append(proc)
        return url

    yield start
    for p in procs:
        stop_server(p)


def client(url, timeout=5.0):
    return openai.OpenAI(base_url=url, api_key="sk-test", max_retries=0, timeout=timeout)


def ask(c, caption=CAPTION, system=SYSTEM, **kw):
    return c.chat.completions.create(
        model=kw.pop("model", "some-model"),
        messages=[{"role": "system", "content": system}, {"role": "user", "content": caption}],
        temperature=kw.pop("temperature", 0.2), **kw)


def only(behaviour):
    return {"first": {behaviour: 1}}


# --------------------------------------------------------------------------------------- pure functions


def test_faithful_text_keeps_everything():
    out = fake_llm.faithful_text(CAPTION)
    opener = fake_llm.opener_for(CAPTION)
    assert opener in fake_llm.OPENERS
    assert out == opener + "a" + CAPTION[1:]
    assert fake_llm.faithful_text("[P1] waves.") == fake_llm.opener_for("[P1] waves.") + "[P1] waves."
    assert fake_llm.faithful_text("Anna waves.").endswith(": Anna waves.")  # not "An "


@pytest.mark.parametrize("text,want", [
    ("A red cup left of [P1] and 3 stars.", "a orange cup left of [P1] and 3 stars."),
    ("Two dogs left of [P1].", "Three dogs left of [P1]."),
    ("A dog with 3 bones.", "a dog with 4 bones."),
    ("[P1] stands left of [P2].", "[P1] stands right of [P2]."),
    ("A lamp above the bed.", "a lamp below the bed."),
    ("[P1] hugs [T2].", "hugs [T2]."),
    ("A quiet room.", "a quiet room. There is also a purple elephant."),
])
def test_wrong_text_changes_one_fact(text, want):
    assert fake_llm.wrong_text(text) == fake_llm.opener_for(text) + want


def test_bad_plan_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown behaviour"):
        start_server({"first": {"nope": 1}}, 0.0, tmp_path)
    plan = tmp_path / "bad.json"
    plan.write_text(json.dumps({"first": {"nope": 1}}))
    r = subprocess.run([sys.executable, fake_llm.__file__, "--port", "0", "--plan", str(plan)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "unknown behaviour" in r.stderr


# --------------------------------------------------------------------------------------- process / HTTP


def test_cli_prints_listening_and_port_file(tmp_path):
    plan, port_file = tmp_path / "plan.json", tmp_path / "port"
    plan.write_text("{}")
    p = subprocess.Popen([sys.executable, "-u", fake_llm.__file__, "--port", "0", "--plan", str(plan),
                          "--port-file", str(port_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        box = []
        t = threading.Thread(target=lambda: box.append(p.stdout.readline()), daemon=True)
        t.start()
        t.join(20)
        assert box, "no LISTENING line"
        word, port = box[0].split()
        assert word == "LISTENING" and int(port) > 0
        assert port_file.read_text().strip() == port
        models = client(f"http://127.0.0.1:{port}/v1").models.list()
        assert [m.id for m in models] == ["fake-model"]
    finally:
        stop_server(p)
    assert p.poll() is not None


def test_models_and_keep_alive(serve):
    url = serve()
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/v1/models")
        r = conn.getresponse()
        assert json.loads(r.read()) == {"object": "list", "data": [
            {"id": "fake-model", "object": "model", "created": 0, "owned_by": "test"}]}
        sock = conn.sock
        for i in range(5):  # the same socket answers request after request
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"A dog {i}."}]})
            conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200 and r.getheader("X-Fake-Behaviour") == "faithful"
            assert json.loads(r.read())["choices"][0]["message"]["content"].endswith(f"a dog {i}.")
            assert conn.sock is sock
    finally:
        conn.close()
    s = server_stats(url)
    assert s["chat_requests"] == 5 and s["auth_seen"] is False  # no Authorization header was sent


# --------------------------------------------------------------------------------------- behaviours


def test_faithful(serve):
    c = client(serve(only("faithful")))
    r = ask(c, model="whatever-model", max_completion_tokens=64, seed=7)
    assert r.model == "whatever-model" and r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    ch = r.choices[0]
    assert ch.finish_reason == "stop" and ch.message.role == "assistant"
    assert ch.message.content == fake_llm.faithful_text(CAPTION)
    assert ch.message.content.count("[P1]") == 1 and '"OPEN"' in ch.message.content
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0


@pytest.mark.parametrize("behaviour,expect", [
    ("wrong", lambda s: s == fake_llm.wrong_text(CAPTION) and "orange cup" in s),
    ("think", lambda s: s.startswith("<think>") and s.endswith("</think>\n" + fake_llm.faithful_text(CAPTION))),
    ("echo_system", lambda s: s == SYSTEM),
    ("foreign", lambda s: s in fake_llm.FOREIGN),
    ("empty", lambda s: s == ""),
])
def test_content_behaviours(serve, behaviour, expect):
    r = ask(client(serve(only(behaviour))))
    assert r.choices[0].finish_reason == "stop"
    assert expect(r.choices[0].message.content), r.choices[0].message.content


def test_length(serve):
    c = client(serve(only("length")))
    r = ask(c, max_tokens=40)
    assert r.choices[0].finish_reason == "length" and len(r.choices[0].message.content.split()) == 40
    r = ask(c, caption="Another one.")
    assert r.choices[0].finish_reason == "length" and len(r.choices[0].message.content.split()) == 256


def test_http429(serve):
    c = client(serve({"first": {"http429": 1}, "retry_after": 1}))
    with pytest.raises(openai.RateLimitError) as e:
        ask(c)
    assert e.value.response.headers["retry-after"] == "1"
    assert e.value.status_code == 429 and e.value.code == "rate_limit_exceeded"


def test_http500(serve):
    with pytest.raises(openai.InternalServerError) as e:
        ask(client(serve(only("http500"))))
    assert e.value.status_code == 500 and e.value.type == "server_error"


def test_hang_times_out_fast(serve):
    url = serve(only("hang"))
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        ask(client(url, timeout=1.0))
    assert time.monotonic() - t0 < 3.0
    time.sleep(0.3)
    s = server_stats(url)  # the hang gave up when the client went away; the server still answers
    assert s["behaviours"] == {"hang": 1} and s["in_flight"] == 0


def test_hang_answers_after_hang_seconds(serve):
    r = ask(client(serve({"first": {"hang": 1}, "hang_seconds": 0.3})))
    assert r.choices[0].message.content == fake_llm.faithful_text(CAPTION)


@pytest.mark.parametrize("behaviour", ["garbage", "close"])
def test_broken_bodies_raise(serve, behaviour):
    url = serve(only(behaviour))
    with pytest.raises(Exception):
        ask(client(url))
    # the server keeps serving after a broken answer
    assert server_stats(url)["behaviours"] == {behaviour: 1}


def test_slow_stream_trickles_past_per_read_timeouts(serve):
    url = serve(only("slow_stream"))
    # raw: headers at once, then one body byte every 0.5 s
    port = int(url.split(":")[2].split("/")[0])
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "A cat."}]}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        head, rest = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: " in head
        t0 = time.monotonic()
        while len(rest) < 3:
            rest += s.recv(1)
        assert 0.7 < time.monotonic() - t0 < 2.5, "about 0.5 s a byte"

    # through the async client: a 1 s per-read timeout never fires; only a total deadline stops it
    async def go():
        c = openai.AsyncOpenAI(base_url=url, api_key="sk-test", max_retries=0, timeout=1.0)
        try:
            await asyncio.wait_for(c.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "A dog."}]), 2.0)
        finally:
            await c.close()

    t0 = time.monotonic()
    with pytest.raises((asyncio.TimeoutError, TimeoutError)):
        asyncio.run(go())
    assert time.monotonic() - t0 < 4.0


# --------------------------------------------------------------------------------------- plan mechanics


def test_retry_table_and_reset(serve):
    url = serve({"first": {"http500": 1}, "retry": {"faithful": 1}})
    c = client(url)
    with pytest.raises(openai.InternalServerError):
        ask(c)
    assert ask(c).choices[0].message.content == fake_llm.faithful_text(CAPTION)  # same body: try 1
    with pytest.raises(openai.InternalServerError):
        ask(c, caption="A different caption.")  # new body: try 0
    with pytest.raises(openai.InternalServerError):
        ask(c, temperature=0.9)  # temperature is part of the digest
    s = server_stats(url)
    assert s["sequence"] == ["http500", "faithful", "http500", "http500"]
    assert s["behaviours"] == {"http500": 3, "faithful": 1} and s["chat_requests"] == 4
    assert len(s["arrivals"]) == 4 and s["arrivals"] == sorted(s["arrivals"])
    assert abs(s["arrivals"][-1] - time.time()) < 10 and s["auth_seen"] is True
    reset_server(url)
    s = server_stats(url)
    assert s["chat_requests"] == 0 and s["arrivals"] == [] and s["auth_seen"] is False
    with pytest.raises(openai.InternalServerError):
        ask(c)  # try counters were cleared too


def test_by_content_wins_on_every_try(serve):
    c = client(serve({"first": {"faithful": 1}, "by_content": {"drag": "empty"}}))
    for _ in range(3):
        assert ask(c, caption="A drag of [P1] to the left.").choices[0].message.content == ""
    assert ask(c).choices[0].message.content == fake_llm.faithful_text(CAPTION)


def _sequence(url, n=40):
    c = client(url)
    out = []
    for i in range(n):
        cap = f"A caption number {i % 25}."  # some bodies repeat, so retries are drawn too
        try:
            r = ask(c, caption=cap).choices[0].message.content
            out.append("empty" if r == "" else ("wrong" if r != fake_llm.faithful_text(cap) else "faithful"))
        except openai.InternalServerError:
            out.append("http500")
    return out


def test_determinism_across_processes(serve):
    plan = {"first": {"faithful": 0.4, "wrong": 0.2, "http500": 0.2, "empty": 0.2},
            "retry": {"faithful": 0.5, "http500": 0.5}, "seed": 3}
    a, b = serve(plan), serve(plan)
    seq_a, seq_b = _sequence(a), _sequence(b)
    assert seq_a == seq_b and len(set(seq_a)) >= 3
    assert server_stats(a)["sequence"] == server_stats(b)["sequence"] == seq_a
    other = serve(dict(plan, seed=4))
    assert _sequence(other) != seq_a  # the seed matters


def test_latency_and_concurrency(serve):
    url = serve(only("faithful"), latency=0.2)
    n = 128

    async def go():
        c = openai.AsyncOpenAI(base_url=url, api_key="sk-test", max_retries=0, timeout=30)
        try:
            return await asyncio.gather(*(c.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"A dog number {i}."}]) for i in range(n)))
        finally:
            await c.close()

    t0 = time.monotonic()
    rs = asyncio.run(go())
    elapsed = time.monotonic() - t0
    assert [r.choices[0].message.content for r in rs] == [fake_llm.faithful_text(f"A dog number {i}.")
                                                           for i in range(n)]
    assert 0.2 <= elapsed < n * 0.2 / 4, elapsed
    s = server_stats(url)
    assert s["chat_requests"] == n and s["max_in_flight"] > 50 and s["in_flight"] == 0
