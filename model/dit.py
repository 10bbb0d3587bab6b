"""DreamOmni DiT (Xia et al., arXiv 2412.17098) in one file.

Layout, following the paper's framework study:

    x_t (B,16,H,W) FLUX-VAE latent, 8x down from pixels
      -> conv_in + residual conv blocks at 1x latent          (stem, keeps fine detail)
      -> 2x2 stride-2 conv = 2x downsample into N = H/2*W/2 tokens   (most of the compute)
      -> `depth` joint blocks: [latent ; VLM] tokens share one multi-head self-attention
         (2D RoPE on latent tokens, padding mask on VLM tokens), then a separate FFN
         per stream; UNet-style long skips concat early+late features and merge them
         with one linear per stream
      -> per-token linear + pixel shuffle back to 1x, merged with the stem features
      -> residual conv blocks at 1x (refine detail) -> conv_out = velocity
    VLM condition: Qwen2-VL hidden_states[-2] (penultimate, un-normalised)
      -> RMSNorm -> Linear to width.
    Time: sinusoidal -> MLP; adaLN modulation everywhere, zero-initialised (adaLN-Zero),
      so every block starts as the identity and the model output starts at exactly 0.

Call signature (what `train/` uses):

    model = DreamOmniDiT(PRESETS["2.5b"])
    v = model(x_t, t, vlm_feats, vlm_mask)

    x_t       (B, 16, H, W)  noisy latent; H, W latent sizes, both even (image size / 8)
    t         (B,)           float in [0, 1]; t = 1 is pure noise, t = 0 is data (model/flow.py)
    vlm_feats (B, L, vlm_dim) Qwen2-VL hidden_states[-2]; L may be 0
    vlm_mask  (B, L) bool    True = real token, False = padding. Pass None when nothing is
                             padded: SDPA can then use the flash kernel on GPU.
    returns   (B, 16, H, W)  predicted velocity eps - x0 (model/flow.py), in the compute dtype

bf16: run under torch.autocast(dtype=torch.bfloat16) or after model.to(torch.bfloat16);
norms, RoPE and the timestep embedding are computed in float32 either way.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

LATENT_CHANNELS = 16  # FLUX VAE


# ----------------------------------------------------------------------------- config


@dataclass
class DiTConfig:
    name: str = "custom"
    in_channels: int = LATENT_CHANNELS
    conv_channels: int = 256  # width of the 1x-latent stem and refiner
    conv_blocks: int = 2  # residual conv blocks in the stem, and again in the refiner
    width: int = 1152  # token width of the 2x-downsampled transformer
    depth: int = 20  # joint blocks
    heads: int = 18
    mlp_ratio: float = 4.0
    vlm_dim: int = 3584  # Qwen2-VL-7B hidden size (1536 for Qwen2-VL-2B)
    time_freq_dim: int = 256
    rope_theta: float = 10000.0
    qk_norm: bool = True  # RMSNorm on q and k: keeps bf16 attention logits bounded at scale

    def __post_init__(self) -> None:
        assert self.width % self.heads == 0, "width must be divisible by heads"
        assert self.head_dim % 4 == 0, "2D RoPE needs head_dim divisible by 4"

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.width * self.mlp_ratio)


PRESETS: dict[str, DiTConfig] = {
    "tiny": DiTConfig(
        name="tiny", conv_channels=32, conv_blocks=1, width=64, depth=4, heads=4, vlm_dim=48, time_freq_dim=64
    ),
    "0.85b": DiTConfig(name="0.85b", conv_channels=256, conv_blocks=2, width=1024, depth=26, heads=16),
    "2.5b": DiTConfig(name="2.5b", conv_channels=320, conv_blocks=2, width=1536, depth=34, heads=24),
}


# ----------------------------------------------------------------------------- small pieces


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """Affine-free LayerNorm in float32 (adaLN supplies scale/shift)."""
    return F.layer_norm(x.float(), x.shape[-1:], eps=1e-6).type_as(x)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).type_as(x)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 so bf16 weights don't lose the variance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).type_as(x)


def group_norm(ch: int) -> GroupNorm32:
    return GroupNorm32(math.gcd(32, ch), ch, eps=1e-6)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) t in [0,1] -> (B, dim) float32 sinusoids. t is scaled by 1000 so the fastest
    frequency still separates neighbouring steps of a 1000-step schedule."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_2d(h: int, w: int, head_dim: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (h*w, head_dim/2) for a row-major h x w token grid.

    First half of the rotated pairs encodes the row, second half the column, so
    attention sees (dy, dx) offsets and any aspect ratio works without interpolation."""
    quarter = head_dim // 4
    freqs = theta ** (-torch.arange(quarter, dtype=torch.float32, device=device) / quarter)  # (hd/4,)
    ys = torch.arange(h, dtype=torch.float32, device=device).repeat_interleave(w)  # (N,)
    xs = torch.arange(w, dtype=torch.float32, device=device).repeat(h)  # (N,)
    angles = torch.cat([ys[:, None] * freqs, xs[:, None] * freqs], dim=-1)  # (N, hd/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of x (..., N, hd) by the angles in cos/sin (N, hd/2)."""
    x0, x1 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # each (..., N, hd/2)
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).type_as(x)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class ResConvBlock(nn.Module):
    """GN-SiLU-conv, time scale/shift, GN-SiLU-conv, plus identity. conv2 is zero-init."""

    def __init__(self, ch: int, cond_dim: int):
        super().__init__()
        self.norm1 = group_norm(ch)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.cond = nn.Linear(cond_dim, 2 * ch)
        self.norm2 = group_norm(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.cond(cond)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        h = self.conv2(F.silu(modulate(self.norm2(h), shift, scale)))
        return x + h


# ----------------------------------------------------------------------------- joint block


class JointAttention(nn.Module):
    """One set of q/k/v/out weights over the concatenated [latent ; VLM] sequence."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.q_norm = RMSNorm(cfg.head_dim) if cfg.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(cfg.head_dim) if cfg.qk_norm else nn.Identity()
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(
        self, h: torch.Tensor, n_img: int, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None
    ) -> torch.Tensor:
        B, S, D = h.shape  # S = n_img latent tokens followed by L VLM tokens
        q, k, v = self.qkv(h).view(B, S, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, heads, S, hd)
        q, k = self.q_norm(q), self.k_norm(k)
        # Only latent tokens get positions; VLM features carry their own from the VLM.
        q = torch.cat([apply_rope(q[:, :, :n_img], *rope), q[:, :, n_img:]], dim=2)
        k = torch.cat([apply_rope(k[:, :, :n_img], *rope), k[:, :, n_img:]], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # mask (B,1,1,S): True = attend
        return self.proj(out.transpose(1, 2).reshape(B, S, D))


class JointBlock(nn.Module):
    """adaLN-Zero block: joint attention, then a separate FFN for each stream.

    The last block has no VLM FFN: nothing reads the VLM stream after it."""

    def __init__(self, cfg: DiTConfig, vlm_ffn: bool = True):
        super().__init__()
        self.attn = JointAttention(cfg)
        self.ffn_img = FeedForward(cfg.width, cfg.mlp_hidden)
        self.ffn_vlm = FeedForward(cfg.width, cfg.mlp_hidden) if vlm_ffn else None
        # shift/scale/gate for: attention (shared by both streams), latent FFN, [VLM FFN]
        self.n_mod = 9 if vlm_ffn else 6
        self.ada = nn.Linear(cfg.width, self.n_mod * cfg.width)

    def forward(
        self,
        x: torch.Tensor,  # (B, N, D) latent tokens
        c: torch.Tensor,  # (B, L, D) VLM tokens
        cond: torch.Tensor,  # (B, D) silu(time embedding)
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mods = self.ada(cond)[:, None].chunk(self.n_mod, dim=-1)  # each (B, 1, D)
        shift_a, scale_a, gate_a, shift_x, scale_x, gate_x = mods[:6]
        n = x.shape[1]
        a = self.attn(modulate(layer_norm(torch.cat([x, c], dim=1)), shift_a, scale_a), n, rope, mask)
        x = x + gate_a * a[:, :n]
        x = x + gate_x * self.ffn_img(modulate(layer_norm(x), shift_x, scale_x))
        if self.ffn_vlm is None:
            return x, c
        shift_c, scale_c, gate_c = mods[6:]
        c = c + gate_a * a[:, n:]
        c = c + gate_c * self.ffn_vlm(modulate(layer_norm(c), shift_c, scale_c))
        return x, c


# ----------------------------------------------------------------------------- model


class DreamOmniDiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        D, C = cfg.width, cfg.conv_channels
        self.t_embed = nn.Sequential(nn.Linear(cfg.time_freq_dim, D), nn.SiLU(), nn.Linear(D, D))

        # 1x latent stem
        self.conv_in = nn.Conv2d(cfg.in_channels, C, 3, padding=1)
        self.stem = nn.ModuleList(ResConvBlock(C, D) for _ in range(cfg.conv_blocks))
        # 2x downsample: each 2x2 patch of stem features -> one token
        self.down = nn.Conv2d(C, D, kernel_size=2, stride=2)

        # VLM condition: normalise the un-normalised penultimate layer, project to width
        self.vlm_norm = RMSNorm(cfg.vlm_dim)
        self.vlm_proj = nn.Linear(cfg.vlm_dim, D)

        # joint blocks with U-Net long skips: out-block j reads in-block (n_skip-1-j)
        self.blocks = nn.ModuleList(JointBlock(cfg, vlm_ffn=i < cfg.depth - 1) for i in range(cfg.depth))
        n_skip = cfg.depth // 2
        self.skip_img = nn.ModuleList(nn.Linear(2 * D, D) for _ in range(n_skip))
        self.skip_vlm = nn.ModuleList(nn.Linear(2 * D, D) for _ in range(n_skip))

        # back to 1x: adaLN final norm, token -> 2x2 patch of C channels
        self.head_ada = nn.Linear(D, 2 * D)
        self.head = nn.Linear(D, 4 * C)
        self.merge = nn.Conv2d(2 * C, C, 1)  # 1x long skip: [upsampled ; stem] -> C
        self.refine = nn.ModuleList(ResConvBlock(C, D) for _ in range(cfg.conv_blocks))
        self.norm_out = group_norm(C)
        self.conv_out = nn.Conv2d(C, cfg.in_channels, 3, padding=1)

        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.t_embed:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        # adaLN-Zero: every residual branch and the output start at zero
        zero = [blk.ada for blk in self.blocks] + [self.head_ada, self.conv_out]
        zero += [blk.conv2 for blk in (*self.stem, *self.refine)]
        for m in zero:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        vlm_feats: torch.Tensor,
        vlm_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, _, H, W = x_t.shape
        assert H % 2 == 0 and W % 2 == 0, f"latent size must be even, got {H}x{W}"
        dtype = self.conv_in.weight.dtype
        cond = F.silu(self.t_embed(timestep_embedding(t, self.cfg.time_freq_dim).to(dtype)))  # (B, D)

        stem = self.conv_in(x_t.to(dtype))  # (B, C, H, W)
        for blk in self.stem:
            stem = blk(stem, cond)
        x = self.down(stem).flatten(2).transpose(1, 2)  # (B, N, D), N = H/2 * W/2 row-major
        c = self.vlm_proj(self.vlm_norm(vlm_feats.to(dtype)))  # (B, L, D)

        rope = rope_2d(H // 2, W // 2, self.cfg.head_dim, self.cfg.rope_theta, x.device)
        mask = None
        if vlm_mask is not None:
            keep = torch.cat([vlm_mask.new_ones(B, x.shape[1]), vlm_mask], dim=1).bool()
            mask = keep[:, None, None, :]  # (B, 1, 1, S) broadcast over heads and queries

        skips: list[tuple[torch.Tensor, torch.Tensor]] = []
        first_out = len(self.blocks) - len(self.skip_img)
        for i, blk in enumerate(self.blocks):
            if i >= first_out:
                sx, sc = skips.pop()
                x = self.skip_img[i - first_out](torch.cat([x, sx], dim=-1))
                c = self.skip_vlm[i - first_out](torch.cat([c, sc], dim=-1))
            x, c = blk(x, c, cond, rope, mask)
            if i < len(self.skip_img):
                skips.append((x, c))

        shift, scale = self.head_ada(cond)[:, None].chunk(2, dim=-1)
        x = self.head(modulate(layer_norm(x), shift, scale))  # (B, N, 4C)
        x = F.pixel_shuffle(x.transpose(1, 2).reshape(B, -1, H // 2, W // 2), 2)  # (B, C, H, W)
        h = self.merge(torch.cat([x, stem], dim=1))
        for blk in self.refine:
            h = blk(h, cond)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 16, H, W)

    # ------------------------------------------------------------------------- io

    def save_pretrained(self, path: str | Path) -> None:
        """Write config.json and model.safetensors into directory `path`."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(asdict(self.cfg), indent=2))
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, path / "model.safetensors")

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> "DreamOmniDiT":
        """Load from a local directory written by save_pretrained (no hub access)."""
        from safetensors.torch import load_file

        path = Path(path)
        cfg = DiTConfig(**json.loads((path / "config.json").read_text()))
        with torch.device("meta"):  # skip the random init; weights come from the file
            model = cls(cfg)
        state = load_file(path / "model.safetensors", device=str(device))
        model.load_state_dict(state, strict=True, assign=True)
        return model.to(dtype=dtype) if dtype is not None else model


# ----------------------------------------------------------------------------- accounting


def num_params(cfg: DiTConfig) -> int:
    """Parameter count without allocating memory (meta device)."""
    with torch.device("meta"):
        return sum(p.numel() for p in DreamOmniDiT(cfg).parameters())


def block_flops(cfg: DiTConfig, n_img: int, vlm_len: int, last: bool = False) -> int:
    """Forward FLOPs of one JointBlock for one sample (see flops_breakdown)."""
    D, hid, N, L = cfg.width, cfg.mlp_hidden, n_img, vlm_len
    S = N + L
    flops = 2 * D * (6 if last else 9) * D  # adaLN
    flops += 2 * S * D * 3 * D + 2 * 2 * S * S * D + 2 * S * D * D  # qkv, QK^T and AV, out proj
    flops += 2 * N * 2 * D * hid + (0 if last else 2 * L * 2 * D * hid)  # FFNs
    return flops


def flops_breakdown(cfg: DiTConfig, height: int, width: int, vlm_len: int) -> dict[str, int]:
    """Forward matmul/conv FLOPs (2 per multiply-add) for one sample.

    height, width: latent size (image / 8). Elementwise ops (norms, activations, RoPE) are
    left out, as torch.utils.flop_counter does. Training ~ 3x forward."""
    D, C, L = cfg.width, cfg.conv_channels, vlm_len
    px = height * width  # 1x positions
    N = px // 4  # tokens
    S = N + L
    res_block = 2 * (2 * 9 * C * C * px) + 2 * D * 2 * C
    conv_1x = (
        2 * 9 * cfg.in_channels * C * px  # conv_in
        + 2 * cfg.conv_blocks * res_block  # stem + refine
        + 2 * 2 * C * C * px  # merge 1x1
        + 2 * 9 * C * cfg.in_channels * px  # conv_out
    )
    blocks = sum(block_flops(cfg, N, L, last=i == cfg.depth - 1) for i in range(cfg.depth))
    skips = (cfg.depth // 2) * 2 * S * 2 * D * D
    tokens_2x = (
        2 * 4 * C * D * N  # down
        + blocks
        + skips
        + 2 * D * 2 * D  # head adaLN
        + 2 * N * D * 4 * C  # head
    )
    cond = 2 * cfg.time_freq_dim * D + 2 * D * D + 2 * L * cfg.vlm_dim * D
    return {"conv_1x": conv_1x, "tokens_2x": tokens_2x, "cond": cond}


def forward_flops(cfg: DiTConfig, height: int, width: int, vlm_len: int) -> int:
    return sum(flops_breakdown(cfg, height, width, vlm_len).values())
