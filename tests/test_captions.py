"""LLM caption refinement against a real OpenAI-compatible server process (tests/fake_llm.py) through the real
openai client: `collage caption OUT`, inline `collage generate --caption-…`, faults, resume, the cache.

Everything is judged from the written shards (webdataset reads them back), not from the code's own values.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import webdataset as wds

import fake_llm
from collage.captions import check
from collage.captions.client import BREAKER_THRESHOLD, CircuitBreaker
from collage.errors import ServerDown
from conftest import REPO, cli_env, one_error_line, run_cli, tar_hashes

SECRET = "sk-test-DO-NOT-WRITE-" + hashlib.sha256(b"collage").hexdigest()[:12]
GEN = ["generate", "--pipeline", "pipelines/dreamomni.yaml", "--size", "128", "--shard-size", "16", "--seed", "11"]


@pytest.fixture(scope="module")
def template_run(tmp_path_factory, assets) -> Path:
    """48 template-captioned samples of every task in 3 shards, made once; tests caption copies."""
    out = tmp_path_factory.mktemp("captions") / "run"
    result = run_cli(*GEN, "--n", "48", "--out", str(out), "--backend", "local", "--no-progress")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(plan, latency=0.0):
        process, url = fake_llm.start_server(plan, latency, tmp_path / f"server{len(started)}")
        started.append(process)
        return url
    yield start
    for process in started:
        fake_llm.stop_server(process)


def _env() -> dict:
    env = cli_env()
    env["OPENAI_API_KEY"] = SECRET
    env.pop("OPENAI_BASE_URL", None)
    return env


def _copy(run: Path, tmp_path: Path, name: str = "run") -> Path:
    out = tmp_path / name
    shutil.copytree(run, out)
    return out


def _caption(out: Path, url: str, cache: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_cli("caption", str(out), "--base-url", url, "--model", "fake-model", "--cache", str(cache),
                   "--no-progress", *extra, timeout=timeout, env=_env())


def _samples(out: Path) -> list[dict]:
    """Every sample of the run, read back with webdataset (members raw)."""
    urls = [str(out / name) for name in sorted(json.loads((out / "sizes.json").read_text()))]
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))


def _meta(sample: dict) -> dict:
    return json.loads(sample["json"])


def _assert_every_caption_true(out: Path, template: Path) -> dict[str, int]:
    """Same keys and images as the template run; every rewrite passes the guard; counts as recorded."""
    before, after = _samples(template), _samples(out)
    assert [s["__key__"] for s in after] == [s["__key__"] for s in before]
    counts = {"refined": 0, "cache": 0, "rejected": 0, "failed": 0, "skipped": 0}
    for old, new in zip(before, after):
        assert {k: v for k, v in old.items() if k not in ("json", "__url__", "__local_path__")} == \
            {k: v for k, v in new.items() if k not in ("json", "__url__", "__local_path__")}, "images must keep their bytes"
        meta, was = _meta(new), _meta(old)
        assert {k: v for k, v in meta.items() if k not in ("caption", "caption_source", "caption_error")} == \
            {k: v for k, v in was.items() if k not in ("caption", "caption_source", "caption_error")}
        if meta["caption_source"] in ("llm", "cache"):
            assert check(meta, meta["caption"]) == [], meta["caption"]
            assert meta["caption"] != meta["prompt"] and "caption_error" not in meta
            counts["refined" if meta["caption_source"] == "llm" else "cache"] += 1
        else:
            assert meta["caption_source"] == "template" and meta["caption"] == meta["prompt"]
            error = meta.get("caption_error", "")
            counts["failed" if error.startswith("server:") else "rejected" if error else "skipped"] += 1
    summary = json.loads((out / "captions.json").read_text())["summary"]
    assert {k: summary[k] for k in counts} == counts
    return counts


def _no_secret_in(*places) -> None:
    for place in places:
        if isinstance(place, str):
            assert SECRET not in place
            continue
        for path in Path(place).rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


# --- collage caption over a run ------------------------------------------------------------------------

def test_a_faulty_server_never_gets_a_false_caption_written(template_run, serve, tmp_path):
    """Every fault at once, through the CLI: the pass finishes in bounded time, every sample is there, no caption
    that fails the guard is written, the counts are right, verify passes, and the key is written nowhere."""
    plan = {"first": {behaviour: 1 for behaviour in fake_llm.BEHAVIOURS},
            "retry": {"faithful": 3, "http500": 1}, "retry_after": 1, "hang_seconds": 30}
    url = serve(plan)
    out, cache = _copy(template_run, tmp_path), tmp_path / "cache"
    started = time.time()
    result = _caption(out, url, cache, "--timeout", "1.5", "--concurrency", "8")
    seconds = time.time() - started
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    assert seconds < 120, f"the pass took {seconds:.0f} s"
    counts = _assert_every_caption_true(out, template_run)
    assert counts["refined"] >= 24, counts  # most samples get a rewrite despite the faults
    assert counts["rejected"] >= 1, counts  # and the refused / guarded-out answers keep the template
    stats = fake_llm.server_stats(url)
    for fault in ("http429", "http500", "hang", "garbage", "close", "slow_stream", "wrong", "empty", "length"):
        assert stats["behaviours"].get(fault, 0) >= 1, (fault, stats["behaviours"])
    assert stats["auth_seen"]
    assert (result.returncode == 0) == (counts["failed"] == 0)
    verified = run_cli("verify", str(out))
    assert verified.returncode == 0, verified.stderr
    _no_secret_in(out, cache, result.stdout, result.stderr)
    # parquet agrees with the json
    import pyarrow.parquet as pq

    sources = [s for p in sorted(out.glob("*.parquet")) for s in pq.read_table(p).column("caption_source").to_pylist()]
    assert sources == [_meta(s)["caption_source"] for s in _samples(out)]


@pytest.mark.parametrize("behaviour, outcome, words", [
    ("http429", "refined", None), ("http500", "refined", None), ("garbage", "refined", None),
    ("close", "refined", None), ("hang", "refined", None), ("think", "refined", None),
    ("wrong", "rejected", ""), ("empty", "rejected", "empty answer"), ("length", "rejected", "cut at max_tokens"),
    ("echo_system", "rejected", "repeats the instructions"), ("foreign", "rejected", "not in English"),
])
def test_each_fault_has_its_outcome(template_run, serve, tmp_path, behaviour, outcome, words):
    """One behaviour on every first try (retries of the same request are answered faithfully): server faults
    are retried into a rewrite; refused answers are re-asked (a new seed: a new first try) and then the
    template is kept with the reason."""
    from collage.captions.refine import Captioner
    from collage.captions.settings import CaptionConfig, CaptionRuntime

    url = serve({"first": behaviour, "retry": "faithful", "retry_after": 0.2, "hang_seconds": 30})
    metas = [_meta(s) for s in _samples(template_run)[:6]]
    config = CaptionConfig(model="fake-model", max_retries=1)
    captioner = Captioner(config, CaptionRuntime(url, concurrency=4, timeout=1.0, cache_dir=str(tmp_path)), "p")
    try:
        outcomes = [f.result(timeout=60) for f in [captioner.submit(m) for m in metas]]
    finally:
        captioner.close()
    for meta, got in zip(metas, outcomes):
        assert got.kind == outcome, (got, meta["prompt"])
        if outcome == "refined":
            assert got.source == "llm" and check(meta, got.caption) == [] and "<think>" not in got.caption
        else:
            assert got.source == "template" and got.caption == meta["prompt"] and words in got.error


def test_retry_after_is_honoured(template_run, serve, tmp_path):
    """A 429 with Retry-After: 1 pauses the request (and every other) for a second before it goes again."""
    url = serve({"first": "http429", "retry": "faithful", "retry_after": 1})
    out = _copy(template_run, tmp_path)
    result = _caption(out, url, tmp_path / "cache", "--tasks", "edit", "--concurrency", "4")
    assert result.returncode == 0, result.stderr
    stats = fake_llm.server_stats(url)
    first_429 = min(t for t, b in zip(stats["arrivals"], stats["sequence"]) if b == "http429")
    after = [t for t, b in zip(stats["arrivals"], stats["sequence"]) if b != "http429"]
    assert after and min(after) - first_429 >= 0.9  # nothing was asked again before the server's second passed
    counts = _assert_every_caption_true(out, template_run)
    assert counts["refined"] == sum(_meta(s)["task"] == "edit" for s in _samples(template_run))


def test_a_dead_server_stops_the_pass_in_bounded_time_without_hammering(template_run, serve, tmp_path):
    url = serve({"first": "http500", "retry": "http500"})
    out = _copy(template_run, tmp_path)
    before = tar_hashes(out)
    started = time.time()
    result = _caption(out, url, tmp_path / "cache", "--give-up-after", "4", "--timeout", "2", "--concurrency", "8")
    assert time.time() - started < 60
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no request has succeeded" in lines[0] and "rerun" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    stats = fake_llm.server_stats(url)
    assert stats["chat_requests"] <= 8 + BREAKER_THRESHOLD + 6, stats["chat_requests"]  # it stopped sending
    assert tar_hashes(out) == before  # nothing half-written
    assert run_cli("verify", str(out)).returncode == 0
    # the server comes back: the same command finishes the pass
    good = serve({"first": "faithful"})
    result = _caption(out, good, tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert _assert_every_caption_true(out, template_run)["refined"] == 48


def test_circuit_breaker_opens_probes_and_closes():
    import asyncio

    now = [0.0]
    breaker = CircuitBreaker(give_up_after=100, clock=lambda: now[0])

    async def scenario():
        for _ in range(BREAKER_THRESHOLD):
            assert await breaker.acquire() is False
            breaker.failure("HTTP 500", probe=False)
        assert breaker.is_open and breaker.opened == 1
        waiting = asyncio.ensure_future(breaker.acquire())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # nothing goes while the circuit is open
        now[0] = 5.1
        assert await asyncio.wait_for(waiting, 3) is True  # one probe after the cool-down
        breaker.failure("HTTP 500", probe=True)  # the probe fails: open again, twice as long
        assert breaker.open_until == pytest.approx(5.1 + 10)
        now[0] = 15.2
        assert await breaker.acquire() is True
        breaker.success(probe=True)
        assert not breaker.is_open and await breaker.acquire() is False
        for _ in range(BREAKER_THRESHOLD):
            breaker.failure("timeout", probe=False)
        now[0] = 200.0
        with pytest.raises(ServerDown):
            await breaker.acquire()

    asyncio.run(scenario())


# --- resume, the cache, determinism ----------------------------------------------------------------------

def _start_caption(out: Path, url: str, cache: Path, env_extra: dict | None = None) -> subprocess.Popen:
    env = {**_env(), **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "collage", "caption", str(out), "--base-url", url, "--model",
                             "fake-model", "--cache", str(cache), "--no-progress", "--concurrency", "4"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _captioned_shards(out: Path) -> int:
    return sum("captions" in json.loads(p.read_text()) for p in out.glob("*.stats.json"))


def test_kill_9_mid_pass_then_rerun_is_byte_identical(template_run, serve, tmp_path):
    """A deterministic server (answers depend on the request alone). An uninterrupted pass, and a pass killed
    mid-way and rerun, write the same bytes; the rerun pays only for what the killed pass never got."""
    plan = {"first": {"faithful": 3, "wrong": 1}}
    url_a = serve(plan)
    a = _copy(template_run, tmp_path, "a")
    assert _caption(a, url_a, tmp_path / "cache_a").returncode == 0
    paid_a = fake_llm.server_stats(url_a)["chat_requests"]

    url_b = serve(plan, latency=0.05)
    b = _copy(template_run, tmp_path, "b")
    process = _start_caption(b, url_b, tmp_path / "cache_b")
    deadline = time.time() + 120
    while time.time() < deadline and (_captioned_shards(b) < 1 or fake_llm.server_stats(url_b)["chat_requests"] < 24):
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 1 <= _captioned_shards(b) < 3, "the kill must land mid-pass"
    assert _caption(b, url_b, tmp_path / "cache_b").returncode == 0
    assert tar_hashes(b) == tar_hashes(a)
    paid_b = fake_llm.server_stats(url_b)["chat_requests"]
    # paid twice: about the requests in flight at the kill (--concurrency 4); a loaded machine measured 5, so
    # the bound is two windows' worth, still far below re-asking a whole shard (20 samples)
    assert paid_b <= paid_a + 8, (paid_a, paid_b)

    # the cache replays: a fresh copy of the same run with cache A asks nothing and writes the same bytes
    c = _copy(template_run, tmp_path, "c")
    fake_llm.reset_server(url_a)
    assert _caption(c, url_a, tmp_path / "cache_a").returncode == 0
    assert fake_llm.server_stats(url_a)["chat_requests"] == 0
    assert tar_hashes(c) == tar_hashes(a)


def test_a_kill_between_a_replaced_shards_files_is_rolled_forward(template_run, serve, tmp_path):
    url = serve({"first": "faithful"})
    out = _copy(template_run, tmp_path)
    process = _start_caption(out, url, tmp_path / "cache", {"COLLAGE_TEST_REPLACE_PAUSE": "30"})
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*.replace.json")):
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    journal = next(out.glob("*.replace.json"))
    stem = journal.name[:-len(".replace.json")]
    new_sha = json.loads(journal.read_text())["stats"]["sha256"]
    while time.time() < deadline and hashlib.sha256((out / f"{stem}.tar").read_bytes()).hexdigest() != new_sha:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the new tar is published, its stats are not
    process.wait()
    verified = run_cli("verify", str(out))
    assert verified.returncode == 1 and "interrupted shard replacement" in verified.stderr
    result = _caption(out, url, tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "was finished" in result.stderr
    assert run_cli("verify", str(out)).returncode == 0
    assert _assert_every_caption_true(out, template_run)["refined"] == 48


# --- inline ------------------------------------------------------------------------------------------------

def test_inline_captions_are_the_same_bytes_as_a_caption_pass(template_run, serve, tmp_path):
    """`generate --caption-…` (on Ray) and `caption` over the template run ask the same questions and write the
    same tars; the key reaches the server and nowhere else."""
    url = serve({"first": {"faithful": 3, "wrong": 1}})
    passed = _copy(template_run, tmp_path, "passed")
    assert _caption(passed, url, tmp_path / "cache_pass").returncode == 0
    fake_llm.reset_server(url)  # its try counters: the same questions get the same first answers
    inline = tmp_path / "inline"
    result = run_cli(*GEN, "--n", "48", "--out", str(inline), "--workers", "2", "--no-progress",
                     "--caption-base-url", url, "--caption-model", "fake-model", "--caption-cache",
                     str(tmp_path / "cache_inline"), env=_env())
    assert result.returncode == 0, result.stderr
    assert "captions: " in result.stdout and " refined" in result.stdout
    assert tar_hashes(inline) == tar_hashes(passed)
    assert run_cli("verify", str(inline)).returncode == 0
    summary = json.loads((inline / "captions.json").read_text())
    assert summary["complete"] and summary["summary"]["refined"] > 0
    _no_secret_in(inline, tmp_path / "cache_inline", result.stdout, result.stderr)
    # a caption pass with the same settings recognises the inline pass: nothing to do
    again = run_cli("caption", str(inline), "--base-url", url, "--model", "fake-model", "--cache",
                    str(tmp_path / "cache_inline"), "--no-progress", env=_env())
    assert again.returncode == 0 and "0 shards captioned, 3 already done" in again.stdout


# --- bad input -----------------------------------------------------------------------------------------------

def test_bad_input_is_one_line(template_run, serve, tmp_path):
    url = serve({"first": "faithful"})
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "run.json" in one_error_line(_caption(empty, url, tmp_path / "c"))
    assert "no server answers" in one_error_line(_caption(_copy(template_run, tmp_path), "http://127.0.0.1:9/v1",
                                                           tmp_path / "c"))
    missing_model = run_cli("caption", str(template_run), "--base-url", url, env=_env())
    assert "--model" in one_error_line(missing_model)
    no_url = run_cli("caption", str(template_run), "--model", "m", env=_env())
    assert "OPENAI_BASE_URL" in one_error_line(no_url)
    unfinished = _copy(template_run, tmp_path, "unfinished")
    next(unfinished.glob("*.stats.json")).unlink()
    assert "not a finished run" in one_error_line(_caption(unfinished, url, tmp_path / "c"))
    assert "--tasks" in one_error_line(_caption(template_run, url, tmp_path / "c", "--tasks", "t2i,nope"))
    # another caption config over a captioned run needs --force
    out = _copy(template_run, tmp_path, "captioned")
    assert _caption(out, url, tmp_path / "c", "--tasks", "edit").returncode == 0
    assert "--force" in one_error_line(_caption(out, url, tmp_path / "c"))
    assert _caption(out, url, tmp_path / "c", "--force").returncode == 0
    inline = run_cli(*GEN, "--n", "16", "--out", str(tmp_path / "inline"), "--backend", "local",
                     "--caption-base-url", "http://127.0.0.1:9/v1", "--caption-model", "m", env=_env())
    assert "--caption-base-url" in one_error_line(inline)
    assert not (tmp_path / "inline").exists() or not list((tmp_path / "inline").glob("*.tar"))


def test_dry_run_sends_and_writes_nothing(template_run, serve, tmp_path):
    url = serve({"first": "faithful"})
    out = _copy(template_run, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
    result = _caption(out, url, tmp_path / "c", "--dry-run")
    assert result.returncode == 0 and "3 of 3 shards to caption" in result.stdout, result.stdout
    assert fake_llm.server_stats(url)["chat_requests"] == 0
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")} == before


def test_worker_processes_write_the_same_bytes(template_run, serve, tmp_path):
    """--workers 2 (spawned processes, each its own client and breaker, one cache) = one process."""
    url = serve({"first": {"faithful": 3, "wrong": 1}})
    one, two = _copy(template_run, tmp_path, "one"), _copy(template_run, tmp_path, "two")
    assert _caption(one, url, tmp_path / "cache_one", "--workers", "1").returncode == 0
    fake_llm.reset_server(url)
    result = _caption(two, url, tmp_path / "cache_two", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert tar_hashes(two) == tar_hashes(one)
    summary = json.loads((two / "captions.json").read_text())["summary"]
    assert summary["requests"] == fake_llm.server_stats(url)["chat_requests"]
    _assert_every_caption_true(two, template_run)
