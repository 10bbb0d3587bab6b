"""Prompt-quality figures before and after the words/templates change (issue 14), side by side.

    .venv/bin/python bench/prompts.py [--before e675997] [--n 400] [--seeds 0,1]

"Before" is a git commit checked out as a temporary worktree (its own code and committed assets_manifest/),
run with this venv's python, cwd = the worktree and PYTHONPATH = the worktree, so `import collage` is the old
package (checked through `collage.__file__`). "After" is this working tree. Each side generates every task
(`generate_run(..., backend="local", size=256)`, n per task per seed), reads the json back with
`iter_samples(decode=False)` and writes it to a jsonl; the figures are computed here from the jsonl files,
with the same rules for both sides:

1. article errors: after dropping quoted text, every "a X"/"an X" whose article differs from inflect's
   `a(X)`; plus a/an/one directly before an object name whose head noun is plural (inflect's `singular_noun`,
   words in -ss/-us/-is and a few zodiac/latin words kept singular) or a mass noun (MASS below, a fixed list
   written for this bench, not the engine's). Head noun: the word before the first preposition / -ing
   participle / post-modifier ("man tipping hand" -> man, "sunrise over mountains" -> sunrise), else the last.
2. sticker plurals (t2i stickers, facts.counts n >= 2): the words after the count word in the prompt, as many
   as the name has, compared with the name whose head is pluralised by inflect `plural_noun` (a head already
   plural stays as it is); "<count> <unit(s)> of <name>" is accepted as right.
3. prompts containing the literal "on a background".
4. inpaint prompts stating no content: no object name from `objects` in the prompt, and no sentence after the
   first (the instruction) that says anything once the stock words (the, full, image, shows, is, a, on,
   background, gray, area, hides, part, of, ...) are removed.
5. distinct skeletons per (task, op): `skeleton()` replaces quoted strings, drag tuples, object names (and their
   plurals), numbers, colours, sizes, positions, backgrounds and units with placeholders, then collapses lists and
   relation sentences; `template_id` distinct counts where the json has them.
6. inpaint partial wording ("part of", "most of", "half of", "nearly all of") for an object the json says is
   completely hidden, and "completely" for one that is not; needs json `hidden` (n/a where absent).
7. depth prompts with one object that say "back to front".
8. type of `target_object` per task.
9. largest json seed against 2**53.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# --- generation (runs inside each side's interpreter) ------------------------------------------------


def generate(out: str, n: int, seeds: list[int], expect_root: str) -> None:
    import collage
    from collage import api
    from collage.tasks import TASKS

    where = Path(collage.__file__).resolve()
    if not str(where).startswith(str(Path(expect_root).resolve())):
        sys.exit(f"collage resolved to {where}, not under {expect_root}")
    print(f"  collage = {where}", file=sys.stderr)
    out_dir = Path(out)
    jsonl = out_dir / "samples.jsonl"
    with open(jsonl, "w") as f:
        for task in TASKS:
            for seed in seeds:
                run_dir = out_dir / f"{task}-{seed}"
                shutil.rmtree(run_dir, ignore_errors=True)
                api.generate_run(out=str(run_dir), task=task, n=n, seed=seed, size=256, backend="local")
                for s in api.iter_samples(str(run_dir), decode=False):
                    raw = s["json"]
                    f.write((raw.decode() if isinstance(raw, bytes) else raw).strip() + "\n")
                shutil.rmtree(run_dir, ignore_errors=True)


def run_side(label: str, root: Path, out: Path, n: int, seeds: list[int]) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    t0 = time.time()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--generate", str(out), "--n", str(n),
           "--seeds", ",".join(map(str, seeds)), "--expect-root", str(root)]
    subprocess.run(cmd, cwd=root, env=env, check=True)
    print(f"  {label}: generated in {time.time() - t0:.0f}s", file=sys.stderr)
    return [json.loads(line) for line in open(out / "samples.jsonl")]


# --- words ------------------------------------------------------------------------------------------

_ENGINE = None


def engine():
    global _ENGINE
    if _ENGINE is None:
        import inflect
        _ENGINE = inflect.engine()
    return _ENGINE


PREPS = frozenset("in with of on over under at for from by to into without near inside behind above below "
                  "wearing holding showing facing pointing doing playing".split())
SINGULAR_KEEP = frozenset("gemini aries pisces taurus aquarius sagittarius virgo libra scorpio capricorn cancer "
                          "news chess lens canvas atlas gas bus walrus lotus cactus octopus iris hibiscus "
                          "asparagus citrus circus bonus virus platypus rhinoceros hippopotamus abacus".split())
# a fixed list of common mass nouns, written for this bench (the engine keeps its own)
MASS = frozenset("rice popcorn bread butter cheese honey milk salt sugar spaghetti lasagna sushi bacon custard "
                 "lemonade coffee tea beer wine water juice ice fog grass wood paper soap yarn corn broccoli "
                 "toast cereal pasta luggage lightning rain snow money tennis golf badminton bowling hockey "
                 "karate curling garlic meat".split())
ING_NOUNS = frozenset("ring wing king string thing spring ceiling building wedding painting clothing pudding "
                      "icing sling swing evening morning dumpling sapling herring viking".split())
PERSONS = frozenset("man woman person people men women boy girl child baby family couple".split())
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
                "nineteen", "twenty"]


def head_index(tokens: list[str]) -> int:
    for i, t in enumerate(tokens):
        if i == 0:
            continue
        if t in PREPS or t == "and":
            return i - 1
        # an -ing participle after the head ("man dancing", "man tipping hand", "face blowing a kiss"), not an
        # -ing premodifier ("moon viewing ceremony", "grinning squinting face")
        if len(t) > 4 and t.endswith("ing") and t not in ING_NOUNS and (
                i == len(tokens) - 1 or tokens[i - 1] in PERSONS or tokens[i + 1] in PREPS | {"a", "an", "the"}):
            return i - 1
    return len(tokens) - 1


def word_is_plural(word: str) -> bool:
    w = word.lower()
    if w in SINGULAR_KEEP or w.endswith(("ss", "us", "is")):
        return False
    if w in {"people", "men", "women", "children"}:
        return True
    # zero-plural nouns ("aircraft", "blowfish") are singular too
    return bool(engine().singular_noun(w)) and engine().plural_noun(w) != w


def expected_plural(name: str) -> list[str]:
    tokens = name.lower().split()
    h = head_index(tokens)
    if word_is_plural(tokens[h]) or tokens[h] in MASS:
        return tokens
    return tokens[:h] + [engine().plural_noun(tokens[h])] + tokens[h + 1:]


QUOTED = re.compile(r'"[^"]*"')


def article_errors(prompt: str, names: list[str]) -> list[str]:
    text = QUOTED.sub('"Q"', prompt)
    errs = []
    for m in re.finditer(r"\b(a|an)\s+([A-Za-z][\w'-]*)", text, flags=re.I):
        art, word = m.group(1).lower(), m.group(2)
        want = engine().a(word).split()[0].lower()
        if want != art:
            errs.append(f"{m.group(0)!r} (inflect: {want})")
    for name in set(names):
        tokens = name.lower().split()
        head = tokens[head_index(tokens)]
        kind = "plural" if word_is_plural(head) else "mass" if head in MASS else None
        if kind is None:
            continue
        for m in re.finditer(r"\b(a|an|one)\s+" + re.escape(name) + r"\b", text, flags=re.I):
            errs.append(f"{m.group(0)!r} ({kind})")
    return errs


def sticker_plurals(prompt: str, counts: dict) -> list[tuple[str, int, str, str, bool]]:
    """(name, n, written, expected, right) for each name counted >= 2; written '' where not found."""
    words = re.findall(r"[\w'-]+", prompt.lower())
    out = []
    for name, n in counts.items():
        if n < 2:
            continue
        tokens = name.lower().split()
        expected = expected_plural(name)
        numw = {str(n), engine().number_to_words(n)}
        ok = {" ".join(expected)}
        if tokens[0] in {"man", "woman"} and len(expected) > 1:  # "women judges" as well as "woman judges"
            ok.add(" ".join([engine().plural_noun(tokens[0])] + expected[1:]))
        best, best_score = None, -1
        for i, w in enumerate(words):
            if w not in numw:
                continue
            nxt = words[i + 1:i + 1 + len(tokens)]
            if len(words) > i + 2 and words[i + 2] == "of" and " ".join(words[i + 3:i + 3 + len(tokens)]) == name.lower():
                best, best_score = ("unit", words[i + 1] + " of " + name.lower()), 99
                break
            score = 99 if " ".join(nxt) in ok else sum(1 for a, b in zip(nxt, tokens) if a[:3] == b[:3])
            if score > best_score:
                best, best_score = ("plain", " ".join(nxt)), score
        if best is None or (best[0] == "plain" and best_score * 2 < len(tokens)):
            out.append((name, n, "", " ".join(expected), False))
        elif best[0] == "unit":
            out.append((name, n, best[1], " ".join(expected), True))
        else:
            out.append((name, n, best[1], " ".join(expected), best[1] in ok))
    return out


STOCK = frozenset("the full image shows is a an on background gray grey area areas hides hide part of and it "
                  "its this picture".split())


def inpaint_states_content(prompt: str, names: list[str]) -> bool:
    low = prompt.lower()
    if any(re.search(r"\b" + re.escape(nm.lower()) + r"\b", low) for nm in names):
        return True
    sentences = [s for s in re.split(r"(?<=\.)\s+", prompt.strip()) if s]
    for s in sentences[1:]:
        if [w for w in re.findall(r"[a-z'-]+", s.lower()) if w not in STOCK]:
            return True
    return False


# --- skeletons ---------------------------------------------------------------------------------------

COLOURS = ("red orange yellow green teal blue purple pink brown black white gray grey cyan magenta beige gold "
           "silver navy violet olive lavender maroon cream tan coral turquoise lime mint peach khaki "
           "ivory indigo crimson salmon").split()
COLOUR = r"(?:(?:light|dark|deep|pale|bright) )?(?:%s)" % "|".join(COLOURS)
POS = (r"\b(?:at|in|on|to) the (?:(?:top|bottom|upper|lower) (?:left|right)|top|bottom|left|right|center|centre"
       r"|middle)(?: (?:corner|side|edge))?(?: of the (?:image|picture|canvas|frame|scene))?\b")
UNITS = r"\b(?:pieces?|pairs?|bunch(?:es)?|sets?|groups?|portions?|servings?|slices?|bowls?|boxes|plates?|cups?|" \
        r"glass(?:es)?|loaf|loaves|bars?|sheets?|patch(?:es)?|balls?|jars?|piles?|ears?|heads?) of\b"
SLOT_WORDS = frozenset("a an the of is are its part most nearly all small upper lower half completely side "
                       "middle top bottom left right about little much whole entire ( )".split())
SEPARATORS = frozenset({",", "and", ";"})


def name_variants(sample: dict) -> list[str]:
    names = {o.get("name", "") for o in sample.get("objects", []) if o.get("name")}
    facts = sample.get("facts") or {}
    names |= set((facts.get("counts") or {}).keys())
    for sh in facts.get("shapes", []) or []:
        if sh.get("kind"):
            names.add(sh["kind"])
    for key in ("target_object", "new_object"):
        obj = sample.get(key)
        if isinstance(obj, dict) and obj.get("name"):
            names.add(obj["name"])
    for lv in (sample.get("condition") or {}).get("levels", []) or []:
        if lv.get("name"):
            names.add(lv["name"])
    out = set()
    for nm in names:
        out.add(nm.lower())
        out.add(" ".join(expected_plural(nm)))
        toks = nm.lower().split()
        out.add(" ".join(toks[:-1] + [engine().plural_noun(toks[-1])]))
        if toks[0] in {"man", "woman"} and len(toks) > 1:
            out.add(" ".join([engine().plural_noun(toks[0])] + expected_plural(nm)[1:]))
        out.add(nm.lower() + "s")
        out.add(nm.lower() + "es")
    return sorted((v for v in out if v), key=len, reverse=True)


def _text_items(s: str) -> str:
    """t2i text: each 'the text <LIST> in <LIST> letters [with <LIST> outline] [<LIST>]' is one <TXT>."""
    s = re.sub(r"(?:the )?text <LIST> in <LIST> letters(?: with <LIST> outline)?(?: <LIST>)?", "<TXT>", s)
    return re.sub(r"<TXT>(?: <TXT>)+", "<TXT>", s)


def skeleton(sample: dict) -> str:
    return _text_items(_skeleton(sample))


def _skeleton(sample: dict) -> str:
    s = sample["prompt"]
    s = QUOTED.sub("<Q>", s)
    s = re.sub(r"\(\s*-?[\d.]+(?:\s*,\s*-?[\d.]+)+\s*\)", "<P>", s)
    s = re.sub(r"<P>(?:\s*;\s*<P>)*", "<P>", s)
    low_names = name_variants(sample)
    if low_names:
        s = re.sub(r"\b(?:%s)\b" % "|".join(re.escape(v) for v in low_names), "<O>", s, flags=re.I)
    # backgrounds (both sides' styles), before colours are replaced
    s = re.sub(r"\b(?:an? )?(?:[\w-]+ )?photo of [^,.:;()]+?(?=[,.:;()]|$| with | showing | featuring )", "<BG>", s,
               flags=re.I)
    s = re.sub(r"\ban? [\w-]+ silhouette\b", "<BG>", s, flags=re.I)
    s = re.sub(COLOUR, "<C>", s, flags=re.I)
    s = re.sub(r"\b(?:an? )?(?:(?!on\b|over\b|with\b|the\b|of\b|and\b|is\b|are\b)[\w<>-]+ |and ){0,6}"
               r"(?:stripes|checkerboard|gradient|texture|background)(?: with (?:[\w<>-]+ ){1,3}(?:polka )?dots)?\b",
               "<BG>", s, flags=re.I)
    # outpaint sides, agreement and parenthetical parts
    s = re.sub(r"\b(?:left|right|top|bottom)(?:(?:, | and )(?:left|right|top|bottom))* (edge|band)s?\b", r"<SIDES> \1", s)
    s = re.sub(r"\b(band|edge)s\b", r"\1", s)
    s = re.sub(r"\((?:its|the) [^)]*\)", "<PART>", s)
    s = re.sub(r"\bthem\b", "it", s)
    s = re.sub(r"\bare\b", "is", s)
    s = re.sub(POS, "<POS>", s, flags=re.I)
    s = re.sub(UNITS, "<U>", s, flags=re.I)
    s = re.sub(r"\b(?:\d+|%s)\b" % "|".join(NUMBER_WORDS), "<N>", s, flags=re.I)
    s = re.sub(r"\b(?:small|medium|large|big|tiny)\b", "<S>", s, flags=re.I)
    # relation sentences ("The <O> is to the right of the <O>.") collapse into one <REL>
    s = re.sub(r"\s*The <O> (?:is|are) [^.]+? <O>\.", " <REL>.", s)
    s = re.sub(r"(?:<REL>\.\s*)+", "<REL>.", s)
    # lists: maximal runs of placeholders / slot words / separators holding a placeholder
    tokens = re.findall(r"<\w+>|[\w'-]+|[^\w\s]", s)
    out, run = [], []

    def flush():
        while run and run[0] in SEPARATORS:
            out.append(run.pop(0))
        tail = []
        while run and run[-1] in SEPARATORS:
            tail.insert(0, run.pop())
        if any(t.startswith("<") for t in run):
            out.append("<LIST>")
        else:
            out.extend(run)
        out.extend(tail)
        run.clear()

    for t in tokens:
        if t.startswith("<") or t.lower() in SLOT_WORDS or t.lower() in SEPARATORS:
            run.append(t)
        else:
            flush()
            out.append(t)
    flush()
    return " ".join(out)


# --- figures -----------------------------------------------------------------------------------------

PARTIAL = re.compile(r"\b(?:part|most|half|nearly all|bottom|top|left|right|upper|lower) of (?:the )?")


def figures(samples: list[dict]) -> dict:
    f: dict = {"total": len(samples), "per_task": collections.Counter(s["task"] for s in samples)}
    art = [(s, article_errors(s["prompt"], [o["name"] for o in s.get("objects", []) if o.get("name")]))
           for s in samples]
    f["article_bad"] = [(s, e) for s, e in art if e]
    f["article_kinds"] = collections.Counter(
        "plural/mass" if ("(plural)" in x or "(mass)" in x) else "a/an" for _, e in f["article_bad"] for x in e)
    st = [s for s in samples if s["op"] == "stickers"]
    plur = [(s, r) for s in st for r in sticker_plurals(s["prompt"], (s.get("facts") or {}).get("counts") or {})]
    f["plural_total"] = len(plur)
    f["plural_bad"] = [(s, r) for s, r in plur if not r[4]]
    f["bg_literal"] = [s for s in samples if "on a background" in s["prompt"].lower()]
    inp = [s for s in samples if s["task"] == "inpaint"]
    f["inpaint_total"] = len(inp)
    f["inpaint_empty"] = [s for s in inp
                          if not inpaint_states_content(s["prompt"], [o["name"] for o in s.get("objects", [])])]
    f["inpaint_no_objects"] = sum(1 for s in inp if not s.get("objects"))
    skel = collections.defaultdict(set)
    tids = collections.defaultdict(set)
    for s in samples:
        skel[(s["task"], s["op"])].add(skeleton(s))
        if "template_id" in s:
            tids[(s["task"], s["op"])].add(s["template_id"])
    f["skeletons"] = skel
    f["template_ids"] = tids
    # 6
    if any("hidden" in s for s in inp):
        checked, bad = 0, []
        for s in inp:
            low = s["prompt"].lower()
            for h in s.get("hidden", []):
                nm = re.escape(h["name"].lower())
                checked += 1
                partial = re.search(PARTIAL.pattern + nm + r"\b", low)
                complete_words = re.search(r"\b" + nm + r"\b[^,.;]*\bcompletely\b", low) or \
                    re.search(r"\b(?:all of|completely hides?|hides? completely)(?: the)? " + nm, low)
                if h.get("complete") and partial and not complete_words:
                    bad.append((s, h, "partial wording for a complete object"))
                elif not h.get("complete") and complete_words and not partial:
                    bad.append((s, h, "complete wording for a partial object"))
        f["hidden_check"] = (checked, bad, sum(1 for s in inp for h in s.get("hidden", []) if h.get("complete")))
    else:
        f["hidden_check"] = None
    depth1 = [s for s in samples if s["op"] == "depth" and len(s.get("objects", [])) == 1]
    f["depth1"] = (len(depth1), [s for s in depth1 if "back to front" in s["prompt"].lower()])
    f["target_types"] = {t: collections.Counter(type(s["target_object"]).__name__ for s in samples
                                                if s["task"] == t and "target_object" in s)
                         for t in sorted({s["task"] for s in samples if "target_object" in s})}
    f["max_seed"] = max(s["seed"] for s in samples)
    return f


def pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.1f}%)" if n else "0/0"


def ratio(a: float, b: float) -> str:
    if a == 0 and b == 0:
        return "-"
    if b == 0:
        return "after 0"
    return f"x{b / a:.2f}" if a else "before 0"


def report(fb: dict, fa: dict, n_examples: int = 5) -> None:
    rows = []

    def row(label, kb, nb, ka, na, as_pct=True):
        vb = pct(kb, nb) if as_pct else str(kb)
        va = pct(ka, na) if as_pct else str(ka)
        rb, ra = (kb / nb if nb else 0, ka / na if na else 0) if as_pct else (kb, ka)
        rows.append((label, vb, va, ratio(rb, ra)))

    rows.append(("total samples", str(fb["total"]), str(fa["total"]), ""))
    row("1. prompts with an article error", len(fb["article_bad"]), fb["total"], len(fa["article_bad"]), fa["total"])
    row("   a/an mismatches (occurrences)", fb["article_kinds"]["a/an"], 0, fa["article_kinds"]["a/an"], 0, False)
    row("   a/an/one + plural/mass (occurrences)", fb["article_kinds"]["plural/mass"], 0,
        fa["article_kinds"]["plural/mass"], 0, False)
    row("2. wrong sticker plurals (n>=2)", len(fb["plural_bad"]), fb["plural_total"], len(fa["plural_bad"]),
        fa["plural_total"])
    row('3. prompts with "on a background"', len(fb["bg_literal"]), fb["total"], len(fa["bg_literal"]), fa["total"])
    row("4. inpaint prompts stating no content", len(fb["inpaint_empty"]), fb["inpaint_total"],
        len(fa["inpaint_empty"]), fa["inpaint_total"])
    row("   inpaint samples with no objects", fb["inpaint_no_objects"], fb["inpaint_total"], fa["inpaint_no_objects"],
        fa["inpaint_total"])
    keys = sorted(set(fb["skeletons"]) | set(fa["skeletons"]))
    for k in keys:
        b, a = len(fb["skeletons"].get(k, ())), len(fa["skeletons"].get(k, ()))
        tb, ta = len(fb["template_ids"].get(k, ())), len(fa["template_ids"].get(k, ()))
        rows.append((f"5. skeletons {k[0]}.{k[1]} (template_id)", f"{b} ({tb or 'n/a'})", f"{a} ({ta or 'n/a'})",
                     ratio(b, a)))
    for side, f in (("before", fb), ("after", fa)):
        pass
    hb, ha = fb["hidden_check"], fa["hidden_check"]
    rows.append(("6. partial/complete wording mismatches",
                 "n/a (no json hidden)" if hb is None else pct(len(hb[1]), hb[0]),
                 "n/a (no json hidden)" if ha is None else f"{pct(len(ha[1]), ha[0])} [{ha[2]} complete]", ""))
    row("7. one-object depth prompts with 'back to front'", len(fb["depth1"][1]), fb["depth1"][0],
        len(fa["depth1"][1]), fa["depth1"][0])
    for t in sorted(set(fb["target_types"]) | set(fa["target_types"])):
        rows.append((f"8. target_object type, {t}", dict_str(fb["target_types"].get(t)),
                     dict_str(fa["target_types"].get(t)), ""))
    rows.append(("9. max seed (2**53 = 9007199254740992)",
                 f"{fb['max_seed']} ({'>' if fb['max_seed'] >= 2 ** 53 else '<'} 2**53)",
                 f"{fa['max_seed']} ({'>' if fa['max_seed'] >= 2 ** 53 else '<'} 2**53)", ""))
    widths = [max(len(r[i]) for r in rows + [("figure", "before", "after", "after/before")]) for i in range(4)]
    line = lambda r: " | ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    print(line(("figure", "before", "after", "after/before")))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(line(r))

    for side, f in (("before", fb), ("after", fa)):
        print(f"\n== examples, {side} ==")
        print(" 1. article errors:")
        for s, e in f["article_bad"][:n_examples]:
            print(f"    {'; '.join(e)}  <- {s['prompt'][:160]}")
        print(" 2. wrong sticker plurals (name, n, written, expected):")
        for s, r in f["plural_bad"][:n_examples]:
            print(f"    {r[0]!r} x{r[1]}: wrote {r[2]!r}, expected {r[3]!r}  <- {s['prompt'][:120]}")
        print(' 3. "on a background":')
        for s in f["bg_literal"][:3]:
            print(f"    {s['prompt'][:160]}")
        print(" 4. inpaint prompts stating no content:")
        for s in f["inpaint_empty"][:3]:
            print(f"    [{len(s.get('objects', []))} objects] {s['prompt'][:160]}")
        if f["hidden_check"] and f["hidden_check"][1]:
            print(" 6. hidden wording mismatches:")
            for s, h, why in f["hidden_check"][1][:n_examples]:
                print(f"    {why}: {h}  <- {s['prompt'][:200]}")
        if f["depth1"][1]:
            print(" 7. one-object depth with 'back to front':")
            for s in f["depth1"][1][:2]:
                print(f"    {s['prompt'][:160]}")


def dict_str(c) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.items())) if c else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="e675997", help="git commit for the before side")
    ap.add_argument("--n", type=int, default=400, help="samples per task per seed")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir, removed)")
    ap.add_argument("--examples", type=int, default=5)
    ap.add_argument("--dump-skeletons", default=None, help="write skeletons per side/op to this json file")
    ap.add_argument("--generate", help=argparse.SUPPRESS)
    ap.add_argument("--expect-root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    if args.generate:
        generate(args.generate, args.n, seeds, args.expect_root)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-prompts-"))
    work.mkdir(parents=True, exist_ok=True)
    tree = work / f"before-{args.before}"
    if tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), args.before], check=True)
    try:
        print(f"n={args.n} per task per seed, seeds={seeds}", file=sys.stderr)
        before = run_side("before", tree, work / "before", args.n, seeds)
        after = run_side("after", ROOT, work / "after", args.n, seeds)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    fb, fa = figures(before), figures(after)
    print(f"\nbefore = {args.before} (worktree), after = {ROOT} (working tree); n={args.n} per task per seed, "
          f"seeds {seeds}\n")
    report(fb, fa, args.examples)
    if args.dump_skeletons:
        Path(args.dump_skeletons).write_text(json.dumps(
            {side: {f"{k[0]}.{k[1]}": sorted(v) for k, v in f["skeletons"].items()} for side, f in
             (("before", fb), ("after", fa))}, indent=1))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
