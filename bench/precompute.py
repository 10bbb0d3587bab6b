"""Precompute: throughput on this CPU with the tiny encoders, and bytes per feature sample at the real sizes.

    .venv/bin/python bench/precompute.py [--n 24] [--sizes 256,512]

1. samples/s of `featurize_shard` (read + decode + size policy + both encoders + write) against its own
   read + decode + size-policy part alone, in the same run (the ratio is what the encoders cost).
2. bytes per sample of the contract's tensors in bf16 for each task at 256/512/1024, for the 2B (1536) and
   7B (3584) hidden sizes: latent 16·(H/8)·(W/8), vlm L·D with L = text + image tokens. Image tokens are
   Qwen2-VL's (one per 28×28 px after its smart resize, capped by max_pixels); text tokens are estimated
   from the real prompts at 4 characters a token (Qwen's BPE on English) plus the chat template's 21.
   Then the paper's 68M mix on disk, and the same with a cap of 256 image tokens per image.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

from collage.api import generate_run, iter_samples
from train.conditioning import vlm_request
from train.encoders import Encoders
from train.featurize import Settings, featurize_shard
from train.inputs import prepare, resolve_sources
from train.tiny import build_tiny_vae, build_tiny_vlm

MIX = {"t2i": 12e6, "inpaint": 12e6, "edit": 12e6, "drag": 12e6, "reference": 12e6, "segdet": 8e6}
TEMPLATE_TOKENS = 21  # <|im_start|>system … <|im_start|>user … <|im_start|>assistant, vision start/end


def image_tokens(width: int, height: int, max_pixels: int | None) -> int:
    """Qwen2-VL's smart resize: sides to multiples of 28, area capped at max_pixels; a token per 28²."""
    h, w = max(28, round(height / 28) * 28), max(28, round(width / 28) * 28)
    if max_pixels and h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = max(28, math.floor(height / beta / 28) * 28), max(28, math.floor(width / beta / 28) * 28)
    return (h // 28) * (w // 28)


def throughput(root: Path, n: int, size: int) -> None:
    vlm, vae = build_tiny_vlm(root / "vlm"), build_tiny_vae(root / "vae")
    torch.set_num_threads(1)
    encoders = Encoders.load(vlm, vae)
    for task in ("t2i", "edit", "inpaint"):
        src = root / f"src-{task}-{size}"
        generate_run(out=str(src), task=task, n=n, seed=1, size=size, shard_size=n, backend="local")
        shard = resolve_sources([str(src)])[0]
        started = time.perf_counter()
        from train.inputs import iter_raw_samples

        prepared = [prepare(k, m, size, False) for k, m in iter_raw_samples(shard)]
        base = time.perf_counter() - started
        started = time.perf_counter()
        featurize_shard(encoders, Settings(size, "bf16", 8, None, "bench"), shard, str(root / f"feats-{task}-{size}"))
        full = time.perf_counter() - started
        print(f"{task:9s} {size}²: {n / full:6.1f} samples/s with the tiny encoders (1 thread); read+decode+resize "
              f"alone {n / base:7.1f}/s; encoders take {1 - base / full:.0%} of the time")


def bytes_table(root: Path, sizes: tuple[int, ...]) -> None:
    texts: dict[str, list[tuple[str, list[str]]]] = {}
    for task in MIX:
        src = root / f"text-{task}"
        generate_run(out=str(src), task=task, n=40, seed=2, size=128, shard_size=40, backend="local")
        texts[task] = []
        for s in iter_samples(str(src)):
            images = {k: s[k] for k in ("tgt", "src", "mask", "cond") if k in s}
            request = vlm_request(s["json"], images, s["__key__"])
            texts[task].append((request.text, request.image_names))
    for cap_name, cap in (("no cap (Qwen2-VL's default max_pixels)", None), ("max_pixels = 256·28²", 256 * 28 * 28)):
        print(f"\nbytes per sample, bf16, {cap_name}:")
        print(f"{'task':10s}" + "".join(f"{f'{s}² D=1536':>16s}{f'{s}² D=3584':>16s}" for s in sizes))
        totals = {(s, d): 0.0 for s in sizes for d in (1536, 3584)}
        for task, items in texts.items():
            row = f"{task:10s}"
            for size in sizes:
                latent = 16 * (size // 8) ** 2 * 2
                tokens = sum(TEMPLATE_TOKENS + len(text) / 4 + len(names) * image_tokens(size, size, cap)
                             for text, names in items) / len(items)
                for hidden in (1536, 3584):
                    per = latent + tokens * hidden * 2 + 1024  # + json and tar headers
                    totals[(size, hidden)] += per * MIX[task]
                    row += f"{per / 1e6:13.2f} MB"
            print(row)
        print("68M mix:  " + "".join(f"{totals[(s, d)] / 1e12:13.1f} TB" for s in sizes for d in (1536, 3584)))


def fp8_error(root: Path) -> None:
    """What storing `vlm` as fp8 (e4m3, one fp32 scale per token) instead of bf16 costs: relative RMS error
    against the fp32 features, for the tiny VLM's real features and for heavy-tailed synthetic ones (real
    Qwen2-VL hidden states carry a few huge-magnitude channels; per-token scales suffer from them)."""
    encoders = Encoders.load(root / "vlm", root / "vae")
    src = root / "fp8-src"
    generate_run(out=str(src), task="edit", n=16, seed=3, size=256, shard_size=16, backend="local")
    feats = []
    for s in iter_samples(str(src)):
        images = {k: s[k] for k in ("tgt", "src", "mask", "cond") if k in s}
        feats += encoders.encode_vlm([vlm_request(s["json"], images, s["__key__"])])
    tiny = torch.cat(feats).float()
    g = torch.Generator().manual_seed(0)
    synthetic = torch.randn(4096, 1536, generator=g)
    synthetic[:, :4] *= 100  # a few outlier channels, as in real LLM hidden states

    def rel(a, b):
        return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())

    def fp8(x, per="token"):
        dim = 1 if per == "token" else 0
        scale = x.abs().amax(dim=dim, keepdim=True).clamp(min=1e-12) / 448.0
        return (x / scale).to(torch.float8_e4m3fn).float() * scale

    print("\nvlm storage error (relative RMS vs fp32):")
    for name, x in (("tiny Qwen2-VL features", tiny), ("heavy-tailed 1536-d", synthetic)):
        print(f"  {name:24s} bf16 {rel(x.bfloat16().float(), x):.4f}   fp8 per-token scale {rel(fp8(x), x):.4f}   "
              f"fp8 per-channel scale {rel(fp8(x, 'channel'), x):.4f}   (bytes: fp8 = ½ bf16 + 4 per token)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--sizes", default="256,512")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for size in map(int, args.sizes.split(",")):
            throughput(root, args.n, size)
        bytes_table(root, (256, 512, 1024))
        fp8_error(root)


if __name__ == "__main__":
    main()
