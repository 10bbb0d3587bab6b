"""Shared fixtures: the asset library (decoded once per machine), torch threads, the CLI as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def assets():
    from collage.assets import AssetLibrary

    return AssetLibrary(warn=False)


@pytest.fixture(scope="session")
def lib(assets):
    """The same library under the name the task tests use."""
    return assets


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny torch ops: on a busy 2-core box OpenMP barriers cost more than the second core gives."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_png_run(tmp_path_factory, task: str, **kwargs) -> Path:
    """A lossless (png) run of `task` made in-process, for pixel-exact label checks; returns its folder."""
    from collage.api import generate_run

    out = tmp_path_factory.mktemp(f"{task}_png")
    generate_run(out=str(out), task=task, image_format="png", backend="local", **kwargs)
    return out


def tar_hashes(out: Path) -> dict[str, str]:
    """{shard file name: sha256} of a run folder's tars: what determinism tests compare."""
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(out).glob("*.tar"))}


def rotate_byte_ranges(parquet: Path):
    """A shard's parquet index whose byte ranges point one sample on (each row at its neighbour's offset):
    the index no longer matches its tar."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    offsets = table.column("tar_offset").to_pylist()
    return table.set_column(table.column_names.index("tar_offset"), "tar_offset",
                            pa.array(offsets[1:] + offsets[:1], pa.int64()))


def cli_env() -> dict:
    env = dict(os.environ)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env.pop("RAY_ADDRESS", None)
    return env


def one_error_line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one `error:` line of a refused command (exit `code`, no traceback)."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `collage ARGS` as a user would, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "collage", *args], capture_output=True, text=True, timeout=timeout,
                          env=env or cli_env(), cwd=REPO)


@pytest.fixture(scope="session")
def tiny_features(tmp_path_factory) -> Path:
    """Real collage runs of every task (12 samples each), precomputed with the tiny random encoders built
    here: ROOT/feats, ROOT/vlm, ROOT/vae. What the trainer and sampler tests train and sample from."""
    from collage.api import generate_run
    from train.precompute import precompute
    from train.tiny import build_tiny_vae, build_tiny_vlm

    root = tmp_path_factory.mktemp("tiny_features")
    vlm, vae = str(build_tiny_vlm(root / "vlm")), str(build_tiny_vae(root / "vae"))
    sources = []
    for task in ("t2i", "inpaint", "edit", "drag", "reference", "segdet"):
        generate_run(out=str(root / task), task=task, n=12, seed=3, size=128, shard_size=12, backend="local")
        sources.append(str(root / task))
    precompute(sources, str(root / "feats"), vlm, vae, size=256, backend="local")
    return root
