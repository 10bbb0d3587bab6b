"""The drag labels, checked against the pixels of decoded shards (png: lossless; jpg: with encoding noise)."""

import re

import numpy as np
import pytest

from collage.api import generate_run, iter_samples

from collage.tasks.drag import TEMPLATES
from prompt_checks import fields_of, template_for

POINT = r"\((-?\d\.\d{3}), (-?\d\.\d{3}), (-?\d\.\d{3}), (-?\d\.\d{3})\)"
POINTS = re.compile(rf"^{POINT}((?:; {POINT})*)$")


@pytest.fixture(scope="module")
def png_run(tmp_path_factory, assets):
    out = tmp_path_factory.mktemp("drag_png")
    generate_run(str(out), task="drag", n=300, seed=7, size=256, shard_size=100, image_format="png", backend="local")
    return list(iter_samples(str(out)))


@pytest.fixture(scope="module")
def jpg_run(tmp_path_factory, assets):
    out = tmp_path_factory.mktemp("drag_jpg")
    generate_run(str(out), task="drag", n=120, seed=8, size=512, shard_size=60, image_format="jpg", backend="local")
    return list(iter_samples(str(out)))


def _pixel_pairs(sample):
    meta, h, w = sample["json"], sample["json"]["height"], sample["json"]["width"]
    for x, y, dx, dy in meta["points"]:
        sx, sy = x * w, y * h
        tx, ty = (x + dx) * w, (y + dy) * h
        yield (sx, sy), (tx, ty)


def test_every_op_appears_with_its_transform(png_run):
    ops = {s["json"]["op"] for s in png_run}
    assert ops == {"translate", "scale", "rotate"}
    for s in png_run:
        t = s["json"]["transform"]
        if s["json"]["op"] == "translate":
            assert np.hypot(t["tx"], t["ty"]) > 5 and t["scale"] == 1 and t["angle_deg"] == 0
        elif s["json"]["op"] == "scale":
            assert abs(t["scale"] - 1) >= 0.15 and t["tx"] == t["ty"] == 0
        else:
            assert abs(t["angle_deg"]) >= 20 and t["scale"] == 1


def test_prompt_carries_the_points_with_three_decimals(png_run):
    for s in png_run:
        meta = s["json"]
        fields = fields_of(template_for(meta), meta["prompt"], name=meta["target_object"]["name"])
        assert POINTS.match(fields["points"]) and meta["prompt"].endswith(": " + fields["points"]), meta["prompt"]
        assert "-0.000" not in meta["prompt"]
        assert 1 <= len(meta["points"]) <= 5
        in_prompt = [tuple(float(v) for v in p) for p in re.findall(POINT, meta["prompt"])]
        assert in_prompt == [tuple(round(v, 3) for v in p) for p in meta["points"]]
        dragged = meta["target_object"]
        assert dragged in meta["objects"] and set(dragged) == {"id", "asset", "name", "bbox", "matrix"}  # matrix: its placement in the target
        assert fields["name"] == dragged["name"]
    used = {s["json"]["template_id"] for s in png_run}
    assert used == {f"drag.{op}.{k}" for op in TEMPLATES for k in range(len(TEMPLATES[op]))}


def test_points_move_with_the_object_png(png_run):
    """Each point lies on the object in both images, and its source colour is its target colour."""
    worst = []
    for s in png_run:
        src, tgt, mask = s["src"].astype(int), s["tgt"].astype(int), s["mask"]
        for (sx, sy), (tx, ty) in _pixel_pairs(s):
            assert abs(sx - round(sx)) < 0.01 and abs(sy - round(sy)) < 0.01, "points are pixel centres"
            sx, sy, tx, ty = round(sx), round(sy), round(tx), round(ty)
            assert 0 <= tx < s["json"]["width"] and 0 <= ty < s["json"]["height"]
            assert mask[sy, sx] == 255 and mask[ty, tx] == 255, "a point off the dragged object"
            worst.append(np.abs(src[sy, sx] - tgt[ty, tx]).max())
    worst = np.array(worst)
    assert len(worst) > 300
    assert np.percentile(worst, 95) <= 12 and worst.max() <= 40, (np.percentile(worst, [50, 95, 100]))


def test_points_move_with_the_object_jpg(jpg_run):
    diffs = []
    for s in jpg_run:
        src, tgt = s["src"].astype(int), s["tgt"].astype(int)
        for (sx, sy), (tx, ty) in _pixel_pairs(s):
            a = src[round(sy) - 1: round(sy) + 2, round(sx) - 1: round(sx) + 2].reshape(-1, 3).mean(0)
            b = tgt[round(ty) - 1: round(ty) + 2, round(tx) - 1: round(tx) + 2].reshape(-1, 3).mean(0)
            diffs.append(np.abs(a - b).max())
    assert np.percentile(diffs, 95) <= 16 and np.max(diffs) <= 48, np.percentile(diffs, [50, 95, 100])


def test_a_point_not_moved_would_fail(png_run):
    """The colour check has teeth: points with the displacement dropped mostly land on other colours."""
    misses = total = 0
    for s in png_run:
        src, tgt = s["src"].astype(int), s["tgt"].astype(int)
        for (sx, sy), _ in _pixel_pairs(s):
            total += 1
            misses += np.abs(src[round(sy), round(sx)] - tgt[round(sy), round(sx)]).max() > 12
    assert misses > 0.5 * total


def test_mask_covers_exactly_what_changed(png_run):
    changed_share = []
    for s in png_run:
        changed = (s["src"] != s["tgt"]).any(axis=2)
        mask = s["mask"] == 255
        assert set(np.unique(s["mask"])) <= {0, 255}
        assert not (changed & ~mask).any(), "a pixel changed outside the mask"
        changed_share.append(changed[mask].mean())
    # The mask is the object's region before and after, not a loose box: much of it really changed (where
    # the object overlaps itself, flat colours can stay the same: a flat object scaled about its centre
    # changes only a ring, ~8 % of its mask in this run).
    assert np.median(changed_share) > 0.5 and np.percentile(changed_share, 5) > 0.15 and min(changed_share) > 0.05, \
        np.percentile(changed_share, [0, 5, 50])


def test_objects_are_visible_and_inside(png_run):
    for s in png_run:
        meta = s["json"]
        assert 1 <= len(meta["objects"]) <= 4
        for obj in meta["objects"]:
            x0, y0, x1, y1 = obj["bbox"]
            assert 0 <= x0 < x1 <= meta["width"] and 0 <= y0 < y1 <= meta["height"]
            assert (x1 - x0) * (y1 - y0) >= 64
        assert meta["caption"] == meta["prompt"] and meta["caption_source"] == "template"


def test_prompt_numbers_have_three_places_and_no_negative_zero():
    from collage.tasks.drag import _three_places

    assert [_three_places(v) for v in (-0.0004, -0.0, 0.0005, 0.0015, -0.0125, 0.999999, -1.0)] == \
        ["0.000", "0.000", "0.001", "0.002", "-0.013", "1.000", "-1.000"]
    values = np.random.default_rng(0).uniform(-1, 1, 20000).round(6) * np.repeat([1, 1e-3, 1e-4, 1e-5], 5000)
    for v in values.tolist():  # as round(v, 3) rounds: the json holds v, the prompt these digits
        assert _three_places(v) == f"{round(v, 3) + 0.0:.3f}"


def test_every_drag_point_moves_a_few_pixels(tmp_path, assets):
    """From written shards, every op: no point moves less than max(3 px, 2 % of the short side)."""
    from collage.api import generate_run, iter_samples

    generate_run(out=str(tmp_path / "d"), task="drag", n=90, seed=4, size=256, backend="local",
                 aspect_ratios="all")
    moves = []
    for sample in iter_samples(str(tmp_path / "d")):
        meta = sample["json"]
        w, h = meta["width"], meta["height"]
        for x, y, dx, dy in meta["points"]:
            moves.append(((dx * w) ** 2 + (dy * h) ** 2) ** 0.5 / max(3.0, 0.02 * min(w, h)))
    assert len(moves) > 90 and min(moves) >= 0.99, min(moves)
