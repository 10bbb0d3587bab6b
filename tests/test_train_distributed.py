"""The trainer on two real processes (torchrun, gloo on CPU): DDP with the global batch split over two
processes gives the weights of one process accumulating two micro-batches; FSDP2 gives the same again, saves
sharded (torch.distributed.checkpoint), resumes exactly and exports one save_pretrained directory; a later
stage starts from an earlier one's weights (model.init_from)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "train" / "configs" / "tiny.yaml")
# 6 steps of a global batch of 4; validation at 3 and 6 on 6 held-out samples; checkpoints at 3 and 6
OPTS = ("--steps", "6", "--set", "data.batch_size=2", "--set", "data.global_batch_size=4", "--set", "eval.every=3",
        "--set", "eval.holdout=6", "--set", "eval.sample_every=0", "--set", "train.ckpt_every=3",
        "--set", "train.tensorboard=false")


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _train(feats: Path, out: Path, *extra: str, procs: int = 1) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)]
                if procs > 1 else [sys.executable])
    cmd = [*launcher, "-m", "train", "--config", TINY, "--data", str(feats), "--out", str(out), *OPTS, *extra]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _weights(run: Path, step: int, ema: bool = False) -> dict[str, torch.Tensor]:
    """A checkpoint's full weights, sharded or not, through the export path a user takes."""
    from train.checkpoint import export

    out = run.parent / f"{run.name}-export-{step}-{int(ema)}"
    if not out.exists():
        export(run / f"step-{step:06d}", out, ema=ema)
    return load_file(str(out / "model.safetensors"))


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tiny_features, tmp_path_factory) -> dict[str, Path]:
    feats = tiny_features / "feats"
    root = tmp_path_factory.mktemp("dist")
    out = {name: root / name for name in ("single", "ddp", "fsdp", "fsdp_resumed")}
    _train(feats, out["single"])  # one process, accumulation 2
    _train(feats, out["ddp"], procs=2)  # two processes, accumulation 1
    _train(feats, out["fsdp"], "--set", "train.parallel=fsdp", procs=2)
    # resume FSDP from its step-3 checkpoint (a copy of the run as it was after step 3)
    resumed = out["fsdp_resumed"]
    shutil.copytree(out["fsdp"], resumed)
    shutil.rmtree(resumed / "step-000006")
    (resumed / "latest").write_text("step-000003\n")
    done = _train(feats, resumed, "--set", "train.parallel=fsdp", procs=2)
    assert "resumed from step-000003" in done.stderr
    return out


def _close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys() and a
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= atol, worst


def test_two_processes_equal_one_with_accumulation(runs):
    single, ddp = runs["single"], runs["ddp"]
    for ema in (False, True):
        # the same samples, t and noise per step; only the order of the float sums differs
        _close(_weights(single, 6, ema), _weights(ddp, 6, ema), atol=1e-6)
    a, b = _rows(single), _rows(ddp)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(7))
    for ra, rb in zip(a, b):
        for key in ("loss", "val_loss", "val_loss_ema", "grad_norm"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6), (ra["step"], key)
    assert {r["samples_per_s"] > 0 for r in b if r["step"]} == {True}
    meta = json.loads((ddp / "step-000006" / "meta.json").read_text())
    assert meta["world_size"] == 2 and not meta["sharded"]
    assert sorted(p.name for p in (ddp / "step-000006").glob("rank-*")) == ["rank-00000", "rank-00001"]


def _initial() -> dict[str, torch.Tensor]:
    """The weights every run starts from (the model built right after torch.manual_seed(train.seed))."""
    from model.dit import DreamOmniDiT
    from train.config import dit_config, load_config

    torch.manual_seed(load_config(TINY).train.seed)
    return DreamOmniDiT(dit_config(load_config(TINY).model)).state_dict()


def _relative_gap(a: dict, b: dict, start: dict) -> float:
    """|a - b| over the distance a travelled from the start, over all tensors (Adam amplifies the rounding of
    near-zero gradients of zero-initialised biases, so element-wise gaps are not the measure)."""
    gap = sum(float((a[k] - b[k]).square().sum()) for k in a) ** 0.5
    travelled = sum(float((a[k] - start[k]).square().sum()) for k in a) ** 0.5
    return gap / travelled


def test_fsdp_equals_ddp_and_saves_sharded(runs):
    ddp, fsdp = runs["ddp"], runs["fsdp"]
    ckpt = fsdp / "step-000006"
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["sharded"] and (ckpt / "dcp" / ".metadata").is_file() and not (ckpt / "model").exists()
    assert len(list((ckpt / "dcp").glob("*.distcp"))) == 2  # one file of shards per rank
    start = _initial()
    for ema in (False, True):
        a, b = _weights(ddp, 6, ema), _weights(fsdp, 6, ema)
        assert a.keys() == b.keys() == start.keys()
        assert _relative_gap(a, b, start) < 1e-3  # measured: 4e-5
    val = [[r["val_loss"] for r in _rows(run) if "val_loss" in r] for run in (ddp, fsdp)]
    assert len(val[0]) == 3 and val[1] == pytest.approx(val[0], rel=1e-5)


def test_fsdp_resume_is_exact(runs):
    for ema in (False, True):
        a, b = _weights(runs["fsdp"], 6, ema), _weights(runs["fsdp_resumed"], 6, ema)
        assert all(torch.equal(a[k], b[k]) for k in a), "resumed FSDP run differs"
    assert [r.get("loss") for r in _rows(runs["fsdp"])] == [r.get("loss") for r in _rows(runs["fsdp_resumed"])]


def test_export_cli_and_from_pretrained(runs, tmp_path):
    from model.dit import DreamOmniDiT
    from train.export import main

    assert main([str(runs["fsdp"]), "--out", str(tmp_path / "ema"), "--ema"]) == 0
    model = DreamOmniDiT.from_pretrained(tmp_path / "ema")
    ref = _weights(runs["fsdp"], 6, ema=True)
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2


def test_resume_with_another_split_is_refused(runs, tiny_features, capsys):
    """RUN was 2 processes x 1; one process would need accumulation 2: not the same data layout."""
    from train.__main__ import main

    argv = ["--config", TINY, "--data", str(tiny_features / "feats"), "--out", str(runs["ddp"]), *OPTS,
            "--steps", "7"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 processes x 1 accumulation" in err and "1 x 2" in err, err


@pytest.mark.parametrize("source", ["ddp", "fsdp"])
def test_init_from_a_previous_stage(runs, tiny_features, tmp_path, source, torch_one_thread):
    """A stage-2 run starts from stage 1's weights (a RUN; sharded or not); lr 0 keeps them, so its first
    checkpoint holds exactly the weights it started from, and its EMA starts from them too."""
    from train.config import load_config
    from train.loop import train

    cfg = load_config(TINY, [f"data.sources=[{str(tiny_features / 'feats')!r}]", f"model.init_from={runs[source]}",
                             "optim.lr=0.0", "optim.warmup_steps=0", "train.steps=1", "eval.every=0",
                             "eval.sample_every=0", "train.tensorboard=false"])
    train(cfg, tmp_path / "stage2", echo=lambda m: None)
    start = _weights(runs[source], 6)
    got = load_file(str(tmp_path / "stage2" / "step-000001" / "model" / "model.safetensors"))
    assert all(torch.equal(got[k], start[k]) for k in start)
    ema = load_file(str(tmp_path / "stage2" / "step-000001" / "ema.safetensors"))
    assert all(torch.equal(ema[k], start[k]) for k in start)


def test_init_from_another_architecture_is_refused(runs, tiny_features, tmp_path, capsys):
    from train.__main__ import main

    argv = ["--config", TINY, "--data", str(tiny_features / "feats"), "--out", str(tmp_path / "run"),
            "--steps", "1", "--set", f"model.init_from={runs['ddp']}", "--set", "model.depth=2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another architecture" in err and "depth 4 vs 2" in err, err
