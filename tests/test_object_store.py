"""`--out s3://bucket/prefix` against a real S3-compatible server on loopback (moto's standalone server):
generate (Ray and local), verify, resume, redo of a deleted shard, bytes equal to a local run, no secret in
the run, and one line (exit 2, before any Ray start) for each unusable store; the gallery and precompute
reading their sources from the store, with the same results as from a folder."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import one_error_line, rotate_byte_ranges, run_cli, tar_hashes
from s3_server import aws_env, read_only_user, s3_server

pytest.importorskip("s3fs")
pytest.importorskip("moto")

ARGS = ("--task", "drag", "--n", "40", "--shard-size", "10", "--seed", "5", "--no-progress")


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def local_run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    result = run_cli("generate", *ARGS, "--out", str(out), "--backend", "local")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def local_run(local_run_dir):
    return tar_hashes(local_run_dir)


def upload(s3, folder: Path, prefix: str, replace: dict[str, bytes] | None = None) -> str:
    """Copy a run folder's files into the store under `prefix` (as `aws s3 sync` would); `replace`: other
    bytes for some names. Returns the prefix's URL."""
    replace = replace or {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            s3.client.put_object(Bucket=s3.bucket, Key=f"{prefix}/{path.name}",
                                 Body=replace.get(path.name, path.read_bytes()))
    return f"s3://{s3.bucket}/{prefix}"


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
    """train.precompute with --out s3://…: the same feature shards as into a folder, and verify passes; and
    with its sources in the store: the same feature shards again."""
    from collage.api import generate_run
    from conftest import REPO
    from train.tiny import build_tiny_vae, build_tiny_vlm

    vlm, vae = str(build_tiny_vlm(tmp_path / "vlm")), str(build_tiny_vae(tmp_path / "vae"))
    source = tmp_path / "t2i"
    generate_run(out=str(source), task="t2i", n=8, seed=3, size=128, shard_size=4, backend="local")

    def precompute(out: str, given: str | None = None):
        result = subprocess.run([sys.executable, "-m", "train.precompute", given or str(source), "--out", out, "--vlm", vlm,
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

    # the sources read from the store, as a run folder and as a glob of its shards: the same feature shards
    source_url = upload(s3, source, "t2i-source")
    for name, given in (("from-run", source_url), ("from-glob", f"{source_url}/t2i-00000[01].tar")):
        precompute(str(tmp_path / name), given)
        assert tar_hashes(tmp_path / name) == tar_hashes(tmp_path / "feats") and len(tar_hashes(tmp_path / name)) == 2


# --- the gallery and precompute read their sources from the store -------------------------------------------

def gallery_cards(out: Path) -> list[dict]:
    html = (out / "index.html").read_text(encoding="utf-8")
    return json.loads(re.search(r"window\.GALLERY = (.*?);</script>", html, re.S).group(1))["samples"]


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def test_gallery_of_a_run_on_s3(s3, local_run_dir, tmp_path):
    """The same cards, thumbnails and json as from the folder, fetching each index and then one byte range
    per chosen sample: a fraction of the shards' bytes."""
    url = upload(s3, local_run_dir, "gallery-run")
    remote = run_cli("gallery", url, "--out", str(tmp_path / "remote"), "--n", "8", "--seed", "2", env=s3.env)
    local = run_cli("gallery", str(local_run_dir), "--out", str(tmp_path / "local"), "--n", "8", "--seed", "2")
    assert remote.returncode == 0 and local.returncode == 0, remote.stderr + local.stderr
    fields = ("key", "shard", "task", "op", "prompt", "caption", "w", "h", "pts", "boxes", "img")
    cards = gallery_cards(tmp_path / "remote")
    assert [{f: c[f] for f in fields} for c in cards] == \
        [{f: c[f] for f in fields} for c in gallery_cards(tmp_path / "local")] and len(cards) == 8
    assert all(c["shardPath"] == f"{url}/{c['shard']}" for c in cards)
    for sub in ("json", "thumbs"):
        remote_files = {p.name: p.read_bytes() for p in (tmp_path / "remote" / sub).iterdir()}
        assert remote_files == {p.name: p.read_bytes() for p in (tmp_path / "local" / sub).iterdir()}, sub

    marker = json.loads((tmp_path / "remote" / "gallery.json").read_text())
    assert marker["shards_read"] == 4 and marker["problems"] == {}, marker
    index = {row["key"]: row for p in sorted(local_run_dir.glob("*.parquet")) for row in pq.read_table(p).to_pylist()}
    expected = sum(p.stat().st_size for p in local_run_dir.glob("*.parquet")) + \
        sum(index[c["key"]]["tar_length"] for c in cards)
    shards = sum(p.stat().st_size for p in local_run_dir.glob("*.tar"))
    assert marker["bytes_read"] == expected and expected < 0.3 * shards, (marker["bytes_read"], expected, shards)
    assert f"({expected / 1e6:,.1f} MB fetched from the store)" in remote.stdout, remote.stdout
    assert json.loads((tmp_path / "local" / "gallery.json").read_text())["bytes_read"] == 0
    assert s3.secret not in remote.stdout + remote.stderr
    assert not any(s3.secret.encode() in p.read_bytes() for p in (tmp_path / "remote").rglob("*") if p.is_file())


def test_gallery_on_s3_with_a_wrong_index_and_an_old_one(s3, local_run_dir, tmp_path):
    """A shard whose index ranges point at its neighbours' bytes: its samples are problems, the rest shown;
    a shard whose index has no ranges (collage < 0.5.1) is walked through a buffered file and shown."""
    wrong = rotate_byte_ranges(local_run_dir / "drag-000001.parquet")
    old = pq.read_table(local_run_dir / "drag-000002.parquet").drop_columns(["tar_offset", "tar_length"])
    url = upload(s3, local_run_dir, "gallery-index", {"drag-000001.parquet": parquet_bytes(wrong),
                                                       "drag-000002.parquet": parquet_bytes(old)})
    result = run_cli("gallery", url, "--out", str(tmp_path / "g"), "--n", "40", env=s3.env)
    assert result.returncode == 0, result.stderr
    assert "warning: 10 " in result.stderr and "see the page's problems panel" in result.stderr, result.stderr
    shown = {c["key"] for c in gallery_cards(tmp_path / "g")}
    assert shown == {f"drag-{s:06d}-{i:06d}" for s in (0, 2, 3) for i in range(10)}, sorted(shown)
    marker = json.loads((tmp_path / "g" / "gallery.json").read_text())
    assert marker["problems"] == {"sample": 10}, marker
    html = (tmp_path / "g" / "index.html").read_text(encoding="utf-8")
    assert html.count("its byte range in the index") == 10 and "run collage verify" in html
    tars = {p.name: p.stat().st_size for p in local_run_dir.glob("*.tar")}
    assert marker["bytes_read"] >= tars["drag-000002.tar"], marker  # the old shard: fetched whole


@pytest.mark.parametrize("command", ["gallery", "precompute"])
def test_a_source_in_a_missing_bucket_is_one_line(s3, tmp_path, command):
    if command == "gallery":
        result = run_cli("gallery", "s3://no-such-bucket/run", "--out", str(tmp_path / "g"), env=s3.env)
    else:
        from conftest import REPO

        result = subprocess.run([sys.executable, "-m", "train.precompute", "s3://no-such-bucket/run/*.tar", "--out",
                                 str(tmp_path / "f"), "--vlm", str(tmp_path), "--vae", str(tmp_path)],
                                capture_output=True, text=True, timeout=300, env=s3.env, cwd=REPO)
    line = one_error_line(result)
    assert "source s3://no-such-bucket/run" in line and "bucket 'no-such-bucket' does not exist" in line, line
    assert not (tmp_path / "g").exists() and not (tmp_path / "f").exists()
