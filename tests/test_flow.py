"""Rectified flow: time direction, shift, logit-normal sampling, Euler sampler vs diffusers."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from model import PRESETS, DreamOmniDiT  # noqa: E402
from model.flow import (  # noqa: E402
    euler_sample,
    flow_loss,
    interpolate,
    resolution_shift,
    sample_t,
    sampling_schedule,
    time_shift,
    velocity_target,
)

TINY = PRESETS["tiny"]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_time_direction_t1_is_noise_and_target_is_dxdt():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 16, 4, 6, generator=g), torch.randn(3, 16, 4, 6, generator=g)
    torch.testing.assert_close(interpolate(x0, noise, torch.zeros(3)), x0)
    torch.testing.assert_close(interpolate(x0, noise, torch.ones(3)), noise)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    h = 1e-6
    x0, noise = x0.double(), noise.double()
    dxdt = (interpolate(x0, noise, t + h) - interpolate(x0, noise, t - h)) / (2 * h)
    torch.testing.assert_close(dxdt, velocity_target(x0, noise))
    torch.testing.assert_close(velocity_target(x0, noise), noise - x0)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_sampler_with_exact_velocity_lands_on_the_data(shift):
    # data = a single point x0: the exact velocity field is (x_t - x0) / t.
    # Integrating it from noise must give x0; a sampler running the wrong way would not.
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 16, 4, 4, generator=g), torch.randn(2, 16, 4, 4, generator=g)
    oracle = lambda x, t, f, m: (x - x0) / t.view(-1, 1, 1, 1)  # noqa: E731
    out = euler_sample(oracle, noise, torch.zeros(2, 0, 8), steps=5, shift=shift)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)
    # and the model is fed t = 1 (pure noise) first
    seen = []
    euler_sample(lambda x, t, f, m: seen.append(t[0].item()) or torch.zeros_like(x), noise, torch.zeros(2, 0, 8), steps=4)
    assert seen[0] == 1.0 and all(a > b for a, b in zip(seen, seen[1:]))


def test_time_shift_and_resolution_shift():
    t = torch.linspace(0, 1, 11)
    torch.testing.assert_close(time_shift(t, 1.0), t)
    s = time_shift(t, 3.0)
    assert s[0] == 0 and s[-1] == 1
    assert torch.all(s[1:-1] > t[1:-1])  # shift > 1 spends more time near noise
    assert resolution_shift(32, 32) == pytest.approx(1.0)  # 256^2 px
    assert resolution_shift(64, 64) == pytest.approx(2.0)  # 512^2
    assert resolution_shift(128, 128) == pytest.approx(4.0)  # 1024^2
    assert resolution_shift(32, 128) == pytest.approx(2.0)  # 256x1024: depends on token count only


def test_logit_normal_timesteps():
    g = torch.Generator().manual_seed(0)
    t = sample_t(20000, generator=g)
    assert t.shape == (20000,) and t.min() > 0 and t.max() < 1
    assert t.median().item() == pytest.approx(0.5, abs=0.02)
    # logit of the samples is N(mean, std^2)
    z = torch.logit(sample_t(20000, mean=0.5, std=0.8, generator=g).double())
    assert z.mean().item() == pytest.approx(0.5, abs=0.03) and z.std().item() == pytest.approx(0.8, abs=0.03)
    shifted = sample_t(20000, shift=3.0, generator=g)
    assert shifted.median().item() == pytest.approx(time_shift(torch.tensor(0.5), 3.0).item(), abs=0.02)


def _random_tiny(seed=0):
    torch.manual_seed(seed)
    model = DreamOmniDiT(TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            if torch.all(p == 0):
                p.normal_(0.0, 0.05)
    return model


@pytest.mark.parametrize("shift,guidance", [(1.0, 1.0), (2.0, 4.0)])
def test_euler_sampler_matches_diffusers_flow_match_euler(shift, guidance):
    from diffusers import FlowMatchEulerDiscreteScheduler

    model = _random_tiny()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(2, 16, 6, 8, generator=g)
    feats = torch.randn(2, 5, TINY.vlm_dim, generator=g)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    neg = torch.randn(2, 3, TINY.vlm_dim, generator=g)
    steps = 6

    ours = euler_sample(model, noise, feats, mask, steps=steps, guidance=guidance, neg_feats=neg, shift=shift)

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    sched.set_timesteps(sigmas=torch.linspace(1.0, 0.0, steps + 1)[:-1].numpy())  # it shifts and appends 0
    torch.testing.assert_close(sched.sigmas, sampling_schedule(steps, shift), atol=1e-6, rtol=0)
    x = noise.clone()
    with torch.no_grad():
        for ts in sched.timesteps:
            t = (ts / 1000).expand(2)  # diffusers timesteps are sigma * 1000
            v = model(x, t, feats, mask)
            if guidance != 1.0:
                v_u = model(x, t, neg, None)
                v = v_u + guidance * (v - v_u)
            x = sched.step(v, ts, x).prev_sample
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=1e-4)
    assert (ours - noise).abs().mean() > 0.01  # the model did move the sample


def test_flow_loss_of_zero_init_model_is_target_energy():
    model = DreamOmniDiT(TINY)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 16, 4, 4, generator=g), torch.randn(2, 16, 4, 4, generator=g)
    loss = flow_loss(model, x0, torch.zeros(2, 0, TINY.vlm_dim), t=torch.rand(2), noise=noise)
    torch.testing.assert_close(loss, (noise - x0).pow(2).mean())
