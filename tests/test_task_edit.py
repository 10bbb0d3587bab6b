"""edit: add / remove / replace checked on decoded shards."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from collage.api import generate_run, iter_samples
from collage import words
from collage.tasks.edit import TEMPLATES
from collage.tasks.labels import where
from conftest import make_png_run, tar_hashes
from pixel_checks import assert_sprites_shown, layer_alpha, layers
from prompt_checks import fields_of, template_for

OPS = ["add", "remove", "replace"]

RUN = dict(n=120, seed=7, size=192, ops=OPS)  # the png run every test here reads; the determinism test makes it again


@pytest.fixture(scope="module")
def png_run(tmp_path_factory):
    return make_png_run(tmp_path_factory, "edit", **RUN)


@pytest.fixture(scope="module")
def samples(png_run):
    return list(iter_samples(str(png_run)))


def test_every_op_is_made(samples):
    assert {s["json"]["op"] for s in samples} == set(OPS)


def test_mask_is_exactly_the_changed_pixels(samples):
    for s in samples:
        mask, src, tgt = s["mask"], s["src"], s["tgt"]
        assert set(np.unique(mask)) <= {0, 255}
        changed = mask == 255
        assert changed.any()
        assert np.array_equal(src[~changed], tgt[~changed]), s["__key__"]
        assert (src[changed] != tgt[changed]).any(axis=-1).all(), s["__key__"]


def test_change_lies_on_the_edited_object(samples, lib):
    for s in samples:
        meta = s["json"]
        h, w = s["mask"].shape
        touched = layer_alpha(lib, meta["target_object"], w, h)[0] > 0
        if meta["op"] == "replace":
            touched |= layer_alpha(lib, meta["new_object"], w, h)[0] > 0
        assert not (s["mask"].astype(bool) & ~touched).any(), s["__key__"]


def test_objects_and_prompt_are_true_to_the_pixels(samples, lib):
    for s in samples:
        meta, op = s["json"], s["json"]["op"]
        h, w = s["mask"].shape
        shown_in = s["src"] if op == "remove" else s["tgt"]  # what `objects` describes
        assert_sprites_shown(shown_in, layers(lib, meta["objects"], w, h))
        target = meta["target_object"]
        assert target["name"] in meta["prompt"]
        names = [o["name"] for o in meta["objects"]]
        others = [o for o in meta["objects"] if o["id"] != target["id"]]
        known = {"the_old": f"the {target['name']}", "it": words.pronoun(target["name"]),
                 "is_": words.be(target["name"])}
        if op == "add":
            known.update(a_new=words.with_article(target["name"]), where=where(target["bbox"], w, h))
        elif op == "replace":
            known["a_new"] = words.with_article(meta["new_object"]["name"])
        fields = fields_of(template_for(meta), meta["prompt"], **known)
        assert set(target) >= {"id", "asset", "name", "bbox"}
        if "the_old" in fields:
            assert fields["the_old"] == f"the {target['name']}"
        if "it" in fields:
            assert fields["it"] == words.pronoun(target["name"])
        if "background" in fields:
            assert fields["background"] == "a white background" or op != "add"
        if op == "add":
            assert fields["a_new"] == words.with_article(target["name"]) and target in meta["objects"]
            assert fields["where"] == where(target["bbox"], w, h)
            assert_sprites_shown(s["src"], layers(lib, others, w, h))  # the source is the rest of the scene
        elif op == "remove":
            assert target in meta["objects"]
            assert_sprites_shown(s["tgt"], layers(lib, others, w, h))
        else:
            new = meta["new_object"]
            assert fields["a_new"] == words.with_article(new["name"])
            assert new in meta["objects"] and new["name"] != target["name"]
            assert new["name"] not in [o["name"] for o in others]
            assert_sprites_shown(s["src"], layers(lib, others + [target], w, h))
        assert names.count(target["name"]) == (0 if op == "replace" else 1)


def test_every_template_is_used(samples):
    used = {s["json"]["template_id"] for s in samples}
    assert used == {f"edit.{op}.{k}" for op in OPS for k in range(len(TEMPLATES[op]))}


def test_replace_keeps_place_and_size(samples, lib):
    replaced = [s for s in samples if s["json"]["op"] == "replace"]
    assert replaced
    for s in replaced:
        old, new = s["json"]["target_object"], s["json"]["new_object"]
        ends = []
        for entry in (old, new):
            h, w = lib.sprite(entry["asset"]).rgba.shape[:2]
            m = np.asarray(entry["matrix"])
            center = m @ [(w - 1) / 2, (h - 1) / 2, 1]
            long_side = max(h, w) * np.sqrt(abs(np.linalg.det(m[:, :2])))
            ends.append((center, long_side))
        assert np.allclose(ends[0][0], ends[1][0], atol=1e-6) and abs(ends[0][1] - ends[1][1]) < 1e-6


def test_add_is_on_a_blank_canvas_by_default(samples, lib):
    for s in (s for s in samples if s["json"]["op"] == "add"):
        h, w = s["mask"].shape
        anything = np.zeros((h, w), bool)
        for _, alpha, _ in layers(lib, s["json"]["objects"], w, h):
            anything |= alpha > 0
        assert (s["tgt"][~anything] == 255).all() and (s["src"][~anything] == 255).all()


def test_add_on_real_backgrounds_when_asked(tmp_path):
    generate_run(out=str(tmp_path), task="edit", n=8, seed=2, size=128, ops=["add"], image_format="png",
                 backend="local", options=["add_background=scene"])
    assert json.loads((tmp_path / "run.json").read_text())["mix"][0]["options"] == {"add_background": "scene"}
    white = [float((s["src"] == 255).all(axis=-1).mean()) for s in iter_samples(str(tmp_path))]
    assert min(white) < 0.5


def test_jpg_shards_stay_close_outside_the_mask(tmp_path):
    generate_run(out=str(tmp_path), task="edit", n=12, seed=4, size=192, ops=OPS, backend="local")
    for s in iter_samples(str(tmp_path)):
        far = cv2.dilate(s["mask"], np.ones((9, 9), np.uint8)) == 0  # JPEG blocks smear the mask edge
        diff = np.abs(s["src"].astype(int) - s["tgt"].astype(int))[far]
        assert diff.mean() < 1.5, s["__key__"]


def test_deterministic(png_run, tmp_path_factory):
    assert tar_hashes(make_png_run(tmp_path_factory, "edit", **RUN)) == tar_hashes(png_run)


def test_non_square_canvases(tmp_path, lib):
    generate_run(out=str(tmp_path), task="edit", n=24, seed=8, size=128, ops=OPS, image_format="png",
                 aspect_ratios="all", backend="local")
    samples = list(iter_samples(str(tmp_path)))
    assert any(s["tgt"].shape[0] != s["tgt"].shape[1] for s in samples)
    for s in samples:
        assert s["tgt"].shape[:2] == s["src"].shape[:2] == s["mask"].shape == (s["json"]["height"], s["json"]["width"])
    test_mask_is_exactly_the_changed_pixels(samples)
    test_change_lies_on_the_edited_object(samples, lib)
    test_objects_and_prompt_are_true_to_the_pixels(samples, lib)
