"""Capacity plan for the paper's 68M mix, from rates measured on this machine.

1. Generation: samples/s per core and tar bytes per sample of every task at each size (one shard made
   in this process per task and size, the full path: draw, compose, encode, write, commit), mixed by the
   weights of pipelines/dreamomni.yaml; then wall time on N cores (at a stated parallel efficiency: Ray's
   2-worker scaling measured by bench/generate.py is the evidence) and bytes on disk.
2. Captions: wall time at a given LLM throughput (captions/s per server, times servers).
3. Precompute: wall time at a given GPU rate (samples/s per GPU) and feature bytes (latent 16·(H/8)·(W/8)
   plus the VLM's L·D, bf16; L = chat template + prompt tokens + Qwen2-VL image tokens of each input image,
   as bench/precompute.py counts them).

    python bench/capacity.py                                   # 256/512/1024, 64…4096 cores
    python bench/capacity.py --sizes 512 --cores 1024 --llm-rate 200 --gpu-rate 60
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import json

import yaml

from collage.api import make_config
from collage.reader import iter_samples
from collage.worker import make_shard, tune_worker_process

MIX_FILE = Path(__file__).resolve().parents[1] / "pipelines" / "dreamomni.yaml"
TOTAL = 68_000_000
TEMPLATE_TOKENS = 21  # Qwen2-VL's chat template around one request (as bench/precompute.py counts it)
IMAGES_PER_REQUEST = {"t2i": 0, "inpaint": 1, "edit": 1, "drag": 1, "reference": 1, "segdet": 1}


def mix_weights() -> dict[str, float]:
    tasks = yaml.safe_load(MIX_FILE.read_text())["tasks"]
    total = sum(t["weight"] for t in tasks)
    return {t["task"]: t["weight"] / total for t in tasks}


def measure(task: str, size: int, count: int) -> tuple[float, float, float]:
    """(samples/s on this core, tar bytes per sample, mean prompt characters) of one shard of `task`."""
    cfg = make_config(task=task, n=count, size=size, shard_size=count, seed=11)
    with tempfile.TemporaryDirectory() as out:
        make_shard(make_config(task=task, n=2, size=size, shard_size=2, seed=12), 0, out)  # warm the caches
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        stats = make_shard(cfg, 0, out)
        seconds = time.perf_counter() - started
        prompts = [len(json.loads(s["json"])["prompt"]) for s in iter_samples(out, decode=False)]
    return count / seconds, stats["bytes"] / count, statistics.mean(prompts)


def image_tokens(size: int) -> int:
    """Qwen2-VL's tokens for a square image, uncapped: sides to multiples of 28, one token per 28² (the
    general case, with an area cap, is bench/precompute.py's; that script cannot be imported from here:
    bench/train.py shadows the train package on a script's path)."""
    side = max(28, round(size / 28) * 28)
    return (side // 28) ** 2


def hours(seconds: float) -> str:
    return f"{seconds / 3600:8.1f} h" if seconds < 72 * 3600 else f"{seconds / 86400:8.1f} d"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--count", type=int, default=48, help="samples per measurement at 512 (scaled by area)")
    parser.add_argument("--cores", default="64,512,4096")
    parser.add_argument("--efficiency", type=float, default=0.9, help="parallel efficiency of a cluster run")
    parser.add_argument("--llm-rate", default="50,200", help="captions/s of one LLM server (comma list)")
    parser.add_argument("--llm-servers", type=int, default=8)
    parser.add_argument("--gpu-rate", default="30,100", help="precompute samples/s of one GPU (comma list)")
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=1536, help="VLM hidden size (Qwen2-VL-2B 1536, 7B 3584)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cores = [int(c) for c in args.cores.split(",")]
    weights = mix_weights()
    tune_worker_process()
    print(f"measured on this machine ({os.cpu_count()} cores; one core per measurement), mix {MIX_FILE.name}")
    print(f"{'task':10s}{'size':>6s}{'samples/s/core':>16s}{'KB/sample':>11s}")
    plan = {}
    for size in sizes:
        count = max(12, args.count * 512 * 512 // (size * size))
        seconds_per_sample = bytes_per_sample = prompt_chars = feature_bytes = 0.0
        for task, weight in weights.items():
            rate, size_bytes, chars = measure(task, size, count)
            print(f"{task:10s}{size:6d}{rate:16.1f}{size_bytes / 1e3:11.1f}")
            seconds_per_sample += weight / rate
            bytes_per_sample += weight * size_bytes
            prompt_chars += weight * chars
            tokens = TEMPLATE_TOKENS + chars / 4 + IMAGES_PER_REQUEST[task] * image_tokens(size)
            feature_bytes += weight * (16 * (size // 8) ** 2 * 2 + tokens * args.hidden * 2 + 1024)
        plan[size] = (1 / seconds_per_sample, bytes_per_sample, feature_bytes)
    print(f"\nthe 68M mix (efficiency {args.efficiency:.0%}):")
    print(f"{'size':>6s}{'mix samples/s/core':>20s}{'shards on disk':>16s}" + "".join(f"{f'{n} cores':>12s}" for n in cores))
    for size, (rate, per, _) in plan.items():
        row = f"{size:6d}{rate:20.1f}{per * TOTAL / 1e12:13.2f} TB"
        row += "".join(f"{hours(TOTAL / (rate * n * args.efficiency)):>12s}" for n in cores)
        print(row)
    print(f"\ncaptions for 68M samples on {args.llm_servers} LLM servers:")
    for llm in (float(r) for r in args.llm_rate.split(",")):
        print(f"  {llm:6.0f} captions/s per server: {hours(TOTAL / (llm * args.llm_servers)).strip()}")
    print(f"\nprecompute for 68M samples on {args.gpus} GPUs (features bf16, D={args.hidden}, no image-token cap):")
    for size, (_, _, feat) in plan.items():
        rates = "; ".join(f"{g:.0f}/s per GPU: {hours(TOTAL / (g * args.gpus)).strip()}"
                          for g in (float(r) for r in args.gpu_rate.split(",")))
        print(f"  {size:5d}²: {feat / 1e6:6.2f} MB/sample, {feat * TOTAL / 1e12:6.1f} TB; {rates}")
    print("\n(no image token cap: Qwen2-VL's tokens grow with the area; see bench/precompute.py for the capped "
          "variant and for measured encoder throughput)")


if __name__ == "__main__":
    main()
