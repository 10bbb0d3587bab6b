"""train.precompute end to end: real collage shards of every task, tiny random Qwen2-VL and FLUX-style VAE
saved to disk, the real CLI in subprocesses (Ray where the bullet is about Ray), judged from what it wrote."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from collage.api import iter_samples
from conftest import REPO, cli_env, run_cli, tar_hashes

TASKS = ("t2i", "inpaint", "edit", "drag", "reference", "segdet")
IMAGES_SEEN = {"t2i": [], "inpaint": ["src", "mask"], "edit": ["src"], "drag": ["src"], "segdet": ["src"]}


def run_precompute(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "train.precompute", *args], capture_output=True, text=True,
                          timeout=timeout, env=cli_env(), cwd=REPO)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> tuple[str, str]:
    from train.tiny import build_tiny_vae, build_tiny_vlm

    root = tmp_path_factory.mktemp("encoders")
    return str(build_tiny_vlm(root / "vlm")), str(build_tiny_vae(root / "vae"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory, assets) -> dict[str, Path]:
    from collage.api import generate_run

    root = tmp_path_factory.mktemp("sources")
    runs = {}
    for task in TASKS:
        runs[task] = root / task
        generate_run(out=str(runs[task]), task=task, n=8, seed=3, size=128, shard_size=4, backend="local")
    return runs


@pytest.fixture(scope="module")
def feats(tmp_path_factory, encoders, sources) -> Path:
    out = tmp_path_factory.mktemp("feats") / "all"
    vlm, vae = encoders
    result = run_precompute(*map(str, sources.values()), "--out", str(out), "--vlm", vlm, "--vae", vae,
                            "--size", "256", "--backend", "local", "--batch-size", "3")
    assert result.returncode == 0, result.stderr
    assert "48 samples in 12 feature shards" in result.stdout
    return out


def _feature_samples(folder: Path) -> dict[str, tuple[dict, dict]]:
    from safetensors.torch import load

    out = {}
    for tar_path in sorted(folder.glob("*.tar")):
        members: dict[str, dict[str, bytes]] = {}
        with tarfile.open(tar_path) as tar:
            for m in tar:
                key, _, suffix = m.name.partition(".")
                members.setdefault(key, {})[suffix] = tar.extractfile(m).read()
        for key, parts in members.items():
            out[key] = (json.loads(parts["json"]), load(parts["feats.safetensors"]))
    return out


def test_every_task_follows_the_contract(feats, sources, encoders):
    import torch

    samples = _feature_samples(feats)
    assert len(samples) == 48
    source_keys = {s["__key__"] for task in TASKS for s in iter_samples(sources[task], decode=False)}
    assert set(samples) == source_keys
    hidden = json.loads((feats / "run.json").read_text())["encoders"]["vlm"]["hidden_size"]
    for key, (meta, tensors) in samples.items():
        assert set(tensors) == {"latent", "vlm"}
        assert tensors["latent"].dtype == tensors["vlm"].dtype == torch.bfloat16
        assert tuple(tensors["latent"].shape) == (16, meta["height"] // 8, meta["width"] // 8)
        assert (meta["width"], meta["height"]) == (256, 256)  # square sources at --size 256
        assert tensors["vlm"].shape == (meta["vlm_len"], hidden) and meta["vlm_len"] >= 1
        want = IMAGES_SEEN[meta["task"]] if meta["task"] in IMAGES_SEEN else (["src"] if meta["op"] == "subject" else ["cond"])
        assert meta["vlm_images"] == want, (meta["task"], meta["op"])
        assert meta["vlm_text"] and meta["source_size"] == [128, 128]
    verified = run_cli("verify", str(feats))
    assert verified.returncode == 0 and "48 samples in 12 feature shards" in verified.stdout, verified.stderr
    assert (feats / "uncond.safetensors").exists()


def test_a_rerun_skips_finished_shards_and_damage_is_redone(feats, tmp_path, encoders, sources):
    out = tmp_path / "feats"
    shutil.copytree(feats, out)
    data = bytearray((out / "drag-000001.tar").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "drag-000001.tar").write_bytes(bytes(data))
    vlm, vae = encoders
    rerun = run_precompute(*map(str, sources.values()), "--out", str(out), "--vlm", vlm, "--vae", vae,
                           "--size", "256", "--backend", "local", "--batch-size", "3")
    assert rerun.returncode == 0, rerun.stderr
    assert "(11 already done)" in rerun.stdout
    assert tar_hashes(out) == tar_hashes(feats)


def test_resume_after_kill_9_of_the_driver_gives_the_same_bytes(feats, tmp_path, encoders, sources):
    out = tmp_path / "feats"
    vlm, vae = encoders
    args = [sys.executable, "-m", "train.precompute", *map(str, sources.values()), "--out", str(out), "--vlm", vlm,
            "--vae", vae, "--size", "256", "--batch-size", "3", "--workers", "2"]
    driver = subprocess.Popen(args, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.glob("*.stats.json"))) < 2 and driver.poll() is None:
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert 2 <= len(list(out.glob("*.stats.json"))) < 12, "the driver was not killed mid-run"
    rerun = run_precompute(*map(str, sources.values()), "--out", str(out), "--vlm", vlm, "--vae", vae,
                           "--size", "256", "--batch-size", "3", "--workers", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert tar_hashes(out) == tar_hashes(feats)  # on Ray, resumed == in-process, uninterrupted
    assert set(_feature_samples(out)) == set(_feature_samples(feats))
    assert run_cli("verify", str(out)).returncode == 0


def test_a_corrupt_source_sample_is_skipped_and_counted(tmp_path, encoders, sources):
    run = tmp_path / "drag"
    shutil.copytree(sources["drag"], run)
    tar_path = run / "drag-000000.tar"
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tar_path, "w") as tar:
        for i, (m, blob) in enumerate(members):
            if m.name.endswith(".tgt.jpg") and "000001" in m.name:
                blob = b"\xff\xd8 not a jpeg"
                m.size = len(blob)
            tar.addfile(m, io.BytesIO(blob))
    vlm, vae = encoders
    out = tmp_path / "feats"
    result = run_precompute(str(run), "--out", str(out), "--vlm", vlm, "--vae", vae, "--size", "256", "--backend", "local")
    assert result.returncode == 0, result.stderr
    assert "1 corrupt samples skipped" in result.stdout
    stats = json.loads((out / "drag-000000.stats.json").read_text())
    assert stats["skipped"] == 1 and stats["samples"] == 3
    assert run_cli("verify", str(out)).returncode == 0


def test_an_img2dataset_folder_becomes_bucketed_t2i(tmp_path, encoders):
    folder = tmp_path / "laion" / "00000"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(300, 200), (200, 400), (256, 256)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:09d}.jpg")
        (folder / f"{i:09d}.txt").write_text(f"a photo number {i}")
    vlm, vae = encoders
    out = tmp_path / "feats"
    result = run_precompute(str(tmp_path / "laion"), "--out", str(out), "--vlm", vlm, "--vae", vae, "--size", "256",
                            "--backend", "local")
    assert result.returncode == 0, result.stderr
    samples = _feature_samples(out)
    assert sorted(samples) == ["000000000", "000000001", "000000002"]
    from collage.config import aspect_buckets

    for key, (meta, tensors) in samples.items():
        assert meta["task"] == "t2i" and meta["op"] == "external" and meta["vlm_images"] == []
        assert (meta["width"], meta["height"]) == aspect_buckets(256)[meta["bucket"]]
        assert tensors["latent"].shape[1:] == (meta["height"] // 8, meta["width"] // 8)
    assert samples["000000000"][0]["width"] > samples["000000000"][0]["height"]  # 3:2 stays landscape
    assert samples["000000001"][0]["width"] < samples["000000001"][0]["height"]
    assert samples["000000002"][0]["vlm_text"] == "a photo number 2"


def _bad(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, encoders, sources):
    vlm, vae = encoders
    out = tmp_path / "feats"
    src = str(sources["drag"])
    broken = tmp_path / "vlm_no_tokenizer"
    shutil.copytree(vlm, broken)
    (broken / "tokenizer.json").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([src, "--vlm", str(broken), "--vae", vae], ["tokenizer"]),
        ([src, "--vlm", vlm, "--vae", str(tmp_path / "nope")], ["VAE", "no such directory"]),
        ([src, "--vlm", vae, "--vae", vae], ["not Qwen2-VL"]),
        ([str(tmp_path / "missing_run"), "--vlm", vlm, "--vae", vae], ["missing_run", "no such"]),
        ([str(empty), "--vlm", vlm, "--vae", vae], ["holds no shards"]),
        ([src, "--vlm", vlm, "--vae", vae, "--size", "300"], ["--size 300", "256, 512, 1024"]),
    ]
    for args, words in cases:
        line = _bad(run_precompute(*args, "--out", str(out), "--backend", "local"))
        for word in words:
            assert word in line, (word, line)
        assert not out.exists(), f"{args} wrote something"


def test_a_vlm_of_another_hidden_size_is_refused_on_existing_feats(feats, tmp_path, encoders, sources):
    from train.tiny import build_tiny_vlm

    other = build_tiny_vlm(tmp_path / "vlm96", hidden_size=96)
    out = tmp_path / "feats"
    shutil.copytree(feats, out)
    before = tar_hashes(out)
    line = _bad(run_precompute(*map(str, sources.values()), "--out", str(out), "--vlm", str(other), "--vae",
                               encoders[1], "--size", "256", "--backend", "local"))
    assert "hidden size 96" in line and "64" in line
    assert tar_hashes(out) == before
