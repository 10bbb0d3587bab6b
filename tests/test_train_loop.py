"""The trainer (train/loop.py, `python -m train`) on real collage shards precomputed with tiny random encoders:
the tiny preset's loss falls over 50 steps; a run SIGKILLed after a checkpoint and rerun ends bitwise equal to
an uninterrupted one; a half-written checkpoint is ignored; user mistakes are one line and exit 2."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "train" / "configs" / "tiny.yaml")


@pytest.fixture(scope="module")
def feats(tiny_features) -> Path:
    return tiny_features / "feats"


def _cmd(feats: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "train", "--config", TINY, "--data", str(feats), "--out", str(out), *extra]


def _env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"  # both runs alike; on a busy 2-core box one thread is the faster
    env.update(extra)
    return env


def _tensors(run: Path, step: int) -> dict[str, torch.Tensor]:
    ckpt = run / f"step-{step:06d}"
    out = {f"model.{k}": v for k, v in load_file(str(ckpt / "model" / "model.safetensors")).items()}
    out |= {f"ema.{k}": v for k, v in load_file(str(ckpt / "ema.safetensors")).items()}
    optim = torch.load(ckpt / "optim.pt", weights_only=True)
    for i, state in optim["state"].items():
        for name, v in state.items():
            out[f"optim.{i}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(feats, tmp_path_factory, torch_one_thread) -> Path:
    """The tiny preset as shipped (50 steps, validation at 0/25/50, samples at 50), in this process."""
    from train.config import load_config
    from train.loop import train

    run = tmp_path_factory.mktemp("tiny") / "run"
    cfg = load_config(TINY, [f"data.sources=[{str(feats)!r}]"])
    assert cfg.train.steps == 50
    summary = train(cfg, run, echo=lambda m: None)  # its speed is bench material, not a test's
    assert summary["start"] == 0 and summary["steps"] == 50
    return run


def test_tiny_validation_loss_falls(tiny_run):
    rows = _rows(tiny_run)
    assert [r["step"] for r in rows] == list(range(0, 51))
    val = {r["step"]: r["val_loss"] for r in rows if "val_loss" in r}
    assert sorted(val) == [0, 25, 50]
    assert val[50] < 0.8 * val[0], val  # the held-out set, fixed t and noise: only the weights moved
    assert val[25] < val[0]
    last = rows[-1]
    assert set(last["val_loss_task"]) == {"t2i", "inpaint", "edit", "drag", "reference", "segdet"}
    assert last["val_loss_ema"] < rows[0]["val_loss_ema"]
    holdout = json.loads((tiny_run / "holdout.json").read_text())
    assert len(holdout) == 12 and {h["task"] for h in holdout} == set(last["val_loss_task"])
    assert sorted(p.name for p in tiny_run.glob("step-*")) == ["step-000030", "step-000040", "step-000050"]


def test_tiny_metrics_are_complete(tiny_run):
    rows = [r for r in _rows(tiny_run) if r["step"] > 0]
    assert len(rows) == 50
    seen_tasks = set()
    for r in rows:
        assert {"loss", "loss_task", "loss_t", "lr", "grad_norm", "samples_per_s", "tokens_per_s", "tflops", "mfu",
                "data_wait", "peak_mem_gib", "skipped"} <= r.keys()
        # the per-task and per-bin losses are the same samples as the step's loss, split two ways
        assert 0 < r["loss"] < 10 and r["tflops"] > 0 and 0 <= r["data_wait"] <= 1 and r["peak_mem_gib"] > 0
        assert r["mfu"] is None  # no known peak for a CPU
        assert set(r["loss_t"]) <= {"0.00-0.25", "0.25-0.50", "0.50-0.75", "0.75-1.00"} and r["loss_t"]
        seen_tasks |= set(r["loss_task"])
        assert min(r["loss_task"].values()) <= r["loss"] <= max(r["loss_task"].values())
    assert seen_tasks == {"t2i", "inpaint", "edit", "drag", "reference", "segdet"}
    assert rows[0]["lr"] < rows[10]["lr"] and rows[-1]["lr"] < rows[10]["lr"]  # warm-up, then cosine
    events = list((tiny_run / "tensorboard").glob("events.out.tfevents.*"))
    if importlib.util.find_spec("tensorboard") is not None:
        assert events and events[0].stat().st_size > 0


def test_tiny_sample_images(tiny_run):
    """At step 50, the first two held-out conditions drawn and decoded at their own latent's size."""
    from PIL import Image

    from train.shards import index_shard

    out = tiny_run / "samples" / "step-000050"
    index = json.loads((out / "samples.json").read_text())
    holdout = json.loads((tiny_run / "holdout.json").read_text())
    assert [row["key"] for row in index] == [h["key"] for h in holdout[:2]]
    for row, held in zip(index, holdout):
        shard = index_shard(held["shard"])
        latent = shard.table[shard.keys.index(row["key"])]
        image = Image.open(out / f"{row['file']}.png")
        assert image.size == (8 * int(latent["w"]), 8 * int(latent["h"])) and image.mode == "RGB"
        assert row["task"] == held["task"] and row["vlm_text"]


def test_sample_from_the_trained_run(tiny_run, tiny_features, tmp_path):
    """`python -m train.sample --model RUN` takes the run's latest checkpoint (RUN/config.json is the trainer's)."""
    from PIL import Image

    from train.sample import main

    out = tmp_path / "t2i.png"
    assert main(["--model", str(tiny_run), "--ema", "--vlm", str(tiny_features / "vlm"), "--vae",
                 str(tiny_features / "vae"), "--size", "64", "--steps", "2", "--prompt", "a red circle",
                 "--out", str(out)]) == 0
    assert Image.open(out).size == (64, 64)


@pytest.fixture(scope="module")
def resumed(feats, tmp_path_factory):
    """An uninterrupted RUN and two killed-and-resumed ones (kill -9 between steps; kill -9 in the middle of
    writing a checkpoint), 20 steps each, in subprocesses."""
    root = tmp_path_factory.mktemp("resume")
    straight, killed, mid_save = root / "straight", root / "killed", root / "mid_save"
    opts = ("--steps", "20", "--set", "eval.every=10", "--set", "eval.sample_every=0")
    done = subprocess.run(_cmd(feats, straight, *opts), env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr

    proc = subprocess.Popen(_cmd(feats, killed, *opts, "--set", "train.step_sleep=0.3"), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, lambda: (killed / "step-000010").is_dir())
    assert not (killed / "step-000020").exists(), "killed too late: nothing left to resume"

    # a save that stops half-way (after the model, before meta.json) for 30 s: kill it there
    proc = subprocess.Popen(_cmd(feats, mid_save, *opts), env=_env(COLLAGE_TEST_CHECKPOINT_PAUSE="30"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = mid_save / ".tmp-step-000020"
    _kill_when(proc, lambda: (tmp / "rank-00000" / "loader.json").is_file() and (tmp / "optim.pt").is_file(),
               timeout=150)
    assert not (mid_save / "step-000020").exists() and (mid_save / "latest").read_text().strip() == "step-000010"

    for run in (killed, mid_save):
        again = subprocess.run(_cmd(feats, run, *opts), env=_env(), capture_output=True, text=True, timeout=180)
        assert again.returncode == 0, again.stderr
        assert "resumed from step-000010" in again.stderr
    return straight, killed, mid_save


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None and time.time() < deadline, "the run ended before the moment to kill it"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("which", ["between_steps", "mid_checkpoint_write"])
def test_kill9_resume_is_bitwise_exact(resumed, which):
    straight, killed = resumed[0], resumed[1 if which == "between_steps" else 2]
    a, b = _tensors(straight, 20), _tensors(killed, 20)
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert torch.equal(a[name], b[name]), name
    ra, rb = _rows(straight), _rows(killed)
    assert [r["step"] for r in rb] == list(range(0, 21))
    assert [r.get("loss") for r in ra] == [r.get("loss") for r in rb]
    assert [r.get("val_loss") for r in ra] == [r.get("val_loss") for r in rb]
    assert not list(killed.glob(".tmp-*"))


def test_sigterm_saves_at_the_step_and_resumes_exactly(resumed, feats, tmp_path):
    """A preempted job (SIGTERM): the step in flight finishes, a checkpoint of that step is written, exit 143;
    the rerun resumes there and ends bitwise equal to the uninterrupted run."""
    straight, run = resumed[0], tmp_path / "run"
    opts = ("--steps", "20", "--set", "eval.every=10", "--set", "eval.sample_every=0")
    proc = subprocess.Popen(_cmd(feats, run, *opts, "--set", "train.step_sleep=0.3"), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").is_file() or len(_rows(run)) < 14:  # step 13 logged
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    latest = (run / "latest").read_text().strip()
    assert latest not in ("step-000010", "step-000020") and f"checkpoint {run / latest} saved" in err, (latest, err)
    assert err.strip().splitlines()[-1].startswith("stopped by SIGTERM after step") and "Traceback" not in err
    again = subprocess.run(_cmd(feats, run, *opts), env=_env(), capture_output=True, text=True, timeout=180)
    assert again.returncode == 0 and f"resumed from {latest}" in again.stderr, again.stderr
    a, b = _tensors(straight, 20), _tensors(run, 20)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_trainer_on_the_same_run_is_refused(feats, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_cmd(feats, run, "--steps", "20", "--set", "train.step_sleep=0.5"), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (run / "metrics.jsonl").is_file():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        second = subprocess.run(_cmd(feats, run, "--steps", "20"), env=_env(), capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2, second.stderr
        err = second.stderr.strip().splitlines()
        assert len(err) == 1 and "is being written by another run (python -m train" in err[0], err
    finally:
        proc.kill()
        proc.wait()


def test_half_written_checkpoint_is_ignored(resumed):
    from train.checkpoint import load_latest

    run = resumed[1]
    # a save killed half-way: a temporary directory with some files and no meta.json
    tmp = run / ".tmp-step-000030"
    (tmp / "model").mkdir(parents=True)
    (tmp / "model" / "model.safetensors").write_bytes(b"\x00" * 100)
    (run / "latest.tmp").write_text("step-000030\n")
    state = load_latest(run)
    assert state["step"] == 20 and state["path"].name == "step-000020"
    assert not tmp.exists() and not (run / "latest.tmp").exists()
    # a damaged newest checkpoint: fall back to the previous one
    (run / "step-000020" / "model" / "model.safetensors").write_bytes(b"garbage")
    state = load_latest(run)
    assert state["step"] == 10
    ref = load_file(str(run / "step-000010" / "model" / "model.safetensors"))
    assert all(torch.equal(state["model"][k], v) for k, v in ref.items())


def test_disk_full_fails_the_save_and_keeps_the_previous(feats, tmp_path):
    """A real write failure (the kernel's file-size limit: EFBIG, as a full disk gives ENOSPC) during the final
    save: the run says so in one line and exits 1; the previous checkpoint loads and the run finishes later."""
    import resource

    run = tmp_path / "run"
    opts = ("--set", "eval.every=0", "--set", "eval.sample_every=0", "--set", "train.tensorboard=false")
    first = subprocess.run(_cmd(feats, run, "--steps", "10", *opts), env=_env(), capture_output=True, text=True,
                           timeout=180)
    assert first.returncode == 0, first.stderr
    limit = 64 * 1024  # the model's safetensors is larger; metrics lines and json files are not

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails (EFBIG) instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    (run / "metrics.jsonl").write_text("")  # keep it under the limit too
    full = subprocess.run(_cmd(feats, run, "--steps", "20", *opts), env=_env(), capture_output=True, text=True,
                          timeout=180, preexec_fn=small_files)
    assert full.returncode == 1, full.stderr
    err = full.stderr.strip().splitlines()
    assert err[-1].startswith("error: saving step-000020") and "previous checkpoint is kept" in err[-1], err
    assert "Traceback" not in full.stderr
    assert (run / "latest").read_text().strip() == "step-000010" and not (run / "step-000020").exists()
    assert not list(run.glob(".tmp-*"))
    again = subprocess.run(_cmd(feats, run, "--steps", "20", *opts), env=_env(), capture_output=True, text=True,
                           timeout=180)
    assert again.returncode == 0 and "resumed from step-000010" in again.stderr, again.stderr
    assert (run / "step-000020" / "meta.json").is_file()


@pytest.mark.parametrize("case", ["missing_feats", "unknown_key", "unknown_preset", "vlm_width"])
def test_bad_input_is_one_line_exit_2(case, feats, tmp_path, capsys):
    from train.__main__ import main

    argv = ["--config", TINY, "--data", str(feats), "--out", str(tmp_path / "run"), "--steps", "2"]
    expect = {"missing_feats": "nope", "unknown_key": "optim.lrr", "unknown_preset": "huge",
              "vlm_width": "vlm_dim"}[case]
    if case == "missing_feats":
        argv[3] = str(tmp_path / "nope")
    elif case == "unknown_key":
        argv += ["--set", "optim.lrr=1"]
    elif case == "unknown_preset":
        argv += ["--set", "model.preset=huge"]
    else:
        argv += ["--set", "model.vlm_dim=48"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and expect in err, err


# -- the small parts ------------------------------------------------------------------------------------------
def test_config_overrides_and_unknown_keys(tmp_path):
    from collage.errors import UserError
    from train.config import dit_config, load_config

    cfg = load_config(TINY, ["optim.lr=3e-4", "optim.betas=[0.9, 0.95]", "train.steps=7", "model.depth=2",
                             "data.sources=[a, b]", "data.weights=[1, 3]"])
    assert cfg.optim.lr == 3e-4 and cfg.optim.betas == [0.9, 0.95] and cfg.train.steps == 7
    assert cfg.data.weights == [1.0, 3.0] and isinstance(cfg.data.weights[0], float)
    dit = dit_config(cfg.model)
    assert dit.depth == 2 and dit.vlm_dim == 64 and dit.width == 64
    for bad, word in [("optim.lrr=1", "optim.lrr"), ("nope.x=1", "nope"), ("optim.lr.x=1", "optim.lr.x"),
                      ("optim.lr=fast", "optim.lr"), ("train.steps=1.5", "train.steps"), ("optim", "KEY=VALUE"),
                      ("model.preset=huge", "huge"), ("optim.schedule=linear", "linear")]:
        with pytest.raises(UserError, match=word.replace(".", r"\.")):
            load_config(TINY, [bad])
    (tmp_path / "bad.yaml").write_text("optim:\n  lr: 1.0e-4\n  warmup: 3\n")
    with pytest.raises(UserError, match=r"optim\.warmup"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(UserError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("stage,size,batch,lr,steps", [(1, 256, 2048, 1e-4, 377_000), (2, 512, 1024, 5e-5, 189_000),
                                                       (3, 1024, 256, 2e-5, 140_000)])
def test_paper_stage_configs(stage, size, batch, lr, steps, tmp_path):
    """The three 2.5b stages as the paper trains them; the global batch holds through accumulation."""
    from collage.errors import UserError
    from model.dit import num_params
    from train.config import dit_config, load_config
    from train.loop import accumulation

    path = ROOT / "train" / "configs" / f"2.5b-stage{stage}-{size}.yaml"
    extra = [f"data.sources=[{str(tmp_path)!r}]"] + ([f"model.init_from={tmp_path}"] if stage > 1 else [])
    cfg = load_config(path, extra)
    assert (cfg.data.global_batch_size, cfg.optim.lr, cfg.train.steps) == (batch, lr, steps)
    assert 2.4e9 < num_params(dit_config(cfg.model)) < 2.6e9 and cfg.model.vlm_dim == 3584
    assert (cfg.train.parallel, cfg.train.precision, cfg.train.activation_checkpointing) == ("fsdp", "bf16", True)
    assert accumulation(cfg, 64) == 1 and accumulation(cfg, 8) == 8
    assert f"--size {size}" in path.read_text()
    if stage > 1:
        assert cfg.model.init_from == str(tmp_path)
        assert load_config(path, extra[:1] + [f"model.init_from={tmp_path}"]).model.init_from_ema is False
        with pytest.raises(UserError, match="model.init_from runs/2.5b-s"):  # the shipped path: stage 1's --out
            load_config(path, extra[:1])
    with pytest.raises(UserError, match="not a multiple of 48 processes"):
        accumulation(cfg, 48)


def test_optimizer_groups_and_schedule():
    from torch import nn

    from model.dit import DreamOmniDiT
    from train.config import OptimConfig, dit_config, load_config
    from train.optim import build_optimizer, build_scheduler, lr_factor

    model = DreamOmniDiT(dit_config(load_config(TINY).model))
    opt = build_optimizer(model, OptimConfig(lr=1.0, weight_decay=0.1))
    decay, no_decay = ({id(p) for p in g["params"]} for g in opt.param_groups)
    assert opt.param_groups[1]["weight_decay"] == 0.0 and not decay & no_decay
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    for mod_name, mod in model.named_modules():
        for name, p in mod.named_parameters(recurse=False):
            if name == "bias" or isinstance(mod, (nn.LayerNorm, nn.GroupNorm)) or "Norm" in type(mod).__name__:
                assert id(p) in no_decay, f"{mod_name}.{name}"
            elif isinstance(mod, (nn.Linear, nn.Conv2d)):
                assert id(p) in decay, f"{mod_name}.{name}"

    cos = OptimConfig(lr=1.0, warmup_steps=4, schedule="cosine", min_lr_ratio=0.1)
    assert [lr_factor(s, cos, 14) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(9, cos, 14) == pytest.approx(0.55) and lr_factor(14, cos, 14) == pytest.approx(0.1)
    assert lr_factor(100, OptimConfig(warmup_steps=4), 14) == 1.0
    sched = build_scheduler(opt, cos, 14)
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0] and lrs == sorted(lrs[:4]) + sorted(lrs[4:], reverse=True)


def test_ema():
    from torch import nn

    from train.ema import EMA

    lin = nn.Linear(2, 2).to(torch.bfloat16)
    ema = EMA(lin, decay=0.5, interval=2, start=1)
    assert all(t.dtype == torch.float32 for t in ema.shadow.values())
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema.update(lin, 1)  # at start: copies
    assert torch.equal(ema.shadow["weight"], torch.ones(2, 2))
    with torch.no_grad():
        lin.weight.fill_(3.0)
    ema.update(lin, 3)  # not on the interval: unchanged
    assert torch.equal(ema.shadow["weight"], torch.ones(2, 2))
    ema.update(lin, 4)
    assert torch.equal(ema.shadow["weight"], torch.full((2, 2), 2.0))
    other = EMA(lin, decay=0.5, interval=2, start=1)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.shadow["weight"], ema.shadow["weight"]) and other.updates == 1


def test_non_finite_losses_skip_then_stop(feats, tmp_path, monkeypatch, torch_one_thread):
    import train.loop as loop
    from train.config import load_config

    real, calls = loop.flow_loss, []

    def flaky(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) in (2, 4, 5, 6) else loss

    monkeypatch.setattr(loop, "flow_loss", flaky)
    cfg = load_config(TINY, [f"data.sources=[{str(feats)!r}]", "train.max_nonfinite=3", "train.steps=10",
                             "train.ckpt_every=100", "eval.every=0", "eval.sample_every=0"])
    with pytest.raises(RuntimeError, match="not finite 3 steps in a row"):
        loop.train(cfg, tmp_path / "run", echo=lambda m: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in rows] == [0, 1, 1, 2, 3]
    assert torch.are_deterministic_algorithms_enabled() is False


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    import train.checkpoint as ck
    from model.dit import DreamOmniDiT
    from train.config import OptimConfig, dit_config, load_config
    from train.ema import EMA
    from train.optim import build_optimizer, build_scheduler, scheduler_state

    model = DreamOmniDiT(dit_config(load_config(TINY).model))
    opt = build_optimizer(model, OptimConfig())
    sched = build_scheduler(opt, OptimConfig(), 10)
    ema = EMA(model)
    kw = dict(model=model, ema=ema, optimizer=opt, scheduler_state=scheduler_state(sched),
              loader_state={"step": 1}, config={}, keep_last=2)
    ck.save_checkpoint(tmp_path, 1, **kw)

    def disk_full(root):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "_fsync_tree", disk_full)
    with pytest.raises(ck.CheckpointError, match="No space left on device"):
        ck.save_checkpoint(tmp_path, 2, **kw)
    assert (tmp_path / "latest").read_text().strip() == "step-000001"
    assert not (tmp_path / "step-000002").exists() and not list(tmp_path.glob(".tmp-*"))
    state = ck.load_latest(tmp_path)
    assert state["step"] == 1 and state["loader"] == {"step": 1} and not list(tmp_path.glob(".tmp-*"))
    monkeypatch.undo()
    for step in (2, 3, 4):
        ck.save_checkpoint(tmp_path, step, **kw)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000003", "step-000004"]
    assert ck.load_latest(tmp_path)["step"] == 4
