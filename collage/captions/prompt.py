"""What the LLM is asked, and what of its answer may become a caption. No I/O.

Facts that must survive verbatim are carried through by construction: drag point tuples and quoted t2i
strings are replaced by tags ([P1], [T1]) before the template goes out, and put back after; an answer that
does not hold every tag exactly once is refused. The guard (collage.captions.check) then judges the rest.
Bump PROMPT_VERSION whenever the messages or the cleaning change: it is part of every cache key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .guard import QUOTE_RE, TUPLE_RE

PROMPT_VERSION = "3"

SYSTEM_PROMPT = (
    "You rewrite image captions for a training set of an image generation model. Rewrite the user's caption "
    "as one or two natural, fluent English sentences, worded the way a person would describe the picture or "
    "ask for the edit. Keep every fact exactly: every object, every count, every colour, every position and "
    "relation. If the caption is an instruction, the rewrite is the same instruction. Do not add objects, "
    "colours or details the caption does not state. Copy every tag in square brackets, such as [P1] or [T1], "
    "exactly once and unchanged. Answer with the rewritten caption only."
)

# Worked examples, sent as earlier turns: small models follow an example far better than an instruction.
# The tag examples go only with captions that have such tags (else small models copy the tags in).
EXAMPLES = (
    ("A picture with two red circles and one blue square, on a white background.",
     "Two red circles and one blue square on a plain white background."),
    ("Swap the cat for a wooden chair.", "Replace the cat with a wooden chair."),
)
TAG_EXAMPLES = {
    "T": ("A poster showing the text [T1] in large green letters at the top.",
          "A poster with the words [T1] written in large green letters at the top."),
    "P": ("Drag the red apple to a new place: [P1]", "Move the red apple somewhere else: [P1]"),
}
# Words of the examples a caption rarely has: an answer holding one its template lacks copied the example.
EXAMPLE_WORDS = frozenset({"circle", "circles", "square", "cat", "wooden", "chair", "poster", "apple"})
RETRY = ("That rewrite is not faithful ({why}). Rewrite the original caption again: keep every fact and every "
         "tag, add nothing.")

TAG_RE = re.compile(r"\[([PT])(\d{1,3})\]")
QUOTED_TAG_RE = re.compile(r"[\"“'‘](\[[PT]\d{1,3}\])[\"”'’]")
THINK_RE = re.compile(r"<think>.*?</think>", re.S | re.I)
PREFACE_RE = re.compile(r"^\s*(?:sure[^:\n]{0,60}|here(?:'s| is)[^:\n]{0,80}|(?:the )?rewritten caption|"
                        r"(?:new |revised )?caption|rewrite|answer)\s*:\s*", re.I)
ENGLISH = frozenset("""a an the of with and in on at to is are it its from into by for this that these there one two
three four five six seven eight nine ten some each both next left right above below near inside over under
shows showing has have""".split())
SHINGLE = 8  # an answer holding any 8-word run of the instructions is taken for an echo of them


class Refused(Exception):
    """An answer that cannot become a caption (the reason is recorded as the sample's caption_error)."""


@dataclass(frozen=True)
class Request:
    messages: tuple[dict, ...]
    tags: tuple[tuple[str, str], ...]  # (tag, the verbatim text it stands for)
    template: str


def build_request(prompt: str) -> Request:
    """The messages for one template prompt, its tuples and quoted strings replaced by tags."""
    tags: list[tuple[str, str]] = []

    def tag(kind: str, text: str) -> str:
        tags.append((f"[{kind}{sum(t[0][1] == kind for t in tags) + 1}]", text))
        return tags[-1][0]

    text = TUPLE_RE.sub(lambda m: tag("P", m.group(0)), prompt)
    text = QUOTE_RE.sub(lambda m: tag("T", m.group(0)), text)
    examples = EXAMPLES + tuple(TAG_EXAMPLES[kind] for kind in "TP" if any(t[0][1] == kind for t in tags))
    shots = tuple(turn for user, answer in examples for turn in ({"role": "user", "content": user},
                                                                 {"role": "assistant", "content": answer}))
    messages = ({"role": "system", "content": SYSTEM_PROMPT}, *shots, {"role": "user", "content": text})
    return Request(messages=messages, tags=tuple(tags), template=prompt)


def retry_request(request: Request, answer: str | None, why: str) -> Request:
    """The same request with the refused answer and why it was refused: a re-ask a greedy server answers
    differently, and that a real model can correct."""
    turns = ({"role": "assistant", "content": (answer or "")[:600]},
             {"role": "user", "content": RETRY.format(why=why[:300])})
    return Request(messages=request.messages + turns, tags=request.tags, template=request.template)


def clean_answer(content: str | None, finish_reason: str | None, request: Request) -> str:
    """The caption an answer gives, or Refused: cut answers, empty ones, reasoning without an answer, an
    echo of the instructions, another language, missing or repeated tags."""
    if finish_reason == "length":
        raise Refused("answer cut at max_tokens (finish_reason: length)")
    text = THINK_RE.sub(" ", content or "")
    if re.search(r"<think>", text, re.I):
        raise Refused("answer is unfinished reasoning (<think> without </think>)")
    text = text.strip()
    text = PREFACE_RE.sub("", text, count=1).strip()
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n|\n", text) if p.strip()]
    if not paragraphs:
        raise Refused("empty answer")
    text = PREFACE_RE.sub("", paragraphs[0], count=1).strip()
    text = QUOTED_TAG_RE.sub(r"\1", text)  # "[T1]": the tag stands for the quoted text, quotes included
    text = _unwrap(text)
    if not text:
        raise Refused("empty answer")
    if _echoes_instructions(text):
        raise Refused("answer repeats the instructions")
    if len(text) > max(400, 4 * len(request.template)):
        raise Refused(f"answer is {len(text)} characters for a {len(request.template)}-character caption")
    if not _looks_english(text):
        raise Refused("answer is not in English")
    copied = sorted((set(_words(text)) & EXAMPLE_WORDS) - set(_words(request.template)))
    if copied:
        raise Refused(f"answer copies the worked example ({', '.join(copied)})")
    caption = _put_back_tags(text, request)
    if _words(caption) == _words(request.template):
        raise Refused("answer is the caption unchanged")
    return caption


def _unwrap(text: str) -> str:
    for left, right in (('"', '"'), ("“", "”"), ("'", "'"), ("`", "`"), ("**", "**")):
        if len(text) > 2 * len(left) and text.startswith(left) and text.endswith(right) \
                and text.count(left) == (1 if left != right else 2) and text.count(right) <= 2:
            return text[len(left):-len(right)].strip()
    return text


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?", text.lower())


def _echoes_instructions(text: str) -> bool:
    system, answer = _words(SYSTEM_PROMPT), " ".join(_words(text))
    return any(" ".join(system[i:i + SHINGLE]) in answer for i in range(len(system) - SHINGLE + 1))


def _looks_english(text: str) -> bool:
    """Letters mostly ASCII and, past a few words, some English function words (tags and quotes aside)."""
    bare = TAG_RE.sub(" ", QUOTE_RE.sub(" ", text))
    letters = [c for c in bare if c.isalpha()]
    if letters and sum(not c.isascii() for c in letters) > 0.15 * len(letters):
        return False
    words = _words(bare)
    return len(words) < 5 or sum(w in ENGLISH for w in words) >= max(1, len(words) // 10)


def _put_back_tags(text: str, request: Request) -> str:
    found = [m.group(0) for m in TAG_RE.finditer(text)]
    known = dict(request.tags)
    for tag in dict.fromkeys(found):
        if tag not in known:
            raise Refused(f"answer holds the tag {tag}, which the caption does not")
    for tag, _ in request.tags:
        if found.count(tag) != 1:
            raise Refused(f"answer holds the tag {tag} {found.count(tag)} times (wanted once)")
    for tag, original in request.tags:
        text = text.replace(tag, original, 1)
    return text
