"""A run folder under attack: a second writer, tampered shards, damaged files, odd values, signals, a full disk.

Everything here goes through real CLI processes (and a real local Ray instance where the bullet is about
Ray), with real tampering of real shards, and is judged from what is on disk afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import REPO, cli_env, one_error_line, rotate_byte_ranges, run_cli, tar_hashes

GEN = ["generate", "--task", "drag", "--size", "128", "--shard-size", "40", "--no-progress"]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, assets) -> Path:
    """120 drag samples in 3 shards, made once: tests tamper with copies."""
    out = tmp_path_factory.mktemp("clean") / "run"
    result = run_cli(*GEN, "--n", "120", "--seed", "5", "--out", str(out), "--backend", "local")
    assert result.returncode == 0, result.stderr
    return out


def _copy(clean_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(clean_run, out)
    return out


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "collage", *args], cwd=REPO, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for_markers(out: Path, count: int, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and len(list(out.glob("*.stats.json"))) < count:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    assert len(list(out.glob("*.stats.json"))) >= count, "the run never got going"




# --- one writer per OUT ----------------------------------------------------------------------------

def test_a_second_writer_is_refused_while_the_first_runs(tmp_path, assets):
    out = tmp_path / "run"
    first = _start([*GEN, "--n", "6000", "--seed", "5", "--out", str(out), "--workers", "2"])
    try:
        _wait_for_markers(out, 1, first)
        # another config with --force (the reported hole), and the same config (which used to delete the
        # first run's temporaries): both refused, naming the writer
        for extra in (["--seed", "6", "--shard-size", "50", "--force"], ["--seed", "5"]):
            second = run_cli(*GEN, "--n", "6000", *extra, "--out", str(out), "--backend", "local")
            assert first.poll() is None, "the first run ended too soon to test a second writer"
            line = one_error_line(second)
            assert "being written by another run" in line and f"pid {first.pid}" in line, line
        stdout, stderr = first.communicate(timeout=300)
        assert first.returncode == 0, stderr
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert json.loads((out / "run.json").read_text())["seed"] == 5
    assert run_cli("verify", str(out)).returncode == 0
    assert not (out / ".collage.lock").exists(), "the lock outlived its run"


def test_a_lease_of_another_host_counts_until_it_goes_stale(clean_run, tmp_path):
    """On shared storage a flock may not reach the other host: its fresh lease keeps us out, an old one not."""
    out = _copy(clean_run, tmp_path)
    lease = {"token": "x", "host": "some-other-host", "pid": 4242, "what": "collage generate drag",
             "started": time.time() - 30, "heartbeat": time.time()}
    (out / ".collage.lock").write_text(json.dumps(lease))
    refused = run_cli(*GEN, "--n", "120", "--seed", "5", "--out", str(out), "--backend", "local")
    assert "pid 4242 on some-other-host" in one_error_line(refused)
    assert "a writer is running" in run_cli("verify", str(out)).stderr
    lease["heartbeat"] = time.time() - 600  # ten minutes without a heartbeat: that writer is gone
    (out / ".collage.lock").write_text(json.dumps(lease))
    resumed = run_cli(*GEN, "--n", "120", "--seed", "5", "--out", str(out), "--backend", "local")
    assert resumed.returncode == 0 and "3 already done" in resumed.stdout, resumed.stderr


def test_a_lock_left_by_a_killed_writer_on_this_host_is_taken_over(clean_run, tmp_path):
    out = _copy(clean_run, tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lease = {"token": "y", "host": socket.gethostname(), "pid": int(dead.stdout), "heartbeat": time.time()}
    (out / ".collage.lock").write_text(json.dumps(lease))
    assert run_cli("verify", str(out)).returncode == 0, "a dead writer's lock file is not a live writer"
    resumed = run_cli(*GEN, "--n", "120", "--seed", "5", "--out", str(out), "--backend", "local")
    assert resumed.returncode == 0 and "3 already done" in resumed.stdout, resumed.stderr


def test_shards_of_another_config_are_rejected_by_verify_and_redone_by_resume(clean_run, tmp_path):
    """What an older run still writing used to leave: shards of seed 6 under a seed-5 run.json."""
    out = _copy(clean_run, tmp_path)
    other = tmp_path / "other"
    assert run_cli(*GEN, "--n", "120", "--seed", "6", "--out", str(other), "--backend", "local").returncode == 0
    for suffix in (".tar", ".parquet", ".stats.json"):
        shutil.copy(other / f"drag-000001{suffix}", out / f"drag-000001{suffix}")
    verified = run_cli("verify", str(out))
    assert verified.returncode == 1 and "drag-000001: its stats file is of another run config" in verified.stderr
    resumed = run_cli(*GEN, "--n", "120", "--seed", "5", "--out", str(out), "--backend", "local")
    assert resumed.returncode == 0 and "2 already done" in resumed.stdout, resumed.stderr
    assert "redoing 1 shard(s)" in resumed.stderr
    assert tar_hashes(out) == tar_hashes(clean_run)
    assert run_cli("verify", str(out)).returncode == 0


# --- resume does not trust damaged shards ----------------------------------------------------------

def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    """Cut a file about half-way, inside a record: for a tar, inside the data of its middle member (a cut
    on a header block reads as a clean, shorter tar, which verify reports by its sample count instead)."""
    import tarfile

    data = path.read_bytes()
    cut = len(data) // 2
    if path.suffix == ".tar":
        with tarfile.open(path) as tar:
            members = [m for m in tar.getmembers() if m.size > 2]
        middle = members[len(members) // 2]
        cut = middle.offset_data + middle.size // 2
    path.write_bytes(data[:cut])


def _swap(a: Path, b: Path) -> None:
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "swapped"])
def test_resume_redoes_damaged_shards(clean_run, tmp_path, damage):
    out = _copy(clean_run, tmp_path)
    tar = out / "drag-000001.tar"
    {"flipped byte": _flip_byte, "truncated": _truncate,
     "swapped": lambda p: _swap(p, out / "drag-000002.tar")}[damage](tar)
    redone = 2 if damage == "swapped" else 1
    resumed = run_cli(*GEN, "--n", "120", "--seed", "5", "--out", str(out), "--backend", "local")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{3 - redone} already done" in resumed.stdout and f"redoing {redone} shard(s)" in resumed.stderr
    assert tar_hashes(out) == tar_hashes(clean_run)
    assert run_cli("verify", str(out)).returncode == 0


def test_check_existing_rehashes_and_strays_beyond_the_plan_are_removed(clean_run, tmp_path):
    out = _copy(clean_run, tmp_path)
    _flip_byte(out / "drag-000000.tar")
    for suffix in (".tar", ".parquet", ".stats.json"):  # an in-pattern shard of a 15-shard plan… in a 3-shard run
        shutil.copy(out / f"drag-000002{suffix}", out / f"drag-000099{suffix}")
    verified = run_cli("verify", str(out))
    assert "drag-000099.tar: a shard beyond this run's plan of 3" in verified.stderr
    resumed = run_cli(*GEN, "--n", "120", "--seed", "5", "--out", str(out), "--backend", "local", "--check-existing")
    assert resumed.returncode == 0 and "2 already done" in resumed.stdout, resumed.stderr
    assert "removed 3 file(s) of shards beyond" in resumed.stderr
    assert not list(out.glob("drag-000099*"))
    assert tar_hashes(out) == tar_hashes(clean_run)


# --- verify names every problem and never crashes --------------------------------------------------

def _rewrite_member(tar_path: Path, suffix: str, data: bytes) -> None:
    """Replace the bytes of the first member ending in `suffix`, keeping every other member as it is."""
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    done = False
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        import io

        for member, blob in members:
            if not done and member.name.endswith(suffix):
                blob, done = data, True
                member.size = len(data)
            tar.addfile(member, io.BytesIO(blob))


def _add_symlink_member(tar_path: Path) -> None:
    with tarfile.open(tar_path, "a") as tar:
        info = tarfile.TarInfo("drag-000000-000999.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)


def _shift_ranges(parquet: Path) -> None:
    """An index whose byte ranges point one sample on (the gallery would read another sample's bytes)."""
    import pyarrow.parquet as pq

    pq.write_table(rotate_byte_ranges(parquet), parquet)


DAMAGES = {
    "index byte ranges": (lambda o: _shift_ranges(o / "drag-000002.parquet"),
                          "drag-000002.parquet: the byte range (tar_offset, tar_length) of"),
    "truncated parquet": (lambda o: _truncate(o / "drag-000000.parquet"), "drag-000000.parquet: unreadable"),
    "garbage parquet": (lambda o: (o / "drag-000001.parquet").write_bytes(b"PAR1garbagePAR1"), "drag-000001.parquet: unreadable"),
    "corrupt stats": (lambda o: (o / "drag-000001.stats.json").write_text("{not json"), "drag-000001.stats.json: not valid json"),
    "stats not an object": (lambda o: (o / "drag-000001.stats.json").write_text("[1, 2]"), "not a json object"),
    "corrupt run.json": (lambda o: (o / "run.json").write_text('{"name": "drag", "mix": 7}'), "run.json: not a collage run config"),
    "run.json not json": (lambda o: (o / "run.json").write_bytes(b"\x00\xff"), "run.json: not valid json"),
    "corrupt sizes.json": (lambda o: (o / "sizes.json").write_text("[]"), "sizes.json: not a json object"),
    "stray shard": (lambda o: shutil.copy(o / "drag-000002.tar", o / "drag-000099.tar"), "drag-000099.tar: a shard beyond"),
    "leftover temporary": (lambda o: (o / ".drag-000001.tar.abc123.tmp").write_bytes(b"half"), "leftover temporary"),
    "zero-byte tar": (lambda o: (o / "drag-000001.tar").write_bytes(b""), "drag-000001.tar: 0 bytes"),
    "garbage tar": (lambda o: (o / "drag-000001.tar").write_bytes(os.urandom(20000)), "drag-000001.tar: not a readable tar"),
    "truncated tar": (lambda o: _truncate(o / "drag-000001.tar"), "drag-000001.tar: not a readable tar"),
    "missing tar": (lambda o: (o / "drag-000001.tar").unlink(), "drag-000001.tar: missing"),
    "swapped tars": (lambda o: _swap(o / "drag-000001.tar", o / "drag-000002.tar"), "key does not follow drag-000001"),
    "json not an object": (lambda o: _rewrite_member(o / "drag-000001.tar", ".json", b"[1, 2, 3]"), "json member is not an object"),
    "json with a string width": (lambda o: _rewrite_member(o / "drag-000001.tar", ".json", json.dumps(
        {"task": "drag", "op": "translate", "prompt": "", "caption": "", "caption_source": "template", "width": "wide",
         "height": 128, "seed": 1, "objects": []}).encode()), "are not positive integers"),
    "json of an unknown task": (lambda o: _rewrite_member(o / "drag-000001.tar", ".json", json.dumps(
        {"task": 7, "op": None, "prompt": "", "caption": "", "caption_source": "template", "width": 128,
         "height": 128, "seed": 1, "objects": []}).encode()), "drag-000001.tar"),
    "undecodable image": (lambda o: _rewrite_member(o / "drag-000002.tar", ".tgt.jpg", b"\xff\xd8garbage"), "does not decode"),
    "a symlink member": (lambda o: _add_symlink_member(o / "drag-000000.tar"), "is not a regular file"),
    "stats of another shard": (lambda o: shutil.copy(o / "drag-000002.stats.json", o / "drag-000001.stats.json"), "drag-000001"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_verify_names_the_damage_without_a_traceback(clean_run, tmp_path, damage):
    out = _copy(clean_run, tmp_path)
    tamper, words = DAMAGES[damage]
    tamper(out)
    result = run_cli("verify", str(out))
    assert result.returncode == 1, (damage, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "could not be checked" not in result.stderr, result.stderr
    assert words in result.stderr, (damage, result.stderr)


def test_verify_reports_all_damage_at_once(clean_run, tmp_path):
    """One damaged file must not hide the others' problems."""
    out = _copy(clean_run, tmp_path)
    for name in ("truncated parquet", "corrupt stats", "garbage tar", "stray shard", "leftover temporary"):
        DAMAGES[name][0](out)
    _flip_byte(out / "drag-000002.tar")
    result = run_cli("verify", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    for words in ("drag-000000.parquet: unreadable", "drag-000001.stats.json: not valid json",
                  "drag-000099.tar", "leftover temporary", "drag-000002.tar: sha256 differs"):
        assert words in result.stderr, (words, result.stderr)


def test_verify_of_bad_paths_is_one_line(tmp_path):
    assert "no run.json" in run_cli("verify", str(tmp_path / "nowhere")).stderr
    a_file = tmp_path / "f.tar"
    a_file.write_bytes(b"x")
    assert "a file, not a collage run" in run_cli("verify", str(a_file)).stderr
    assert "unknown storage protocol" in one_error_line(run_cli("verify", "nosuch://bucket/run"))


# --- storage URLs and odd values, refused before Ray starts ----------------------------------------

@pytest.mark.parametrize("out, words", [
    ("memory://bucket/run", ["does not outlive this process"]),
    ("nosuch://bucket/run", ["unknown storage protocol 'nosuch'"]),
    ("", ["--out ''"]),
])
def test_bad_storage_urls(out, words):
    # --address of a cluster that does not exist: the --out error must come first (nothing is started)
    result = run_cli(*GEN, "--n", "10", "--out", out, "--address", "127.0.0.1:1")
    line = one_error_line(result)
    for word in words:
        assert word in line, line


def test_s3_without_its_driver_is_one_line():
    try:
        import s3fs  # noqa: F401
        pytest.skip("s3fs is installed here")
    except ImportError:
        pass
    line = one_error_line(run_cli(*GEN, "--n", "10", "--out", "s3://bucket/run"))
    assert "s3://" in line and "s3fs" in line


def test_a_file_as_out_is_refused_before_the_cluster_is_asked(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("mine")
    line = one_error_line(run_cli(*GEN, "--n", "10", "--out", str(a_file), "--address", "127.0.0.1:1"))
    assert "--out" in line and "is a file" in line
    assert a_file.read_text() == "mine"


@pytest.mark.parametrize("args, words", [
    (["--n", "99999999999999"], ["99,999,999,999,999", "shards", "--shard-size"]),
    (["--n", "10", "--address", ""], ["--address ''"]),
    (["--n", "10", "--shard-size", "0"], ["--shard-size"]),
])
def test_odd_values_are_refused(tmp_path, args, words):
    out = tmp_path / "o"
    line = one_error_line(run_cli("generate", "--task", "drag", "--no-progress", *args, "--out", str(out)))
    for word in words:
        assert word in line, line
    assert "--shard_size" not in line
    assert not out.exists()


def test_an_infinite_pipeline_weight_is_refused(tmp_path):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("name: mix\ntasks:\n  - {task: drag, weight: .inf}\n  - {task: t2i, weight: 1}\n")
    line = one_error_line(run_cli("generate", "--pipeline", str(pipeline), "--n", "10", "--out", str(tmp_path / "o")))
    assert "weight" in line and "finite" in line
    assert not (tmp_path / "o").exists()


def test_more_workers_than_cores_are_capped(tmp_path, assets):
    out = tmp_path / "run"
    result = run_cli(*GEN, "--n", "40", "--out", str(out), "--workers", "1000")
    assert result.returncode == 0, result.stderr
    assert f"--workers 1000 is more than this machine's {os.cpu_count()} cores: using {os.cpu_count()}" in result.stderr


# --- signals and a dead driver ---------------------------------------------------------------------

def test_sigterm_stops_like_ctrl_c(tmp_path, assets):
    out = tmp_path / "run"
    driver = _start([*GEN, "--n", "1200", "--seed", "12", "--out", str(out), "--workers", "2"])
    _wait_for_markers(out, 2, driver)
    driver.send_signal(signal.SIGTERM)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 143, stderr
    assert "terminated" in stderr and "rerun the same command to resume" in stderr
    assert "Traceback" not in stderr and "SIGABRT" not in stderr and "Aborted" not in stderr
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    assert len(list(out.glob("*.stats.json"))) < 30
    rerun = run_cli(*GEN, "--n", "1200", "--seed", "12", "--out", str(out), "--workers", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert run_cli("verify", str(out)).returncode == 0


def test_kill_9_of_the_driver_ends_the_local_ray_instance(tmp_path, assets):
    import psutil

    out = tmp_path / "run"
    driver = _start([*GEN, "--n", "1200", "--seed", "13", "--out", str(out), "--workers", "2"])
    _wait_for_markers(out, 1, driver)
    ray_processes = [p for p in psutil.Process(driver.pid).children(recursive=True)
                     if "collage.watchdog" not in " ".join(p.cmdline())]
    assert ray_processes, "no Ray processes under the driver"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    _, alive = psutil.wait_procs(ray_processes, timeout=20)
    assert not alive, [p.cmdline()[:2] for p in alive]
    finished = len(list(out.glob("*.stats.json")))
    time.sleep(2)
    assert len(list(out.glob("*.stats.json"))) == finished, "shards still being written after the driver died"


# --- a full disk -----------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_stops_the_run_with_one_line(small_disk, assets):
    out = small_disk / "run"
    result = run_cli(*GEN, "--n", "2000", "--out", str(out), "--workers", "2", timeout=300)
    line = one_error_line(result, code=1)
    assert "No space left on device" in line and "rerun the same command to resume" in line, line
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr
    assert not list(out.glob(".*.tmp")), "temporaries left on the full disk"
    for marker in out.glob("*.stats.json"):  # what was committed is whole
        stats = json.loads(marker.read_text())
        assert (out / stats["tar"]).stat().st_size == stats["bytes"]
