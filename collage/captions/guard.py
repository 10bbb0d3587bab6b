"""`check(meta, caption)`: the problems that make a candidate caption unfaithful to a sample (format 2 json).

An empty list means faithful. The guard is rule-based and conservative: it reads the facts from the json
(`facts`, `objects`, `target_object`, `new_object`, `points`, `color_name`, ...) and from the template
`prompt`, and holds the caption against them:

- t2i text: every drawn string verbatim (case and characters kept; quotes optional), its colour (and outline
  colour) near it; a quoted string the sample does not draw is an addition.
- t2i shapes: every (count, colour, kind) group; counts in words or digits ("two", "2", "a pair of",
  "a single", "a"/"an" for one); a kind said with a colour the sample lacks is an addition.
- stickers: every name (singular/plural/counted forms from `collage.words`), its count, every relation
  (RELATION_SYNONYMS below; a relation may also be said the other way round: "b is below a").
- edit: target (and new) object named; the verb's meaning kept (VERBS); replace's direction.
- drag: every "(x, y, dx, dy)" tuple, same numbers (as numbers), same order, nothing extra.
- segdet: the colour and the target; inpaint/reference: every object name the prompt names; outpaint sides.
- nothing added: no asset name (manifest vocabulary, lazily loaded) and no palette colour the sample does not
  have. Allowed: the sample's object names, the words of its background phrase, the colour words of its
  prompt. Names are matched longest first, so "hot dog" is not read as "dog".

Relation synonyms (canonical relation → phrases; `~` = the phrase states the relation with a and b swapped):
  left of: "to the left of", "left of", "on the left of", "on the left side of"; ~right-of phrases
  right of: "to the right of", "right of", "on the right of", "on the right side of"; ~left-of phrases
  above: "above", "over", "higher than", "up from"; ~ "below", "beneath", "under", "underneath", "lower than"
  below: "below", "beneath", "under", "underneath", "lower than"; ~ "above", "over", "higher than"
  next to: "next to", "beside", "alongside", "close to", "near", "by the side of" (symmetric)
  on top of: "on top of", "atop", "on", "over", "resting on", "sitting on", "covering"; ~ "under",
    "beneath", "underneath", "below", "covered by"
  inside: "inside", "inside of", "within", "in"; ~ "around", "containing", "holding", "surrounding"

What it cannot judge: sizes and positions (small/large, "at the top left"), inpaint's hidden fractions and
parts, the depth order of reference depth, fonts and outlines beyond the colour word, word meaning outside
its tables (a negation such as "no cat", a verb it does not know), and vocabulary names that are plain
English words used by the templates (GENERIC: "box", "label", "hand"...), which are not checked as additions.
"""

from __future__ import annotations

import functools
import re

from .. import words as W
from ..palette import PALETTE

SHAPE_KINDS = ("circle", "oval", "square", "rectangle", "triangle", "diamond", "pentagon", "hexagon", "octagon",
               "star", "heart", "cross")
COLOURS = tuple(PALETTE) + ("grey", "olive")
COLOUR_ALIAS = {"grey": "gray"}
SIZES = ("small", "medium", "large", "big", "tiny", "little", "huge", "mid-sized", "medium-sized", "larger")

NUMBER_WORDS = {W.number_word(n): n for n in range(0, 21)}
NUMBER_WORDS.update({"a dozen": 12, "a single": 1, "single": 1, "just one": 1, "only one": 1, "lone": 1,
                     "a lone": 1, "a pair of": 2, "a couple of": 2, "a trio of": 3, "both": 2, "an": 1, "a": 1})
UNIT_WORDS = sorted({"pair", "bunch", "set", "group", "portion", "serving", "bowl", "box", "plate", "cup", "glass",
                     "loaf", "piece", "bar", "slice", "sheet", "patch", "ball", "jar", "pile", "ear", "head"})

_L = r"(?<![\w'-])"
_R = r"(?![\w-])"


def _phrase_re(phrases) -> str:
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


NUM_RE = r"(?:\d+|" + _phrase_re(NUMBER_WORDS) + r")"
UNIT_RE = r"(?:" + "|".join(f"{u}|{W.ENGINE.plural_noun(u)}" for u in UNIT_WORDS) + r")"
# a count right before a mention: "two ", "3 ", "a pair of ", "two bunches of ", "one small "
COUNT_BEFORE = re.compile(_L + r"(" + NUM_RE + r")\s+(?:(" + UNIT_RE + r")\s+of\s+)?(?:(?:" + _phrase_re(SIZES)
                          + r")\s+)?$")

_LEFT = ["to the left of", "left of", "on the left of", "on the left side of", "at the left of"]
_RIGHT = ["to the right of", "right of", "on the right of", "on the right side of", "at the right of"]
_UP = ["above", "higher than", "up from"]
_DOWN = ["below", "beneath", "under", "underneath", "lower than"]
RELATION_SYNONYMS: dict[str, list[tuple[str, bool]]] = {}


def _add(phrases, canon, swapped=False):
    for p in phrases:
        RELATION_SYNONYMS.setdefault(p, []).append((canon, swapped))


_add(_LEFT, "left of"); _add(_RIGHT, "left of", True)
_add(_RIGHT, "right of"); _add(_LEFT, "right of", True)
_add(_UP + ["over"], "above"); _add(_DOWN, "above", True)
_add(_DOWN, "below"); _add(_UP + ["over"], "below", True)
_add(["next to", "beside", "alongside", "close to", "near", "by the side of"], "next to")
_add(["next to", "beside", "alongside", "close to", "near", "by the side of"], "next to", True)
_add(["on top of", "atop", "on", "over", "resting on", "sitting on", "covering", "lying on"], "on top of")
_add(["under", "beneath", "underneath", "below", "covered by"], "on top of", True)
_add(["inside", "inside of", "within", "in", "enclosed by"], "inside")
_add(["around", "containing", "holding", "surrounding", "enclosing"], "inside", True)
RELATION_RE = re.compile(_L + r"(" + _phrase_re(RELATION_SYNONYMS) + r")" + _R)

VERBS = {
    "add": ["add", "adds", "adding", "insert", "inserts", "inserting", "put", "place", "placing", "include",
            "drop in", "introduce", "paste", "stick"],
    "remove": ["remove", "removes", "removing", "erase", "erasing", "delete", "deleting", "take out", "take away",
               "get rid of", "eliminate", "cut out", "wipe out", "clear away", "drop"],
    "replace": ["replace", "replacing", "swap", "swapping", "change", "changing", "turn", "transform", "substitute",
                "exchange", "trade", "in place of", "instead of", "in its place", "where"],
}
VERB_RE = {op: re.compile(_L + r"(?:" + _phrase_re(v) + r")" + _R) for op, v in VERBS.items()}

GENERIC = set("""image picture photo map edge edges area background point points frame box sign text letters
shape shapes sticker stickers outline top bottom left right center side light dark fill paint mark pixel
label design graphic pattern collage reference copy place hole head hand key fire paper glass man person
face eye page one part half rest scale""".split())

TUPLE_RE = re.compile(r"\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*"
                      r"(-?\d+(?:\.\d+)?)\s*\)")
QUOTE_RE = re.compile(r"\"([^\"]+)\"|“([^”]+)”|‘([^’]+)’|(?<![\w])'([^']+)'(?![\w])")


# --- vocabulary -------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _template_words() -> frozenset:
    import importlib
    out = set()
    for task in ("t2i", "edit", "drag", "inpaint", "reference", "segdet"):
        try:
            mod = importlib.import_module(f"collage.tasks.{task}")
        except Exception:  # noqa: BLE001
            continue
        for group in getattr(mod, "TEMPLATES", {}).values():
            for template in group:
                out.update(re.findall(r"[a-z]+", re.sub(r"\{\w+\}", " ", template.lower())))
    return frozenset(out)


@functools.lru_cache(maxsize=1)
def vocabulary() -> tuple["_Vocabulary", dict]:
    """(one regex of every checked name form, longest first; form → name). Asset names of the manifest, their
    plurals, and the shape kinds; names that are template words, colours or GENERIC words are left out."""
    try:
        from ..assets import AssetLibrary
        rows = AssetLibrary(warn=False).rows
        names = {r["name"].lower() for r in rows if r.get("kind") not in ("font", "background")}
    except Exception:  # noqa: BLE001
        names = set()
    skip = _template_words() | GENERIC | set(COLOURS)
    forms: dict[str, str] = {}
    for name in names:
        if not name or name in skip:
            continue
        for form in _forms(name):
            forms.setdefault(form, name)
    return _Vocabulary(forms), forms


class _Vocabulary:
    """`finditer(text)` of the names of `forms`, as one alternation regex of them all, longest first, would find
    them (leftmost, then longest; no overlaps) — by looking up word runs in a dict: the regex of thousands of
    names tried at every position was half of the guard's time."""

    TOKEN = re.compile(r"[\w-]+")

    def __init__(self, forms: dict[str, str]):
        self.forms = forms
        self.longest = max((len(self.TOKEN.findall(f)) for f in forms), default=0)

    def finditer(self, text: str):
        tokens = list(self.TOKEN.finditer(text))
        i = 0
        while i < len(tokens):
            start = tokens[i].start()
            if start and text[start - 1] in "'":  # _L: not right after an apostrophe
                i += 1
                continue
            for n in range(min(self.longest, len(tokens) - i), 0, -1):
                phrase = text[start:tokens[i + n - 1].end()]
                if phrase in self.forms:
                    yield _Match(phrase)
                    i += n
                    break
            else:
                i += 1


class _Match:
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def group(self, _index: int = 1) -> str:
        return self.text


@functools.lru_cache(maxsize=16384)
def _forms(name: str) -> tuple[str, ...]:
    name = name.lower().strip()
    out = {name}
    try:
        out.add(W.noun_phrase(name))
        out.add(W.plural(name))
        out.add(W.plural(W.noun_phrase(name)) if W.countable(name) else W.noun_phrase(name))
    except Exception:  # noqa: BLE001
        pass
    return tuple(sorted((f for f in out if f), key=len, reverse=True))


def _mentions(text: str, name: str) -> list[tuple[int, int, bool]]:
    """(start, end, plural form) of each mention of `name` in lowercase `text`."""
    forms = _forms(name)
    try:
        plural_form = W.plural(name) if W.countable(name) else None
    except Exception:  # noqa: BLE001
        plural_form = None
    pat = re.compile(_L + r"(" + _phrase_re(forms) + r")" + _R)
    return [(m.start(), m.end(), m.group(1) == plural_form and plural_form != name) for m in pat.finditer(text)]


def _mask(text: str, spans) -> str:
    chars = list(text)
    for a, b in spans:
        for i in range(a, b):
            chars[i] = "#" if not chars[i].isspace() else chars[i]
    return "".join(chars)


def _num(word: str) -> int | None:
    word = word.strip()
    if word.isdigit():
        return int(word)
    return NUMBER_WORDS.get(word)


def _count_before(text: str, start: int, name: str) -> int | None:
    m = COUNT_BEFORE.search(text[max(0, start - 40):start])
    if not m:
        return None
    n = _num(m.group(1))
    unit = m.group(2)
    try:
        countable = W.countable(name)
    except Exception:  # noqa: BLE001
        countable = True
    if not countable and m.group(1) in ("a pair of", "a couple of") and W.unit_of(name) == "pair":
        return 1
    if unit and countable and m.group(1) in ("a", "an"):
        return None
    return n


def _colours(text: str) -> list[str]:
    return [COLOUR_ALIAS.get(c, c) for c in re.findall(_L + r"(" + _phrase_re(COLOURS) + r")" + _R, text)]


def _names_of(meta: dict) -> list[str]:
    out = []
    for key in ("target_object", "new_object"):
        rec = meta.get(key)
        if isinstance(rec, dict) and isinstance(rec.get("name"), str):
            out.append(rec["name"])
    for rec in meta.get("objects") or []:
        if isinstance(rec, dict) and isinstance(rec.get("name"), str):
            out.append(rec["name"])
    for rec in meta.get("hidden") or []:
        if isinstance(rec, dict) and isinstance(rec.get("name"), str):
            out.append(rec["name"])
    cond = meta.get("condition")
    if isinstance(cond, dict) and isinstance(cond.get("source"), dict) and isinstance(cond["source"].get("name"), str):
        out.append(cond["source"]["name"])
    facts = meta.get("facts") if isinstance(meta.get("facts"), dict) else {}
    if isinstance(facts.get("counts"), dict):
        out.extend(str(k) for k in facts["counts"])
    return [n for n in dict.fromkeys(out) if n]


# --- the checks -------------------------------------------------------------------------------------------

def check(meta, caption) -> list[str]:
    """The problems that make `caption` unfaithful to the sample `meta` (its json); [] = faithful."""
    if not isinstance(caption, str):
        return [f"caption is not text ({type(caption).__name__})"]
    if not caption.strip():
        return ["caption is empty"]
    if not isinstance(meta, dict):
        return ["sample metadata is not a dict"]
    try:
        return _check(meta, caption)
    except Exception as exc:  # noqa: BLE001 - a guard never raises; an error is a problem
        return [f"guard could not read the sample ({type(exc).__name__}: {exc})"]


def _check(meta: dict, caption: str) -> list[str]:
    problems: list[str] = []
    task, op = meta.get("task"), meta.get("op")
    prompt = meta.get("prompt") if isinstance(meta.get("prompt"), str) else ""
    facts = meta.get("facts") if isinstance(meta.get("facts"), dict) else {}
    masked = caption  # caption with quoted text / drag tuples blanked, same length
    text_mode = task == "t2i" and op == "text"

    # quoted text (t2i text): verbatim
    texts = [t for t in (facts.get("texts") or []) if isinstance(t, dict) and isinstance(t.get("text"), str)]
    spans = []
    for t in texts:
        s = t["text"]
        found = [m for m in re.finditer(r"(?<![\w])" + re.escape(s) + r"(?![\w])", caption)]
        if not found:
            problems.append(f"missing quoted text '{s}'")
        spans.extend((m.start(), m.end()) for m in found)
    drawn = {t["text"] for t in texts}
    for m in QUOTE_RE.finditer(caption):
        q = next(g for g in m.groups() if g is not None)
        spans.append((m.start(), m.end()))
        if text_mode and q not in drawn and not any(q in d or d in q for d in drawn):
            problems.append(f"adds quoted text '{q}'")
    tuples = list(TUPLE_RE.finditer(caption))
    spans.extend((m.start(), m.end()) for m in tuples)
    masked = _mask(caption, spans)
    low = masked.lower()

    if text_mode:
        starts = sorted((caption.find(t["text"]), i) for i, t in enumerate(texts) if caption.find(t["text"]) >= 0)
        bounds = [s for s, _ in starts] + [len(caption)]
        for k, (s, i) in enumerate(starts):
            t = texts[i]
            before = low[bounds[k - 1] + len(texts[starts[k - 1][1]]["text"]) if k else 0:s][-40:]
            window = before + low[s:bounds[k + 1]]
            said = set(_colours(window))
            for key in ("color", "outline"):
                want = t.get(key)
                if isinstance(want, str) and want and want not in said:
                    problems.append(f"colour of text '{t['text']}': {want} expected"
                                    + (f", {'/'.join(sorted(said))} said" if said else ", not said"))

    # drag tuples
    if task == "drag" or TUPLE_RE.search(prompt):
        want = [tuple(float(x) for x in m.groups()) for m in TUPLE_RE.finditer(prompt)]
        got = [tuple(float(x) for x in m.groups()) for m in tuples]
        if want != got:
            if len(want) != len(got):
                problems.append(f"drag points: {len(want)} tuples expected, {len(got)} said")
            else:
                for k, (a, b) in enumerate(zip(want, got)):
                    if a != b:
                        problems.append(f"drag point {k + 1}: {a} expected, {b} said")

    # names
    names = _names_of(meta)
    if text_mode:
        names = [n for n in names if n not in drawn]
    if task == "t2i" and op == "shapes":
        names = []
    prompt_low = prompt.lower()
    required = []
    for rec_key in ("target_object", "new_object"):
        rec = meta.get(rec_key)
        if isinstance(rec, dict) and isinstance(rec.get("name"), str):
            required.append(rec["name"])
    if isinstance(facts.get("counts"), dict):
        required.extend(str(k) for k in facts["counts"])
    required.extend(n for n in names if _mentions(prompt_low, n.lower()))
    required = list(dict.fromkeys(n for n in required if n))
    # mask allowed names longest first (so "hot dog" hides "dog")
    allowed_spans = []
    scan = low
    name_spans: dict[str, list] = {}
    for n in sorted(names, key=len, reverse=True):
        ms = _mentions(scan, n.lower())
        name_spans[n] = ms
        scan = _mask(scan, [(a, b) for a, b, _ in ms])
        allowed_spans.extend((a, b) for a, b, _ in ms)
    for n in required:
        if not name_spans.get(n) and not _mentions(low, n.lower()):
            problems.append(f"missing object '{n}'")

    # sticker counts and relations
    if task == "t2i" and op == "stickers":
        counts = facts.get("counts") if isinstance(facts.get("counts"), dict) else {}
        for n, want in counts.items():
            ms = name_spans.get(n) or _mentions(low, str(n).lower())
            if not ms:
                continue
            said = [c for c in (_count_before(low, a, str(n)) for a, _, _ in ms) if c is not None]
            if said:
                if want not in said:
                    problems.append(f"count of {n}: {want} expected, {said[0]} said")
            else:  # the template counts every name; a caption that only says "the X" drops the count
                problems.append(f"count of {n}: {want} expected, not said")
        for rel in facts.get("relations") or []:
            if isinstance(rel, (list, tuple)) and len(rel) == 3:
                p = _relation_problem(low, name_spans, *[str(x) for x in rel])
                if p:
                    problems.append(p)

    # shapes
    if task == "t2i" and op == "shapes":
        problems.extend(_shape_problems(low, facts.get("shapes") or []))

    # edit verbs
    if task == "edit" and op in VERBS:
        problems.extend(_verb_problems(low, op, meta))

    # segdet colour
    if task == "segdet":
        want = meta.get("color_name")
        if isinstance(want, str) and want not in _colours(low):
            problems.append(f"missing colour '{want}'")

    # outpaint sides
    if task == "inpaint" and op == "outpaint":
        for side in meta.get("sides") or []:
            if isinstance(side, str) and not re.search(_L + re.escape(side) + _R, low):
                problems.append(f"missing side '{side}'")

    # reference seg legend: each colour with its object
    if task == "reference" and op == "seg":
        for colour, _, name in re.findall(r"(\w+) (is|are) the (.+?)(?=,| and |$| \()", prompt.lower()):
            if colour in COLOURS:
                ok = any(colour in _colours(low[max(0, a - 30):b + 30]) for a, b, _ in _mentions(low, name))
                if name != "background" and not ok and _mentions(low, name):
                    problems.append(f"colour of {name}: {colour} expected near it")
                elif name == "background" and colour not in _colours(low):
                    problems.append(f"missing colour '{colour}' (background)")

    # nothing added: names
    pattern, forms = vocabulary()
    background = meta.get("background") if isinstance(meta.get("background"), str) else ""
    bg_words = set(re.findall(r"[\w'-]+", background.lower()))
    allowed_names = {n.lower() for n in names}
    if task == "t2i" and op == "shapes":
        allowed_names |= {str(s.get("kind")) for s in facts.get("shapes") or [] if isinstance(s, dict)}
    rest = _mask(low, allowed_spans)
    prompt_rest = prompt_low  # the prompt with the sample's own names blanked: what else it names
    for n in sorted(names, key=len, reverse=True):
        prompt_rest = _mask(prompt_rest, [(a, b) for a, b, _ in _mentions(prompt_rest, n.lower())])
    for m in pattern.finditer(rest):
        name = forms[m.group(1)]
        if name in allowed_names or set(m.group(1).split()) <= bg_words or m.group(1) in background.lower():
            continue
        if re.search(_L + re.escape(m.group(1)) + _R, prompt_rest):
            continue
        problems.append(f"adds object '{m.group(1)}'")
    # nothing added: colours
    allowed_colours = set(_colours(prompt_low)) | set(_colours(background.lower()))
    for t in texts:
        allowed_colours |= {t.get("color"), t.get("outline")}
    for s in facts.get("shapes") or []:
        if isinstance(s, dict):
            allowed_colours.add(s.get("color"))
    allowed_colours.add(meta.get("color_name"))
    for c in dict.fromkeys(_colours(rest)):
        if c not in allowed_colours:
            problems.append(f"adds colour '{c}'")
    # no position added (a dropped one leaves the caption less specific, not false)
    problems.extend(_position_problems(_mask_quoted(prompt_low), low))
    return list(dict.fromkeys(problems))


POSITIONS = {"top left": "top left", "upper left": "top left", "top right": "top right", "upper right": "top right",
             "bottom left": "bottom left", "lower left": "bottom left", "bottom right": "bottom right",
             "lower right": "bottom right", "top": "top", "bottom": "bottom", "left": "left", "right": "right",
             "center": "center", "centre": "center", "middle": "center"}
POSITION_RE = re.compile(_L + r"(" + _phrase_re(POSITIONS) + r")" + _R)


def _mask_quoted(text: str) -> str:
    return _mask(text, [(m.start(), m.end()) for m in QUOTE_RE.finditer(text)])


OF_THE_FRAME_RE = re.compile(r"\s+of (?:the|this) (?:picture|image|canvas|frame|photo|scene|page)" + _R)
RIGHT_AS_ADVERB_RE = re.compile(_L + r"right(?= (?:in|at|on|by|next|beside|above|below|under|over|behind|there|here|"
                                r"where|inside|against|across|along)" + _R + r")")


def _positions(text: str) -> list[str]:
    """Absolute positions said ("at the top left", "on the left of the picture"), relations ("left of the cat")
    and "right" as an adverb ("right in the middle") aside."""
    text = RIGHT_AS_ADVERB_RE.sub("#####", OF_THE_FRAME_RE.sub("", text))
    text = _mask(text, [(m.start(), m.end()) for m in RELATION_RE.finditer(text)])
    return sorted(POSITIONS[m.group(1)] for m in POSITION_RE.finditer(text))


def _position_problems(prompt_low: str, low: str) -> list[str]:
    """A position the prompt does not state (more often than it does) is an addition. A dropped one is not a
    problem: the caption is less specific, not false."""
    want, said = _positions(prompt_low), _positions(low)
    problems = []
    extra = list(said)
    for p in want:
        if p in extra:
            extra.remove(p)
    problems.extend(f"adds position '{p}'" for p in dict.fromkeys(extra))
    return problems


def _relation_problem(low: str, name_spans: dict, a: str, rel: str, b: str) -> str | None:
    sa = name_spans.get(a) or _mentions(low, a.lower())
    sb = name_spans.get(b) or _mentions(low, b.lower())
    if not sa or not sb:
        return None  # a missing object is reported on its own
    said = set()
    best = None
    for xa, ya, _ in sa:
        for xb, yb, _ in sb:
            if ya <= xb:
                gap, forward = low[ya:xb], True
            elif yb <= xa:
                gap, forward = low[yb:xa], False
            else:
                continue
            if len(gap) > 60 or re.search(r"[.;]", gap):
                continue
            found = RELATION_RE.findall(gap)
            if not found:
                continue
            phrase = max(found, key=len)
            facts = set()
            for canon, swapped in RELATION_SYNONYMS[phrase]:
                first_is_a = forward != swapped
                facts.add((canon, first_is_a))
            if best is None or len(gap) < best[0]:
                best = (len(gap), phrase, facts)
            said |= facts
    if best is None:
        # "to the left of the b is the a" / "left of the b, the a"
        for xb, yb, _ in sb:
            head = low[max(0, xb - 30):xb]
            m = re.search(r"(" + _phrase_re(RELATION_SYNONYMS) + r")\s+(?:the\s+|an?\s+)?$", head)
            if m and any(xa > yb and not re.search(r"[.;]", low[yb:xa]) for xa, _, _ in sa):
                said |= {(c, not s) for c, s in RELATION_SYNONYMS[m.group(1)]}
                best = (0, m.group(1), said)
        if best is None:
            return f"missing relation: {a} {rel} {b}"
    if (rel, True) in said or (rel == "next to" and said & {("next to", True), ("next to", False)}):
        return None
    return f"relation of {a} and {b}: '{rel}' expected, '{best[1]}' said"


def _shape_problems(low: str, shapes: list) -> list[str]:
    problems = []
    want = {}
    for s in shapes:
        if isinstance(s, dict):
            want[(str(s.get("color")), str(s.get("kind")))] = s.get("count")
    kinds = {k for _, k in want} | set(SHAPE_KINDS)
    forms = {}
    for k in kinds:
        forms[k] = (k, False)
        forms[W.plural(k)] = (k, True)
    pat = re.compile(_L + r"(" + _phrase_re(forms) + r")" + _R)
    said: dict[tuple, list] = {}
    for m in pat.finditer(low):
        kind, plural = forms[m.group(1)]
        clause = re.split(r"[,;:.()]|\band\b|\bwith\b|\bof\b(?!\s+(?:" + "|".join(COLOURS) + r"|\w+\s+" + kind + r"))",
                          low[max(0, m.start() - 60):m.start()])[-1]
        cols = _colours(clause)
        after = re.match(r"\s*(?:,\s*)?(?:in|coloured|colored|painted|all)?\s*(" + _phrase_re(COLOURS) + r")\b",
                         low[m.end():m.end() + 25])
        colour = cols[-1] if cols else (COLOUR_ALIAS.get(after.group(1), after.group(1)) if after else None)
        nums = re.findall(_L + NUM_RE + _R, clause)
        count = _num(nums[-1]) if nums else (None if plural else 1)
        if colour is None:
            continue
        said.setdefault((colour, kind), []).append(count)
    for (colour, kind), n in want.items():
        name = f"{colour} {W.plural(kind)}"
        got = said.get((colour, kind))
        if not got:
            problems.append(f"missing shapes: {n} {name}")
            continue
        known = [c for c in got if c is not None]
        if not known:
            problems.append(f"count of {name}: {n} expected, not said")
        elif n not in known:
            problems.append(f"count of {name}: {n} expected, {known[0]} said")
    for (colour, kind) in said:
        if (colour, kind) not in want:
            problems.append(f"adds shapes: {colour} {kind}")
    return problems


def _verb_problems(low: str, op: str, meta: dict) -> list[str]:
    has = {k: bool(r.search(low)) for k, r in VERB_RE.items()}
    if re.search(_L + r"(?:take|takes|taking|get|cut|wipe|clear)\s+(?:the|this|that)\s+[^.;]{1,60}?\s+out" + _R, low):
        has["remove"] = True
    problems = []
    if op == "add":
        if not has["add"]:
            problems.append("edit verb: add expected, not said")
        if has["remove"]:
            problems.append("edit verb: add expected, remove said")
    elif op == "remove":
        if not has["remove"]:
            problems.append("edit verb: remove expected, not said")
        if re.search(_L + r"(?:add|adds|adding|insert|inserting|include|introduce)" + _R, low):
            problems.append("edit verb: remove expected, add said")
    elif op == "replace":
        if not (has["replace"] or (has["add"] and has["remove"])):
            problems.append("edit verb: replace expected, "
                            + ("remove said" if has["remove"] else "add said" if has["add"] else "not said"))
        old = (meta.get("target_object") or {}).get("name")
        new = (meta.get("new_object") or {}).get("name")
        m = re.search(_L + r"(replace|swap|change|turn|exchange|transform)" + _R + r"(.*?)" + _L
                      + r"(with|for|into|by|to)" + _R + r"(.*)", low)
        if m and isinstance(old, str) and isinstance(new, str) and old != new:
            in_first = lambda n: bool(_mentions(m.group(2), n.lower()))  # noqa: E731
            if in_first(new) and not in_first(old):
                problems.append(f"replace direction: the {old} becomes the {new}, said the other way")
    return problems
