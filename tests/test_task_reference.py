"""reference: condition maps and subjects checked on decoded shards."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from collage.api import generate_run, iter_samples
from collage.tasks import GenConfig, get_task
from collage.errors import Reject
from collage import words
from collage.tasks.reference import TEMPLATES
from conftest import make_png_run, tar_hashes
from pixel_checks import layer_alpha
from prompt_checks import fields_of, template_for
from pixel_checks import assert_sprites_shown, colour_mask, layers, visible_regions

OPS = ["canny", "depth", "seg", "subject"]

RUN = dict(n=120, seed=11, size=192, ops=OPS)  # the png run every test here reads; the determinism test makes it again


@pytest.fixture(scope="module")
def png_run(tmp_path_factory):
    return make_png_run(tmp_path_factory, "reference", **RUN)


@pytest.fixture(scope="module")
def by_op(png_run):
    out: dict[str, list] = {op: [] for op in OPS}
    for s in iter_samples(str(png_run)):
        out[s["json"]["op"]].append(s)
    assert all(len(v) >= 15 for v in out.values())
    return out


def test_canny_is_the_edges_of_the_target(by_op, lib):
    for s in by_op["canny"]:
        cond = s["json"]["condition"]
        assert cond["kind"] == "canny" and s["cond"].ndim == 2
        edges = cv2.Canny(cv2.cvtColor(s["tgt"], cv2.COLOR_RGB2GRAY), cond["low"], cond["high"])
        assert (edges != s["cond"]).mean() <= 0.001, s["__key__"]
        assert s["cond"].any()
        h, w = s["cond"].shape
        assert_sprites_shown(s["tgt"], layers(lib, s["json"]["objects"], w, h))


def test_depth_is_layer_order(by_op, lib):
    overlaps = 0
    for s in by_op["depth"]:
        meta, depth = s["json"], s["cond"]
        assert meta["condition"]["source"] == "layers" and depth.ndim == 2
        h, w = depth.shape
        stack = layers(lib, meta["objects"], w, h)
        assert_sprites_shown(s["tgt"], stack)
        regions = visible_regions(stack)
        value = {lv["id"]: lv["value"] for lv in meta["condition"]["levels"]}
        anything = np.zeros((h, w), bool)
        for (entry, _, _), region in zip(stack, regions):
            assert (depth[region] == value[entry["id"]]).all(), s["__key__"]
            anything |= region
        assert (depth[~anything] == 0).all()
        # Where two objects overlap, the one on top is nearer (brighter) than the one below it.
        for i, (low, low_alpha, _) in enumerate(stack):
            for high, high_alpha, _ in stack[i + 1:]:
                both = (low_alpha >= 128) & (high_alpha >= 128)
                if both.any():
                    overlaps += 1
                    assert (depth[both] >= value[high["id"]]).all() and value[high["id"]] > value[low["id"]]
    assert overlaps > 3


def test_seg_legend_colours_lie_exactly_on_their_objects(by_op, lib):
    for s in by_op["seg"]:
        meta, seg = s["json"], s["cond"]
        assert seg.ndim == 3
        h, w = seg.shape[:2]
        stack = layers(lib, meta["objects"], w, h)
        assert_sprites_shown(s["tgt"], stack)
        legend = {entry["id"]: entry for entry in meta["condition"]["legend"]}
        covered = np.zeros((h, w), bool)
        for (entry, _, _), region in zip(stack, visible_regions(stack)):
            item = legend[entry["id"]]
            said = f"{item['color_name']} {words.be(entry['name'])} the {entry['name']}"
            assert item["name"] == entry["name"] and said in meta["prompt"]
            assert np.array_equal(colour_mask(seg, item["color"]), region), s["__key__"]
            covered |= region
        assert (seg[~covered] == legend[None]["color"]).all()
        colours = [tuple(e["color"]) for e in meta["condition"]["legend"]]
        assert len(set(colours)) == len(colours)


def test_subject_sprite_is_in_both_images(by_op, lib):
    for s in by_op["subject"]:
        meta = s["json"]
        cond = meta["condition"]
        h, w = s["tgt"].shape[:2]
        assert cond["name"] == cond["source"]["name"] == cond["target"]["name"] and cond["name"] in meta["prompt"]
        assert cond["source"]["asset"] == cond["target"]["asset"]
        assert cond["source"] in cond["source_objects"] and cond["target"] in meta["objects"]
        assert_sprites_shown(s["src"], layers(lib, cond["source_objects"], w, h))
        assert_sprites_shown(s["tgt"], layers(lib, meta["objects"], w, h))
        assert [o["name"] for o in meta["objects"]].count(cond["name"]) == 1
        assert len(cond["source_objects"]) >= 2


def test_prompts_read_as_their_templates(by_op):
    singles = 0
    for op, samples in by_op.items():
        for s in samples:
            meta = s["json"]
            known = {}
            if op == "subject":
                name = meta["condition"]["name"]
                known = {"subject": name, "the_subject": f"the {name}", "The_subject": f"The {name}"}
            fields = fields_of(template_for(meta), meta["prompt"], **known)
            assert "on a background" not in meta["prompt"]
            if op in ("canny", "depth"):
                listed = words.join_words([words.with_article(o["name"]) for o in meta["objects"]])
                order = ", from back to front," if op == "depth" and len(meta["objects"]) > 1 else ""
                assert fields["scene"].startswith(listed + order + " on "), (listed, fields["scene"])
                if op == "depth" and len(meta["objects"]) == 1:
                    singles += 1
                    assert "back to front" not in meta["prompt"]
            elif op == "seg":
                assert fields["legend"].endswith(")") and "black is the background (" in fields["legend"]
            else:
                name = meta["condition"]["name"]
                assert name in meta["prompt"] and fields["context"].startswith("on ")
                companions = [o for o in meta["objects"] if o["name"] != name]
                if companions:
                    listed = words.join_words([words.with_article(o["name"]) for o in companions])
                    assert fields["context"].endswith(", together with " + listed)
    assert singles > 0
    used = {s["json"]["template_id"] for samples in by_op.values() for s in samples}
    assert used == {f"reference.{op}.{k}" for op in OPS for k in range(len(TEMPLATES[op]))}


def test_deterministic(png_run, tmp_path_factory):
    assert tar_hashes(make_png_run(tmp_path_factory, "reference", **RUN)) == tar_hashes(png_run)


def test_photo_depth_from_a_local_model(tmp_path, monkeypatch, lib):
    """A tiny randomly initialised DPT saved locally: the loading path, shapes and normalisation (no download)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_photo_models import build_depth_model

    build_depth_model(tmp_path)
    if not lib.photos:
        pytest.skip("no photos in the asset library")
    generate = get_task("reference").generate
    made = []
    for seed in range(40):
        try:
            sample = generate(np.random.default_rng(seed), lib, GenConfig("depth", 160, 96, {"depth_model": str(tmp_path)}))
        except Reject:
            continue
        made.append(sample)
        if sample.meta["condition"]["source"] == "model":
            again = generate(np.random.default_rng(seed), lib, GenConfig("depth", 160, 96, {"depth_model": str(tmp_path)}))
            break
    else:
        pytest.fail("no photo depth sample in 40 draws")
    depth = sample.images["cond"]
    assert depth.shape == (96, 160) and depth.dtype == np.uint8 and sample.images["tgt"].shape == (96, 160, 3)
    assert depth.min() == 0 and depth.max() == 255
    assert sample.meta["objects"] == [] and sample.meta["condition"]["near"] == 255
    assert sample.meta["template_id"].startswith("reference.depth.photo.")
    assert sample.meta["background"] in sample.meta["prompt"]  # what the photo shows (words.photo_phrase)
    assert np.array_equal(again.images["cond"], depth)
    assert any(m.meta["condition"]["source"] == "layers" for m in made) or len(made) == 1


def test_non_square_canvases(tmp_path, lib):
    generate_run(out=str(tmp_path), task="reference", n=32, seed=8, size=128, ops=OPS, image_format="png",
                 aspect_ratios="all", backend="local")
    ops: dict[str, list] = {op: [] for op in OPS}
    for s in iter_samples(str(tmp_path)):
        assert s["tgt"].shape[:2] == (s["json"]["height"], s["json"]["width"])
        assert s.get("cond", s.get("src")).shape[:2] == s["tgt"].shape[:2]
        ops[s["json"]["op"]].append(s)
    assert any(s["tgt"].shape[0] != s["tgt"].shape[1] for v in ops.values() for s in v)
    test_canny_is_the_edges_of_the_target(ops, lib)
    test_seg_legend_colours_lie_exactly_on_their_objects(ops, lib)
    test_subject_sprite_is_in_both_images(ops, lib)
    for s in ops["depth"]:  # levels hold where each object shows
        h, w = s["cond"].shape
        stack = layers(lib, s["json"]["objects"], w, h)
        value = {lv["id"]: lv["value"] for lv in s["json"]["condition"]["levels"]}
        for (entry, _, _), region in zip(stack, visible_regions(stack)):
            assert (s["cond"][region] == value[entry["id"]]).all()


def test_canny_keeps_every_named_objects_outline(tmp_path, lib):
    """From written shards: each named object's outline (its visible boundary, re-warped from its sprite with the
    json's matrix) has an edge of cond.png within 2 px along at least half of it; the json's thresholds make the
    map exactly."""
    import cv2

    from collage.api import generate_run, iter_samples

    generate_run(out=str(tmp_path / "c"), task="reference", ops="canny", n=40, seed=8, size=256, backend="local",
                 image_format="png")
    checked = 0
    for s in iter_samples(str(tmp_path / "c"), decode=True):
        meta, edges = s["json"], s["cond"]
        h, w = edges.shape
        condition = meta["condition"]
        gray = cv2.cvtColor(s["tgt"], cv2.COLOR_RGB2GRAY)
        assert np.array_equal(cv2.Canny(gray, condition["low"], condition["high"]), edges)
        covered = [layer_alpha(lib, o, w, h)[0] >= 128 for o in meta["objects"]]  # re-warped as the renderer does
        near = cv2.dilate(edges, np.ones((5, 5), np.uint8)) > 0
        for k, own in enumerate(covered):
            visible = own & ~np.logical_or.reduce(covered[k + 1:], axis=0) if k + 1 < len(covered) else own
            inside = visible.astype(np.uint8)
            outline = (inside & ~cv2.erode(inside, np.ones((3, 3), np.uint8))).astype(bool)
            if outline.sum() < 20:
                continue
            assert (outline & near).sum() / outline.sum() >= 0.5, (s["__key__"], meta["objects"][k]["name"])
            checked += 1
    assert checked >= 40
