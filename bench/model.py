"""Forward+backward time and FLOPs of the DreamOmni DiT vs diffusers' SD3Transformer2DModel.

Both models get the same width, depth, heads, latent size (so the same latent token count)
and VLM length, and run in the same process on the same device. FLOPs for ours are analytic
(model.dit.forward_flops) and cross-checked against torch.utils.flop_counter; SD3's come from
the flop counter only.

    python bench/model.py                                    # CPU, small matched config
    python bench/model.py --preset 0.85b --device cuda --dtype bf16 --latent 64 --batch 8   # GPU MFU
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

# Run as a script, sys.path[0] is bench/, where this very file would shadow the `model` package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from model.dit import (  # noqa: E402
    PRESETS,
    DiTConfig,
    DreamOmniDiT,
    JointBlock,
    block_flops,
    flops_breakdown,
    forward_flops,
    rope_2d,
)


def build_sd3(cfg: DiTConfig, latent: int) -> torch.nn.Module:
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(
        sample_size=latent,
        patch_size=2,
        in_channels=cfg.in_channels,
        num_layers=cfg.depth,
        attention_head_dim=cfg.head_dim,
        num_attention_heads=cfg.heads,
        joint_attention_dim=cfg.vlm_dim,
        caption_projection_dim=cfg.width,
        pooled_projection_dim=cfg.vlm_dim,  # fed the mean VLM feature
        out_channels=cfg.in_channels,
        pos_embed_max_size=latent // 2,
        qk_norm="rms_norm" if cfg.qk_norm else None,
    )


def make_inputs(cfg: DiTConfig, batch: int, latent: int, vlm_len: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.in_channels, latent, latent, generator=g).to(device)
    t = torch.rand(batch, generator=g).to(device)
    feats = torch.randn(batch, vlm_len, cfg.vlm_dim, generator=g).to(device)
    return x, t, feats


def run_ours(model, x, t, feats):
    return model(x, t, feats, None)  # no padding -> no mask -> flash kernel on GPU


def run_sd3(model, x, t, feats):
    return model(x, feats, feats.mean(1), t * 1000, return_dict=False)[0]


class OurBlock(torch.nn.Module):
    """One JointBlock with its RoPE table, called like the SD3 block below."""

    def __init__(self, cfg: DiTConfig, latent: int):
        super().__init__()
        self.block, self.side, self.cfg = JointBlock(cfg), latent // 2, cfg

    def forward(self, x, c, temb):
        rope = rope_2d(self.side, self.side, self.cfg.head_dim, self.cfg.rope_theta, x.device)
        return self.block(x, c, temb, rope, None)[0]


def build_sd3_block(cfg: DiTConfig) -> torch.nn.Module:
    from diffusers.models.attention import JointTransformerBlock

    return JointTransformerBlock(cfg.width, cfg.heads, cfg.head_dim, qk_norm="rms_norm" if cfg.qk_norm else None)


def block_inputs(cfg: DiTConfig, batch: int, latent: int, vlm_len: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, (latent // 2) ** 2, cfg.width, generator=g).to(device)
    c = torch.randn(batch, vlm_len, cfg.width, generator=g).to(device)
    return x, c, torch.randn(batch, cfg.width, generator=g).to(device)


def run_block(block, x, c, temb):
    out = block(x, c, temb)
    return out[1] if isinstance(out, tuple) else out  # SD3 block returns (context, latents)


def count_flops(fn, model, inputs) -> tuple[int, int]:
    """(forward, backward) FLOPs for one call; math SDPA so attention shows up as matmuls on any device."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fwd:
        out = fn(model, *inputs)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as bwd:
        out.float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    return fwd.get_total_flops(), bwd.get_total_flops()


def time_train_step(fn, model, inputs, iters: int, warmup: int, dtype: torch.dtype, device: torch.device) -> float:
    """Median seconds of forward + backward (autocast when dtype is not float32)."""

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = fn(model, *inputs)
        out.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="use a preset's width/depth/heads/conv sizes")
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--vlm-dim", type=int, default=3584)
    p.add_argument("--latent", type=int, default=32, help="latent side (image side / 8); tokens = (latent/2)^2")
    p.add_argument("--vlm-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default 1: on a shared 2-core box every OpenMP barrier can stall a scheduler tick)",
    )
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H100 SXM: 989)")
    p.add_argument("--no-sd3", action="store_true", help="skip the diffusers baseline (e.g. preset-size MFU only)")
    args = p.parse_args()

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    if args.preset:
        cfg = PRESETS[args.preset]
    else:
        cfg = DiTConfig(
            name="bench", width=args.width, depth=args.depth, heads=args.heads, conv_channels=args.width // 4
        )
    cfg = replace(cfg, vlm_dim=args.vlm_dim)
    tokens = (args.latent // 2) ** 2
    print(
        f"device={device} dtype={args.dtype} threads={torch.get_num_threads()} | width={cfg.width} depth={cfg.depth} "
        f"heads={cfg.heads} | latent {args.latent}x{args.latent} = {tokens} tokens + {args.vlm_len} VLM tokens | batch {args.batch}"
    )

    torch.manual_seed(0)
    models = {"ours": (DreamOmniDiT(cfg).to(device), run_ours)}
    if not args.no_sd3:
        models["sd3"] = (build_sd3(cfg, args.latent).to(device), run_sd3)

    one = make_inputs(cfg, 1, args.latent, args.vlm_len, device)
    full = make_inputs(cfg, args.batch, args.latent, args.vlm_len, device)
    analytic = forward_flops(cfg, args.latent, args.latent, args.vlm_len)
    parts = flops_breakdown(cfg, args.latent, args.latent, args.vlm_len)

    res = {}
    for name, (model, fn) in models.items():
        params = sum(p.numel() for p in model.parameters())
        fwd, bwd = count_flops(fn, model, one)
        sec = time_train_step(fn, model, full, args.iters, args.warmup, dtype, device)
        train = (fwd + bwd) * args.batch  # counted FLOPs of one fwd+bwd over the batch
        res[name] = dict(params=params, fwd=fwd, train=train, sec=sec)
        print(
            f"{name:5s} params {params / 1e6:9.2f}M | fwd FLOPs/sample {fwd / 1e9:9.2f} G (counter) | "
            f"fwd+bwd {train / 1e9:9.2f} G/batch | {sec * 1e3:9.1f} ms/step | {train / sec / 1e12:7.3f} TFLOP/s"
        )
        del model

    # one block, matched width and token count (SD3: non-final block, both streams keep going)
    blocks = {"ours": OurBlock(cfg, args.latent).to(device)}
    if not args.no_sd3:
        blocks["sd3"] = build_sd3_block(cfg).to(device)
    for blk in blocks.values():  # adaLN-Zero would zero the gates; give every branch a signal
        with torch.no_grad():
            for p in blk.parameters():
                if torch.all(p == 0):
                    p.normal_(0.0, 0.02)
    b_one = block_inputs(cfg, 1, args.latent, args.vlm_len, device)
    b_full = block_inputs(cfg, args.batch, args.latent, args.vlm_len, device)
    bres = {}
    for name, blk in blocks.items():
        fwd, bwd = count_flops(run_block, blk, b_one)
        sec = time_train_step(run_block, blk, b_full, args.iters, args.warmup, dtype, device)
        params = sum(p.numel() for p in blk.parameters())
        bres[name] = dict(params=params, fwd=fwd, sec=sec)
        print(
            f"block {name:4s} params {params / 1e6:7.2f}M | fwd FLOPs/sample {fwd / 1e9:7.3f} G (counter) | "
            f"{sec * 1e3:8.1f} ms/step fwd+bwd"
        )
    print(
        f"ours block analytic fwd FLOPs/sample {block_flops(cfg, tokens, args.vlm_len) / 1e9:.3f} G "
        f"(counter/analytic = {bres['ours']['fwd'] / block_flops(cfg, tokens, args.vlm_len):.4f})"
    )
    if "sd3" in bres:
        o, s = bres["ours"], bres["sd3"]
        print(
            f"block ratio ours/sd3: params {o['params'] / s['params']:.3f} | fwd FLOPs {o['fwd'] / s['fwd']:.3f} | "
            f"step time {o['sec'] / s['sec']:.3f}"
        )

    print(
        f"ours analytic fwd FLOPs/sample {analytic / 1e9:.2f} G  (counter/analytic = {res['ours']['fwd'] / analytic:.4f}); "
        f"bwd/fwd = {(res['ours']['train'] / args.batch - res['ours']['fwd']) / res['ours']['fwd']:.3f}; "
        f"share at 2x tokens {parts['tokens_2x'] / analytic:.1%}, at 1x conv {parts['conv_1x'] / analytic:.1%}"
    )
    if "sd3" in res:
        o, s = res["ours"], res["sd3"]
        print(
            f"ratio ours/sd3: params {o['params'] / s['params']:.3f} | fwd FLOPs {o['fwd'] / s['fwd']:.3f} | "
            f"step time {o['sec'] / s['sec']:.3f} | throughput (FLOP/s) {(o['train'] / o['sec']) / (s['train'] / s['sec']):.3f}"
        )
    if device.type == "cuda":
        mfu = res["ours"]["train"] / res["ours"]["sec"] / (args.peak_tflops * 1e12)
        print(f"ours MFU {mfu:.1%} of {args.peak_tflops:.0f} TFLOP/s peak ({torch.cuda.get_device_name()})")


if __name__ == "__main__":
    main()
