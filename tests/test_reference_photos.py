"""reference on background photos (`--option source=photos|mixed`): canny, model depth and model segmentation,
checked on decoded (png) shards against tiny randomly initialised transformers models built here (no download)."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from collage.api import generate_run, iter_samples
from collage.config import validate
from collage.errors import UserError
from collage import words
from collage.tasks.reference import (CANNY_PHOTO_KEEP, PHOTO_TEMPLATES, SEG_BACKGROUND, SEG_COLOURS, class_name,
                                     photo_share)
from conftest import one_error_line, run_cli, tar_hashes
from pixel_checks import colour_mask
from prompt_checks import fields_of
from tiny_photo_models import ID2LABEL, build_depth_model, build_seg_model

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

OPS = ("canny", "depth", "seg")
SIZE = 128


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("photo_models")
    return {"depth_model": build_depth_model(root / "depth"), "seg_model": build_seg_model(root / "seg")}


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory, models, lib):
    if not lib.photos:
        pytest.skip("no photos in the asset library")
    out = tmp_path_factory.mktemp("photo_run")
    started = time.perf_counter()
    summary = generate_run(out=str(out), task="reference", n=60, seed=5, size=SIZE, ops=",".join(OPS),
                           image_format="png", backend="local", options={"source": "photos", **models})
    seconds = time.perf_counter() - started
    by_op: dict[str, list] = {op: [] for op in OPS}
    for s in iter_samples(str(out)):
        by_op[s["json"]["op"]].append(s)
    assert all(len(v) >= 12 for v in by_op.values()), ({op: len(v) for op, v in by_op.items()}, summary)
    print(f"photo run: {seconds / 60 * 1000:.0f} ms a sample (all three ops, {SIZE}², model loads included)")
    return out, by_op


def photo_fields(meta: dict) -> dict:
    """The fields of the photo template the json names; {photo} must read what the photo shows."""
    task, op, photo, k = meta["template_id"].split(".")
    assert (task, op, photo) == ("reference", meta["op"], "photo")
    assert meta["objects"] == [] and meta["background"]
    template = PHOTO_TEMPLATES[op][int(k)]
    shown = words.sentence_case(meta["background"]) if template.startswith("{photo}") else meta["background"]
    return fields_of(template, meta["prompt"], photo=shown)


def test_every_sample_is_a_photo_alone_and_its_prompt_names_it(photo_run):
    _, by_op = photo_run
    for op, samples in by_op.items():
        used = set()
        for s in samples:
            photo_fields(s["json"])
            used.add(s["json"]["template_id"])
            assert s["json"]["condition"]["photo"].split(":")[0]  # the photo's asset id
        assert len(used) >= 2, op


def test_photo_canny_is_the_edges_of_the_target_at_the_stated_thresholds(photo_run):
    _, by_op = photo_run
    densities = []
    for s in by_op["canny"]:
        cond = s["json"]["condition"]
        assert cond["kind"] == "canny" and cond["source"] == "photo" and cond["input"] == "gray"
        gray = cv2.cvtColor(s["tgt"], cv2.COLOR_RGB2GRAY)
        assert np.array_equal(cv2.Canny(gray, cond["low"], cond["high"]), s["cond"]), s["__key__"]
        density = float((s["cond"] > 0).mean())
        assert density == pytest.approx(cond["density"], abs=1e-6)
        assert CANNY_PHOTO_KEEP[0] <= density <= CANNY_PHOTO_KEEP[1], (s["__key__"], density)
        assert 2.0 <= cond["ratio"] <= 3.0 and 20 <= cond["low"] <= 400
        # the smallest low threshold (at the stated ratio) whose map has at most the aimed-at share, within 20–400
        assert cond["high"] == round(cond["low"] * cond["ratio"])
        if 20 < cond["low"] < 400:
            low = cond["low"] - 1
            assert (cv2.Canny(gray, low, round(low * cond["ratio"])) > 0).mean() > cond["target_density"]
        if cond["low"] < 400:
            assert density <= cond["target_density"] + 1e-6
        densities.append(density)
    print(f"photo canny edge density: {min(densities):.3f}–{max(densities):.3f} (median {np.median(densities):.3f})")
    assert max(densities) - min(densities) > 0.02  # the drawn target spreads them


def test_photo_depth_is_the_models_depth_of_the_target(photo_run, models):
    from collage.tasks.photo_models import estimate_depth

    _, by_op = photo_run
    for s in by_op["depth"]:
        cond = s["json"]["condition"]
        assert cond == {"kind": "depth", "source": "model", "model": "depth", "near": 255, "photo": cond["photo"]}
        assert np.array_equal(estimate_depth(s["tgt"], models["depth_model"]), s["cond"]), s["__key__"]
        assert s["cond"].min() == 0 and s["cond"].max() == 255


def test_photo_seg_legend_is_exactly_the_maps_colours_and_the_models_classes(photo_run, models):
    from collage.tasks.photo_models import segment

    _, by_op = photo_run
    folded_any = named_total = 0
    for s in by_op["seg"]:
        meta, seg = s["json"], s["cond"]
        cond = meta["condition"]
        assert cond["kind"] == "seg" and cond["source"] == "model" and cond["model"] == "seg" and seg.ndim == 3
        legend = cond["legend"]
        present = {tuple(c) for c in np.unique(seg.reshape(-1, 3), axis=0).tolist()}
        assert {tuple(e["color"]) for e in legend} == present, s["__key__"]
        assert len({tuple(e["color"]) for e in legend}) == len(legend)
        labels, _ = segment(s["tgt"], models["seg_model"])  # the png target is the exact pixels the model saw
        fields = photo_fields(meta)
        for e in legend:
            mask = colour_mask(seg, e["color"])
            assert e["share"] == pytest.approx(mask.mean(), abs=1e-6)
            if e["class_id"] is None:
                assert tuple(e["color"]) == SEG_BACKGROUND and e["color_name"] == "black"
                folded = [c["class_id"] for c in e["classes"]]
                assert [c["label"] for c in e["classes"]] == [ID2LABEL[c] for c in folded]
                assert np.array_equal(mask, np.isin(labels, folded))
                assert e["name"] == ("background" if folded == [0] else "other")
                said = "black is the background" if folded == [0] else "black is everything else"
                folded_any += 1
            else:
                assert e["label"] == ID2LABEL[e["class_id"]] and e["name"] == class_name(e["label"], e["class_id"])
                assert e["color_name"] in SEG_COLOURS and e["name"] not in ("background",)
                assert np.array_equal(mask, labels == e["class_id"]), (s["__key__"], e)
                said = f"{e['color_name']} {words.be(e['name'])} the {e['name']}"
                named_total += 1
            assert said in fields["legend"], (said, meta["prompt"])
        assert not any(";" in e["name"] or "_" in e["name"] for e in legend)
    assert named_total >= len(by_op["seg"]) and folded_any > 0


def test_photo_run_is_deterministic(photo_run, models, tmp_path):
    out, _ = photo_run
    again = tmp_path / "again"
    generate_run(out=str(again), task="reference", n=60, seed=5, size=SIZE, ops=",".join(OPS), image_format="png",
                 backend="local", options={"source": "photos", **models})
    assert tar_hashes(again) == tar_hashes(out)


def test_mixed_draws_photos_for_about_half(tmp_path, models, lib):
    if not lib.photos:
        pytest.skip("no photos in the asset library")
    generate_run(out=str(tmp_path), task="reference", n=48, seed=2, size=96, ops="canny,seg", image_format="png",
                 backend="local", options={"source": "mixed", "seg_model": models["seg_model"]})
    photos = {"canny": 0, "seg": 0}
    counts = {"canny": 0, "seg": 0}
    for s in iter_samples(str(tmp_path)):
        op = s["json"]["op"]
        counts[op] += 1
        photos[op] += s["json"]["condition"].get("source") in ("photo", "model")
    for op in counts:
        assert 0.2 * counts[op] <= photos[op] <= 0.8 * counts[op], (op, photos, counts)


def test_what_each_source_makes():
    depth = {"depth_model": "/m"}
    assert photo_share("depth", depth) == 0.5 and photo_share("canny", depth) == 0  # as before `source`
    assert photo_share("seg", {"seg_model": "/m"}) == 0.5 and photo_share("seg", {}) == 0
    assert photo_share("canny", {"source": "collage"}) == 0
    assert photo_share("canny", {"source": "photos"}) == 1 and photo_share("subject", {"source": "photos"}) == 0
    assert photo_share("depth", {"source": "mixed", **depth}) == 0.5


def _config(ops: str, **options):
    from collage.api import make_config

    return make_config("reference", 5, 0, 128, ops, 1000, "jpg", None, "square", None, options)


def test_option_combinations_are_checked_at_validation(models):
    validate(_config("canny,depth,seg", source="photos", **models))
    validate(_config("canny", source="photos"))  # canny needs no model
    validate(_config("canny,subject", source="mixed"))
    for ops, options, words_said in [
        ("canny,depth", {"source": "photos"}, ["source=photos", "depth_model=", "--ops canny"]),
        ("seg", {"source": "mixed", "depth_model": models["depth_model"]}, ["seg_model=", "save_pretrained"]),
        ("depth", {"source": "collage", "depth_model": models["depth_model"]}, ["depth_model", "source=collage"]),
        ("seg", {"source": "photos", "seg_model": models["depth_model"]}, ["seg_model", "'dpt'", "semantic-segmentation"]),
        ("depth", {"source": "photos", "depth_model": models["seg_model"]}, ["depth_model", "'segformer'"]),
        ("seg", {"source": "everything"}, ["source", "collage, photos, mixed"]),
    ]:
        with pytest.raises(UserError) as info:
            validate(_config(ops, **options))
        assert all(w in str(info.value) for w in words_said), str(info.value)
        assert "\n" not in str(info.value)


def test_a_model_folder_without_its_processor_is_refused(tmp_path, models):
    import shutil

    shutil.copytree(models["seg_model"], tmp_path / "seg")
    (tmp_path / "seg" / "preprocessor_config.json").unlink()
    with pytest.raises(UserError, match="preprocessor_config.json"):
        validate(_config("seg", source="photos", seg_model=str(tmp_path / "seg")))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    (tmp_path / "bad" / "preprocessor_config.json").write_text(json.dumps({}))
    with pytest.raises(UserError, match="not readable json"):
        validate(_config("seg", source="photos", seg_model=str(tmp_path / "bad")))


@pytest.mark.parametrize("args, said", [
    (["--ops", "canny,depth", "--option", "source=photos"], ["depth_model=/path/to/model", "--ops canny"]),
    (["--ops", "seg", "--option", "source=photos"], ["seg_model=/path/to/model"]),
    (["--ops", "seg", "--option", "source=photos", "--option", "seg_model=/nope"], ["seg_model", "/nope", "save_pretrained"]),
])
def test_cli_refuses_with_one_line(tmp_path, args, said):
    out = tmp_path / "out"
    result = run_cli("generate", "--task", "reference", "--n", "4", "--out", str(out), "--backend", "local", *args)
    line = one_error_line(result)
    assert all(w in line for w in said), line
    assert not out.exists()
