"""Independent task streams: runs of different tasks (or ops, or mixes) with the same --seed never draw the same
scenes — merged per-task runs hold no hidden duplicates. Judged from the written shards."""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import pytest

from collage.api import generate_run, iter_samples, make_config

TASKS = ("t2i", "edit", "drag", "inpaint", "reference", "segdet")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, assets) -> dict[str, list[dict]]:
    root = tmp_path_factory.mktemp("streams")
    out = {}
    for task in TASKS:
        generate_run(out=str(root / task), task=task, n=24, seed=0, size=128, shard_size=12, backend="local")
        out[task] = list(iter_samples(str(root / task), decode=True))
    return out


def _images(sample: dict) -> set[str]:
    return {hashlib.sha256(np.ascontiguousarray(sample[k]).tobytes()).hexdigest() for k in ("src", "tgt") if k in sample}


def _scene(sample: dict) -> str:
    meta = sample["json"]
    objects = sorted((o.get("asset"), o.get("name")) for o in meta["objects"])
    return json.dumps([meta.get("background"), objects])


def test_no_two_tasks_share_a_source_image_or_a_scene(runs):
    for a, b in itertools.combinations(TASKS, 2):
        images_a = set().union(*map(_images, runs[a]))
        images_b = set().union(*map(_images, runs[b]))
        assert not images_a & images_b, f"{a} and {b} share images"
        scenes_a = {_scene(s) for s in runs[a] if s["json"]["objects"]}
        scenes_b = {_scene(s) for s in runs[b] if s["json"]["objects"]}
        assert not scenes_a & scenes_b, f"{a} and {b} share scenes: {sorted(scenes_a & scenes_b)[:2]}"
        seeds_a, seeds_b = ({s["json"]["seed"] for s in runs[t]} for t in (a, b))
        assert not seeds_a & seeds_b


def test_the_stream_is_the_run_mix_and_nothing_else():
    drag = make_config("drag", 100)
    assert drag.stream == make_config("drag", 5000, seed=0, size=256).stream  # n, size: the same stream
    assert drag.stream != make_config("drag", 100, ops="translate").stream
    assert drag.stream != make_config("segdet", 100).stream
    assert drag.stream != make_config("edit", 100).stream != make_config("edit", 100, options=["add_background=mixed"]).stream


def test_aspect_buckets_favour_common_ratios(tmp_path, assets):
    """--aspect-ratios all: near-square canvases most, extreme ones rare; 'uniform' keeps all 31 alike. The
    written jsons' sizes are the buckets drawn."""
    import math

    from collage.config import aspect_buckets
    from collage.worker import choose

    def shares(prior):
        cfg = make_config("drag", 20000, aspect_ratios=prior, size=256)
        ratios = [math.log(w / h) for _, _, w, h, _ in (choose(cfg, 0, i) for i in range(20000))]
        return (sum(abs(r) < 0.35 for r in ratios) / len(ratios), sum(abs(r) > 1.0 for r in ratios) / len(ratios))
    near, extreme = shares("all")
    assert near > 0.4 and extreme < 0.06, (near, extreme)
    near_u, extreme_u = shares("uniform")
    assert near_u < 0.3 and extreme_u > 0.25, (near_u, extreme_u)
    generate_run(out=str(tmp_path / "a"), task="segdet", n=40, seed=1, size=128, aspect_ratios="all", backend="local")
    for sample in iter_samples(str(tmp_path / "a")):
        meta = sample["json"]
        assert (meta["width"], meta["height"]) == aspect_buckets(128)[meta["bucket"]]
