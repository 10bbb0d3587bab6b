"""Measure the caption guard (`collage.captions.check`) on a labelled set of captions.

For ~20 samples per task/op (fixed seeds) it writes 3 rule-made faithful paraphrases and planted-error
variants (one error each), adds the hand-written paraphrases of tests/data/guard/handwritten.jsonl and SmolLM2-135M's labelled answers
(tests/data/guard/real_model.jsonl), saves the
set as tests/data/guard/set.jsonl, and prints per task the faithful accepted % and planted errors rejected %.

    .venv/bin/python bench/guard.py            # regenerate the set and measure
    .venv/bin/python bench/guard.py --measure  # measure the stored set only
"""

from __future__ import annotations

import json
import random
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / "tests" / "data" / "guard"
OPS = {"t2i": ["text", "shapes", "stickers"], "edit": ["add", "remove", "replace"],
       "drag": ["translate", "scale", "rotate"], "inpaint": ["inpaint", "outpaint"],
       "reference": ["canny", "depth", "seg", "subject"], "segdet": ["segment", "detect"]}
N, SEED = 20, 7
DROP_KEYS = ("matrix", "placed_objects", "transform", "boxes", "caption", "caption_source", "bboxes", "rgb", "font",
             "font_size", "hidden_objects", "bbox", "bucket", "sides_px")

from collage import words as W  # noqa: E402
from collage.palette import PALETTE  # noqa: E402

NUMS = {W.number_word(n): n for n in range(1, 13)}


def slim(meta: dict) -> dict:
    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if k not in DROP_KEYS}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x
    return clean(meta)


def generate() -> list[dict]:
    from collage.api import generate_run, iter_samples
    metas = []
    with tempfile.TemporaryDirectory() as tmp:
        for task, ops in OPS.items():
            for op in ops:
                out = f"{tmp}/{task}_{op}"
                generate_run(out, task=task, ops=op, n=N, seed=SEED, size=128, backend="local")
                metas.extend(slim(s["json"]) for s in iter_samples(out, decode=True))
    return metas


# --- faithful paraphrases ------------------------------------------------------------------------------

SWAPS = [  # (pattern, replacements) applied by rule; each keeps the meaning
    (r"\bto the left of\b", ["left of", "on the left of"]),
    (r"\bto the right of\b", ["right of", "on the right of"]),
    (r"\bbelow\b", ["beneath", "under"]), (r"\babove\b", ["higher than", "above"]),
    (r"\bnext to\b", ["beside", "alongside"]),
    (r"^Remove\b", ["Erase", "Delete"]), (r"^Erase\b", ["Remove", "Delete"]),
    (r"^Insert\b", ["Add", "Place"]), (r"^Add\b", ["Insert", "Put"]),
    (r"^Swap\b", ["Exchange"]), (r"^Change (the .+?) into\b", [r"Turn \1 into"]),
    (r"^Replace (the .+?) with\b", [r"Swap \1 for", r"Substitute in place of \1"]),
    (r" of the picture\b", [""]), (r" of the image\b", [""]), (r" from the picture\b", [""]),
    (r"^An image with\b", ["A picture with", "An illustration with"]),
    (r"^A collage of\b", ["A sticker collage of", "Stickers showing"]),
    (r"^Stickers of\b", ["A set of stickers of"]),
    (r"^Drag the (.+?):", [r"Move the \1 using these points:", r"Drag points for the \1:"]),
    (r"^Generate an image from this\b", ["Create a picture from this", "Make an image from this"]),
    (r"^Segment the\b", ["Find the"]), (r"^Paint the\b", ["Color the"]),
    (r"^Fill in the gray area\b", ["Complete the gray area", "Fill the gray region"]),
    (r"\bshowing\b", ["with"]), (r"\bfeaturing\b", ["showing"]),
]


def invert_relation(sentence: str) -> str | None:
    inv = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below",
           "below": "above", "next to": "next to"}
    m = re.fullmatch(r"The (.+?) (is|are) (to the left of|to the right of|above|below|next to) the (.+?)\.", sentence)
    if not m:
        return None
    a, _, rel, b = m.groups()
    return f"The {b} {W.be(b)} {inv[rel]} the {a}."


def paraphrase(meta: dict, rng: random.Random, k: int) -> str:
    text = meta["prompt"]
    # sticker / relation sentences: reorder, invert
    parts = re.split(r"(?<=\.) (?=The )", text)
    if len(parts) > 1:
        head, rels = parts[0], parts[1:]
        rels = [(invert_relation(s) or s) if rng.random() < 0.5 else s for s in rels]
        rng.shuffle(rels)
        text = " ".join([head] + rels)
    for pat, reps in SWAPS:
        if re.search(pat, text) and rng.random() < 0.7:
            text = re.sub(pat, rng.choice(reps), text, count=1)
    if k == 1:  # counts as digits (outside quotes)
        pieces = re.split(r"(\"[^\"]*\"|\([^)]*\d[^)]*\))", text)
        for i in range(0, len(pieces), 2):
            pieces[i] = re.sub(r"\b(two|three|four|five|six)\b(?= \w)",
                               lambda m: str(NUMS[m.group(1)]), pieces[i])
        text = "".join(pieces)
    if k == 2:  # "one X" -> "a X"; strip the leading template noun phrase, add "There is/are"
        text = re.sub(r"\bone (?!(?:at|on|in)\b)(\w[\w' -]*?)(?=[ ,.)]| and)",
                      lambda m: W.a_or_an(m.group(1)) if not m.group(1).split()[0] in ("pair", "bunch", "set")
                      else "a " + m.group(1), text, count=2)
        if meta["task"] == "t2i" and rng.random() < 0.5:
            text = "Please draw this: " + text[0].lower() + text[1:]
    return text


# --- planted errors ------------------------------------------------------------------------------------

def asset_names() -> list[str]:
    from collage.captions.guard import vocabulary
    _, forms = vocabulary()
    return sorted({n for n in forms.values() if " " not in n or len(n) < 14})


def names_in(meta, text):
    from collage.captions.guard import _mentions, _names_of
    return [n for n in _names_of(meta) if _mentions(text.lower(), n.lower())]


def sub_once(text, pat, rep, rng):
    ms = list(re.finditer(pat, text))
    if not ms:
        return None
    m = rng.choice(ms)
    r = rep(m) if callable(rep) else rep
    return text[:m.start()] + r + text[m.end():]


def errors(meta: dict, base: str, rng: random.Random, vocab: list[str]) -> list[tuple[str, str]]:
    out = []
    task, op = meta["task"], meta["op"]
    facts = meta.get("facts") or {}
    from collage.captions.guard import _names_of
    own = set(n.lower() for n in _names_of(meta)) | set((meta.get("background") or "").split())
    others = [v for v in vocab if v not in own and not any(v in o or o in v for o in own)]
    low_bg = (meta.get("background") or "").lower()
    # count changed
    if task == "t2i" and op in ("shapes", "stickers"):
        t = sub_once(base, r"\b(one|two|three|four|five|[1-9])\b(?= (?!at|on|in)\w)",
                     lambda m: {"one": "two", "two": "three", "three": "two", "four": "five", "five": "four"}.get(
                         m.group(1), str((int(m.group(1)) % 5) + 1) if m.group(1).isdigit() else "two"), rng)
        if t and t != base:
            out.append(("count", t))
    # colour changed
    cols = [c for c in PALETTE if re.search(rf"\b{c}\b", base) and c not in low_bg]
    if cols and task in ("t2i", "segdet", "reference"):
        c = rng.choice(cols)
        new = rng.choice([x for x in PALETTE if x != c and not re.search(rf"\b{x}\b", meta["prompt"])] or ["teal"])
        out.append(("colour", re.sub(rf"\b{c}\b", new, base, count=1)))
    # quoted string altered
    for t in facts.get("texts") or []:
        s = t["text"]
        letters = [i for i, ch in enumerate(s) if ch.isalpha()]
        if letters and s in base:
            i = rng.choice(letters)
            ch = "x" if s[i].lower() != "x" else "y"
            ch = ch.upper() if s[i].isupper() else ch
            out.append(("quoted", base.replace(s, s[:i] + ch + s[i + 1:], 1)))
            break
    # relation flipped
    flips = {"to the left of": "to the right of", "to the right of": "to the left of", "left of": "right of",
             "right of": "left of", "above": "below", "below": "above", "beneath": "above", "under": "over",
             "higher than": "lower than", "next to": "above", "beside": "below", "alongside": "above",
             "on top of": "under", "inside": "around"}
    if facts.get("relations"):
        pat = r"\b(" + "|".join(sorted(map(re.escape, flips), key=len, reverse=True)) + r")\b"
        t = sub_once(base, pat, lambda m: flips[m.group(1)], rng)
        if t:
            out.append(("relation", t))
    named = [n for n in names_in(meta, base) if task != "t2i" or op == "stickers"]
    if task == "t2i" and op == "text":
        named = []
    # object swapped
    if named and others:
        n = rng.choice(named)
        new = rng.choice(others)
        t = re.sub(rf"(?<![\w-]){re.escape(n)}(?![\w-])", new, base, count=1)
        t = re.sub(rf"(?<![\w-]){re.escape(W.plural(n))}(?![\w-])", W.plural(new), t, count=1) if t == base else t
        if t != base:
            out.append(("swap", t))
    if task == "t2i" and op == "shapes":
        kinds = [s["kind"] for s in facts["shapes"]]
        k = rng.choice(kinds)
        new = rng.choice([x for x in ("hexagon", "circle", "star", "heart", "oval", "cross") if x not in kinds])
        t = re.sub(rf"\b{k}(s|es)?\b", lambda m: new + ("s" if m.group(1) else ""), base, count=1)
        out.append(("swap", t))
    # object dropped
    once = [n for n in named if len(re.findall(rf"(?<![\w-])(?:{re.escape(n)}|{re.escape(W.plural(n))})(?![\w-])", base)) == 1]
    if once:
        n = rng.choice(once)
        forms = sorted({n, W.plural(n)}, key=len, reverse=True)
        alt = "|".join(re.escape(f) for f in forms)
        art = r"(?:(?:one|two|three|four|five|\d|an?|the)\s+(?:(?:pairs?|bunch(?:es)?|sets?|groups?|portions?|" \
              r"servings?|bowls?|boxes|cups?|glass(?:es)?|pieces?|slices?|heads?)\s+of\s+)?)?"
        t = re.sub(rf"{art}(?:{alt})(?![\w-]), ", "", base, count=1)
        if t == base:
            t = re.sub(rf",? {art}(?:{alt})(?![\w-])(?= and|,)", "", base, count=1)
        if t == base:
            t = re.sub(rf"(?:,| and)\s+{art}(?:{alt})(?![\w-])", "", base, count=1)
        if t == base:
            t = re.sub(rf"{art}(?:{alt})(?![\w-])", "it" if task in ("edit", "drag", "segdet") else "something", base,
                       count=1)
        if t != base:
            out.append(("drop", t))
    # drag number changed
    if task == "drag":
        t = sub_once(base, r"\d\.(\d{3})", lambda m: m.group(0)[:-1] + str((int(m.group(0)[-1]) + 3) % 10), rng)
        if t:
            out.append(("drag", t))
    # target swapped for another object of the scene
    tgt = (meta.get("target_object") or {}).get("name")
    if tgt and tgt in base:
        scene = [o["name"] for o in meta.get("objects") or [] if o["name"] != tgt and o["name"] not in
                 ((meta.get("new_object") or {}).get("name") or "") and tgt not in o["name"] and o["name"] not in tgt]
        if scene and op not in ("add",):
            out.append(("target", re.sub(rf"(?<![\w-]){re.escape(tgt)}(?![\w-])", rng.choice(scene), base, count=1)))
    # edit verb flipped
    if task == "edit":
        verbs = {"add": "Remove the object: ", "remove": "Add ", "replace": "Remove "}
        if op == "remove":
            t = re.sub(r"^\w+", "Add", base, count=1)
            t = re.sub(r"\b(out of|from) the (image|picture)", "to the \\2", t)
        elif op == "add":
            t = re.sub(r"^\w+", "Remove", base, count=1)
        else:
            t = f"Remove the {tgt}." if tgt else None
        if t and t != base:
            out.append(("verb", t))
    # extra object added
    if others:
        new = rng.choice(others)
        if base.endswith(")"):
            t = re.sub(r"^(\w+ the [^:]+?)(:)", lambda m: f"{m.group(1)} next to {W.with_article(new)}:", base, count=1)
        else:
            t = base.rstrip(".") + f", with {W.with_article(new)} as well."
        out.append(("extra", t))
    return out


def build() -> list[dict]:
    rng = random.Random(SEED)
    vocab = asset_names()
    rows = []
    for meta in generate():
        for k in range(3):
            rows.append({"meta": meta, "caption": paraphrase(meta, rng, k), "label": "faithful", "kind": f"rule{k}"})
        base = paraphrase(meta, rng, rng.randrange(3)) if rng.random() < 0.5 else meta["prompt"]
        if "\"" in meta["prompt"] and base.count("\"") != meta["prompt"].count("\""):
            base = meta["prompt"]
        for kind, cap in errors(meta, base, rng, vocab):
            if cap and cap != base:
                rows.append({"meta": meta, "caption": cap, "label": "error", "kind": kind})
    for extra in ("handwritten.jsonl", "real_model.jsonl"):  # hand-written paraphrases; SmolLM2's labelled answers
        path = DATA / extra
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    row.setdefault("kind", "hand")
                    rows.append(row)
    return rows


def measure(rows: list[dict], verbose: bool = False) -> dict:
    from collage.captions import check
    stats = defaultdict(lambda: {"faithful": [0, 0], "error": [0, 0]})
    misses = []
    for row in rows:
        problems = check(row["meta"], row["caption"])
        ok = (not problems) if row["label"] == "faithful" else bool(problems)
        for key in (row["meta"].get("task", "?"), "overall"):
            s = stats[key][row["label"]]
            s[0] += ok
            s[1] += 1
        if not ok:
            misses.append((row, problems))
    if verbose:
        for row, problems in misses[:40]:
            print("MISS", row["label"], row.get("kind"), row["meta"]["task"], row["meta"]["op"], "|",
                  row["caption"], "|", problems)
    return dict(stats)


def report(stats: dict) -> None:
    print(f"{'task':10} {'faithful accepted':>24} {'errors rejected':>24}")
    for task in sorted(stats, key=lambda t: (t == "overall", t)):
        f, e = stats[task]["faithful"], stats[task]["error"]
        pf = 100 * f[0] / f[1] if f[1] else float("nan")
        pe = 100 * e[0] / e[1] if e[1] else float("nan")
        print(f"{task:10} {f[0]:>6}/{f[1]:<6} {pf:6.1f} %   {e[0]:>6}/{e[1]:<6} {pe:6.1f} %")


def main() -> None:
    out = DATA / "set.jsonl"
    if "--measure" in sys.argv:
        rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    else:
        rows = build()
        DATA.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(f"wrote {len(rows)} rows to {out} ({out.stat().st_size / 1e6:.2f} MB)")
    report(measure(rows, verbose="-v" in sys.argv))


if __name__ == "__main__":
    main()
