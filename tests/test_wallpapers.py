"""Wallpaper backgrounds from Debian packages (collage/assets/wallpapers.py) and the names imports give."""

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from collage import words
from collage.assets import wallpapers
from collage.assets.build import _name_from, import_folder
from collage.assets.sources import BUILTIN_SETS, DEB_ROOTS, resolve_path, skimage_rows

CSV_ROWS = list(csv.DictReader(open(wallpapers.NAMES_CSV, newline="", encoding="utf-8")))


@pytest.fixture(scope="module")
def built():
    """(rows, notes) of the wallpapers set built from the packages installed here."""
    notes: list[str] = []
    rows = wallpapers.wallpaper_rows(notes.append)
    if not rows:
        pytest.skip("no wallpaper package installed (plasma-workspace-wallpapers, mate-backgrounds, …)")
    return rows, notes


def test_the_set_is_registered_with_its_roots():
    assert BUILTIN_SETS["wallpapers"] is wallpapers.wallpaper_rows
    assert set(wallpapers.PACKAGES) <= set(DEB_ROOTS)


def test_the_names_list_is_well_formed():
    entries = wallpapers.load_names()
    assert len(entries) == len(CSV_ROWS)  # ids unique
    for e in entries.values():
        assert e.kind in ("photo", "art")
        if e.keep:
            assert e.name and not any(c.isdigit() for c in e.name), e
        else:
            assert e.reason, e


@pytest.mark.parametrize("entry", [e for e in wallpapers.load_names().values() if e.keep], ids=lambda e: e.id)
def test_a_reviewed_name_reads_well_in_prompts(entry):
    """A photo's name is written as it reads after "a photo of" (its article included); a piece of art is
    named by its medium and used as written ("abstract art of …"), never called a photo."""
    phrase = words.photo_phrase(entry.name)
    if entry.kind == "photo":
        assert phrase == f"a photo of {entry.name}", (entry.id, phrase)
    else:
        assert phrase == entry.name, (entry.id, phrase)
    sentence = f"Stickers of two cats on {phrase}."
    assert " a a " not in sentence and " a an " not in sentence and "  " not in sentence


def test_rows_of_the_installed_packages_carry_the_reviewed_names(built):
    rows, notes = built
    entries = wallpapers.load_names()
    for row in rows:
        entry = entries[row["id"]]
        assert entry.keep and row["name"] == entry.name, row["id"]
        assert json.loads(row["extra"]) == {"picture": entry.kind}
        assert row["kind"] == "background" and row["source"] in wallpapers.PACKAGES
        assert row["license"] and row["attribution"] and row["sha256"] and row["width"] and row["height"]
        path = resolve_path(row)
        assert path.is_file() and path.suffix.lower() in wallpapers.RASTER_SUFFIXES, path
        with Image.open(path) as im:
            assert im.size == (row["width"], row["height"])
    assert not [n for n in notes if "not in names/wallpapers.csv" in n], notes  # every installed picture reviewed


def test_dropped_pictures_never_appear(built):
    rows, _ = built
    dropped = {r["id"] for r in CSV_ROWS if r["keep"] == "no"}
    assert dropped and not dropped & {r["id"] for r in rows}


def test_licences_follow_each_package(built):
    rows, _ = built
    allowed = {
        "deb:plasma-workspace-wallpapers": {"LGPL-3.0", "CC-BY-SA-4.0", "GPL-2+"},
        "deb:mate-backgrounds": {"GPL-2+", "CC-BY-SA-4.0"},
        "deb:gnome-backgrounds": {"GPL-2+", "CC-BY-SA-3.0"},
        "deb:ukui-wallpapers": {"CC-BY-SA-3.0"},
    }
    for row in rows:
        assert row["license"] in allowed[row["source"]], (row["id"], row["license"])
        assert "@" not in row["attribution"] and "|" not in row["attribution"]
    by_id = {r["id"]: r for r in rows}
    if "mate:desktop/Ubuntu-Mate-Cold-no-logo" in by_id:  # DEP-5: the Ubuntu MATE pictures are CC-BY-SA-4.0
        assert by_id["mate:desktop/Ubuntu-Mate-Cold-no-logo"]["license"] == "CC-BY-SA-4.0"
    if "gnome:adwaita-l" in by_id:
        assert by_id["gnome:adwaita-l"]["license"] == "CC-BY-SA-3.0"
        assert "Jakub Steiner" in by_id["gnome:adwaita-l"]["attribution"]


def test_only_the_largest_file_of_a_plasma_wallpaper_is_used(built):
    rows, _ = built
    for row in rows:
        if row["source"] == "deb:plasma-workspace-wallpapers":
            path = resolve_path(row)
            sizes = [Image.open(p).size for p in path.parent.iterdir() if p.suffix.lower() in wallpapers.RASTER_SUFFIXES]
            assert row["width"] * row["height"] == max(w * h for w, h in sizes), row["id"]


def _thumb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((32, 32), Image.Resampling.BILINEAR), np.float64).ravel()


def test_no_two_kept_backgrounds_are_near_duplicates(built):
    """Recomputed from the files (full decode, another resampling): the wallpapers and the scikit-image photos."""
    rows, _ = built
    backgrounds = [r for r in skimage_rows(lambda _: None) + rows]
    thumbs = np.array([_thumb(resolve_path(r)) for r in backgrounds])
    corr = np.corrcoef(thumbs)
    np.fill_diagonal(corr, 0)
    i, j = np.unravel_index(np.nanargmax(corr), corr.shape)
    assert corr[i, j] < 0.985, (backgrounds[i]["id"], backgrounds[j]["id"], corr[i, j])


def _plasma_tree(root: Path, name: str, colour: tuple, sizes=((64, 40), (160, 100)), folder="images",
                 split: str = "left") -> None:
    for w, h in sizes:
        d = root / name / "contents" / folder
        d.mkdir(parents=True, exist_ok=True)
        img = np.zeros((h, w, 3), np.uint8)
        if split == "left":
            img[:, : w // 2] = colour  # half coloured: not flat, so the correlation is defined
        elif split == "top":
            img[: h // 2] = colour
        else:  # a corner
            img[: h // 2, : w // 2] = colour
        Image.fromarray(img).save(d / f"{w}x{h}.png")


def test_the_builder_on_a_fake_package(tmp_path):
    """The largest file of each folder; a dark variant is its own picture; keep=no and unlisted pictures are
    left out (the unlisted with a note); a near-duplicate of an earlier picture is dropped with a note."""
    root = tmp_path / "wallpapers"
    _plasma_tree(root, "Sea", (20, 90, 200))
    _plasma_tree(root, "Sea", (90, 90, 90), folder="images_dark", split="corner")
    _plasma_tree(root, "Logo", (200, 0, 0))
    _plasma_tree(root, "New", (0, 200, 0), split="top")
    _plasma_tree(root, "Unlisted", (0, 200, 0))
    _plasma_tree(root, "SeaCopy", (20, 90, 200))  # the same picture as Sea, later in the order
    (root / "Sea" / "metadata.json").write_text(json.dumps(
        {"KPlugin": {"Authors": [{"Name": "A. Painter", "Email": "a@b.c"}], "License": "LGPLv3", "Name": "Sea"}}))
    E = wallpapers.Entry
    names = {"plasma:Sea": E("plasma:Sea", True, "a calm sea", "photo", ""),
             "plasma:Sea-dark": E("plasma:Sea-dark", True, "a dark sea", "photo", ""),
             "plasma:SeaCopy": E("plasma:SeaCopy", True, "a calm sea again", "photo", ""),
             "plasma:New": E("plasma:New", True, "abstract art of green", "art", ""),
             "plasma:Logo": E("plasma:Logo", False, "", "art", "a logo")}
    notes: list[str] = []
    roots = {"deb:plasma-workspace-wallpapers": root}
    rows = wallpapers.wallpaper_rows(notes.append, roots=roots, doc_root=tmp_path / "doc", names=names, earlier=[])
    by_id = {r["id"]: r for r in rows}
    assert sorted(by_id) == ["plasma:New", "plasma:Sea", "plasma:Sea-dark"]
    assert by_id["plasma:Sea"]["path"] == "Sea/contents/images/160x100.png"
    assert by_id["plasma:Sea-dark"]["path"] == "Sea/contents/images_dark/160x100.png"
    assert (by_id["plasma:Sea"]["width"], by_id["plasma:Sea"]["height"]) == (160, 100)
    assert by_id["plasma:Sea"]["license"] == "LGPL-3.0" and "A. Painter" in by_id["plasma:Sea"]["attribution"]
    assert "a@b.c" not in by_id["plasma:Sea"]["attribution"]
    assert by_id["plasma:New"]["license"] == "GPL-2+"  # no metadata, no copyright file: the package's licence
    assert json.loads(by_id["plasma:New"]["extra"]) == {"picture": "art"}
    assert any("plasma:Unlisted" in n and "not in names/wallpapers.csv" in n for n in notes), notes
    assert any("1 near-duplicate" in n and "plasma:SeaCopy ~ plasma:Sea " in n for n in notes), notes
    assert sum("not installed" in n for n in notes) == 3  # the other three packages


def test_a_missing_package_gives_no_rows_and_a_note(tmp_path):
    notes: list[str] = []
    roots = {source: tmp_path / "absent" for source in wallpapers.PACKAGES}
    assert wallpapers.wallpaper_rows(notes.append, roots=roots, earlier=[]) == []
    assert len(notes) == len(wallpapers.PACKAGES)
    assert all("not installed (apt-get install" in n for n in notes)


def test_dep5_licences_are_read_per_file():
    text = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            "Files: *\nCopyright: 2010 Someone\nLicense: GPL-2+\n\n"
            "Files: desktop/Ubuntu-*.png\n       other/x.jpg\nCopyright: 2014 Goce Mitevski <g@m.example>\n"
            "License: CC-BY-SA-4.0\n")
    assert wallpapers.dep5_license(text, "desktop/Ubuntu-Cold.png") == ("CC-BY-SA-4.0", "Goce Mitevski")
    assert wallpapers.dep5_license(text, "nature/Aqua.jpg") == ("GPL-2+", "Someone")


def test_near_duplicates_keep_the_first_and_ignore_flat_against_textured(tmp_path):
    base = (np.arange(64 * 64).reshape(64, 64) % 61 * 4).astype(np.uint8)
    paths = {}
    for name, img in {"a": base, "b": np.clip(base.astype(int) + 12, 0, 255).astype(np.uint8),  # brighter copy
                      "c": base.T.copy(), "flat": np.full((64, 64), 128, np.uint8)}.items():
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(img).save(paths[name])
    rows = [{"id": n} for n in ("a", "b", "c", "flat")]
    dropped = wallpapers.near_duplicates(rows, lambda r: paths[r["id"]])
    assert list(dropped) == ["b"] and dropped["b"][0] == "a"


# --- names of imported files ------------------------------------------------------------------------

@pytest.mark.parametrize("stem,expected", [
    ("000000397133", "photo"), ("IMG_0042", "photo"), ("DSC01234", "photo"), ("a3f9c0e1d2b4", "photo"),
    ("red_car_03", "red car"), ("cat-2", "cat"), ("Golden Gate 2019", "golden gate"),
])
def test_an_imported_name_is_never_a_number(stem, expected, tmp_path):
    path = tmp_path / f"{stem}.jpg"
    assert _name_from(path, tmp_path, "filename") == expected
    assert _name_from(path, tmp_path, "filename", "object") == ("object" if expected == "photo" else expected)


def test_a_coco_style_background_folder_imports_as_photos(tmp_path):
    folder = tmp_path / "train2017"
    folder.mkdir()
    for stem in ("000000397133", "000000037777"):
        Image.fromarray(np.full((80, 96, 3), 120, np.uint8)).save(folder / f"{stem}.jpg")
    out = tmp_path / "manifests"
    assert import_folder(folder, "background", "coco", "CC-BY-4.0", out_dir=out).imported == 2
    rows = pq.read_table(out / "user-coco.parquet").to_pylist()
    assert [r["name"] for r in rows] == ["photo", "photo"]
    assert {words.photo_phrase(r["name"]) for r in rows} == {"a photo"}
    assert words.photo_phrase("000000397133") == "a photo"  # a manifest imported before this fix
