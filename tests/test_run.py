"""The spine end to end: real CLI processes, a real local Ray instance, real webdataset reading."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import webdataset as wds

from conftest import REPO, cli_env, run_cli, tar_hashes


GEN = ["generate", "--task", "drag", "--size", "128", "--shard-size", "40", "--no-progress"]


def test_same_seed_same_bytes_on_1_and_2_workers(tmp_path, assets):
    one, two, local = tmp_path / "one", tmp_path / "two", tmp_path / "local"
    r1 = run_cli(*GEN, "--n", "200", "--seed", "3", "--out", str(one), "--workers", "1")
    r2 = run_cli(*GEN, "--n", "200", "--seed", "3", "--out", str(two), "--workers", "2")
    r3 = run_cli(*GEN, "--n", "200", "--seed", "3", "--out", str(local), "--backend", "local")
    for r in (r1, r2, r3):
        assert r.returncode == 0, r.stderr
    assert len(tar_hashes(one)) == 5
    assert tar_hashes(one) == tar_hashes(two) == tar_hashes(local)
    other = tmp_path / "other"
    assert run_cli(*GEN, "--n", "200", "--seed", "4", "--out", str(other), "--backend", "local").returncode == 0
    assert not set(tar_hashes(one).values()) & set(tar_hashes(other).values())
    # The stats markers carry the same hashes verify will recompute.
    for name, digest in tar_hashes(one).items():
        stats = json.loads((one / name.replace(".tar", ".stats.json")).read_text())
        assert stats["sha256"] == digest and stats["samples"] == 40 and stats["seed"] == 3


def _keys(out: Path) -> list[str]:
    dataset = wds.WebDataset(sorted(str(p) for p in out.glob("*.tar")), shardshuffle=False, empty_check=False)
    return [s["__key__"] for s in dataset]


def test_resume_after_kill_9_of_the_driver(tmp_path, assets):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "collage", *GEN, "--n", "1200", "--seed", "5", "--out", str(out), "--workers", "2"]
    driver = subprocess.Popen(args, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.stats.json"))) < 3:
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    finished_before = len(list(out.glob("*.stats.json")))
    assert 3 <= finished_before < 30, "the driver was not killed mid-run"
    time.sleep(1.0)  # let orphaned Ray workers notice the driver is gone
    rerun = run_cli(*GEN, "--n", "1200", "--seed", "5", "--out", str(out), "--workers", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert "already done" in rerun.stdout
    keys = _keys(out)
    assert len(keys) == 1200 and len(set(keys)) == 1200
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    verified = run_cli("verify", str(out))
    assert verified.returncode == 0, verified.stderr
    assert "1,200 samples in 30 shards" in verified.stdout
    # A clean run of the same command gives the same bytes as the interrupted-and-resumed one.
    clean = tmp_path / "clean"
    assert run_cli(*GEN, "--n", "1200", "--seed", "5", "--out", str(clean), "--backend", "local").returncode == 0
    assert tar_hashes(clean) == tar_hashes(out)


def test_a_killed_worker_is_retried(tmp_path, assets):
    """kill -9 of a Ray worker mid-shard: Ray reruns that shard and the run still completes whole."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "collage", *GEN, "--n", "800", "--seed", "6", "--out", str(out), "--workers", "2"]
    driver = subprocess.Popen(args, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = 0
    deadline = time.time() + 120
    while time.time() < deadline and not killed and driver.poll() is None:
        ps = subprocess.run(["pgrep", "-f", "ray::make_shard_task"], capture_output=True, text=True).stdout.split()
        if ps and list(out.glob("*.stats.json")):
            os.kill(int(ps[0]), signal.SIGKILL)
            killed += 1
        time.sleep(0.05)
    stdout, stderr = driver.communicate(timeout=300)
    assert killed == 1, "no worker was caught mid-shard"
    assert driver.returncode == 0, stderr
    assert "done: 800 samples in 20 shards" in stdout
    assert run_cli("verify", str(out)).returncode == 0


def test_verify_names_each_problem(tmp_path, assets):
    out = tmp_path / "run"
    assert run_cli(*GEN, "--n", "120", "--out", str(out), "--backend", "local").returncode == 0
    assert run_cli("verify", str(out)).returncode == 0
    tar = out / "drag-000001.tar"
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tar.write_bytes(bytes(data))
    (out / "drag-000002.stats.json").unlink()
    result = run_cli("verify", str(out))
    assert result.returncode == 1
    assert "drag-000001.tar: sha256 differs" in result.stderr
    assert "drag-000002: not finished" in result.stderr


def test_shards_read_back_with_webdataset_decoders(tmp_path, assets):
    out = tmp_path / "run"
    assert run_cli(*GEN, "--n", "50", "--out", str(out), "--backend", "local").returncode == 0
    sizes = json.loads((out / "sizes.json").read_text())
    assert sizes == {"drag-000000.tar": 40, "drag-000001.tar": 10}
    dataset = wds.WebDataset([str(out / n) for n in sizes], shardshuffle=False, empty_check=False).decode("rgb8")
    samples = list(dataset)
    assert len(samples) == 50
    for s in samples:
        assert s["tgt.jpg"].shape == s["src.jpg"].shape == (128, 128, 3)
        assert s["mask.png"].shape[:2] == (128, 128)
        assert s["json"]["task"] == "drag" and s["json"]["width"] == 128
    run = json.loads((out / "run.json").read_text())
    assert run["n"] == 50 and run["seed"] == 0 and run["image_format"] == "jpg" and run["assets_digest"]
    assert "Openclipart" in (out / "ATTRIBUTION.md").read_text() or "Twemoji" in (out / "ATTRIBUTION.md").read_text()


def test_different_config_in_same_out_is_refused_unless_forced(tmp_path, assets):
    out = tmp_path / "run"
    assert run_cli(*GEN, "--n", "40", "--out", str(out), "--backend", "local").returncode == 0
    before = tar_hashes(out)
    refused = run_cli(*GEN, "--n", "40", "--seed", "9", "--out", str(out), "--backend", "local")
    assert refused.returncode == 2 and "different config (seed)" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert tar_hashes(out) == before
    forced = run_cli(*GEN, "--n", "40", "--seed", "9", "--out", str(out), "--backend", "local", "--force")
    assert forced.returncode == 0 and tar_hashes(out) != before


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, assets):
    out = tmp_path / "never"
    result = run_cli("generate", "--task", "drag", "--n", "12M", "--out", str(out), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "12,000,000 samples in 12,000 shards of 1,000" in result.stdout
    assert "estimated size:" in result.stdout and "TB" in result.stdout
    assert not out.exists()


def test_run_on_a_ray_cluster_by_address(tmp_path, assets):
    """`ray start --head` on loopback, then `collage generate --address` against it."""
    env = cli_env()
    env["RAY_AUTH_MODE"] = "token"
    ray_bin = str(Path(sys.executable).with_name("ray"))
    port = "6391"
    started = subprocess.run([ray_bin, "start", "--head", "--port", port, "--node-ip-address", "127.0.0.2",
                              "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        out = tmp_path / "cluster"
        result = run_cli(*GEN, "--n", "120", "--out", str(out), "--address", f"127.0.0.2:{port}", env=env)
        assert result.returncode == 0, result.stderr
        assert "done: 120 samples in 3 shards" in result.stdout
        local = tmp_path / "local"
        assert run_cli(*GEN, "--n", "120", "--out", str(local), "--backend", "local").returncode == 0
        assert tar_hashes(out) == tar_hashes(local)
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_ctrl_c_stops_cleanly_and_the_rerun_finishes(tmp_path, assets):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "collage", *GEN, "--n", "1200", "--seed", "12", "--out", str(out), "--workers", "2"]
    driver = subprocess.Popen(args, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.stats.json"))) < 2:
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr
    assert "interrupted" in stderr and "rerun the same command to resume" in stderr
    assert "Traceback" not in stderr
    assert len(list(out.glob("*.stats.json"))) < 30
    rerun = run_cli(*GEN, "--n", "1200", "--seed", "12", "--out", str(out), "--workers", "2")
    assert rerun.returncode == 0, rerun.stderr
    keys = _keys(out)
    assert len(keys) == len(set(keys)) == 1200
    assert run_cli("verify", str(out)).returncode == 0


def test_object_store_commit_path_through_fsspec():
    """A non-local store (fsspec's in-memory one standing in for s3://): a shard is staged locally and
    uploaded whole, then its stats marker; the finished-shard check reads sizes from the store's listing.
    (A run refuses memory:// itself: it would not outlive the process; see test_run_safety.)"""
    import fsspec

    from collage.shards import finished_shards
    from collage.storage import Storage
    from collage.writer import ShardWriter

    url = "memory://collage-test/run"
    storage = Storage(url)
    assert not storage.local
    with ShardWriter(storage, "drag", 0) as writer:
        writer.write("drag-000000-000000", {"json": b"{}", "tgt.jpg": b"x" * 100}, {"task": "drag"})
        stats = writer.commit({"config": "abc"})
    assert set(storage.names()) == {"drag-000000.tar", "drag-000000.parquet", "drag-000000.stats.json"}
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob(".drag-000000.*.tmp")), "the local staging copy was kept"
    assert storage.listing()["drag-000000.tar"] == stats["bytes"]
    found = finished_shards(storage, "drag", 2, lambda k: 1, "abc", rehash=True)
    assert list(found.done) == [0] and not found.damaged and found.rehashed
    assert finished_shards(storage, "drag", 2, lambda k: 1, "other").damaged[0].startswith("its stats file is of another")
    fsspec.filesystem("memory").rm("/collage-test", recursive=True)
