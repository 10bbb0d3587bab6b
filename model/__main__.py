"""`python -m model`: the preset table (parameters and training FLOPs per sample)."""

from __future__ import annotations

from model.dit import PRESETS, forward_flops, num_params

VLM_TOKENS = 256  # VLM sequence length assumed for the FLOP columns
SIDES = (256, 512, 1024)  # image side in pixels; latent = side / 8, tokens = (side / 16)^2


def _flops(x: float) -> str:
    return f"{x / 1e12:.2f} T" if x >= 1e11 else f"{x / 1e9:.2f} G"


def preset_table() -> str:
    head = "| preset | width | depth | heads | params | " + " | ".join(f"train FLOPs {s}²" for s in SIDES) + " |"
    rows = [head, "|" + "---|" * (5 + len(SIDES))]
    for name, cfg in PRESETS.items():
        n = num_params(cfg)
        size = f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"
        # training = forward + backward ~ 3x forward matmul FLOPs
        flops = [_flops(3 * forward_flops(cfg, s // 8, s // 8, VLM_TOKENS)) for s in SIDES]
        rows.append(f"| {name} | {cfg.width} | {cfg.depth} | {cfg.heads} | {size} | " + " | ".join(flops) + " |")
    note = (
        f"\nTraining FLOPs per sample = 3 x analytic forward matmul/conv FLOPs, with {VLM_TOKENS} VLM tokens"
        " (Qwen2-VL: one token per 28x28 px) and a 16-channel FLUX latent at 1/8 resolution."
    )
    return "\n".join(rows) + "\n" + note


if __name__ == "__main__":
    print(preset_table())
