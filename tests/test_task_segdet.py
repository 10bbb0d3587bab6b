"""segdet: recolouring and boxes checked on decoded shards."""

from __future__ import annotations

import numpy as np
import pytest

from collage.api import generate_run, iter_samples
from collage.palette import PALETTE
from collage import words
from collage.tasks.segdet import TEMPLATES
from conftest import make_png_run, tar_hashes
from prompt_checks import fields_of, template_for
from pixel_checks import assert_sprites_shown, bbox, colour_mask, layers, visible_regions

OPS = ["segment", "detect"]

RUN = dict(n=100, seed=13, size=192, ops=OPS)  # the png run every test here reads; the determinism test makes it again


@pytest.fixture(scope="module")
def png_run(tmp_path_factory):
    return make_png_run(tmp_path_factory, "segdet", **RUN)


@pytest.fixture(scope="module")
def samples(png_run):
    return list(iter_samples(str(png_run)))


def named(sample, lib):
    """(json entry, visible region) of the object the prompt names, from its sprite and placement."""
    meta = sample["json"]
    h, w = sample["tgt"].shape[:2]
    stack = layers(lib, meta["objects"], w, h)
    assert_sprites_shown(sample["src"], stack)
    for (entry, _, _), region in zip(stack, visible_regions(stack)):
        if entry["id"] == meta["target_object"]["id"]:
            assert meta["target_object"] == entry, "target_object is the object's record"
            return entry, region
    raise AssertionError("the target object is not listed")


def test_colour_is_named_from_the_palette_and_in_the_prompt(samples):
    assert {s["json"]["op"] for s in samples} == set(OPS)
    for s in samples:
        meta = s["json"]
        assert tuple(meta["color"]) == PALETTE[meta["color_name"]] and meta["color_name"] in meta["prompt"]
        assert not colour_mask(s["src"], meta["color"]).any(), "the colour must be new to the image"


def test_segment_paints_exactly_the_visible_object(samples, lib):
    segments = [s for s in samples if s["json"]["op"] == "segment"]
    assert len(segments) > 20
    for s in segments:
        entry, region = named(s, lib)
        meta = s["json"]
        assert entry["name"] in meta["prompt"]
        painted = colour_mask(s["tgt"], meta["color"])
        assert np.array_equal(painted, region), s["__key__"]
        assert np.array_equal(s["src"][~painted], s["tgt"][~painted])
        h, w = region.shape
        x0, y0, x1, y1 = bbox(region)
        assert np.allclose(meta["boxes"], [[x0 / w, y0 / h, x1 / w, y1 / h]], atol=1e-6)


def test_detect_draws_the_tight_box(samples, lib):
    detects = [s for s in samples if s["json"]["op"] == "detect"]
    assert len(detects) > 20
    for s in detects:
        entry, region = named(s, lib)
        meta = s["json"]
        h, w = region.shape
        [box] = meta["boxes"]
        assert all(0 <= v <= 1 for v in box)
        x0, y0, x1, y1 = (round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h))
        assert [x0, y0, x1, y1] == bbox(region), "the box is the object's tight box"
        drawn = colour_mask(s["tgt"], meta["color"])
        assert bbox(drawn) == [x0, y0, x1, y1], "the frame's outer edge is the box"
        # A closed frame: the box's outermost rows and columns are painted; the middle is not.
        assert drawn[y0, x0:x1].all() and drawn[y1 - 1, x0:x1].all()
        assert drawn[y0:y1, x0].all() and drawn[y0:y1, x1 - 1].all()
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        assert not drawn[cy, cx]
        assert np.array_equal(s["src"][~drawn], s["tgt"][~drawn])


def test_prompt_reads_as_its_template(samples, lib):
    for s in samples:
        meta = s["json"]
        entry, _ = named(s, lib)
        fields = fields_of(template_for(meta), meta["prompt"], name=entry["name"], colour=meta["color_name"])
        assert fields["name"] == entry["name"] and meta["color_name"] in meta["prompt"]
        if "it" in fields:
            assert fields["it"] == words.pronoun(entry["name"])
        for key in ("a_colour_box", "a_colour_bounding_box"):
            if key in fields:
                article = "an" if meta["color_name"] == "orange" else "a"  # the palette's one vowel colour
                assert fields[key].startswith(f"{article} {meta['color_name']} ")
    used = {s["json"]["template_id"] for s in samples}
    assert used == {f"segdet.{op}.{k}" for op in OPS for k in range(len(TEMPLATES[op]))}


def test_deterministic(png_run, tmp_path_factory):
    assert tar_hashes(make_png_run(tmp_path_factory, "segdet", **RUN)) == tar_hashes(png_run)


def test_non_square_canvases(tmp_path, lib):
    generate_run(out=str(tmp_path), task="segdet", n=24, seed=8, size=128, ops=OPS, image_format="png",
                 aspect_ratios="all", backend="local")
    samples = list(iter_samples(str(tmp_path)))
    assert any(s["tgt"].shape[0] != s["tgt"].shape[1] for s in samples)
    for s in samples:
        assert s["tgt"].shape[:2] == s["src"].shape[:2] == (s["json"]["height"], s["json"]["width"])
        entry, region = named(s, lib)
        h, w = region.shape
        x0, y0, x1, y1 = bbox(region)
        assert np.allclose(s["json"]["boxes"], [[x0 / w, y0 / h, x1 / w, y1 / h]], atol=1e-6)
        painted = colour_mask(s["tgt"], s["json"]["color"])
        if s["json"]["op"] == "segment":
            assert np.array_equal(painted, region)
        else:
            assert bbox(painted) == [x0, y0, x1, y1]


def test_detect_frames_keep_their_colour_through_jpeg(tmp_path, lib):
    """At 256² in JPEG (4:2:0 halves chroma), the frame's pixels still read as its palette colour: the frame is
    at least 4 px wide (1 % of the short side), not 1–2 px."""
    from collage.api import generate_run, iter_samples
    from collage.tasks.segdet import box_width

    generate_run(out=str(tmp_path / "d"), task="segdet", ops="detect", n=30, seed=5, size=256, backend="local")
    for s in iter_samples(str(tmp_path / "d"), decode=True):
        meta = s["json"]
        h, w = s["tgt"].shape[:2]
        width = box_width(w, h)
        assert width >= 4
        x0, y0, x1, y1 = (round(v * n) for v, n in zip(meta["boxes"][0], (w, h, w, h)))
        ring = np.zeros((h, w), bool)
        ring[y0:y1, x0:x1] = True
        ring[y0 + width:y1 - width, x0 + width:x1 - width] = False
        error = np.abs(s["tgt"][ring].astype(int) - np.array(meta["color"])).max(axis=1)
        assert np.median(error) < 40, (s["__key__"], np.median(error))


def test_paint_and_box_colours_are_balanced(tmp_path, lib):
    """Every palette colour is drawn (gray too: against the covered pixels' mean it never was), none more than
    4× as often as another; each still stands out from most of the pixels it covers."""
    from collections import Counter

    from collage.api import generate_run, iter_samples
    from collage.palette import NAMES

    generate_run(out=str(tmp_path / "c"), task="segdet", n=300, seed=9, size=128, backend="local")
    counts = Counter(s["json"]["color_name"] for s in iter_samples(str(tmp_path / "c")))
    assert set(counts) == set(NAMES), counts
    assert max(counts.values()) <= 4 * min(counts.values()), counts
