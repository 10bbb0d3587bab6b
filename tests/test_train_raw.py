"""The loader's raw path: sample shards in, the encoders run in the loader's process, batches out — the
same features as precompute gives, img2dataset folders in bucketed crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from collage.config import aspect_buckets


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> tuple[str, str]:
    from train.tiny import build_tiny_vae, build_tiny_vlm

    root = tmp_path_factory.mktemp("raw_encoders")
    return str(build_tiny_vlm(root / "vlm")), str(build_tiny_vae(root / "vae"))


@pytest.fixture(scope="module")
def drag_run(tmp_path_factory, assets):
    from collage.api import generate_run

    out = tmp_path_factory.mktemp("raw_src") / "drag"
    generate_run(out=str(out), task="drag", n=6, seed=4, size=128, shard_size=3, backend="local")
    return out


def _all(loader) -> dict[str, tuple[dict, torch.Tensor, torch.Tensor]]:
    out = {}
    for batch in loader:
        for i, key in enumerate(batch["keys"]):
            length = int(batch["vlm_mask"][i].sum())
            out[key] = (batch["json"][i], batch["latent"][i], batch["vlm"][i, :length])
    return out


def test_raw_samples_give_the_features_precompute_gives(tmp_path, encoders, drag_run):
    from safetensors.torch import load

    from collage.api import iter_samples
    from train.data import FeatureLoader, LoaderConfig
    from train.precompute import precompute

    threads = torch.get_num_threads()
    loader = FeatureLoader(LoaderConfig(sources=[str(drag_run)], batch_size=2, epoch_samples=6, encoders=encoders,
                                        raw_cache=str(tmp_path / "cache"), shuffle_samples=False), rank=0, world_size=1)
    assert torch.get_num_threads() == threads, "the raw path changed the trainer's torch threads"
    got = _all(loader)
    assert set(got) == {s["__key__"] for s in iter_samples(drag_run, decode=False)}
    feats = tmp_path / "feats"
    precompute([str(drag_run)], str(feats), *encoders, size=256, backend="local")
    import tarfile

    for tar_path in sorted(feats.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if member.name.endswith(".feats.safetensors"):
                    key = member.name.split(".")[0]
                    tensors = load(tar.extractfile(member).read())
                    assert torch.equal(got[key][1], tensors["latent"]) and torch.equal(got[key][2], tensors["vlm"])


def test_an_img2dataset_folder_loads_in_bucketed_crops(tmp_path, encoders):
    from train.data import FeatureLoader, LoaderConfig

    folder = tmp_path / "web" / "00000"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    shapes = {f"{i:09d}": shape for i, shape in enumerate([(400, 200), (200, 400), (300, 300), (420, 210)])}
    for key, (w, h) in shapes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{key}.jpg")
        (folder / f"{key}.txt").write_text(f"noise {key}")
    loader = FeatureLoader(LoaderConfig(sources=[str(tmp_path / "web")], batch_size=1, epoch_samples=4,
                                        encoders=encoders, raw_cache=str(tmp_path / "cache")), rank=0, world_size=1)
    got = _all(loader)
    assert set(got) == set(shapes)
    for key, (meta, latent, vlm) in got.items():
        w, h = aspect_buckets(256)[meta["bucket"]]
        assert latent.shape == (16, h // 8, w // 8)
        assert (w > h) == (shapes[key][0] > shapes[key][1]) and (w == h) == (shapes[key][0] == shapes[key][1])
        assert meta["op"] == "external" and meta["vlm_text"] == f"noise {key}"


def test_sample_shards_without_encoders_are_refused_with_the_fix(drag_run):
    from train.data import FeatureLoader, LoaderConfig

    with pytest.raises(ValueError, match="train.precompute"):
        FeatureLoader(LoaderConfig(sources=[str(drag_run)]), rank=0, world_size=1)
