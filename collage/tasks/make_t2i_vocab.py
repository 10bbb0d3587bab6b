"""Writes collage/tasks/t2i_vocab.py, the larger word list the t2i `text` op draws from.

Run `python -m collage.tasks.make_t2i_vocab` on a machine with Debian's `wordnet-base` and `wamerican`; the
output is committed, so sample generation never depends on what a machine has installed (the same seed gives
the same bytes everywhere). The rules, in order:

- Common: the word's senses are tagged at least MIN_TAGS times in WordNet's SemCor counts (cntlist.rev), as a
  noun, verb or adjective (adverbs are left out).
- Spelled as a plain lower-case word in wamerican's /usr/share/dict/words (SCOWL): no proper nouns, no
  possessives; only ASCII letters, MIN_LEN-MAX_LEN long (so the fonts' glyph check is unchanged).
- Clean: no sense of the word carries a WordNet usage label of obscenity, vulgarism, ethnic slur,
  disparagement, derogation, profanity or slang; its senses are not people or body parts (noun.person,
  noun.body: where insults and anatomy live) unless the hand-written list already has it; and it is not in
  DENY (violence, death, drugs, sex, religion, illness, insults WordNet does not label).

Sources: WordNet 3.0 (Princeton University, WordNet 3.0 licence, permissive) and SCOWL (wamerican,
permissive, see /usr/share/doc/wamerican/copyright); a word list drawn from them carries their notices in the
generated module's docstring.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

WORDNET = Path("/usr/share/wordnet")
DICT = Path("/usr/share/dict/words")
OUT = Path(__file__).with_name("t2i_vocab.py")
MIN_TAGS = 6
MIN_LEN, MAX_LEN = 3, 11
BAD_DOMAINS = {"obscenity", "vulgarism", "ethnic_slur", "disparagement", "derogation", "profanity", "slang",
               "slur", "smut", "dirty_word"}
BAD_LEXNAMES = {18, 8}  # lexicographer files noun.person, noun.body
DENY = frozenset("""
abortion abuse addict addiction adultery alcohol alcoholic ammunition anal anus arrest arson assassin assault
bastard beat beating behead bitch blood bloody bomb bombing booze breast brothel bullet bully burial butcher
cancer casket chemo cigarette coffin cocaine condom convict corpse crime criminal crucify cult cunt curse dead
deadly death debt depression devil die diet disease drown drug drunk dumb dying erotic execute execution
fascist fat fatal feces fight firearm flesh fuck funeral gamble gambling genocide ghetto god gore grave gun
hang hanging hate hatred hell heroin hitler holocaust homicide hooker hostage ill illness infect infection
injury insane jail kidnap kill killer killing knife liquor lust mad mafia massacre molest morgue murder naked
nazi nude nudity opium orgasm overdose pain penis pervert pill pistol poison politics poop porn pregnant
prison prostitute punch racism racist rape rapist religion rifle riot robbery satan scream semen sex sexual
sexy shoot shooting shot sick sin slaughter slave slavery smoke smoking sperm stab strangle stupid suicide
syphilis terror terrorist theft thief tobacco torture toxic trauma ugly urine vagina victim violence violent
virus vomit war warfare weapon whip whore wound wounded damn darn crap piss bleed tumor missile invade bible
church strip rob steal cheat slap ambush armed agony punish punishment
""".split())


def _synsets(pos: str):
    """(offset, lexname id, lemmas, pointers) of every synset in data.<pos>."""
    for line in (WORDNET / f"data.{pos}").read_text(encoding="latin-1").splitlines():
        if not line[:1].isdigit():
            continue
        fields = line.split(" | ")[0].split()
        offset, lex, n = fields[0], int(fields[1]), int(fields[3], 16)
        lemmas = [re.sub(r"\(.*\)$", "", fields[4 + 2 * k]).lower() for k in range(n)]
        rest = fields[4 + 2 * n:]
        count = int(rest[0])
        pointers = [(rest[1 + 4 * k], rest[2 + 4 * k]) for k in range(count)]
        yield offset, lex, lemmas, pointers


def build() -> list[str]:
    from .t2i_words import HAND_WORDS

    tags: dict[str, int] = defaultdict(int)
    for line in (WORDNET / "cntlist.rev").read_text(encoding="latin-1").splitlines():
        key, _, count = line.split()
        lemma, rest = key.split("%")
        if rest[0] in "1235":
            tags[lemma] += int(count)
    synsets = {pos: list(_synsets(pos)) for pos in ("noun", "verb", "adj", "adv")}
    bad_offsets = {offset for offset, _, lemmas, _ in synsets["noun"] if set(lemmas) & BAD_DOMAINS}
    banned = set()
    for pos, rows in synsets.items():
        for _, lex, lemmas, pointers in rows:
            if any(sym == ";u" and target in bad_offsets for sym, target in pointers) or \
                    (pos == "noun" and lex in BAD_LEXNAMES):
                banned.update(lemmas)
    spelled = set(DICT.read_text(encoding="utf-8").split())
    hand = set(HAND_WORDS)
    out = []
    for word, count in tags.items():
        if count < MIN_TAGS or not re.fullmatch(r"[a-z]+", word) or not MIN_LEN <= len(word) <= MAX_LEN:
            continue
        if word not in spelled or word in DENY or (word in banned and word not in hand):
            continue
        if any(word.startswith(d) for d in DENY if len(d) >= 4):  # killing, murdered, drugged
            continue
        out.append(word)
    return sorted(set(out) - hand)



def main() -> None:
    words = build()
    lines, line = [], ""
    for w in words:
        if len(line) + len(w) + 1 > 110:
            lines.append(line)
            line = ""
        line = f"{line} {w}" if line else w
    lines.append(line)
    OUT.write_text('"""Generated by `python -m collage.tasks.make_t2i_vocab` (see its docstring for the rules): common,\n'
                   'clean English words from WordNet 3.0 (Princeton University, WordNet 3.0 licence: "Permission to use,\n'
                   'copy, modify and distribute this software and database ... is hereby granted") spelled as in SCOWL\'s\n'
                   'wamerican (Kevin Atkinson, permissive). Do not edit by hand."""\n\n'
                   f"VOCABULARY = tuple(\"\"\"\n" + "\n".join(lines) + '\n""".split())\n')
    print(f"{len(words)} words -> {OUT}")


if __name__ == "__main__":
    main()
