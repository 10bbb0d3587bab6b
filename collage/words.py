"""English for template prompts: plurals, articles, counts, colour and background names.

Every plural and every a/an of a prompt goes through here, and here through `inflect` (PyPI), never by
hand. Object names are multi-word asset names ("man running", "face with tears of joy", "french fries");
the rules on top of inflect, in order:

- The head noun. A name is cut at its first post-modifier: a preposition (PREPOSITIONS: "face | with
  tears of joy"), a word of POST_WORDS ("hourglass | done", "globe | showing americas") or a participle
  after the first word (an -ing word not in ING_NOUNS) when no noun follows it ("face | exhaling",
  "chart | increasing with yen", but "moon viewing ceremony"); in names starting with PERSON_WORDS any
  participle cuts ("man | running", "person | getting haircut"). In what is left the head is the last
  word ("grinning face" → "face"), except after PERSON_WORDS and "face", where it is the first ("people
  getting haircut", "faces savoring food"); a "man X" / "woman X" with nothing cut pluralises both ends
  ("women police officers", as English does for "woman doctor"). Conjuncts joined by "and" each
  pluralise their head ("fork and knife" → "forks and knives"), and the first one's head decides the
  number and article ("a bowling ball and pins"). Names of signs ("no smoking", "do not enter") are
  named "<name> sign". So: "man running" → "men running", "face with tears of joy" → "faces with tears
  of joy", "sheaf of rice" → "sheaves of rice".
- Already plural: the head is in PLURAL_ONLY ("scissors", "jeans", ...), or inflect's `singular_noun`
  finds it plural ("cherries", "fries", "people") and it is not a singular that only looks plural
  (NOT_PLURAL and -us/-ss/-is words: "bus", "cactus", "glass", "iris"). Invariant nouns ("fish",
  "sheep") are singular. A plural name stays as it is: plural("french fries") == "french fries".
- Mass nouns: the head is in MASS_NOUNS ("rice", "popcorn", "butter", "tennis", ...).
- Articles: a plural or mass name takes none ("Add cherries", "Add popcorn"); otherwise inflect's a/an,
  with a leading numeral read as its word ("an 8 ball", "a 1st place medal", "an orange box",
  "an hourglass", "a unicorn", "a one oclock").
- Counts (`counted`): number words; a countable name "one cat" / "three cats"; a plural or mass name is
  counted in units: "one pair of jeans" (PAIR_NOUNS), "two bunches of cherries" (UNITS), "three sets of
  fireworks" (other plurals: "set", people: "group"), "two portions of rice" (other mass nouns).
- Agreement: `be(name)` is "are" for a plural name, else "is"; `pronoun(name)` is "them" / "it".
"""

from __future__ import annotations

import colorsys
import functools
import re

import inflect

ENGINE = inflect.engine()

PREPOSITIONS = frozenset("""with of in on at from over behind without for under into by to between near
above below beside around through inside""".split())
POST_WORDS = frozenset({"facing", "done", "not", "pointing", "holding", "wearing", "showing"})
ING_NOUNS = frozenset("""ring wing king string thing spring ceiling building wedding painting clothing pudding
icing sling swing evening morning bowling camping cooking knitting stuffing dumpling sapling herring
viking darling""".split())
PERSON_WORDS = frozenset({"man", "woman", "person", "family"})
PLURAL_ONLY = frozenset("""scissors jeans shorts pants trousers glasses sunglasses goggles briefs pliers tongs
binoculars tweezers clothes fireworks dice people men women children""".split())
PAIR_NOUNS = frozenset("""scissors jeans shorts pants trousers glasses sunglasses goggles briefs pliers tongs
binoculars tweezers chopsticks socks gloves skis thongs""".split())
NOT_PLURAL = frozenset("""aries pisces taurus aquarius sagittarius gemini virgo libra cancer scorpio capricorn
claus bus cactus octopus hippopotamus walrus lotus hibiscus abacus asparagus iris chess news lens canvas
atlas gas platypus citrus circus bonus virus rhinoceros""".split())
MASS_NOUNS = frozenset("""rice popcorn bread butter cheese honey milk salt sugar spaghetti lasagna sushi bacon
custard fondue lemonade coffee tea beer sake wine water juice ice fog grass wood paper soap yarn thread ink
fire bamboo corn broccoli toast cereal pasta mate oden luggage dna lightning rain snow money tennis golf
badminton bowling lacrosse chess hockey karate curling knitting camping cooking information garlic""".split())
UNITS = {"cherries": "bunch", "grapes": "bunch", "bananas": "bunch", "flowers": "bunch", "fries": "serving",
         "rice": "bowl", "popcorn": "box", "spaghetti": "plate", "lasagna": "plate", "coffee": "cup",
         "tea": "cup", "milk": "glass", "juice": "glass", "lemonade": "glass", "water": "glass", "beer": "glass",
         "wine": "glass", "bread": "loaf", "cheese": "piece", "butter": "piece", "soap": "bar", "toast": "slice",
         "paper": "sheet", "wood": "piece", "ice": "piece", "grass": "patch", "fog": "patch", "yarn": "ball",
         "honey": "jar", "salt": "pile", "sugar": "pile", "corn": "ear", "broccoli": "head", "garlic": "head"}
PEOPLE_PLURALS = frozenset({"people", "men", "women", "children", "kids", "boys", "girls", "persons"})


# --- nouns -------------------------------------------------------------------------------------------

def _is_ing_modifier(word: str) -> bool:
    return len(word) > 4 and word.endswith("ing") and word not in ING_NOUNS


SIGN_PREFIXES = ("no ", "do not ")  # "no smoking", "do not enter": named as signs ("a no smoking sign")


def noun_phrase(name: str) -> str:
    """The name as a noun phrase: itself, or for the names of signs (SIGN_PREFIXES) "<name> sign"."""
    return f"{name} sign" if name.startswith(SIGN_PREFIXES) else name


@functools.lru_cache(maxsize=8192)
def _parts(name: str) -> tuple[tuple[str, ...], int, tuple[int, ...]]:
    """(words, end of the head phrase, indices of the head word(s) to pluralise)."""
    words = tuple(noun_phrase(name).split(" "))
    if name.startswith(SIGN_PREFIXES):
        return words, len(words), (len(words) - 1,)
    people = words[0] in PERSON_WORDS
    end = len(words)
    for i, word in enumerate(words):
        if i == 0:
            continue
        if word in PREPOSITIONS or word in POST_WORDS:
            end = i
            break
        if _is_ing_modifier(word) and not (_is_ing_modifier(words[i - 1]) or words[i - 1].endswith("ly")):
            # "man running", "face exhaling", "chart increasing with yen"; not "moon viewing ceremony"
            after = words[i + 1] if i + 1 < len(words) else None
            if people or after is None or after in PREPOSITIONS or after in POST_WORDS or after in ("a", "the") \
                    or after.endswith("ly") or _is_ing_modifier(after):
                end = i
                break
    head = words[:end]
    if head and head[0] == "face":
        return words, end, (0,)
    if head and people and len(head) > 1 and "and" not in head:
        if head[0] in ("man", "woman") and end == len(words) and head[-1] not in ("bald", "beard", "hair"):
            return words, end, (0, end - 1)  # "woman police officer" → "women police officers"
        return words, end, (0,)
    heads, start = [], 0
    for i, word in enumerate(head + ("and",)):
        if word == "and":
            if i > start:
                heads.append(i - 1)
            start = i + 1
    return words, end, tuple(heads) or (max(end - 1, 0),)


def head_word(name: str) -> str:
    """The word a name's number and article rest on: the first head ("bowling ball and pins" → "ball":
    "a bowling ball and pins")."""
    words, _, heads = _parts(name)
    return words[heads[0]]


@functools.lru_cache(maxsize=8192)  # inflect is slow (type-checked calls); names repeat
def _word_is_plural(word: str) -> bool:
    if word in PLURAL_ONLY:
        return True
    if word in NOT_PLURAL or word.endswith(("us", "ss", "is")) or word in MASS_NOUNS:
        return False
    singular = ENGINE.singular_noun(word)
    return bool(singular) and singular != word


def is_plural(name: str) -> bool:
    """Whether the name is already a plural ("cherries", "french fries", "men holding hands", "scissors")."""
    return _word_is_plural(head_word(name))


def is_mass(name: str) -> bool:
    """Whether the name's head is a mass noun ("rice", "cooked rice", "popcorn")."""
    return head_word(name) in MASS_NOUNS


def countable(name: str) -> bool:
    """A singular countable name: it takes a/an and has a plural of its own."""
    return not is_plural(name) and not is_mass(name)


@functools.lru_cache(maxsize=8192)
def plural(name: str) -> str:
    """The plural of a noun phrase: its head noun(s) by inflect ("man running" → "men running", "cherry
    pie" → "cherry pies"); a name already plural, or a mass noun, is returned as it is."""
    if not countable(name):
        return name
    words, _, heads = _parts(name)  # of noun_phrase(name)
    out = list(words)
    for i in heads:
        if not _word_is_plural(out[i]) and out[i] not in MASS_NOUNS:
            out[i] = ENGINE.plural_noun(out[i])
    return " ".join(out)


_NUMERAL = re.compile(r"^(\d+)(st|nd|rd|th)?\b")


@functools.lru_cache(maxsize=8192)  # inflect is slow (type-checked calls); names repeat
def a_or_an(phrase: str) -> str:
    """inflect's indefinite article before `phrase` ("an orange box", "an hourglass", "a one oclock"), a
    leading numeral read as its word ("an 8 ball", "an 18th", "a 1st place medal")."""
    match = _NUMERAL.match(phrase)
    if match:
        number = match.group(1)
        spoken = ENGINE.number_to_words(ENGINE.ordinal(number) if match.group(2) else number)
        article = ENGINE.a(str(spoken)).split(" ", 1)[0]
        return f"{article} {phrase}"
    return ENGINE.a(phrase)


def with_article(name: str, extra: str = "") -> str:
    """`name` as an indefinite noun phrase: "a cat", "an owl", but "cherries" and "rice" bare.
    `extra` words go before the name and take the article ("orange", "box" → "an orange box")."""
    phrase = f"{extra} {noun_phrase(name)}" if extra else noun_phrase(name)
    return a_or_an(phrase) if countable(name) else phrase


@functools.lru_cache(maxsize=256)
def number_word(n: int) -> str:
    """'one', 'two', ..., 'twelve', 'twenty-one' (kept: inflect's checked call costs a millisecond)."""
    return str(ENGINE.number_to_words(n))


def unit_of(name: str) -> str:
    """The unit a plural or mass name is counted in ("pair", "bunch", "set", "group", "portion")."""
    head = head_word(name)
    if head in PAIR_NOUNS:
        return "pair"
    if head in UNITS:
        return UNITS[head]
    if is_mass(name):
        return "portion"
    return "group" if head in PEOPLE_PLURALS else "set"


def counted(n: int, name: str) -> str:
    """'one cat', 'three cats', 'one pair of jeans', 'two bunches of cherries', 'three portions of rice'."""
    if countable(name):
        return f"{number_word(n)} {noun_phrase(name) if n == 1 else plural(name)}"
    unit = unit_of(name)
    return f"{number_word(n)} {unit if n == 1 else ENGINE.plural_noun(unit)} of {name}"


def be(name: str) -> str:
    """The verb that agrees with `name`: "are" for a plural, else "is"."""
    return "are" if is_plural(name) else "is"


def pronoun(name: str) -> str:
    """"them" for a plural name, else "it"."""
    return "them" if is_plural(name) else "it"


def join_words(words: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- colours and backgrounds ---------------------------------------------------------------------------

def colour_name(rgb) -> str:
    """A plain name for any RGB colour (hue, lightness and saturation words): 'white', 'dark blue',
    'light pink', 'brown', 'olive', ... For backgrounds; objects are coloured from the palette instead."""
    r, g, b = (float(c) / 255 for c in rgb[:3])
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    hue = h * 360
    if v < 0.18:
        return "black"
    if s < 0.15 or (v - v * s) > 0.9:  # near-neutral
        return "white" if v > 0.88 else "light gray" if v > 0.65 else "gray" if v > 0.38 else "dark gray"
    if 15 <= hue < 45 and v < 0.62:
        return "brown"
    if 45 <= hue < 70 and v < 0.55:
        return "olive"
    for limit, word in ((15, "red"), (45, "orange"), (70, "yellow"), (165, "green"), (195, "teal"),
                        (255, "blue"), (290, "purple"), (345, "pink"), (361, "red")):
        if hue < limit:
            base = word
            break
    if v < 0.45:
        return f"dark {base}"
    if s < 0.45 and v > 0.75:
        return "pink" if base == "red" else f"light {base}"  # a light red is pink in English
    return base


# Built-in photos (scikit-image samples) by asset name: what the picture shows. Others: "a photo of <name>".
PHOTO_PHRASES = {
    "astronaut": "a photo of an astronaut",
    "chelsea": "a photo of a cat",
    "coffee": "a photo of a cup of coffee",
    "rocket": "a photo of a rocket on its launch pad",
    "motorcycle": "a photo of a motorcycle",
    "motorcycle left": "a photo of a motorcycle",
    "retina": "a photo of a retina",
    "hubble deep field": "a deep-space photo of galaxies",
    "brick": "a photo of a brick wall",
    "grass": "a photo of grass",
    "gravel": "a photo of gravel",
    "camera": "a grayscale photo of a cameraman",
    "moon": "a photo of the moon's surface",
    "coins": "a photo of coins",
    "ihc": "a microscope photo of a stained tissue sample",
    "horse": "a horse silhouette",
    "page": "a photo of a page of text",
}


# A background name whose head (the last word before its first "of") is one of these names a made picture,
# not a photo, and is used as it is written: "abstract art of glowing dots", "a low-poly illustration of …".
ART_HEADS = frozenset("art artwork illustration painting drawing render rendering pattern image".split())
GENERIC_PHOTO_NAMES = frozenset({"", "photo", "picture", "image"})  # an import without a usable file name
ARTICLES = ("a ", "an ", "the ")


def photo_phrase(name: str) -> str:
    """What a photo background shows, from its asset name ("chelsea" → "a photo of a cat"). A name that is
    already a noun phrase keeps its article ("a misty lake at dawn" → "a photo of a misty lake at dawn"); a
    made picture named by its medium is used as written ("abstract art of glowing blue dots")."""
    key = re.sub(r"\s+", " ", name.strip().lower().replace("_", " "))
    if key in PHOTO_PHRASES:
        return PHOTO_PHRASES[key]
    if key in GENERIC_PHOTO_NAMES or not re.search(r"[a-z]", key):  # "000000397133": a number says nothing
        return "a photo"
    if key.split(" of ", 1)[0].rsplit(" ", 1)[-1] in ART_HEADS:
        return key if key.startswith(ARTICLES) or key.split(" of ", 1)[0].endswith("art") else with_article(key)
    return f"a photo of {key}" if key.startswith(ARTICLES) else f"a photo of {with_article(key)}"


def _pair(a: str, b: str, joint: str = " and ") -> str:
    return a if a == b else f"{a}{joint}{b}"


def pattern_phrase(recipe: str, first: str, second: str) -> str:
    """A procedural background by its pattern and (named) colours: "a blue and white checkerboard"."""
    if recipe == "solid":
        return with_article(f"{first} background")
    if recipe == "linear-gradient":
        return with_article(f"{_pair(first, second, '-to-')} gradient")
    if recipe == "radial-gradient":
        return with_article(f"radial {_pair(first, second, '-to-')} gradient")
    if recipe == "soft-noise":
        return with_article(f"soft mottled {_pair(first, second)} texture")
    if recipe == "stripes":
        return f"{_pair(first, second)} stripes"
    if recipe == "checker":
        return with_article(f"{_pair(first, second)} checkerboard")
    if recipe == "dots":
        return with_article(f"{first} background with {second} polka dots") if first != second else \
            with_article(f"{first} dotted background")
    if recipe == "diagonal-stripes":
        return f"{_pair(first, second)} diagonal stripes"
    if recipe == "tiles":
        return f"{first} tiles with {second} grout" if first != second else f"{first} tiles"
    if recipe == "bokeh":
        return with_article(f"{first} background with soft {second} bokeh lights") if first != second else \
            with_article(f"{first} bokeh background")
    if recipe == "waves":
        return f"wavy {_pair(first, second)} stripes"
    if recipe == "clouds":
        return with_article(f"cloudy {_pair(first, second)} texture")
    if recipe == "plaid":
        return with_article(f"{first} plaid with {second} bands") if first != second else with_article(f"{first} plaid")
    return with_article(f"{_pair(first, second)} {recipe.replace('-', ' ')} background")
