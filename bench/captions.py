"""Captions/s of the caption stage against a local OpenAI-compatible server, and what a 12M run would cost.

Against tests/fake_llm.py answering at once, the figure is our side's overhead: the Captioner (cache lookup and
write, tags, cleaning, guard, breaker, the openai client) against a bare AsyncOpenAI loop at the same
concurrency in the same run (the baseline: requests only, nothing checked or kept). Then the same at a
server that takes 300 ms per answer with 64 requests in flight, and the 12M-sample projection from it.
Optionally (`--real`) against SmolLM2-135M behind a real server process (tests/smollm.py).

    .venv/bin/python bench/captions.py [--samples 512] [--real]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import fake_llm  # noqa: E402
from collage.captions.prompt import build_request  # noqa: E402
from collage.captions.refine import Captioner, request_seed  # noqa: E402
from collage.captions.settings import CaptionConfig, CaptionRuntime  # noqa: E402


def metas_of(n: int, folder: Path) -> list[dict]:
    from collage.api import generate_run, iter_samples

    out = folder / "run"
    generate_run(out=str(out), pipeline=str(REPO / "pipelines" / "dreamomni.yaml"), n=n, size=128, shard_size=256,
                 seed=3, backend="local")
    return [s["json"] for s in iter_samples(str(out))]


def ours(url: str, metas: list[dict], concurrency: int, folder: Path, model: str = "fake-model",
         timeout: float = 30.0, profile: bool = False) -> tuple[float, dict]:
    config = CaptionConfig(model=model, max_retries=2)
    runtime = CaptionRuntime(url, concurrency=concurrency, timeout=timeout, cache_dir=str(folder))
    captioner = Captioner(config, runtime, "bench")
    profiler = cProfile.Profile() if profile else None
    try:
        started = time.perf_counter()
        if profiler:
            captioner._run(_enable(profiler))
        outcomes = [f.result() for f in [captioner.submit(m) for m in metas]]
        seconds = time.perf_counter() - started
        if profiler:
            captioner._run(_disable(profiler))
    finally:
        captioner.close()
    kinds: dict[str, int] = {}
    for outcome in outcomes:
        kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
    if profiler:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(18)
    return len(metas) / seconds, kinds


async def _enable(profiler):
    profiler.enable()


async def _disable(profiler):
    profiler.disable()


def bare(url: str, metas: list[dict], concurrency: int, model: str = "fake-model") -> float:
    """The baseline: the same first requests through a bare AsyncOpenAI client, answers not even read."""
    import httpx2
    import openai

    async def main():
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=30,
                                    http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=30))
        slots = asyncio.Semaphore(concurrency)

        async def one(meta):
            async with slots:
                await client.chat.completions.create(
                    model=model, messages=list(build_request(meta["prompt"]).messages), temperature=0.7,
                    max_tokens=256, seed=request_seed(meta["seed"], 0))
        started = time.perf_counter()
        await asyncio.gather(*(one(m) for m in metas))
        seconds = time.perf_counter() - started
        await client.close()
        return len(metas) / seconds
    return asyncio.run(main())


def caption_pass(folder: Path, metas: list[dict], latency: float, concurrency: int) -> dict[int, float]:
    """Whole `collage caption` passes (reading, rewriting and committing shards) with 1 and 2 processes."""
    import shutil
    import subprocess

    run = folder / "run"
    rates = {}
    for workers in (1, 2):
        process, url = fake_llm.start_server({"first": {"faithful": 4, "wrong": 1}}, latency, folder / f"p{workers}")
        copy = folder / f"pass{workers}"
        shutil.copytree(run, copy)
        try:
            started = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "collage", "caption", str(copy), "--base-url", url,
                                     "--model", "fake-model", "--cache", str(folder / f"passcache{workers}"),
                                     "--concurrency", str(concurrency), "--workers", str(workers), "--no-progress"],
                                    capture_output=True, text=True, cwd=REPO)
            assert result.returncode == 0, result.stderr
            rates[workers] = len(metas) / (time.perf_counter() - started)
        finally:
            fake_llm.stop_server(process)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--real", action="store_true", help="also against SmolLM2-135M behind a real server")
    parser.add_argument("--profile", action="store_true", help="profile our side at concurrency 32")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        metas = metas_of(args.samples, folder)
        print(f"{len(metas)} samples of every task (128², dreamomni mix)\n")
        process, url = fake_llm.start_server({"first": {"faithful": 4, "wrong": 1}}, 0.0, folder / "fast")
        try:
            print("| concurrency | ours (captions/s) | bare client (requests/s) | ours / bare | outcomes |")
            print("|---|---|---|---|---|")
            for concurrency in (1, 8, 32, 128):
                fake_llm.reset_server(url)
                rate, kinds = ours(url, metas, concurrency, folder / f"cache{concurrency}",
                                   profile=args.profile and concurrency == 32)
                requests = fake_llm.server_stats(url)["chat_requests"]
                base = bare(url, metas, concurrency)
                print(f"| {concurrency} | {rate:,.0f} ({requests / len(metas):.2f} requests each) | {base:,.0f} | "
                      f"{rate / base:.2f} | {json.dumps(kinds)} |", flush=True)
        finally:
            fake_llm.stop_server(process)

        latency, concurrency = 0.3, 64
        process, url = fake_llm.start_server({"first": {"faithful": 4, "wrong": 1}}, latency, folder / "slow")
        try:
            rate, kinds = ours(url, metas, concurrency, folder / "cache_slow")
            per_sample = fake_llm.server_stats(url)["chat_requests"] / len(metas)
        finally:
            fake_llm.stop_server(process)
        ideal = concurrency / latency
        print(f"\nserver at {latency * 1000:.0f} ms, {concurrency} in flight: {rate:,.1f} captions/s "
              f"({per_sample:.2f} requests a caption with 1 in 5 answers wrong; the server's bound is "
              f"{ideal:,.0f} requests/s = {ideal / per_sample:,.0f} captions/s: {rate / (ideal / per_sample):.0%} of it)")
        n = 12_000_000
        print(f"a {n / 1e6:.0f}M-sample run: {n / rate / 3600:,.1f} h of captions at this rate in one process "
              f"({n / (ideal / per_sample) / 3600:,.1f} h at the server's bound)")
        slow_pass = caption_pass(folder, metas, latency, concurrency)
        print("`collage caption` over the same samples, one process vs two: "
              + ", ".join(f"{w} → {r:,.1f} captions/s" for w, r in slow_pass.items())
              + f"; 12M at the better: {n / max(slow_pass.values()) / 3600:,.1f} h")

        if args.real:
            from smollm import start_real_server, stop_real_server

            (folder / "real").mkdir()
            process, url, model = start_real_server(folder / "real")
            try:
                few = metas[:: max(1, len(metas) // 12)][:12]
                for concurrency in (1, 4):
                    rate, kinds = ours(url, few, concurrency, folder / f"cache_real{concurrency}", model=model,
                                       timeout=300)
                    print(f"SmolLM2-135M, concurrency {concurrency}: {rate:.3f} captions/s, outcomes {kinds}")
            finally:
                stop_real_server(process)


if __name__ == "__main__":
    main()
