"""DreamOmni DiT: shapes, masking, init, gradients, overfitting, io, size and FLOP accounting."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from model import PRESETS, DiTConfig, DreamOmniDiT, flops_breakdown, forward_flops, num_params  # noqa: E402
from model.dit import apply_rope, rope_2d  # noqa: E402
from model.flow import flow_loss, velocity_target  # noqa: E402

TINY = PRESETS["tiny"]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def randomized(cfg: DiTConfig = TINY, seed: int = 0) -> DreamOmniDiT:
    """Tiny model with the zero-initialised tensors filled in, so every path shows in the output."""
    torch.manual_seed(seed)
    model = DreamOmniDiT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if torch.all(p == 0):
                p.normal_(0.0, 0.05)
    return model


def inputs(B=2, H=8, W=8, L=5, seed=1, cfg: DiTConfig = TINY):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, cfg.in_channels, H, W, generator=g)
    t = torch.rand(B, generator=g)
    feats = torch.randn(B, L, cfg.vlm_dim, generator=g) * 30  # un-normalised like hidden_states[-2]
    return x, t, feats


# ----------------------------------------------------------------------------- shapes


ASPECTS = [(8, 8), (4, 16), (16, 4), (6, 12), (12, 6), (2, 2), (10, 4), (4, 10), (2, 8), (8, 2)]


def test_shapes_over_aspect_ratios_and_vlm_lengths():
    model = randomized().eval()
    with torch.no_grad():
        for H, W in ASPECTS:  # 4:1 ... 1:4
            for L in (0, 1, 7, 20):
                x, t, feats = inputs(B=2, H=H, W=W, L=L)
                out = model(x, t, feats, torch.ones(2, L, dtype=torch.bool))
                assert out.shape == (2, 16, H, W), (H, W, L)
                assert torch.isfinite(out).all()
                assert out.abs().sum() > 0


def test_odd_latent_size_rejected():
    model = DreamOmniDiT(TINY)
    x, t, feats = inputs(H=7, W=8)
    with pytest.raises(AssertionError):
        model(x, t, feats)


# ----------------------------------------------------------------------------- masking


def test_padded_vlm_tokens_change_nothing():
    model = randomized().eval()
    x, t, feats = inputs(B=2, L=6)
    lengths = [3, 6]
    pad_to = 11
    junk = torch.randn(2, pad_to, TINY.vlm_dim) * 100
    padded = junk.clone()
    mask = torch.zeros(2, pad_to, dtype=torch.bool)
    for b, n in enumerate(lengths):
        padded[b, :n] = feats[b, :n]
        mask[b, :n] = True
    with torch.no_grad():
        batched = model(x, t, padded, mask)
        for b, n in enumerate(lengths):
            alone = model(x[b : b + 1], t[b : b + 1], feats[b : b + 1, :n], None)
            torch.testing.assert_close(batched[b : b + 1], alone, atol=1e-5, rtol=1e-4)


def test_vlm_tokens_do_condition_the_output():
    # guards the padding test against a model that ignores the VLM stream
    model = randomized().eval()
    x, t, feats = inputs(B=1, L=4)
    other = feats.clone()
    other[:, 1] += 5.0
    with torch.no_grad():
        assert (model(x, t, feats) - model(x, t, other)).abs().max() > 1e-3


def test_fully_masked_condition_equals_empty_condition():
    model = randomized().eval()
    x, t, feats = inputs(B=2, L=5)
    empty = torch.zeros(2, 0, TINY.vlm_dim)
    with torch.no_grad():
        masked = model(x, t, feats, torch.zeros(2, 5, dtype=torch.bool))
        none = model(x, t, empty, torch.zeros(2, 0, dtype=torch.bool))
    torch.testing.assert_close(masked, none, atol=1e-5, rtol=1e-4)


def test_all_true_mask_equals_no_mask():
    model = randomized().eval()
    x, t, feats = inputs(B=2, L=5)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, feats, torch.ones(2, 5, dtype=torch.bool)), model(x, t, feats, None))


def test_rope_depends_only_on_offset():
    cos, sin = rope_2d(6, 5, head_dim=16, theta=10000.0, device=torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, generator=g), torch.randn(16, generator=g)
    rq = apply_rope(q.expand(30, 16), cos, sin)  # q placed at every grid position
    rk = apply_rope(k.expand(30, 16), cos, sin)
    idx = lambda y, x: y * 5 + x  # noqa: E731  row-major
    # same (dy, dx) = (2, 1) at two different places: same score
    s1 = rq[idx(0, 0)] @ rk[idx(2, 1)]
    s2 = rq[idx(3, 3)] @ rk[idx(5, 4)]
    torch.testing.assert_close(s1, s2, atol=1e-5, rtol=1e-5)
    # transposed offset (1, 2) is a different relation: rows and columns are told apart
    s3 = rq[idx(0, 0)] @ rk[idx(1, 2)]
    assert (s1 - s3).abs() > 1e-3
    # rotation keeps norms
    torch.testing.assert_close(rq.norm(dim=-1), q.norm().expand(30), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- init and gradients


def test_output_is_zero_at_init_and_training_can_start():
    model = DreamOmniDiT(TINY)
    x, t, feats = inputs(B=2, L=5)
    out = model(x, t, feats)
    assert torch.equal(out, torch.zeros_like(out))
    flow_loss(model, x, feats).backward()
    assert model.conv_out.weight.grad.abs().sum() > 0  # the zero layer itself gets a signal


def test_gradient_reaches_every_parameter():
    model = randomized()
    x, t, feats = inputs(B=2, L=5)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    model(x, t, feats, mask).pow(2).mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"no gradient reaches: {dead}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_tiny_model_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = DreamOmniDiT(TINY)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 16, 8, 8, generator=g)
    noise = torch.randn(4, 16, 8, 8, generator=g)
    t = torch.tensor([0.2, 0.4, 0.6, 0.8])
    feats = torch.randn(4, 6, TINY.vlm_dim, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    losses = []
    for _ in range(60):
        loss = flow_loss(model, x0, feats, t=t, noise=noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # zero-init output: first loss is exactly E|eps - x0|^2 ~ 2
    assert losses[0] == pytest.approx(velocity_target(x0, noise).pow(2).mean().item(), rel=1e-5)
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])  # reaches ~0.013x on this seed


# ----------------------------------------------------------------------------- precision


def test_bf16_forward_tracks_fp32():
    model = randomized().eval()
    x, t, feats = inputs(B=2, H=8, W=12, L=5)
    mask = torch.tensor([[True] * 5, [True] * 2 + [False] * 3])
    with torch.no_grad():
        ref = model(x, t, feats, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = model(x, t, feats, mask)
        pure = model.to(torch.bfloat16)(x.bfloat16(), t, feats.bfloat16(), mask)
    assert pure.dtype == torch.bfloat16
    for out in (auto, pure):
        assert torch.isfinite(out).all()
        rel = (out.float() - ref).norm() / ref.norm()
        assert rel < 0.05, rel


# ----------------------------------------------------------------------------- io


def test_save_load_round_trip(tmp_path):
    model = randomized().eval()
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "config.json").exists()
    assert (tmp_path / "ckpt" / "model.safetensors").exists()
    loaded = DreamOmniDiT.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.cfg == model.cfg
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    x, t, feats = inputs(B=2, L=4)
    with torch.no_grad():
        assert torch.equal(model(x, t, feats), loaded(x, t, feats))
    half = DreamOmniDiT.from_pretrained(tmp_path / "ckpt", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())


# ----------------------------------------------------------------------------- size and FLOPs


@pytest.mark.parametrize("name,target", [("0.85b", 0.85e9), ("2.5b", 2.5e9)])
def test_preset_size_matches_name(name, target):
    n = num_params(PRESETS[name])
    assert abs(n - target) / target < 0.05, f"{name}: {n / 1e9:.3f}B"


@pytest.mark.parametrize("name", ["0.85b", "2.5b"])
def test_most_compute_runs_at_2x(name):
    for side in (256, 512, 1024):
        parts = flops_breakdown(PRESETS[name], side // 8, side // 8, vlm_len=256)
        assert parts["tokens_2x"] / sum(parts.values()) > 0.95, (side, parts)


def test_analytic_flops_match_torch_flop_counter():
    model = randomized()
    for H, W, L in [(8, 8, 5), (4, 16, 0), (12, 6, 9)]:
        x, t, feats = inputs(B=1, H=H, W=W, L=L)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fwd:
            out = model(x, t, feats, torch.ones(1, L, dtype=torch.bool))
        assert fwd.get_total_flops() == forward_flops(TINY, H, W, L)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as bwd:
            out.sum().backward()
        # backward = 2x forward, minus the input-gradient matmuls nobody needs (x_t, vlm_feats)
        ratio = bwd.get_total_flops() / fwd.get_total_flops()
        assert 1.7 < ratio <= 2.0, ratio


def test_preset_table_prints():
    from model.__main__ import preset_table

    text = preset_table()
    for name in PRESETS:
        assert name in text
    assert f"{num_params(PRESETS['2.5b']) / 1e9:.2f}B" in text

