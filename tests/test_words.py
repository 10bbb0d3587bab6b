"""collage.words: plurals, articles and counts by inflect, over every sticker name in the manifests.

Names come from the built manifests (whatever they hold now), in every form a template uses: singular
("the <name>"), plural, with its article, and counted 1..5.
"""

from __future__ import annotations

import re
from collections import Counter

import inflect
import numpy as np
import pytest

from collage import words

ENGINE = inflect.engine()
SPRITE_KINDS = ("sticker", "cutout")


@pytest.fixture(scope="module")
def names(assets):
    found = sorted({r["name"] for r in assets.rows if r["kind"] in SPRITE_KINDS})
    assert len(found) > 100
    return found


def spoken_article(phrase: str) -> str:
    """What inflect says the article is, a leading numeral read out ("8 ball" → "eight ball")."""
    match = re.match(r"^(\d+)(st|nd|rd|th)?\b", phrase)
    if match:
        number = ENGINE.ordinal(match.group(1)) if match.group(2) else match.group(1)
        phrase = str(ENGINE.number_to_words(number)) + phrase[match.end():]
    return ENGINE.a(phrase).split(" ", 1)[0]


def test_plural_is_inflects_plural_of_the_head(names):
    for name in names:
        phrase = words.noun_phrase(name)
        got = words.plural(name)
        if not words.countable(name):
            assert got == name, name
            continue
        original, plural = phrase.split(" "), got.split(" ")
        assert len(original) == len(plural), (name, got)
        changed = [i for i, (a, b) in enumerate(zip(original, plural)) if a != b]
        head = words.head_word(name)
        if not changed:  # an invariant noun ("fish", "aircraft") keeps its form
            assert ENGINE.plural_noun(head) == head, (name, got)
        for i in changed:
            assert plural[i] == ENGINE.plural_noun(original[i]), (name, got)
        assert ENGINE.plural_noun(head) in plural or head in plural, (name, got)


def test_article_is_inflects_and_only_before_a_singular(names):
    for name in names:
        phrase = words.noun_phrase(name)
        got = words.with_article(name)
        if words.countable(name):
            article = spoken_article(phrase)
            assert got == f"{article} {phrase}", (name, got)
        else:
            assert got == name, f"no article before a plural or mass noun: {got!r}"
            assert not got.startswith(("a ", "an ")) or name.startswith(("a ", "an ")), got


def test_counts_one_to_five(names):
    for name in names:
        phrase = words.noun_phrase(name)
        for n in range(1, 6):
            got = words.counted(n, name)
            number = ENGINE.number_to_words(n)
            assert got.startswith(f"{number} "), got
            if words.countable(name):
                assert got == f"{number} {phrase if n == 1 else words.plural(name)}", got
            else:  # counted in units: never "one cherries", "two rice"
                unit = words.unit_of(name)
                assert got == f"{number} {unit if n == 1 else ENGINE.plural_noun(unit)} of {name}", got
                assert not got.startswith(f"{number} {name}")


def test_plural_names_take_plural_verbs_and_pronouns(names):
    for name in names:
        if words.is_plural(name):
            assert words.be(name) == "are" and words.pronoun(name) == "them"
        else:
            assert words.be(name) == "is" and words.pronoun(name) == "it"


@pytest.mark.parametrize("name, plural", [
    ("heart", "hearts"), ("blueberry", "blueberries"), ("cherries", "cherries"), ("french fries", "french fries"),
    ("man running", "men running"), ("person walking facing right", "people walking facing right"),
    ("face with tears of joy", "faces with tears of joy"), ("sheaf of rice", "sheaves of rice"),
    ("fork and knife", "forks and knives"), ("woman astronaut", "women astronauts"), ("bus", "buses"),
    ("cactus", "cactuses"), ("glass", "glasses"), ("moon viewing ceremony", "moon viewing ceremonies"),
    ("grinning squinting face", "grinning squinting faces"), ("box", "boxes"), ("fish", "fish"),
    ("no smoking", "no smoking signs"), ("hourglass done", "hourglasses done"),
])
def test_plurals_by_hand(name, plural):
    assert words.plural(name) == plural


@pytest.mark.parametrize("name, phrase", [
    ("orange", "an orange"), ("hourglass", "an hourglass"), ("one oclock", "a one oclock"),
    ("unicorn", "a unicorn"), ("owl", "an owl"), ("8 ball", "an 8 ball"), ("1st place medal", "a 1st place medal"),
    ("cherries", "cherries"), ("fireworks", "fireworks"), ("scissors", "scissors"), ("jeans", "jeans"),
    ("rice", "rice"), ("popcorn", "popcorn"), ("cooked rice", "cooked rice"), ("rice ball", "a rice ball"),
    ("honeybee", "a honeybee"), ("x-ray", "an x-ray"), ("do not enter", "a do not enter sign"),
])
def test_articles_by_hand(name, phrase):
    assert words.with_article(name) == phrase


def test_colour_words_take_their_article():
    assert words.a_or_an("orange box") == "an orange box"
    assert words.with_article("box", extra="orange") == "an orange box"
    assert words.a_or_an("red box") == "a red box"


@pytest.mark.parametrize("n, name, phrase", [
    (1, "cat", "one cat"), (3, "cat", "three cats"), (2, "man running", "two men running"),
    (1, "jeans", "one pair of jeans"), (2, "scissors", "two pairs of scissors"),
    (2, "cherries", "two bunches of cherries"), (3, "fireworks", "three sets of fireworks"),
    (1, "rice", "one bowl of rice"), (2, "popcorn", "two boxes of popcorn"), (4, "bacon", "four portions of bacon"),
    (2, "people holding hands", "two groups of people holding hands"), (2, "small red cross", "two small red crosses"),
    (12, "star", "twelve stars"),
])
def test_counts_by_hand(n, name, phrase):
    assert words.counted(n, name) == phrase


@pytest.mark.parametrize("rgb, name", [
    ((255, 255, 255), "white"), ((0, 0, 0), "black"), ((128, 128, 128), "gray"), ((220, 30, 30), "red"),
    ((30, 80, 220), "blue"), ((40, 170, 60), "green"), ((245, 140, 20), "orange"), ((120, 70, 30), "brown"),
    ((250, 220, 30), "yellow"), ((10, 20, 90), "dark blue"), ((250, 190, 210), "light pink"),
])
def test_colour_names(rgb, name):
    assert words.colour_name(np.array(rgb)) == name


def test_background_phrases():
    assert words.pattern_phrase("checker", "blue", "blue") == "a blue checkerboard"
    assert words.pattern_phrase("checker", "blue", "white") == "a blue and white checkerboard"
    assert words.pattern_phrase("linear-gradient", "pink", "white") == "a pink-to-white gradient"
    assert words.pattern_phrase("solid", "white", "white") == "a white background"
    assert words.pattern_phrase("solid", "orange", "orange") == "an orange background"
    assert words.photo_phrase("chelsea") == "a photo of a cat"
    assert words.photo_phrase("hubble deep field") == "a deep-space photo of galaxies"
    assert words.photo_phrase("lighthouse") == "a photo of a lighthouse"


def test_every_builtin_photo_is_named_by_what_it_shows(assets):
    photos = [r for r in assets.rows if r["kind"] == "background" and r["source"] == "pip:scikit-image"]
    for row in photos:
        key = row["name"].strip().lower().replace("_", " ")
        assert key in words.PHOTO_PHRASES, f"built-in photo {row['name']!r} ({row['id']}) has no phrase"


def test_procedural_backgrounds_are_named_from_their_pixels(assets):
    from collage.tasks.common import describe_background

    for row in assets.procedurals:
        recipe = row["id"].split(":", 1)[1]
        flat = np.zeros((64, 64, 3), np.uint8)
        flat[:] = (30, 80, 220)
        if recipe in ("checker", "stripes", "dots"):
            flat[::2, :, :] = (245, 245, 245)  # two colours, the first at the top-left pixel
            flat[0, 0] = (30, 80, 220)
        phrase = describe_background(assets, row["id"], flat)
        assert "blue" in phrase and "background" != phrase, (recipe, phrase)
        if recipe in ("checker", "stripes", "dots"):
            assert "white" in phrase, (recipe, phrase)


@pytest.mark.parametrize("recipe", ["diagonal-stripes", "tiles", "bokeh"])
def test_new_procedural_backgrounds_are_named_from_their_pixels(recipe, assets):
    """Diagonal stripes, tiles and bokeh: the phrase names the colours the pixels hold (tiles: the tile colour,
    then the grout; bokeh: the ground, then the lights)."""
    import numpy as np

    from collage.assets.procedural import procedural_background
    from collage.tasks.common import describe_background

    for seed in range(12):
        pixels = procedural_background(np.random.default_rng(seed), recipe, 256, 192)
        phrase = describe_background(assets, f"procedural:{recipe}", pixels)
        colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
        if recipe in ("diagonal-stripes", "tiles"):
            assert len(colours) == 2
            major, minor = (words.colour_name(c) for c in colours[np.argsort(-counts)])
            if recipe == "tiles":
                assert phrase == (f"{major} tiles with {minor} grout" if major != minor else f"{major} tiles")
            else:
                assert major in phrase and minor in phrase and phrase.endswith("diagonal stripes")
        else:
            ground = words.colour_name(np.median(pixels.reshape(-1, 3), axis=0))
            assert phrase.startswith(f"a {ground} ") or phrase.startswith(f"an {ground} "), phrase
            assert "bokeh" in phrase


@pytest.mark.parametrize("recipe", ["waves", "clouds", "plaid"])
def test_more_procedural_families_are_named_from_their_pixels(recipe, assets):
    """Waves: both band colours; plaid: the ground (most pixels) first, then the bands; clouds: two colours
    the picture shows widely (each the name of ≥ 1 % of its pixels)."""
    import numpy as np

    from collage.assets.procedural import procedural_background
    from collage.tasks.common import describe_background

    for seed in range(12):
        pixels = procedural_background(np.random.default_rng(seed), recipe, 256, 192)
        phrase = describe_background(assets, f"procedural:{recipe}", pixels)
        colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
        order = np.argsort(-counts)
        if recipe == "waves":
            first, second = (words.colour_name(colours[i]) for i in order[:2])
            assert first in phrase and second in phrase and phrase.startswith("wavy ") and phrase.endswith(" stripes")
        elif recipe == "plaid":
            assert len(colours) == 3
            ground = words.colour_name(colours[order[0]])
            assert phrase.startswith((f"a {ground} plaid", f"an {ground} plaid")), phrase
        else:  # colour names many pixels have (each on ≥ 5 % of them: the code reads a coarser grid)
            names = Counter(words.colour_name(c) for c in pixels[::2, ::2].reshape(-1, 3))
            said = [w for w in names if re.search(rf"\b{w}\b", phrase)]
            assert phrase.startswith("a cloudy ") and phrase.endswith(" texture") and said, phrase
            assert all(names[w] >= 0.05 * sum(names.values()) for w in said), (phrase, names)
