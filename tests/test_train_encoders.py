"""train.conditioning and train.encoders with real tiny encoders (built here, random, offline) and real
collage shards of every task and op (made here, 128², two samples a run)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from collage.errors import UserError
from train.conditioning import (CONDITIONING, ANY_OP, VLMRequest, caption_coin, split_instruction,
                                table_markdown, vlm_request)
from train.encoders import Encoders, LatentEncoder, VLMEncoder
from train.tiny import build_tiny_vae, build_tiny_vlm

HIDDEN = 64  # build_tiny_vlm's default
OPS = {"t2i": ("text", "shapes", "stickers"), "inpaint": ("inpaint", "outpaint"), "edit": ("add", "remove", "replace"),
       "drag": ("translate", "scale", "rotate"), "segdet": ("segment", "detect"),
       "reference": ("canny", "depth", "seg", "subject")}

# FEATURE_FORMAT.md's "What the VLM sees, per task", written out here apart from train.conditioning.
SEES = {"t2i": [], "inpaint": ["src", "mask"], "edit": ["src"], "drag": ["src"], "segdet": ["src"], "canny": ["cond"],
        "depth": ["cond"], "seg": ["cond"], "subject": ["src"]}


def sees(task: str, op: str) -> list[str]:
    return SEES[op] if task == "reference" else SEES[task]


def members(sample: dict) -> dict[str, np.ndarray]:
    return {k: v for k, v in sample.items() if isinstance(v, np.ndarray)}


def request(sample: dict, **replace: np.ndarray) -> VLMRequest:
    return vlm_request(sample["json"], {**members(sample), **replace}, sample["__key__"])


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny_encoders")
    return build_tiny_vlm(root / "vlm"), build_tiny_vae(root / "vae")


@pytest.fixture(scope="module")
def encoders(tiny_dirs, torch_one_thread) -> Encoders:
    return Encoders.load(*tiny_dirs)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[dict]:
    """Two real samples of every task and op."""
    from collage.api import generate_run, iter_samples

    out = []
    for task, ops in OPS.items():
        for op in ops:
            run = tmp_path_factory.mktemp(f"{task}_{op}")
            generate_run(out=str(run), task=task, ops=op, n=2, size=128, shard_size=2, backend="local")
            out.extend(iter_samples(run))
    return out


def by_task(samples: list[dict], task: str) -> dict:
    return next(s for s in samples if s["json"]["task"] == task)


# ---------------------------------------------------------------------------- the table


def test_table_has_exactly_the_documented_tasks_and_ops():
    assert set(CONDITIONING) == set(OPS)
    for task, ops in CONDITIONING.items():
        assert set(ops) == ({ANY_OP} if task == "t2i" else set(OPS[task])), task
    rendered = table_markdown()
    assert all(f"| {task} |" in rendered for task in OPS)


@pytest.mark.parametrize("task,op", [(t, o) for t, ops in OPS.items() for o in ops] + [("t2i", "external")])
def test_each_task_and_op_sees_what_the_table_says(task, op):
    images = {name: np.full((16, 16, 3), i, np.uint8) for i, name in enumerate(("tgt", "src", "mask", "cond"))}
    meta = {"task": task, "op": op, "prompt": "Do it. With detail.", "caption": "Do it. With detail."}
    req = vlm_request(meta, images, "k-000000-000000")
    assert req.image_names == sees(task, op)
    assert all(a is images[name] for a, name in zip(req.images, req.image_names))
    assert "tgt" not in req.image_names  # the target is what is generated, never a condition


def test_real_samples_follow_the_table(samples):
    assert {(s["json"]["task"], s["json"]["op"]) for s in samples} == {(t, o) for t, ops in OPS.items() for o in ops}
    for s in samples:
        meta, req = s["json"], request(s)
        assert req.image_names == sees(meta["task"], meta["op"]), s["__key__"]
        assert all(img is s[name] for img, name in zip(req.images, req.image_names))
        if meta["task"] == "drag":  # the template prompt, points and all
            assert req.text == meta["prompt"] and "(0." in req.text
        elif meta["task"] == "inpaint":
            instruction, rest = split_instruction(meta["prompt"])
            assert req.text in (instruction, f"{instruction} {rest}".strip())
            assert req.text.startswith(("Fill in the gray area", "Extend the image past"))
        else:
            assert req.text == meta["caption"]


def test_inpaint_caption_for_half_of_the_keys_by_key():
    instruction = "Fill in the gray area of the image."
    prompt = f"{instruction} The full image shows a cat and a hat on a background."
    meta = {"task": "inpaint", "op": "inpaint", "prompt": prompt, "caption": prompt}
    keys = [f"inpaint-{shard:06d}-{i:06d}" for shard in range(2) for i in range(200)]
    texts = [vlm_request(meta, {"src": None, "mask": None}, key).text for key in keys]
    assert set(texts) == {instruction, prompt}
    share = texts.count(prompt) / len(texts)
    assert 0.4 < share < 0.6
    assert texts == [vlm_request(meta, {"src": None, "mask": None}, key).text for key in keys]  # by key alone
    # A stable hash, not Python's salted hash(): pinned so every process and rerun agrees.
    assert [caption_coin(k) for k in keys[:8]] == [False, True, True, False, True, True, False, True]
    # A refined caption that no longer starts with the instruction follows it.
    refined = dict(meta, caption="A cat in a hat, partly hidden.", caption_source="llm")
    texts = {vlm_request(refined, {"src": None, "mask": None}, key).text for key in keys}
    assert texts == {instruction, f"{instruction} A cat in a hat, partly hidden."}
    # No description (a plain background): the instruction either way.
    bare = {"task": "inpaint", "op": "outpaint", "prompt": "Extend the image past its top edge, filling the gray band."}
    bare["caption"] = bare["prompt"]
    assert {vlm_request(bare, {"src": None, "mask": None}, key).text for key in keys} == {bare["prompt"]}


def test_unknown_task_op_or_member_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="'paint'"):
        vlm_request({"task": "paint", "op": "x", "prompt": "p"}, {}, "k")
    with pytest.raises(ValueError, match="'recolor'.*'edit'"):
        vlm_request({"task": "edit", "op": "recolor", "prompt": "p"}, {"src": None}, "k")
    with pytest.raises(ValueError, match="src"):
        vlm_request({"task": "edit", "op": "add", "prompt": "p"}, {"tgt": None}, "k")


# ---------------------------------------------------------------------------- the encoders


def test_vlm_shapes_and_lengths_follow_image_tokens(encoders, samples):
    reqs = [request(s) for s in samples]
    feats = encoders.encode_vlm(reqs, batch_size=8)
    for req, f in zip(reqs, feats):
        assert f.dtype == torch.float32 and f.ndim == 2 and f.shape[1] == HIDDEN == encoders.hidden_size
        assert f.shape[0] >= 1 and not f.requires_grad and not f.is_inference()
    # Each 128² image is 5×5 merged tokens (140² after the processor's resize) plus vision start/end.
    per_image = encoders.vlm.image_tokens(128, 128) + 2
    assert per_image == 27
    for req, f in zip(reqs, feats):
        bare = encoders.encode_vlm([VLMRequest([], [], req.text)])[0]
        assert f.shape[0] - bare.shape[0] == per_image * len(req.images)


def test_max_pixels_caps_image_tokens(tiny_dirs, samples):
    capped = VLMEncoder.load(tiny_dirs[0], max_pixels=4 * 28 * 28)
    req = request(by_task(samples, "edit"))
    assert capped.image_tokens(128, 128) == 4
    assert capped.encode([req])[0].shape[0] == capped.encode([VLMRequest([], [], req.text)])[0].shape[0] + 4 + 2


def test_vlm_is_hidden_states_minus_two(encoders):
    req = VLMRequest([], [], "A red circle.")
    ids = encoders.vlm.prepare(req).input_ids[None]
    with torch.inference_mode():
        out = encoders.vlm.model.model(input_ids=ids, output_hidden_states=True, use_cache=False)
    feats = encoders.encode_vlm([req])[0]
    assert torch.equal(feats, out.hidden_states[-2][0])
    assert not torch.allclose(feats, out.last_hidden_state[0])  # not the final, normed layer


def test_latent_shapes_order_and_normalisation(encoders, samples):
    tgt = by_task(samples, "t2i")["tgt"]
    wide = np.ascontiguousarray(tgt[:64])  # 128 wide, 64 high
    images = [tgt, wide, tgt[::-1].copy(), wide]
    lat = encoders.encode_latents(images, batch_size=8)
    assert [tuple(z.shape) for z in lat] == [(16, 16, 16), (16, 8, 16), (16, 16, 16), (16, 8, 16)]
    assert all(z.dtype == torch.float32 and not z.is_inference() for z in lat)
    assert torch.equal(lat[1], lat[3]) and not torch.allclose(lat[0], lat[2])
    vae = encoders.vae.vae
    with torch.inference_mode():  # the posterior mean, normalised, as diffusers computes it (one image)
        x = torch.from_numpy(np.array(tgt)).permute(2, 0, 1)[None].contiguous().float() / 127.5 - 1
        mean = vae.encode(x).latent_dist.mean[0]
    expected = (mean - vae.config.shift_factor) * vae.config.scaling_factor
    assert vae.config.scaling_factor == 0.3611 and vae.config.shift_factor == 0.1159
    torch.testing.assert_close(encoders.encode_latents([tgt])[0], expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="multiples of 8"):
        encoders.encode_latents([np.zeros((60, 64, 3), np.uint8)])


def test_features_depend_on_the_images(encoders, samples):
    edit = by_task(samples, "edit")
    before, after = encoders.encode_vlm([request(edit), request(edit, src=255 - edit["src"])])
    assert before.shape == after.shape and (before - after).abs().max() > 1e-6
    t2i = by_task(samples, "t2i")
    same = encoders.encode_vlm([request(t2i), request(t2i, tgt=255 - t2i["tgt"])])
    assert torch.equal(*same)  # t2i sees no image: the target never leaks into the condition
    z = encoders.encode_latents([t2i["tgt"], 255 - t2i["tgt"]])
    assert not torch.allclose(*z)


def test_batching_matches_one_by_one(encoders, samples):
    reqs = [request(s) for s in samples[::3]]  # every task, with 0, 1 and 2 images, mixed in one batch
    assert {len(r.images) for r in reqs} == {0, 1, 2}
    alone = [encoders.encode_vlm([r])[0] for r in reqs]
    for batch_size in (None, 3):
        batched = encoders.encode_vlm(reqs, batch_size=batch_size)
        for a, b in zip(alone, batched):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    images = [s["tgt"] for s in samples[:6]]
    for a, b in zip([encoders.encode_latents([im])[0] for im in images], encoders.encode_latents(images)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_bitwise_same_across_two_loads(tiny_dirs, encoders, samples):
    again = Encoders.load(*tiny_dirs)
    reqs = [request(s) for s in samples[:12]]
    for a, b in zip(encoders.encode_vlm(reqs, batch_size=4), again.encode_vlm(reqs, batch_size=4)):
        assert torch.equal(a, b)
    images = [s["tgt"] for s in samples[:4]]
    for a, b in zip(encoders.encode_latents(images), again.encode_latents(images)):
        assert torch.equal(a, b)
    assert torch.equal(encoders.unconditional_vlm(), again.unconditional_vlm())


def test_unconditional_is_the_empty_prompt(encoders):
    u = encoders.unconditional_vlm()
    assert u.ndim == 2 and u.shape[0] >= 1 and u.shape[1] == HIDDEN
    assert torch.equal(u, encoders.encode_vlm([VLMRequest([], [], "")])[0])
    u.zero_()  # the cache hands out copies
    assert encoders.unconditional_vlm().abs().sum() > 0


def test_describe_and_config_digests(encoders, tiny_dirs):
    vlm_dir, vae_dir = tiny_dirs
    info = encoders.describe()
    assert info["vlm"]["config_digest"] == hashlib.sha256((vlm_dir / "config.json").read_bytes()).hexdigest()
    assert info["vae"]["config_digest"] == hashlib.sha256((vae_dir / "config.json").read_bytes()).hexdigest()
    assert info["vlm"]["hidden_size"] == HIDDEN and info["vlm"]["hidden_layer"] == -2
    assert info["vlm"]["max_pixels"] == 256 * 28 * 28
    assert (info["vae"]["scaling_factor"], info["vae"]["shift_factor"]) == (0.3611, 0.1159)


def test_tiny_builders_are_small_deterministic_and_leave_the_rng(tmp_path):
    state = torch.random.get_rng_state()
    a = [build_tiny_vlm(tmp_path / "a" / "vlm"), build_tiny_vae(tmp_path / "a" / "vae")]
    b = [build_tiny_vlm(tmp_path / "b" / "vlm"), build_tiny_vae(tmp_path / "b" / "vae")]
    assert torch.equal(state, torch.random.get_rng_state())
    for da, db in zip(a, b):
        files = sorted(p.name for p in da.iterdir())
        assert files == sorted(p.name for p in db.iterdir())
        assert all((da / f).read_bytes() == (db / f).read_bytes() for f in files)
        assert sum((da / f).stat().st_size for f in files) < 1.5e6


# ---------------------------------------------------------------------------- bad folders

BAD = [
    ("vlm", "config.json", "config.json is missing"),
    ("vlm", "tokenizer.json", "tokenizer files are missing"),
    ("vlm", "preprocessor_config.json", "preprocessor_config.json is missing"),
    ("vlm", "model.safetensors", "model.safetensors"),
    ("vlm", "chat_template.jinja", "no chat template"),
    ("vae", "config.json", "config.json is missing"),
    ("vae", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors"),
]


@pytest.mark.parametrize("which,remove,says", BAD)
def test_a_missing_file_is_one_line_naming_it(tmp_path, tiny_dirs, which, remove, says):
    vlm, vae = shutil.copytree(tiny_dirs[0], tmp_path / "vlm"), shutil.copytree(tiny_dirs[1], tmp_path / "vae")
    (Path(vlm if which == "vlm" else vae) / remove).unlink()
    with pytest.raises(UserError) as err:
        Encoders.load(vlm, vae)
    message = str(err.value)
    assert "\n" not in message and says in message and message.startswith(which.upper())


def test_wrong_or_broken_folders_are_one_line(tmp_path, tiny_dirs):
    vlm, vae = tiny_dirs
    broken = shutil.copytree(vlm, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\0" * 100)
    for args, says in [((vae, vae), "not Qwen2-VL"), ((vlm, vlm), "not an AutoencoderKL"),
                       ((tmp_path / "nowhere", vae), "no such directory"), ((broken, vae), "cannot load it")]:
        with pytest.raises(UserError) as err:
            Encoders.load(*args)
        assert "\n" not in str(err.value) and says in str(err.value), str(err.value)


@pytest.mark.parametrize("where", ["tokenizer_config.json", "chat_template.json"])
def test_chat_template_found_where_hub_checkpoints_keep_it(tmp_path, tiny_dirs, encoders, where):
    vlm = shutil.copytree(tiny_dirs[0], tmp_path / "vlm")
    template = (vlm / "chat_template.jinja").read_text()
    (vlm / "chat_template.jinja").unlink()
    if where == "tokenizer_config.json":
        config = json.loads((vlm / where).read_text())
        (vlm / where).write_text(json.dumps({**config, "chat_template": template}))
    else:
        (vlm / where).write_text(json.dumps({"chat_template": template}))
    req = VLMRequest([], [], "A blue square.")
    assert torch.equal(VLMEncoder.load(vlm).encode([req])[0], encoders.encode_vlm([req])[0])


def test_fp16_vae_runs_in_fp32_as_its_config_asks(tiny_dirs):
    assert LatentEncoder.load(tiny_dirs[1], dtype=torch.float16).dtype == torch.float32
    assert LatentEncoder.load(tiny_dirs[1], dtype=torch.bfloat16).dtype == torch.bfloat16
