"""Sticker prompt names (collage/assets/naming.py, names/overrides.csv) in the built manifest."""

import csv
import re
from fnmatch import fnmatchcase

import pytest

from collage.assets import naming
from collage.assets.manifest import DEFAULT_MANIFEST_DIR, load_manifests

STICKER_SETS = ("noto-emoji", "twemoji", "openclipart")


@pytest.fixture(scope="module")
def stickers():
    if not any((DEFAULT_MANIFEST_DIR / f"builtin-{s}.parquet").exists() for s in STICKER_SETS):
        pytest.skip("no built sticker manifests: run `collage assets build`")
    return [r for r in load_manifests() if r["kind"] == "sticker" and r["source"] != "file"]


def _emoji_text(row):
    import json
    if row["source"] == "deb:fonts-noto-color-emoji":
        return json.loads(row["extra"])["text"]
    return "".join(chr(int(cp, 16)) for cp in row["id"].split(":", 1)[1].split("-"))


def test_every_name_is_clean(stickers):
    bad = [(r["id"], r["name"]) for r in stickers if not naming.clean(r["name"])]
    assert not bad, bad[:20]
    for r in stickers:
        assert re.fullmatch(r"[a-z' -]+", r["name"]) and "  " not in r["name"] and not re.search(r"\d", r["name"])


def test_no_excluded_group(stickers):
    entries = {naming.emoji_key(e.text): e for e in naming.emoji_test_entries()} if naming.EMOJI_TEST.exists() else {}
    for r in stickers:
        words = set(r["name"].split())
        assert not words & {"flag", "keycap", "sign", "symbol", "zodiac", "family", "o'clock", "oclock"}, r
        if r["source"] == "deb:openclipart-png":
            assert not any(r["path"].startswith(f + "/") for f in naming.OPENCLIPART_DROP_FOLDERS), r
            continue
        text = _emoji_text(r)
        assert not any(0x1F1E6 <= ord(c) <= 0x1F1FF or ord(c) in (0x20E3, 0x1F3F4) or 0x1F550 <= ord(c) <= 0x1F567
                       or 0x2648 <= ord(c) <= 0x2653 for c in text), r  # flags, keycaps, clock faces, zodiac
        entry = entries.get(naming.emoji_key(text))
        if entry is not None:
            assert entry.group not in naming.EMOJI_DROP_GROUPS and entry.subgroup not in naming.EMOJI_DROP_SUBGROUPS, r


def test_every_override_applies(stickers):
    keys = {naming.emoji_key(_emoji_text(r)) if r["source"] != "deb:openclipart-png" else r["id"] for r in stickers}
    # Dropped assets are not in the manifest: match against everything the sources could offer.
    if naming.EMOJI_TEST.exists():
        keys |= {naming.emoji_key(e.text) for e in naming.emoji_test_entries()}
    root = naming.OPENCLIPART_SVG.parent / "png"
    keys |= {f"openclipart:{p.relative_to(root).with_suffix('').as_posix()}" for p in root.rglob("*.png")}
    rule_names = set()
    if naming.EMOJI_TEST.exists():
        rule_names |= {naming.emoji_raw_phrase(e.cldr) for e in naming.emoji_test_entries()}
    for p in root.rglob("*.png"):
        title = naming.svg_title(naming.OPENCLIPART_SVG / p.relative_to(root).with_suffix(".svg")) or ""
        rule_names.add(naming.title_phrase(title) if title else None)
    with open(naming.OVERRIDES_CSV, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"id_or_pattern", "action", "name", "reason"}
    for row in rows:
        key = row["id_or_pattern"]
        assert row["action"] in ("rename", "drop") and row["reason"].strip(), row
        if key.startswith("name:"):
            assert key[5:] in rule_names, f"override {key} names nothing the rules produce"
        elif any(c in key for c in "*?["):
            assert any(fnmatchcase(k, key) for k in keys), f"pattern {key} matches no asset"
        else:
            assert key in keys, f"override {key} is not an asset"
        if row["action"] == "rename":
            assert naming.clean(row["name"]), row


BAD_EXAMPLES = {  # id → names it must not carry (the QA review's findings)
    "openclipart:tools/orange_burner_01": {"orange"},
    "openclipart:animals/fish/giraffe_cichlid_01": {"giraffe"},
    "openclipart:food/beverages/baby_bottle_01": {"baby"},
    "openclipart:animals/birds/baby_tux_01": {"baby"},
    "openclipart:animals/three_eyes_01": {"three"},
    "openclipart:animals/bugs/grass_hopper_02": {"grass"},
    "openclipart:food/meats_and_eggs/farmer_onelette": {"farmer"},
    "openclipart:recreation/music/bass_clef_01": {"bass"},
    "openclipart:animals/mammals/deer_matt_todd_01": {"deer matt"},
    "openclipart:people/angry_punk_dirk_struve_": {"angry punk dirk"},
    "openclipart:tools/magnifying_glass_tom_kra_": {"magnifying glass tom"},
    "openclipart:transportation/roadsigns/horse": {"horse"},
    "openclipart:transportation/horse": {"horse"},
    "openclipart:transportation/old_folks": {"old"},
    "openclipart:transportation/end_daul": {"end"},
    "openclipart:transportation/pass_either": {"pass"},
    "openclipart:transportation/roadsigns/quay_sign_01": {"quay"},
}


def test_known_bad_names_are_gone(stickers):
    by_id = {r["id"]: r["name"] for r in stickers}
    for asset_id, wrong in BAD_EXAMPLES.items():
        assert by_id.get(asset_id) not in wrong, (asset_id, by_id.get(asset_id))
    assert by_id.get("openclipart:tools/orange_burner_01") in (None, "lighter")
    names = set(by_id.values())
    for wrong in ("man red hair", "seven oclock", "womans clothes", "one one oclock", "no smoking", "copyright",
                  "input numbers", "wales", "aries"):
        assert wrong not in names
    assert not any(n.startswith("family") or re.search(r"\b(dirk|matt|tom)$", n) for n in names)
    if naming.EMOJI_TEST.exists():
        assert {"man with red hair", "woman's clothes"} <= names


def test_names_are_deterministic(stickers):
    from collage.assets.sources import openclipart_rows

    naming._emoji_names_cached.cache_clear()
    first = naming.emoji_names(lambda _: None)
    naming._emoji_names_cached.cache_clear()
    assert naming.emoji_names(lambda _: None) == first
    built = {r["id"]: r["name"] for r in stickers if r["source"] == "deb:openclipart-png"}
    if built:
        assert {r["id"]: r["name"] for r in openclipart_rows(lambda _: None)} == built
    noto = {r["id"].split(":", 1)[1]: r["name"] for r in stickers if r["source"] == "deb:fonts-noto-color-emoji"}
    for r in stickers:
        if r["source"] == "deb:fonts-noto-color-emoji":
            assert first[_emoji_text(r)] == r["name"]
    assert noto


def test_emoji_phrases():
    assert naming.emoji_phrase("man: red hair") == "man with red hair"
    assert naming.emoji_phrase("woman\u2019s clothes") == "woman's clothes"
    assert naming.emoji_phrase("person: bald") == "bald person"
    assert naming.emoji_phrase("seven o\u2019clock") is None
    assert naming.emoji_phrase("1st place medal") is None
    assert naming.title_phrase("Clipart by Nicu Buculei - pear") == "pear" or not naming._wordnet()[0]
    assert not naming.matches_file("pear", "orange")


def test_ing_phrases():
    """CLDR '<noun> <verb>-ing' names: faces rewritten, other actions dropped, things and people kept."""
    assert naming.ing_phrase("face exhaling", "Smileys & Emotion")[0] == "exhaling face"
    assert naming.ing_phrase("backhand index pointing left")[0] == "hand pointing left"
    assert naming.ing_phrase("man frowning")[0] == "man frowning"
    if naming._concrete_nouns():
        assert naming.ing_phrase("chart decreasing", "Objects")[0] is None
        assert naming.ing_phrase("office building", "Travel & Places")[0] == "office building"


def test_scene_tiles():
    """Emoji whose picture fills its square in a scene-prone subgroup are dropped; objects elsewhere kept."""
    assert naming.is_scene_tile([0.97, 0.99]) and not naming.is_scene_tile([0.99, 0.49]) and not naming.is_scene_tile([])
    if not naming.EMOJI_TEST.exists() or not naming._emoji_coverages("\U0001F307"):
        pytest.skip("no emoji-test.txt or emoji renderings")
    entries = {e.cldr: e for e in naming.emoji_test_entries()}
    for scene in ("sunset", "cityscape", "fireworks", "bridge at night"):
        assert naming.emoji_decision(entries[scene])[0] is None, scene
    for thing in ("door", "window", "credit card", "vertical traffic light", "brick"):
        assert naming.emoji_decision(entries[thing])[0] is not None, thing


def test_several_things_in_clip_art():
    """A singular clip-art title over several separate copies (three knots, two violins) is dropped."""
    assert naming.names_several("chess bishops") and naming.names_several("bunch of grapes")
    assert not naming.names_several("knot") and not naming.names_several("bus") and not naming.names_several("compass")
    root = naming.OPENCLIPART_SVG.parent / "png"
    if not (root / "transportation/boating/knot_bowline.png").exists():
        pytest.skip("openclipart-png not installed")
    assert naming.large_parts(root / "transportation/boating/knot_bowline.png") >= 2
    assert naming.large_parts(root / "recreation/music/violin_mo_01.png") >= 2
    for one in ("office/mailbox1", "recreation/music/saxophone_jarno_vasamaa_", "food/bowl_of_steaming_soup_01"):
        assert naming.large_parts(root / f"{one}.png") == 1, one  # parts smaller than half: one thing
    assert naming.openclipart_decision("openclipart:recreation/music/violin_mo_01", "recreation/music/violin_mo_01.png")[0] is None
