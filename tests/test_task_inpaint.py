"""inpaint: holes and bands checked on decoded shards."""

from __future__ import annotations

import numpy as np
import pytest

from collage.api import generate_run, iter_samples
from collage import words
from collage.tasks.inpaint import PART_WORDS, TEMPLATES
from conftest import make_png_run, tar_hashes
from prompt_checks import template_for
from pixel_checks import assert_sprites_shown, bbox, layers, visible_regions

FILL = 128

RUN = dict(n=120, seed=3, size=192, ops=["inpaint", "outpaint"])  # the png run every test here reads; the determinism test makes it again


@pytest.fixture(scope="module")
def png_run(tmp_path_factory):
    return make_png_run(tmp_path_factory, "inpaint", **RUN)


@pytest.fixture(scope="module")
def samples(png_run):
    return list(iter_samples(str(png_run)))


def test_both_ops_and_every_mask_kind(samples):
    kinds = {(s["json"]["op"], s["json"]["mask_kind"]) for s in samples}
    assert kinds == {("inpaint", "scribble"), ("inpaint", "blob"), ("inpaint", "block"), ("outpaint", "edge")}


def test_src_is_tgt_with_a_grey_hole(samples):
    for s in samples:
        mask, src, tgt = s["mask"], s["src"], s["tgt"]
        assert set(np.unique(mask)) <= {0, 255}
        hole = mask == 255
        assert 0.03 <= hole.mean() <= 0.6, s["__key__"]
        assert np.array_equal(src[~hole], tgt[~hole]), s["__key__"]
        assert (src[hole] == FILL).all(), s["__key__"]
        assert s["json"]["fill"] == [FILL] * 3


def test_outpaint_masks_are_bands_on_the_named_sides(samples):
    outs = [s for s in samples if s["json"]["op"] == "outpaint"]
    assert len(outs) > 10
    for s in outs:
        h, w = s["mask"].shape
        known = s["mask"] == 0
        x0, y0, x1, y1 = bbox(known)
        assert known[y0:y1, x0:x1].all(), "the known part is one rectangle"
        bands = {"left": x0 / w, "right": (w - x1) / w, "top": y0 / h, "bottom": (h - y1) / h}
        sides = s["json"]["sides"]
        assert sides and all(side in s["json"]["prompt"] for side in sides)
        for side, share in bands.items():
            if side in sides:
                assert 0.1 - 1 / min(w, h) <= share <= 0.5 + 1 / min(w, h), (s["__key__"], side, share)
            else:
                assert share == 0, (s["__key__"], side)


def test_objects_and_hidden_objects_are_true_to_the_pixels(samples, lib):
    collages = [s for s in samples if s["json"]["objects"]]
    assert len(collages) > 40
    said_partly = said_completely = 0
    for s in collages:
        meta = s["json"]
        h, w = s["mask"].shape
        stack = layers(lib, meta["objects"], w, h)
        assert_sprites_shown(s["tgt"], stack)
        hidden = {entry["id"]: entry for entry in meta["hidden"]}
        assert meta["hidden_objects"] == list(hidden)
        for (entry, _, _), region in zip(stack, visible_regions(stack)):
            assert words.with_article(entry["name"]) in meta["prompt"]
            seen = np.count_nonzero(region)
            under = np.count_nonzero(region & (s["mask"] == 255))
            if entry["id"] not in hidden:
                assert under < max(16, 0.05 * seen)
                continue
            said = hidden[entry["id"]]
            assert under >= 16 and said["name"] == entry["name"]
            assert abs(said["fraction"] - under / seen) < 1e-4, (s["__key__"], said, under, seen)
            assert said["complete"] == (under == seen), (s["__key__"], said, under, seen)
            assert said["part"] in meta["prompt"]
            if said["complete"]:
                said_completely += 1
                assert said["part"] == f"the {entry['name']} completely"
            else:
                said_partly += 1
                amount = next(word for limit, word in PART_WORDS if under / seen < limit)
                assert said["part"].startswith(f"{amount} of the {entry['name']}") or \
                    (amount == "about half" and said["part"].endswith(f" half of the {entry['name']}"))
                assert "completely" not in said["part"]
        if hidden:
            assert " The gray area hides " + words.join_words([h["part"] for h in meta["hidden"]]) + "." in meta["prompt"]
        else:
            assert "hides" not in meta["prompt"]
    assert said_partly > 10 and said_completely >= 1, (said_partly, said_completely)


def test_every_prompt_states_the_content(samples):
    plain = 0
    for s in samples:
        meta = s["json"]
        sides = meta["sides"]
        several = len(sides) > 1
        start = template_for(meta).format(sides=words.join_words(sides), edges="edges" if several else "edge",
                                          bands="bands" if several else "band")
        assert meta["prompt"].startswith(start + " The full image ")
        assert "on a background" not in meta["prompt"]
        if not meta["objects"]:
            plain += 1
            assert meta["prompt"].count(".") >= 2 and " The full image is " in meta["prompt"]
    assert plain > 5
    used = {s["json"]["template_id"] for s in samples}
    assert used == {f"inpaint.{op}.{k}" for op in TEMPLATES for k in range(len(TEMPLATES[op]))}


def test_jpg_shards_keep_outside_the_hole(tmp_path):
    generate_run(out=str(tmp_path), task="inpaint", n=12, seed=5, size=192, ops=["inpaint"], backend="local")
    for s in iter_samples(str(tmp_path)):
        outside = s["mask"] == 0
        diff = np.abs(s["src"].astype(int) - s["tgt"].astype(int))[outside]
        assert diff.mean() < 2.0


def test_deterministic(png_run, tmp_path_factory):
    assert tar_hashes(make_png_run(tmp_path_factory, "inpaint", **RUN)) == tar_hashes(png_run)


def test_the_sprite_check_catches_a_misplaced_object(samples, lib):
    s = next(s for s in samples if s["json"]["objects"])
    h, w = s["mask"].shape
    entry = dict(s["json"]["objects"][-1])
    entry["matrix"] = [row[:2] + [row[2] + 4] for row in entry["matrix"]]  # 4 px off
    with pytest.raises(AssertionError):
        assert_sprites_shown(s["tgt"], layers(lib, s["json"]["objects"][:-1] + [entry], w, h))


def test_non_square_canvases(tmp_path, lib):
    generate_run(out=str(tmp_path), task="inpaint", n=24, seed=8, size=128, ops=["inpaint", "outpaint"],
                 image_format="png", aspect_ratios="all", backend="local")
    samples = list(iter_samples(str(tmp_path)))
    assert any(s["tgt"].shape[0] != s["tgt"].shape[1] for s in samples)
    for s in samples:
        assert s["tgt"].shape[:2] == (s["json"]["height"], s["json"]["width"]) == s["mask"].shape
    test_src_is_tgt_with_a_grey_hole(samples)
    for s in samples:
        h, w = s["mask"].shape
        assert_sprites_shown(s["tgt"], layers(lib, s["json"]["objects"], w, h))
