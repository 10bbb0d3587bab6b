"""train.sample with real parts: tiny random Qwen2-VL and VAE (train.tiny), a tiny DiT saved as a real training
run through train.checkpoint, and the real CLI, as a subprocess (one success, the refusals) and in-process
through its `main` (the other tasks: a fresh interpreter costs ~10 s of imports each)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from collage.config import aspect_buckets
from conftest import REPO, cli_env
from train.inputs import nearest_bucket

SOURCE_WH = (120, 80)  # a 3:2 source: at --size 64 its bucket is 80x48, at 128 160x112


@pytest.fixture(scope="module")
def one_thread(torch_one_thread):
    """The subprocesses run with OMP_NUM_THREADS=1; the in-process runs match them (and tiny ops are faster)."""


@pytest.fixture(scope="module")
def parts(tmp_path_factory, one_thread) -> dict[str, Path]:
    """The encoders, a RUN with one checkpoint (raw weights ≠ EMA weights), an export folder, a source and a mask."""
    from model.dit import PRESETS, DreamOmniDiT
    from train.checkpoint import save_checkpoint
    from train.config import OptimConfig
    from train.ema import EMA
    from train.optim import build_optimizer, build_scheduler, scheduler_state
    from train.tiny import build_tiny_vae, build_tiny_vlm

    root = tmp_path_factory.mktemp("sample")
    out = {"root": root, "vlm": build_tiny_vlm(root / "vlm", hidden_size=64),
           "vlm32": build_tiny_vlm(root / "vlm32", hidden_size=32), "vae": build_tiny_vae(root / "vae")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DreamOmniDiT(dataclasses.replace(PRESETS["tiny"], vlm_dim=64))
        with torch.no_grad():  # adaLN-Zero starts at exactly 0: perturb so the velocity is not trivially zero
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        ema = EMA(model, decay=0.5)
        with torch.no_grad():  # the raw weights move on; the EMA keeps the earlier ones
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    optimizer = build_optimizer(model, OptimConfig())
    scheduler = build_scheduler(optimizer, OptimConfig(), 10)
    out["run"] = root / "run"
    out["step"] = save_checkpoint(out["run"], 1, model=model, ema=ema, optimizer=optimizer,
                                  scheduler_state=scheduler_state(scheduler), loader_state={}, config={}, keep_last=3)
    out["export"] = root / "export"
    model.save_pretrained(out["export"])
    rng = np.random.default_rng(0)
    w, h = SOURCE_WH
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "src.png")
    mask = np.zeros((h, w), np.uint8)
    mask[20:60, 30:90] = 255
    Image.fromarray(mask).save(root / "mask.png")
    out["src"], out["mask"] = root / "src.png", root / "mask.png"
    return out


def args(parts, out: Path, *extra: str, model: Path | None = None, vlm: str = "vlm", size: int = 64,
         steps: int = 2) -> list[str]:
    return ["--model", str(model or parts["run"]), "--vlm", str(parts[vlm]), "--vae", str(parts["vae"]),
            "--size", str(size), "--steps", str(steps), "--device", "cpu", "--out", str(out), *extra]


def subprocess_sample(argv: list[str]) -> subprocess.CompletedProcess:
    env = cli_env()
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "train.sample", *argv], capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    from train.sample import main

    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        return im.size


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def bucket_of(size: int) -> tuple[int, int]:
    """The (width, height) precompute's size policy gives the 3:2 source at `size`."""
    return aspect_buckets(size)[nearest_bucket(*SOURCE_WH, size)]


def one_error_line(rc: int, err: str) -> str:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ---------------------------------------------------------------------------- the CLI in a fresh process


@pytest.fixture(scope="module")
def t2i_png(parts) -> tuple[Path, subprocess.CompletedProcess]:
    out = parts["root"] / "cli" / "t2i.png"  # cli/ does not exist yet: made
    result = subprocess_sample(args(parts, out, "--prompt", "A red circle above a blue square.", "--seed", "0"))
    return out, result


def test_t2i_in_a_fresh_process(t2i_png):
    out, result = t2i_png
    assert result.returncode == 0, result.stderr
    assert png_size(out) == (64, 64)
    line = result.stdout.strip()
    assert len(line.splitlines()) == 1 and str(out) in line and "64x64" in line and "t2i" in line, line
    assert pixels(out).std() > 0  # a real decode of a non-zero flow, not a flat image
    assert [p.name for p in out.parent.iterdir()] == ["t2i.png"]  # the temporary was renamed, nothing left


def test_same_seed_same_bytes_other_seed_other_bytes(parts, t2i_png, tmp_path, capsys):
    out, result = t2i_png
    assert result.returncode == 0, result.stderr
    again, other = tmp_path / "again.png", tmp_path / "other.png"
    prompt = ["--prompt", "A red circle above a blue square."]
    assert run_main(args(parts, again, *prompt, "--seed", "0"), capsys)[0] == 0
    assert run_main(args(parts, other, *prompt, "--seed", "1"), capsys)[0] == 0
    assert again.read_bytes() == out.read_bytes()  # another process, the same PNG
    assert other.read_bytes() != out.read_bytes()


@pytest.mark.parametrize("case", ["missing model", "vlm width", "mask without image", "size 100"])
def test_bad_input_is_one_line_exit_2(parts, tmp_path, case):
    out = tmp_path / "never.png"
    argv = {
        "missing model": args(parts, out, "--prompt", "x", model=parts["root"] / "no-such-run"),
        "vlm width": args(parts, out, "--prompt", "x", vlm="vlm32"),
        "mask without image": args(parts, out, "--prompt", "x", "--mask", str(parts["mask"])),
        "size 100": args(parts, out, "--prompt", "x", size=100),
    }[case]
    result = subprocess_sample(argv)
    line = one_error_line(result.returncode, result.stderr)
    expect = {"missing model": "no-such-run", "vlm width": "32", "mask without image": "--mask",
              "size 100": "--size 100"}[case]
    assert expect in line, line
    if case == "vlm width":
        assert "64" in line  # both numbers
    assert not out.exists() and result.stdout == ""


# ---------------------------------------------------------------------------- tasks (the CLI's main, in-process)


@pytest.mark.parametrize("task,extra,prompt", [
    ("edit", [], "Replace the cat with a dog."),
    ("inpaint", ["--mask"], "Fill in the gray area of the image. The full image shows a cat on a background."),
    ("drag", ["--task", "drag"], "Drag the cat: (60, 40, 12, -6); (30, 30, 12, -6)"),
    ("reference", ["--task", "reference", "--op", "canny"], "Generate an image from this canny edge map: a cat."),
    ("subject", ["--task", "reference", "--op", "subject"], "Show the cat from the reference image in a new scene."),
])
def test_tasks_with_an_image_give_the_source_bucket(parts, tmp_path, capsys, task, extra, prompt):
    out = tmp_path / f"{task}.png"
    flags = ["--image", str(parts["src"])]
    if "--mask" in extra:
        flags += ["--mask", str(parts["mask"])]
        extra = [e for e in extra if e != "--mask"]
    rc, stdout, err = run_main(args(parts, out, *flags, *extra, "--prompt", prompt, size=64), capsys)
    assert rc == 0, err
    assert png_size(out) == bucket_of(64) == (80, 48)
    kind = "reference" if task == "subject" else task
    assert f"{kind}/" in stdout and "80x48" in stdout, stdout
    assert pixels(out).std() > 0


def test_bucket_follows_size(parts, tmp_path, capsys):
    out = tmp_path / "edit128.png"
    rc, _, err = run_main(args(parts, out, "--image", str(parts["src"]), "--prompt", "Remove the cat.", "--op",
                               "remove", size=128), capsys)
    assert rc == 0, err
    assert png_size(out) == bucket_of(128) == (160, 112)


def test_ema_and_every_kind_of_model_path(parts, tmp_path, capsys):
    prompt = ["--prompt", "A red circle above a blue square."]
    paths = {"raw": (parts["run"], []), "ema": (parts["run"], ["--ema"]), "step": (parts["step"], []),
             "step-ema": (parts["step"], ["--ema"]), "model-ema": (parts["step"] / "model", ["--ema"]),
             "export": (parts["export"], [])}
    made = {}
    for name, (model, extra) in paths.items():
        made[name] = tmp_path / f"{name}.png"
        rc, stdout, err = run_main(args(parts, made[name], *prompt, *extra, model=model), capsys)
        assert rc == 0, (name, err)
        assert ("(ema)" in stdout) == ("--ema" in extra)
    raw = made["raw"].read_bytes()
    assert made["ema"].read_bytes() != raw  # the EMA weights are other weights
    assert made["step"].read_bytes() == raw and made["export"].read_bytes() == raw
    assert made["step-ema"].read_bytes() == made["ema"].read_bytes() == made["model-ema"].read_bytes()
    rc, _, err = run_main(args(parts, tmp_path / "x.png", *prompt, "--ema", model=parts["export"]), capsys)
    assert "ema.safetensors" in one_error_line(rc, err)


@pytest.mark.parametrize("flags,needle", [
    (["--task", "drag", "--image", "{src}", "--prompt", "Drag the cat to the left."], "no drag points"),
    (["--task", "drag", "--image", "{src}", "--prompt", "Drag the cat: (500, 40, 10, 0)"], "outside"),
    (["--task", "reference", "--image", "{src}", "--prompt", "x"], "--op"),
    (["--task", "edit", "--image", "{src}", "--op", "zoom", "--prompt", "x"], "zoom"),
    (["--task", "t2i", "--image", "{src}", "--prompt", "x"], "--image"),
    (["--task", "edit", "--prompt", "x"], "needs --image"),
    (["--task", "inpaint", "--image", "{src}", "--prompt", "x"], "--mask"),
    (["--image", "{root}/nothing.png", "--prompt", "x"], "no such file"),
    (["--image", "{mask}", "--prompt", "x"], None),  # a grayscale png is a valid source (read as RGB)
    (["--image", "{src}", "--mask", "{small}", "--prompt", "x"], "mask of the image's size"),
    (["--prompt", "x", "--out-suffix"], ".png"),
])
def test_more_refusals_are_one_line(parts, tmp_path, capsys, flags, needle):
    small = parts["root"] / "small_mask.png"
    if not small.exists():
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    names = {"src": parts["src"], "mask": parts["mask"], "root": parts["root"], "small": small}
    out = tmp_path / ("out.jpg" if "--out-suffix" in flags else "out.png")
    flags = [f.format(**names) for f in flags if f != "--out-suffix"]
    rc, _, err = run_main(args(parts, out, *flags), capsys)
    if needle is None:
        assert rc == 0, err
        return
    assert needle in one_error_line(rc, err)
    assert not out.exists()


# ---------------------------------------------------------------------------- the importable API


@pytest.fixture(scope="module")
def loaded(parts):
    from train.sample import load_encoders, load_model

    model = load_model(parts["run"], device="cpu")
    return model, load_encoders(parts["vlm"], parts["vae"], "cpu", vlm_dim=model.cfg.vlm_dim)


def test_load_model_ema_weights_are_the_files(parts):
    from safetensors.torch import load_file

    from model.dit import DreamOmniDiT
    from train.sample import load_model

    raw, ema = load_model(parts["run"]), load_model(parts["run"], ema=True)
    assert isinstance(ema, DreamOmniDiT) and not ema.training
    shadow = load_file(str(parts["step"] / "ema.safetensors"))
    state, raw_state = ema.state_dict(), raw.state_dict()
    assert all(torch.equal(state[k], v) for k, v in shadow.items())
    assert any(not torch.equal(state[k], raw_state[k]) for k in shadow)
    assert all(not p.requires_grad for p in ema.parameters())


def test_sample_image_matches_the_cli(parts, loaded, tmp_path, capsys):
    from train.sample import sample_image

    model, encoders = loaded
    source = pixels(parts["src"])
    mask = np.asarray(Image.open(parts["mask"]).convert("L"))
    prompt = "Fill in the gray area of the image."
    image = sample_image(model, encoders, prompt=prompt, task=None, op=None, image=source, mask=mask, size=64,
                         steps=2, cfg=3.0, seed=5)
    assert image.dtype == np.uint8 and image.shape == (48, 80, 3)
    out = tmp_path / "cli.png"
    flags = ["--image", str(parts["src"]), "--mask", str(parts["mask"]), "--cfg", "3", "--seed", "5"]
    assert run_main(args(parts, out, *flags, "--prompt", prompt), capsys)[0] == 0
    assert np.array_equal(pixels(out), image)


def test_the_vlm_request_is_precomputes(parts):
    """The request build_condition makes is vlm_request's for the sample precompute would have seen."""
    from collage.palette import PALETTE
    from train.conditioning import vlm_request
    from train.inputs import _fit
    from train.sample import INFERENCE_KEY, build_condition, load_image

    source, mask = load_image(parts["src"]), load_image(parts["mask"], gray=True)
    width, height = bucket_of(64)
    prompt = "Fill in the gray area of the image. The full image shows a cat on a background."
    cond = build_condition(prompt=prompt, image=source, mask=mask, size=64)
    assert (cond.task, cond.op, cond.width, cond.height) == ("inpaint", "inpaint", width, height)
    fitted, hole = _fit(source, width, height, nearest=False), _fit(mask, width, height, nearest=True) > 0
    src = fitted.copy()
    src[hole] = PALETTE["gray"]  # collage's inpaint samples: the hole is gray in the source
    meta = {"task": "inpaint", "op": "inpaint", "prompt": prompt, "caption": prompt}
    expected = vlm_request(meta, {"src": src, "mask": np.where(hole, 255, 0).astype(np.uint8)}, INFERENCE_KEY)
    assert cond.request.image_names == expected.image_names == ["src", "mask"]
    assert cond.request.text == expected.text == prompt  # the whole prompt, description included
    assert all(np.array_equal(a, b) for a, b in zip(cond.request.images, expected.images))

    t2i = build_condition(prompt="Three red circles.", size=96)
    assert (t2i.request.image_names, t2i.request.text, t2i.width, t2i.height) == ([], "Three red circles.", 96, 96)
    ref = build_condition(prompt="Generate a photo from this depth map.", task="reference", op="depth",
                          image=source, size=64)
    assert ref.request.image_names == ["cond"] and ref.request.images[0].shape == (height, width, 3)


def test_drag_points_become_training_fractions(parts):
    from train.sample import build_condition, load_image

    source = load_image(parts["src"])  # 120x80 -> covers 80x48 as 80x53, 2 rows cropped off the top
    cond = build_condition(prompt="Drag the cat: (60, 40, 12, -6); (0, 10, 0, 0); (119, 4, 0, 0) please",
                           task="drag", image=source, size=64)
    assert cond.request.image_names == ["src"]
    assert cond.request.text == ("Drag the cat: (0.498, 0.507, 0.100, -0.083); (0.000, 0.093, 0.000, 0.000); "
                                 "(0.988, 0.010, 0.000, 0.000) please")  # edge pixels stay on the image
    assert cond.meta["points"][0][2] == pytest.approx(12 * (80 / 120) / 80, abs=1e-6)
    fractions = build_condition(prompt="drag it (0.5, 0.5, 0.1, -0.1)", task="drag", image=source, size=64)
    assert fractions.request.text == "drag it: (0.498, 0.507, 0.100, -0.110)"  # fractions of the source, remapped


def test_decode_inverts_the_normalisation(loaded):
    _, encoders = loaded
    vae = encoders.vae
    z = torch.randn(2, 16, 6, 10, generator=torch.Generator().manual_seed(0))
    images = vae.decode(z)
    assert len(images) == 2 and images[0].shape == (48, 80, 3) and images[0].dtype == np.uint8
    with torch.no_grad():
        x = vae.vae.decode(z / vae.scaling_factor + vae.shift_factor).sample
    expected = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(np.stack(images), expected)
    assert np.array_equal(vae.decode(z[1])[0], images[1])  # one (16, h, w) latent
    assert np.array_equal(vae.decode([z[0], z[1, :, :4, :4]])[0], images[0])  # a list of mixed sizes


def test_checkpoints_it_cannot_read_are_one_line(parts, tmp_path, capsys):
    sharded = tmp_path / "run" / "step-000002"  # what train.checkpoint writes for an FSDP run: dcp/, no model/
    (sharded / "dcp").mkdir(parents=True)
    (sharded / "meta.json").write_text('{"step": 2, "sharded": true, "config": {}}')
    (tmp_path / "run" / "latest").write_text("step-000002\n")
    half = tmp_path / "half"  # a save killed before meta.json
    (half / "model").mkdir(parents=True)
    (half / "model" / "config.json").write_text("{}")
    empty = tmp_path / "empty"
    empty.mkdir()
    for model, needle in [(tmp_path / "run", "sharded"), (sharded, "sharded"), (half, "meta.json"),
                          (empty, "neither"), (parts["src"], "not a directory")]:
        rc, _, err = run_main(args(parts, tmp_path / "x.png", "--prompt", "x", model=model), capsys)
        assert needle in one_error_line(rc, err), (model, err)
