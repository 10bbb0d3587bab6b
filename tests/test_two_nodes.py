"""Two Ray nodes on one machine (issue 17): a run spreads over both, and losing one mid-run costs nothing.

A head and a second node are started with `ray start` on a loopback address, each in its own process
group and temp dir; every process either started is recorded and killed (SIGKILL) at the end, so the test
never needs `ray stop` (which would end every Ray instance on the machine, other test runs' included).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO, cli_env, run_cli, tar_hashes

pytestmark = pytest.mark.slow

# Not 127.0.0.1: Ray rewrites 127.0.0.1/localhost in --address to the machine's public IP (unless
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which in turn refuses a second node); the rest of 127/8 is loopback too.
HOST = "127.0.0.2"
RAY = str(Path(sys.executable).with_name("ray"))
GEN = ["generate", "--task", "drag", "--size", "256", "--shard-size", "50", "--no-progress"]
N = 1500  # 30 shards of about half a second at 256² (whose asset cache other tests share): time to kill a node mid-run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _procs() -> dict[int, tuple[int, str]]:
    """{pid: (process group, command line)} of every process this user can read."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            found[int(entry)] = (os.getpgid(int(entry)), cmd)
        except (OSError, ProcessLookupError):
            continue
    return found


class Node:
    """One `ray start` in its own session: its daemons (and their workers) share its process group."""

    def __init__(self, name: str, temp_dir: Path, args: list[str], env: dict):
        self.name, self.temp_dir = name, temp_dir
        started = time.time()
        proc = subprocess.Popen([RAY, "start", *args, "--temp-dir", str(temp_dir), "--disable-usage-stats"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        self.pgid = proc.pid
        self.pids: set[int] = {proc.pid}
        try:
            self.log, _ = proc.communicate(timeout=90)  # `ray start` retries an unreachable GCS forever
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"`ray start` of the {name} node hung") from None
        self.seconds = time.time() - started
        self.record()
        assert proc.returncode == 0, self.log

    def mine(self) -> dict[int, str]:
        """This node's live processes: its process group, or anything naming its temp dir."""
        return {pid: cmd for pid, (pgid, cmd) in _procs().items()
                if pgid == self.pgid or str(self.temp_dir) in cmd}

    def record(self) -> None:
        self.pids |= set(self.mine())

    def node_id(self) -> str:
        for cmd in self.mine().values():
            if "/raylet/raylet " in cmd:
                return next(a.split("=", 1)[1] for a in cmd.split() if a.startswith("--node_id="))
        raise AssertionError(f"no raylet of the {self.name} node")

    def kill(self) -> None:
        for _ in range(3):  # a worker forked while we kill is caught by the next sweep
            self.record()
            with _ignore_gone():
                os.killpg(self.pgid, signal.SIGKILL)
            for pid in self.pids:
                with _ignore_gone():
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def left(self) -> dict[int, str]:
        alive = {}
        for pid, (pgid, cmd) in _procs().items():
            if pid in self.pids or pgid == self.pgid or str(self.temp_dir) in cmd:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                            continue  # a zombie: dead, waiting for a parent that is not ours
                except OSError:
                    continue
                alive[pid] = cmd
        return alive


class _ignore_gone:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, (ProcessLookupError, PermissionError))


@pytest.fixture
def cluster(request):
    """A head and a second node (resource `second_node`) on HOST; torn down by SIGKILL of exactly their processes."""
    root = Path(tempfile.mkdtemp(prefix="c2n", dir="/tmp"))  # short: Ray's socket paths have a length limit
    env = cli_env()
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # "0" refuses a second node
    env["RAY_AUTH_MODE"] = "token"  # Ray ≥ 2.59: token auth; our own token, so ~/.ray/auth_token is untouched
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    nodes: list[Node] = []

    def teardown():
        for node in reversed(nodes):
            node.kill()
        time.sleep(0.5)
        left = {pid: cmd for node in nodes for pid, cmd in node.left().items()}
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes of the test cluster outlived it: {left}"

    request.addfinalizer(teardown)
    port = _free_port()
    address = f"{HOST}:{port}"
    nodes.append(Node("head", root / "h", [
        "--head", "--node-ip-address", HOST, "--port", str(port), "--num-cpus", "1", "--include-dashboard", "false",
        "--dashboard-port", str(_free_port()), "--ray-client-server-port", str(_free_port()),
        "--dashboard-agent-listen-port", str(_free_port())], env))
    nodes.append(Node("second", root / "w", [
        "--address", address, "--node-ip-address", HOST, "--num-cpus", "1", "--resources", '{"second_node": 1}',
        "--dashboard-agent-listen-port", str(_free_port())], env))
    return {"address": address, "env": env, "head": nodes[0], "second": nodes[1], "root": root}


def _stats(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.stats.json"))]


def _check_run(out: Path, reference: dict[str, str]) -> None:
    from collage.reader import iter_samples

    keys = [s["__key__"] for s in iter_samples(out, decode=False)]
    assert len(keys) == len(set(keys)) == N
    assert tar_hashes(out) == reference
    for stats in _stats(out):
        assert stats["sha256"] == reference[stats["tar"]]
    verified = run_cli("verify", str(out))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_two_nodes_share_a_run_and_survive_losing_one(tmp_path, cluster, assets):
    env, address, head, second = cluster["env"], cluster["address"], cluster["head"], cluster["second"]
    head_id, second_id = head.node_id(), second.node_id()
    assert head_id != second_id
    print(f"\nnodes started: head {head.seconds:.1f}s, second {second.seconds:.1f}s")

    reference_dir = tmp_path / "local"
    started = time.time()
    local = run_cli(*GEN, "--n", str(N), "--out", str(reference_dir), "--backend", "local")
    assert local.returncode == 0, local.stderr
    reference = tar_hashes(reference_dir)
    assert len(reference) == N // 50
    print(f"one-node reference (--backend local): {time.time() - started:.1f}s")

    # 1. Both nodes take shards.
    both = tmp_path / "both"
    started = time.time()
    result = run_cli(*GEN, "--n", str(N), "--out", str(both), "--address", address, env=env, timeout=240)
    assert result.returncode == 0, result.stderr
    assert f"done: {N:,} samples in {N // 50} shards" in result.stdout, result.stdout
    per_node = {}
    for stats in _stats(both):
        per_node[stats["node"]] = per_node.get(stats["node"], 0) + 1
    print(f"both nodes: {time.time() - started:.1f}s, shards per node "
          f"{ {('head' if k == head_id else 'second' if k == second_id else k): v for k, v in per_node.items()} }")
    assert set(per_node) == {head_id, second_id}, per_node
    _check_run(both, reference)
    head.record()
    second.record()

    # 2. The second node dies (kill -9 of its raylet, its workers, everything in its process group) mid-run.
    lost = tmp_path / "lost"
    started = time.time()
    driver = subprocess.Popen([sys.executable, "-m", "collage", *GEN, "--n", str(N), "--out", str(lost),
                               "--address", address], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and driver.poll() is None:
            markers = _stats(lost) if lost.exists() else []
            if len(markers) >= 3 and any(s.get("node") == second_id for s in markers):
                break
            time.sleep(0.05)
        done_before = len(_stats(lost))
        assert driver.poll() is None and done_before < N // 50, "the run ended before the second node could be killed"
        second.kill()
        killed_at = time.time() - started
        assert not second.left(), second.left()
        stdout, stderr = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 0, stderr
    assert f"done: {N:,} samples in {N // 50} shards" in stdout, stdout
    nodes_after = [s["node"] for s in _stats(lost)]
    on_second = sum(node == second_id for node in nodes_after)
    print(f"second node killed at {killed_at:.1f}s with {done_before} shard(s) done; run finished in "
          f"{time.time() - started:.1f}s; shards by head {len(nodes_after) - on_second}, by the lost node {on_second}")
    assert set(nodes_after) <= {head_id, second_id}
    assert on_second < N // 50 and nodes_after.count(head_id) > 0
    _check_run(lost, reference)
    assert not list(lost.glob(".*.tmp")) and not list(lost.glob("*.tmp"))
