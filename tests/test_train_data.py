"""The streaming feature loader (train/data.py) on real feature shards written here in the contract's format:
one bucket per batch, the same bucket on every rank, an epoch's samples once each over 2 ranks × 2 workers,
exact resume (0 and 2 workers), exclusions, damaged shards and samples skipped and counted, source mixing,
padding and the VLM cap, per-bucket batch sizes, reproducible CFG dropout."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from safetensors.torch import save, save_file

from collage.config import aspect_buckets
from train.buckets import BucketSchedule, latent_hw
from train.data import FeatureLoader, LoaderConfig

SIZE, BUCKETS, D = 128, (10, 15, 20), 32  # three aspect buckets at 128²: latents 20×12, 16×16, 12×20
PER_BUCKET, SHARDS = 12, 8  # 36 samples a shard, 288 a source


def _sample(rng: np.random.Generator, bucket: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    width, height = aspect_buckets(SIZE)[bucket]
    latent = torch.from_numpy(rng.standard_normal((16, height // 8, width // 8), np.float32)).bfloat16()
    vlm = torch.from_numpy(rng.standard_normal((length, D), np.float32)).bfloat16()
    return latent, vlm


def write_shard(path: Path, name: str, shard: int, rng: np.random.Generator, per_bucket: int = PER_BUCKET,
                max_len: int = 24, junk: tuple[int, ...] = (), dtype: torch.dtype = torch.bfloat16) -> dict:
    """One feature shard as train.precompute writes it; sample indexes in `junk` get unreadable safetensors.
    Returns {key: (latent, vlm, bucket)} of its good samples."""
    buckets = [b for b in BUCKETS for _ in range(per_bucket)]
    rng.shuffle(buckets)
    truth = {}
    with wds.TarWriter(str(path), mtime=0) as writer:
        for i, bucket in enumerate(buckets):
            key = f"{name}-{shard:06d}-{i:06d}"
            latent, vlm = _sample(rng, bucket, int(rng.integers(1, max_len + 1)))
            width, height = aspect_buckets(SIZE)[bucket]
            meta = {"task": "t2i", "op": "text", "prompt": key, "caption": key, "width": width,
                    "height": height, "bucket": bucket, "vlm_len": len(vlm), "vlm_images": [], "vlm_text": key}
            latent, vlm = latent.to(dtype), vlm.to(dtype)
            blob = b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" if i in junk else save({"latent": latent, "vlm": vlm})
            writer.write({"__key__": key, "feats.safetensors": blob, "json": json.dumps(meta).encode()})
            if i not in junk:
                truth[key] = (latent, vlm, bucket)
    return truth


def write_source(out: Path, name: str, shards: int = SHARDS, seed: int = 0) -> dict:
    """A feature directory (shards + sizes.json); returns {key: (latent, vlm, bucket)}."""
    out.mkdir(parents=True, exist_ok=True)
    rng, truth = np.random.default_rng(seed), {}
    for shard in range(shards):
        truth |= write_shard(out / f"{name}-{shard:06d}.tar", name, shard, rng)
    sizes = {f"{name}-{shard:06d}.tar": PER_BUCKET * len(BUCKETS) for shard in range(shards)}
    (out / "sizes.json").write_text(json.dumps(sizes))
    return truth


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    root = tmp_path_factory.mktemp("feats")
    truth = write_source(root / "a", "a", seed=1)
    truth |= write_source(root / "b", "b", shards=4, seed=2)
    return root, truth


def cfg(feats, **kw) -> LoaderConfig:
    root, _ = feats
    kw.setdefault("sources", [(str(root / "a"), 1.0)])
    kw.setdefault("batch_size", 4)
    return LoaderConfig(**kw)


def run(config: LoaderConfig, rank: int = 0, world: int = 1, steps: int | None = None,
        loader: FeatureLoader | None = None) -> list[dict]:
    """The batches of one epoch (from where the loader stands), or its first `steps`."""
    loader = loader or FeatureLoader(config, rank=rank, world_size=world)
    out = []
    for batch in loader:
        out.append(batch)
        if steps is not None and len(out) == steps:
            break
    return out


def brief(batches: list[dict]) -> list[tuple]:
    return [(b["step"], b["bucket"], tuple(b["keys"]), tuple(b["cfg_drop"].tolist())) for b in batches]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_batch_is_one_bucket_with_the_contract_shapes(feats, workers):
    _, truth = feats
    loader, batches, held = FeatureLoader(cfg(feats, epoch_samples=200, num_workers=workers)), [], []
    for i, b in enumerate(loader):
        for j, key in enumerate(b["keys"]):  # as received: worker buffers are reused once let go …
            assert torch.equal(b["latent"][j], truth[key][0])
            assert torch.equal(b["vlm"][j, : len(truth[key][1])], truth[key][1])
        batches.append({k: v for k, v in b.items() if k not in ("latent", "vlm")}
                       | {"shapes": (tuple(b["latent"].shape), b["latent"].dtype, tuple(b["vlm"].shape), b["vlm"].dtype)})
        if i % 5 == 0:
            held.append((b["keys"], b["latent"][1:], b["vlm"]))  # … never while a view of them is alive
    for keys, latent, vlm in held:
        assert all(torch.equal(latent[j - 1], truth[k][0]) for j, k in enumerate(keys) if j)
        assert all(torch.equal(vlm[j, : len(truth[k][1])], truth[k][1]) for j, k in enumerate(keys))
    assert len(batches) == 50
    seen = Counter()
    for b in batches:
        h, w = latent_hw((SIZE, b["bucket"]))
        assert b["shapes"] == ((4, 16, h, w), torch.bfloat16, (4, b["vlm_mask"].shape[1], D), torch.bfloat16)
        assert b["size"] == SIZE and all(m["bucket"] == b["bucket"] for m in b["json"])
        assert all(truth[k][2] == b["bucket"] for k in b["keys"])
        assert b["vlm_mask"].dtype == torch.bool and b["vlm_mask"].shape[0] == 4
        seen[b["bucket"]] += 1
    assert set(seen) == set(BUCKETS) and min(seen.values()) >= 12  # the schedule follows the (equal) buckets


def test_two_ranks_two_workers_cover_an_epoch_once(feats):
    _, truth = feats
    config = cfg(feats, num_workers=2, epoch_samples=160, seed=3)  # 20 steps a rank, 40 samples a worker
    per_rank = []
    for rank in range(2):
        loader = FeatureLoader(config, rank=rank, world_size=2)
        first = run(config, loader=loader)
        second = run(config, loader=loader)
        assert len(first) == len(second) == 20 and loader.epoch == 2
        per_rank.append((first, second))
    epoch1 = [k for first, _ in per_rank for b in first for k in b["keys"]]
    assert len(epoch1) == 160 and len(set(epoch1)) == 160  # no sample twice in an epoch, over ranks and workers
    assert all(k.startswith("a-") for k in epoch1)
    both = [k for first, second in per_rank for b in first + second for k in b["keys"]]
    source_a = {k for k in truth if k.startswith("a-")}
    # two epochs (320 > the 288 samples): every sample has come before any came twice (the remainder policy:
    # a stream's bucket that used up its share of the pass reads on into the next one)
    assert set(both) == source_a
    assert max(Counter(both).values()) == 2 and sum(n == 2 for n in Counter(both).values()) == 320 - 288
    (f0, s0), (f1, s1) = per_rank  # and the two ranks drew the same bucket at every step
    assert [b["bucket"] for b in f0 + s0] == [b["bucket"] for b in f1 + s1]


def test_ranks_draw_the_same_bucket_at_every_step(feats):
    root, _ = feats
    config = cfg(feats, sources=[(str(root / "a"), 0.5), (str(root / "b"), 0.5)], tokens_per_batch=256,
                 epoch_samples=4 * 60 * 4)
    runs = [run(config, rank=r, world=4) for r in range(4)]
    assert len({len(r) for r in runs}) == 1 and len(runs[0]) > 50
    assert len({tuple(b["bucket"] for b in r) for r in runs}) == 1
    assert len({tuple(b["latent"].shape for b in r) for r in runs}) == 1  # per-bucket batch sizes agree too
    early = [k for r in runs for b in r[:8] for k in b["keys"]]
    assert len(set(early)) == len(early)  # ranks read different shards


def test_per_bucket_batch_sizes_keep_tokens_steady(feats):
    loader = FeatureLoader(cfg(feats, tokens_per_batch=512, epoch_samples=300))
    # 16×16 latent: 64 DiT tokens → 8 samples; 20×12 and 12×20: 60 tokens → 8 samples (512 // 60)
    assert {b[1]: n for b, n in loader.batch_sizes.items()} == {10: 8, 15: 8, 20: 8}
    loader = FeatureLoader(cfg(feats, tokens_per_batch=512, bucket_batch_sizes={15: 3}, epoch_samples=300))
    for b in run(loader.config, loader=loader):
        assert len(b["keys"]) == (3 if b["bucket"] == 15 else 8)


def test_global_batch_size_and_fp16_features(tmp_path):
    truth = write_shard(tmp_path / "h-000000.tar", "h", 0, np.random.default_rng(3), dtype=torch.float16)
    config = LoaderConfig(sources=[str(tmp_path / "h-000000.tar")], global_batch_size=6, epoch_samples=24)
    loader = FeatureLoader(config, rank=1, world_size=2)
    assert set(loader.batch_sizes.values()) == {3} and len(loader) == 4
    for b in run(config, loader=loader):
        assert b["latent"].dtype == b["vlm"].dtype == torch.bfloat16  # fp16 features, converted
        for i, key in enumerate(b["keys"]):
            assert torch.equal(b["latent"][i], truth[key][0].bfloat16())
    with pytest.raises(ValueError, match="does not split"):
        FeatureLoader(LoaderConfig(sources=[str(tmp_path)], global_batch_size=5), rank=0, world_size=2)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_reproduces_the_uninterrupted_sequence(feats, workers):
    root, _ = feats
    config = cfg(feats, sources=[(str(root / "a"), 0.6), (str(root / "b"), 0.4)], num_workers=workers,
                 epoch_samples=96, seed=7, cfg_dropout=0.3)
    uncond = torch.randn(5, D)
    whole = FeatureLoader(config, rank=1, world_size=2, uncond=uncond)
    reference = brief(run(config, loader=whole) + run(config, loader=whole) + run(config, loader=whole))
    assert len(reference) == 36  # 3 epochs of 12 steps
    for k in (5, 12, 19):  # mid-epoch, at an epoch boundary, mid second epoch
        first = FeatureLoader(config, rank=1, world_size=2, uncond=uncond)
        done = []
        while len(done) < k:
            done += run(config, loader=first, steps=k - len(done))
        state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint carries: small, plain json
        assert len(json.dumps(state)) < 4000
        resumed = FeatureLoader(config, rank=1, world_size=2, uncond=uncond)
        resumed.load_state_dict(state)
        rest = []
        while len(rest) < 36 - k:
            rest += run(config, loader=resumed)
        assert brief(done) + brief(rest) == reference, f"resume after {k} batches"


def test_resume_refuses_another_setup(feats):
    state = FeatureLoader(cfg(feats, epoch_samples=40)).state_dict()
    with pytest.raises(ValueError, match="world_size"):
        FeatureLoader(cfg(feats, epoch_samples=40), rank=0, world_size=2).load_state_dict(state)


def test_exclusions_are_skipped(feats, tmp_path):
    _, truth = feats
    flagged = sorted(k for k in truth if k.startswith("a-"))[::5]
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps({"flags": [{"key": k, "reason": "looks wrong"} for k in flagged]}))
    loader = FeatureLoader(cfg(feats, exclude=str(flags), epoch_samples=220))
    keys = {k for b in run(loader.config, loader=loader) for k in b["keys"]}
    assert len(keys) == 220 and not keys & set(flagged)
    assert loader.counters["excluded"] >= 40


def _complete_samples(data: bytes) -> set[str]:
    """Keys whose members all lie before the damage, read with the standard library's tarfile."""
    names = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
            for member in tar:
                tar.extractfile(member).read()
                names.append(member.name)
    except (tarfile.TarError, OSError):
        pass
    members = Counter(n.split(".", 1)[0] for n in names)
    return {key for key, n in members.items() if n == 2}


def test_damaged_shards_and_samples_are_skipped_and_counted(tmp_path, caplog):
    damaged, rng = tmp_path / "damaged", np.random.default_rng(5)
    damaged.mkdir()
    truth = write_shard(damaged / "d-000000.tar", "d", 0, rng, per_bucket=2, junk=(2,))  # one bad safetensors
    (damaged / "d-000001.tar").write_bytes(rng.bytes(50_000))  # garbage
    write_shard(damaged / "d-000002.tar", "d", 2, rng)
    whole = (damaged / "d-000002.tar").read_bytes()
    (damaged / "d-000002.tar").write_bytes(whole[: len(whole) * 2 // 3])  # truncated
    kept = _complete_samples(whole[: len(whole) * 2 // 3])
    truth |= write_shard(damaged / "d-000003.tar", "d", 3, rng)
    (damaged / "sizes.json").write_text(json.dumps({f"d-{i:06d}.tar": 36 for i in range(4)}))
    assert 20 <= len(kept) <= 28
    config = LoaderConfig(sources=[str(damaged)], batch_size=4, epoch_samples=24, shuffle_shards=False)
    loader = FeatureLoader(config)
    with caplog.at_level(logging.WARNING, logger="train.data"):
        keys = [k for b in run(config, loader=loader) for k in b["keys"]]
    assert len(keys) == 24 and len(set(keys)) == 24  # 5 + 0 + ~24 + 36 readable: one pass, no repeats
    assert "d-000000-000002" not in keys and not any(k.startswith("d-000001-") for k in keys)
    from_truncated = {k for k in keys if k.startswith("d-000002-")}
    assert from_truncated and from_truncated <= kept  # what lies before the cut is read, nothing after it
    assert loader.counters["corrupt_shards"] == 2 and loader.counters["corrupt_samples"] == 1
    assert sum("corrupt_shards" in r.getMessage() for r in caplog.records) == 1  # rate-limited: one line


def test_mixing_follows_the_weights(feats):
    root, _ = feats
    config = cfg(feats, sources=[(str(root / "a"), 0.25), (str(root / "b"), 0.75)], batch_size=8,
                 epoch_samples=800, seed=11)
    keys = [k for b in run(config) for k in b["keys"]]
    share_b = sum(k.startswith("b-") for k in keys) / len(keys)
    assert len(keys) == 800 and abs(share_b - 0.75) < 0.06


def test_padding_mask_and_the_vlm_cap(feats):
    _, truth = feats
    for cap in (None, 10):
        batches = run(cfg(feats, max_vlm_len=cap, epoch_samples=120))
        capped = False
        for b in batches:
            lengths = [min(len(truth[k][1]), cap or 1 << 30) for k in b["keys"]]
            assert b["vlm"].shape[1] == max(lengths) and b["vlm_mask"].sum(1).tolist() == lengths
            for i, (key, n) in enumerate(zip(b["keys"], lengths)):
                assert torch.equal(b["vlm"][i, :n], truth[key][1][:n])
                assert not b["vlm"][i, n:].any() and not b["vlm_mask"][i, n:].any()
            capped |= any(len(truth[k][1]) > 10 for k in b["keys"])
        if cap:
            assert max(b["vlm"].shape[1] for b in batches) == 10 and capped


def test_cfg_dropout_is_reproducible_and_uses_the_stored_uncond(feats, tmp_path):
    root, truth = feats
    uncond = torch.randn(7, D).bfloat16()
    save_file({"vlm": uncond}, str(tmp_path / "uncond.safetensors"))
    config = cfg(feats, cfg_dropout=0.4, uncond=str(tmp_path / "uncond.safetensors"), epoch_samples=400, seed=5)
    one, two = run(config), run(config)
    assert brief(one) == brief(two)
    drops = torch.cat([b["cfg_drop"] for b in one])
    assert 0.3 < drops.float().mean() < 0.5
    for b in one:
        for i, key in enumerate(b["keys"]):
            if b["cfg_drop"][i]:
                assert torch.equal(b["vlm"][i, :7], uncond) and b["vlm_mask"][i].sum() == 7
            else:
                n = len(truth[key][1])
                assert torch.equal(b["vlm"][i, :n], truth[key][1])
    other = run(LoaderConfig(**{**config.__dict__, "seed": 6}))
    assert brief(other) != brief(one)
    with pytest.raises(ValueError, match="unconditional"):
        FeatureLoader(cfg(feats, cfg_dropout=0.1))  # no uncond given and none in the source dir


def test_the_schedule_keeps_every_bucket_at_its_share():
    shares = np.array([0.5, 0.3, 0.15, 0.05])
    sched = BucketSchedule(shares, seed=0, jitter=1.0)
    counts = np.bincount([sched.next() for _ in range(6000)], minlength=4)
    assert np.abs(counts - 6000 * shares).max() <= 4  # an i.i.d. draw would be off by ~±40
    assert np.abs(sched.credits).max() < 3
