"""`--out s3://bucket/prefix` against a real S3-compatible server on loopback (moto's standalone server):
generate (Ray and local), verify, resume, redo of a deleted shard, bytes equal to a local run, no secret in
the run, and one line (exit 2, before any Ray start) for each unusable store."""

from __future__ import annotations

import hashlib
import time

import pytest

from conftest import one_error_line, run_cli, tar_hashes
from s3_server import aws_env, read_only_user, s3_server

pytest.importorskip("s3fs")
pytest.importorskip("moto")

ARGS = ("--task", "drag", "--n", "40", "--shard-size", "10", "--seed", "5", "--no-progress")


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "run"
    result = run_cli("generate", *ARGS, "--out", str(out), "--backend", "local")
    assert result.returncode == 0, result.stderr
    return tar_hashes(out)


def store_hashes(s3, prefix: str) -> dict[str, str]:
    return {k.rsplit("/", 1)[-1]: hashlib.sha256(s3.get(k)).hexdigest()
            for k in s3.keys(prefix + "/") if k.endswith(".tar")}


def assert_no_secret(s3, prefix: str, *results) -> None:
    secret = s3.secret.encode()
    for key in s3.keys(prefix + "/"):
        assert secret not in s3.get(key), key
    for result in results:
        assert s3.secret not in result.stdout + result.stderr


@pytest.mark.parametrize("backend", [pytest.param("ray", marks=pytest.mark.slow), "local"])  # ray: 85-100 s here
def test_generate_verify_resume_redo_on_s3(s3, local_run, backend):
    prefix = f"run-{backend}"
    url = f"s3://{s3.bucket}/{prefix}"
    extra = ("--backend", "ray", "--workers", "2") if backend == "ray" else ("--backend", "local")
    first = run_cli("generate", *ARGS, "--out", url, *extra, env=s3.env)
    assert first.returncode == 0, first.stderr
    assert "(0 already done)" in first.stdout, first.stdout
    names = {k.rsplit("/", 1)[-1] for k in s3.keys(prefix + "/")}
    assert {"run.json", "sizes.json", "drag-000003.stats.json", "drag-000003.parquet"} <= names, names
    assert not any(n.endswith(".tmp") or n == ".collage.lock" for n in names), names
    assert store_hashes(s3, prefix) == local_run and len(local_run) == 4

    checked = run_cli("verify", url, env=s3.env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "verify: ok: 40 samples in 4 shards" in checked.stdout

    again = run_cli("generate", *ARGS, "--out", url, *extra, env=s3.env)  # resume: all four markers read back
    assert again.returncode == 0, again.stderr
    assert "(4 already done)" in again.stdout, again.stdout

    s3.client.delete_object(Bucket=s3.bucket, Key=f"{prefix}/drag-000002.tar")
    redo = run_cli("generate", *ARGS, "--out", url, *extra, env=s3.env)
    assert redo.returncode == 0, redo.stderr
    assert "(3 already done)" in redo.stdout and "drag-000002: its tar is missing" in redo.stderr, redo.stderr
    assert store_hashes(s3, prefix) == local_run
    assert run_cli("verify", url, env=s3.env).returncode == 0
    assert_no_secret(s3, prefix, first, checked, again, redo)


def test_verify_rehashes_from_the_store(s3):
    prefix = "run-damaged"
    url = f"s3://{s3.bucket}/{prefix}"
    assert run_cli("generate", *ARGS, "--out", url, "--backend", "local", env=s3.env).returncode == 0
    key = f"{prefix}/drag-000001.tar"
    data = bytearray(s3.get(key))
    data[600] ^= 0xFF  # same size: only a re-hash of the store's bytes finds it
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=bytes(data))
    result = run_cli("verify", url, env=s3.env)
    assert result.returncode == 1
    assert "drag-000001.tar: sha256 differs from its stats file" in result.stdout + result.stderr


def refused(env, url, **kw) -> tuple[str, float]:
    started = time.time()
    result = run_cli("generate", *ARGS, "--out", url, "--backend", "ray", "--workers", "2", env=env, **kw)
    line = one_error_line(result)
    assert "ray" not in result.stderr.lower().replace(line.lower(), ""), result.stderr  # no Ray start-up output
    return line, time.time() - started


def test_unreachable_endpoint(s3):
    line, seconds = refused(aws_env("http://127.0.0.1:1", s3.key_id, s3.secret), "s3://bucket/x")
    assert "cannot reach the store" in line and "AWS_ENDPOINT_URL" in line, line
    assert seconds < 30, seconds


def test_missing_bucket(s3):
    line, _ = refused(s3.env, "s3://no-such-bucket/run")
    assert "bucket 'no-such-bucket' does not exist" in line, line


def test_no_credentials(s3):
    line, _ = refused(aws_env(s3.endpoint, None, None), f"s3://{s3.bucket}/nocreds")
    assert "no credentials" in line and "AWS_ACCESS_KEY_ID" in line, line
    assert not s3.keys("nocreds/")


def test_read_only_bucket():
    # moto enforces IAM once its first requests (the bucket, the user, its policy, its key) are made
    with s3_server(no_auth_actions=4) as server:
        key_id, secret = read_only_user(server)
        env = aws_env(server.endpoint, key_id, secret)
        line, _ = refused(env, f"s3://{server.bucket}/run")
        assert "not writable with these credentials" in line, line
        assert secret not in line
        # reading is allowed: verify of the (empty) prefix gets past the probe and says what it finds
        result = run_cli("verify", f"s3://{server.bucket}/run", env=env)
        assert "no run.json" in result.stdout + result.stderr, result.stdout + result.stderr


def test_caption_a_run_on_s3(s3, tmp_path):
    import json

    import fake_llm

    url = f"s3://{s3.bucket}/run-captions"
    made = run_cli("generate", "--task", "t2i", "--n", "20", "--shard-size", "10", "--seed", "3", "--size", "128",
                   "--no-progress", "--out", url, "--backend", "local", env=s3.env)
    assert made.returncode == 0, made.stderr
    before = {k: s3.get(k) for k in s3.keys("run-captions/") if k.endswith(".tar")}
    process, base_url = fake_llm.start_server({"first": "faithful"}, 0.0, tmp_path / "llm")
    try:
        env = {**s3.env, "OPENAI_API_KEY": "sk-test-not-a-real-key"}
        result = run_cli("caption", url, "--base-url", base_url, "--model", "fake-model", "--cache",
                         str(tmp_path / "cache"), "--no-progress", env=env)
    finally:
        fake_llm.stop_server(process)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(s3.get("run-captions/captions.json"))["summary"]
    assert summary["refined"] > 0, summary
    after = {k: s3.get(k) for k in s3.keys("run-captions/") if k.endswith(".tar")}
    assert after.keys() == before.keys() and after != before  # every shard replaced whole, under the same names
    checked = run_cli("verify", url, env=s3.env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert_no_secret(s3, "run-captions", made, result, checked)


def test_precompute_features_into_s3(s3, tmp_path):
    """train.precompute with --out s3://…: the same feature shards as into a folder, and verify passes."""
    import subprocess
    import sys

    from collage.api import generate_run
    from conftest import REPO
    from train.tiny import build_tiny_vae, build_tiny_vlm

    vlm, vae = str(build_tiny_vlm(tmp_path / "vlm")), str(build_tiny_vae(tmp_path / "vae"))
    source = tmp_path / "t2i"
    generate_run(out=str(source), task="t2i", n=8, seed=3, size=128, shard_size=4, backend="local")

    def precompute(out: str):
        result = subprocess.run([sys.executable, "-m", "train.precompute", str(source), "--out", out, "--vlm", vlm,
                                 "--vae", vae, "--size", "256", "--backend", "local"], capture_output=True,
                                text=True, timeout=600, env=s3.env, cwd=REPO)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    precompute(str(tmp_path / "feats"))
    url = f"s3://{s3.bucket}/feats"
    result = precompute(url)
    assert store_hashes(s3, "feats") == tar_hashes(tmp_path / "feats") and store_hashes(s3, "feats")
    checked = run_cli("verify", url, env=s3.env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert_no_secret(s3, "feats", result, checked)
