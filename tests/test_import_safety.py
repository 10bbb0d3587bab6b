"""Asset importers refuse paths outside their folder and skip malformed COCO entries, counted, never a traceback.

Every test runs the real CLI in a fresh process and writes its manifest under tmp_path (never assets_manifest/).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import REPO, run_cli

SQUARE = [10, 10, 90, 10, 90, 90, 10, 90]  # an 80 x 80 polygon: area 6400 ≥ the default --min-area 1024


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((100, 100, 4), 200, np.uint8)).save(path)
    return path


def _ann(ann_id, image_id=1, **fields) -> dict:
    """A valid polygon annotation; `fields` override or (with value ...) remove keys."""
    ann = dict(id=ann_id, image_id=image_id, category_id=1, iscrowd=0, area=6400.0, bbox=[10, 10, 80, 80],
               segmentation=[SQUARE])
    ann.update(fields)
    return {k: v for k, v in ann.items() if v is not ...}


def _import_coco(tmp_path: Path, images: list, annotations: list, categories: list | None = None):
    coco = dict(images=images, annotations=annotations, categories=categories or [{"id": 1, "name": "Box"}])
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    return run_cli("assets", "import-coco", "--annotations", str(path), "--images", str(tmp_path / "images"),
                   "--prefix", "x", "--license", "CC0", "--out", str(tmp_path / "manifests"))


def _skips(stdout: str) -> dict[str, int]:
    """{reason: count} from `imported N … (skipped M: 2 outside --images, 1 malformed bbox)`."""
    match = re.search(r"\(skipped ([\d,]+): (.*)\)\s*$", stdout)
    if not match:
        return {}
    skips = {why: int(n.replace(",", "")) for n, why in (part.split(" ", 1) for part in match.group(2).split(", "))}
    assert sum(skips.values()) == int(match.group(1).replace(",", ""))
    return skips


def _rows(tmp_path: Path) -> list[dict]:
    return pq.read_table(tmp_path / "manifests" / "user-x.parquet").to_pylist()


def _assert_clean(result) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


def test_coco_refuses_file_names_outside_images(tmp_path):
    images = tmp_path / "images"
    _png(images / "good.png")
    outside = _png(tmp_path / "outside.png")
    os.symlink(outside, images / "link.png")  # inside --images, pointing outside: refused
    os.symlink("good.png", images / "alias.png")  # inside, pointing inside: fine
    (images / "sub").mkdir()
    result = _import_coco(tmp_path, images=[
        {"id": 1, "file_name": "good.png"},
        {"id": 2, "file_name": "../outside.png"},
        {"id": 3, "file_name": "/etc/passwd"},
        {"id": 4, "file_name": str(outside)},  # absolute, a real png
        {"id": 5, "file_name": "link.png"},
        {"id": 6, "file_name": "alias.png"},
        {"id": 7, "file_name": "sub/../good.png"},
        {"id": 8, "file_name": "sub/../../outside.png"},
    ], annotations=[_ann(1, 1), _ann(20, 2), _ann(21, 2), _ann(22, 2), _ann(3, 3), _ann(4, 4), _ann(5, 5),
                    _ann(6, 6), _ann(7, 7), _ann(8, 8)])
    _assert_clean(result)
    assert result.returncode == 0, result.stderr
    assert "imported 3 cutouts as user-x.parquet" in result.stdout
    assert _skips(result.stdout) == {"outside --images": 7}  # every annotation on a refused image counts
    rows = _rows(tmp_path)
    assert sorted(r["id"] for r in rows) == ["x:1", "x:6", "x:7"]
    root = images.resolve()
    assert all(Path(r["path"]).is_relative_to(root) and Path(r["path"]).is_file() for r in rows)
    assert {Path(r["path"]).name for r in rows} == {"good.png"}


GOOD_IMAGE = {"id": 1, "file_name": "good.png"}


MALFORMED = [  # (images, a bad annotation (or None) next to a good one, categories, the reason it counts under)
    ([GOOD_IMAGE, {"id": 2, "file_name": "bad\u0000.png"}], _ann(2, 2), None, "malformed file_name"),
    ([GOOD_IMAGE, {"id": 2, "file_name": 123}], _ann(2, 2), None, "malformed file_name"),
    ([GOOD_IMAGE, {"id": 2, "file_name": ["a.png"]}], _ann(2, 2), None, "malformed file_name"),
    ([GOOD_IMAGE], _ann(2, bbox=...), None, "malformed bbox"),
    ([GOOD_IMAGE], _ann(2, bbox=[10, 10, 80]), None, "malformed bbox"),
    ([GOOD_IMAGE], _ann(2, bbox=[10, 10, "80", 80]), None, "malformed bbox"),
    ([GOOD_IMAGE], _ann(2, bbox=[10, 10, -80, 80]), None, "malformed bbox"),
    ([GOOD_IMAGE], _ann(2, bbox=[10, 10, float("nan"), 80]), None, "malformed bbox"),
    ([GOOD_IMAGE], _ann(2, area="6400"), None, "malformed area"),
    ([GOOD_IMAGE], _ann(2, area="big"), None, "malformed area"),
    ([GOOD_IMAGE], _ann(2, segmentation=SQUARE), None, "malformed segmentation"),  # flat, not a list of lists
    ([GOOD_IMAGE], _ann(2, segmentation=[[10, 10, 90, 10]]), None, "malformed segmentation"),  # < 6 numbers
    ([GOOD_IMAGE], _ann(2, segmentation=[["10"] * 8]), None, "malformed segmentation"),
    ([GOOD_IMAGE], _ann(2, segmentation="polygon"), None, "malformed segmentation"),
    ([GOOD_IMAGE], _ann(2, image_id=99), None, "unknown image_id"),
    ([GOOD_IMAGE], _ann(2, image_id=[1]), None, "unknown image_id"),
    ([GOOD_IMAGE], _ann(2, category_id=99), None, "unknown category_id"),
    ([GOOD_IMAGE], "not an annotation", None, "malformed annotation"),
    ([GOOD_IMAGE], _ann(1), None, "duplicate id"),
    ([GOOD_IMAGE, {"file_name": "good.png"}], None, None, "image without id"),  # counted per image entry
    ([GOOD_IMAGE], None, [{"id": 1, "name": "Box"}, {"id": 2}], "category without name"),
    ([GOOD_IMAGE], None, [{"id": 1, "name": "Box"}, {"id": 2, "name": 5}], "category without name"),
    # the importer always skipped these; now they are counted under their own reasons
    ([GOOD_IMAGE], _ann(2, iscrowd=1), None, "crowd"),
    ([GOOD_IMAGE], _ann(2, segmentation={"counts": [1, 2], "size": [100, 100]}), None, "RLE mask"),
    ([GOOD_IMAGE], _ann(2, area=10.0), None, "area below --min-area"),
]


@pytest.mark.parametrize("images, annotation, categories, reason", MALFORMED,
                         ids=[f"{i}-{case[3].replace(' ', '_')}" for i, case in enumerate(MALFORMED)])
def test_coco_skips_a_malformed_entry_and_counts_it(tmp_path, images, annotation, categories, reason):
    _png(tmp_path / "images" / "good.png")
    annotations = [_ann(1)] + ([annotation] if annotation is not None else [])
    result = _import_coco(tmp_path, images=images, annotations=annotations, categories=categories)
    _assert_clean(result)
    assert result.returncode == 0, result.stderr
    assert "imported 1 cutouts as user-x.parquet" in result.stdout
    assert _skips(result.stdout) == {reason: 1}
    rows = _rows(tmp_path)
    assert [r["id"] for r in rows] == ["x:1"] and rows[0]["name"] == "box"
    assert Path(rows[0]["path"]) == (tmp_path / "images" / "good.png").resolve()


def test_coco_with_nothing_usable_is_one_line_error_that_says_why(tmp_path):
    _png(tmp_path / "images" / "good.png")
    _png(tmp_path / "outside.png")
    result = _import_coco(tmp_path, images=[{"id": 1, "file_name": "../outside.png"}, {"id": 2, "file_name": 7}],
                          annotations=[_ann(1, 1), _ann(2, 1), _ann(3, 2), _ann(4, 1, bbox=None)])
    _assert_clean(result)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "skipped 4: 2 outside --images, 1 malformed bbox, 1 malformed file_name" in lines[0]
    assert not (tmp_path / "manifests" / "user-x.parquet").exists()


def _import_folder(tmp_path: Path, folder: Path, kind: str = "sticker"):
    return run_cli("assets", "import", "--folder", str(folder), "--kind", kind, "--prefix", "x", "--license", "CC0",
                   "--out", str(tmp_path / "manifests"))


def test_folder_import_refuses_a_symlink_to_an_outside_file(tmp_path):
    folder = tmp_path / "mine"
    _png(folder / "ball.png")
    _png(folder / "sub" / "disc.png")
    os.symlink(_png(tmp_path / "secret.png"), folder / "leak.png")
    os.symlink("sub/disc.png", folder / "alias.png")  # a symlink inside pointing inside is fine
    result = _import_folder(tmp_path, folder)
    _assert_clean(result)
    assert result.returncode == 0, result.stderr
    assert "imported 3 stickers as user-x.parquet (skipped 1: 1 outside --folder)" in result.stdout
    rows = _rows(tmp_path)
    assert sorted(r["id"] for r in rows) == ["x:alias", "x:ball", "x:sub/disc"]
    assert all(Path(r["path"]).is_relative_to(folder.resolve()) for r in rows)


def test_folder_import_counts_a_symlinked_dir_pointing_outside(tmp_path):
    folder = tmp_path / "mine"
    _png(folder / "ball.png")
    outside = tmp_path / "elsewhere"
    _png(outside / "a.png")
    _png(outside / "b.png")
    os.symlink(outside, folder / "more")
    os.symlink(outside, folder / "more.png")  # a directory link named like an image
    result = _import_folder(tmp_path, folder, kind="cutout")
    _assert_clean(result)
    assert result.returncode == 0, result.stderr
    assert "imported 1 cutouts as user-x.parquet (skipped 2: 2 outside --folder)" in result.stdout
    rows = _rows(tmp_path)
    assert [r["id"] for r in rows] == ["x:ball"] and Path(rows[0]["path"]).is_relative_to(folder.resolve())


def test_folder_import_with_only_outside_links_is_one_line_error(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    os.symlink(_png(tmp_path / "secret.png"), folder / "leak.png")
    os.symlink("/etc", folder / "etc")
    result = _import_folder(tmp_path, folder, kind="background")
    _assert_clean(result)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "skipped 2: 2 outside --folder" in lines[0]


def test_font_import_refuses_a_symlink_to_an_outside_font(tmp_path):
    folder = tmp_path / "fonts"
    folder.mkdir()
    (folder / "Mine-Regular.ttf").write_bytes((REPO / "fonts" / "DejaVuSans.ttf").read_bytes())
    os.symlink(REPO / "fonts" / "DejaVuSans.ttf", folder / "Linked.ttf")
    result = _import_folder(tmp_path, folder, kind="font")
    _assert_clean(result)
    assert result.returncode == 0, result.stderr
    assert "imported 1 fonts as user-x.parquet (skipped 1: 1 outside --folder)" in result.stdout
    rows = _rows(tmp_path)
    assert [r["id"] for r in rows] == ["x:Mine-Regular"]
    assert Path(rows[0]["path"]) == (folder / "Mine-Regular.ttf").resolve()
