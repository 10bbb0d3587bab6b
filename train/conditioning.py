"""What the VLM sees, per task: the paper's unified conditioning, as one table.

This is the one place the table lives (FEATURE_FORMAT.md, "What the VLM sees, per task", mirrors it;
`table_markdown()` renders it for the docs). Precompute and the loader's raw-shard path both call
`vlm_request`, so features made either way agree.

| task / op                      | images            | text                                                  |
|--------------------------------|-------------------|-------------------------------------------------------|
| t2i (all ops, external)        | none              | the caption                                           |
| inpaint, outpaint              | src (masked), mask| the instruction, plus the caption for half (by key)   |
| edit add / remove / replace    | src               | the instruction                                       |
| drag translate / scale / rotate| src               | the instruction with its points (the template prompt) |
| segdet segment / detect        | src               | the instruction                                       |
| reference canny / depth / seg  | cond              | the prompt                                            |
| reference subject              | src               | the prompt                                            |

Which json field holds which text (SAMPLE_FORMAT.md): `prompt` is the template text and `caption` the
refined text (equal to `prompt` until an LLM refines it). The VLM reads `caption` (the refined wording),
except for drag, which reads `prompt`: its points are numbers a rewrite could move or drop. An inpaint
prompt is one instruction sentence ("Fill in the gray area of the image." / "Extend the image past its
… edges, …") followed by a description of the full image; the instruction is that first sentence, the
caption is what follows it (or the refined caption, when it no longer starts with the instruction).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

ANY_OP = "*"

# How the text is chosen (a Rule's `text`).
CAPTION = "caption"  # the refined text (falls back to `prompt` when a json has no caption)
PROMPT = "prompt"  # the template text, verbatim
INSTRUCTION_HALF_CAPTION = "instruction, + caption for half"  # inpaint: see inpaint_text


@dataclass(frozen=True)
class Rule:
    images: tuple[str, ...]  # sample members the VLM sees, in this order
    text: str  # CAPTION, PROMPT or INSTRUCTION_HALF_CAPTION


# task -> op -> rule. An op missing here is refused (a new op must be placed in the table);
# ANY_OP matches every op of its task (t2i: text, shapes, stickers, and "external" web data).
CONDITIONING: dict[str, dict[str, Rule]] = {
    "t2i": {ANY_OP: Rule((), CAPTION)},
    "inpaint": {
        "inpaint": Rule(("src", "mask"), INSTRUCTION_HALF_CAPTION),
        "outpaint": Rule(("src", "mask"), INSTRUCTION_HALF_CAPTION),
    },
    "edit": {op: Rule(("src",), CAPTION) for op in ("add", "remove", "replace")},
    "drag": {op: Rule(("src",), PROMPT) for op in ("translate", "scale", "rotate")},
    "segdet": {op: Rule(("src",), CAPTION) for op in ("segment", "detect")},
    "reference": {
        "canny": Rule(("cond",), CAPTION),
        "depth": Rule(("cond",), CAPTION),
        "seg": Rule(("cond",), CAPTION),
        "subject": Rule(("src",), CAPTION),
    },
}

_TEXT_WORDS = {
    CAPTION: "`caption`",
    PROMPT: "`prompt` (template, points exact)",
    INSTRUCTION_HALF_CAPTION: "instruction (first sentence of `prompt`), plus the caption for half (by key)",
}


@dataclass
class VLMRequest:
    """One sample's conditioning input: images (in the order the chat lists them) and the text."""

    image_names: list[str]  # e.g. ["src", "mask"]; [] for t2i
    images: list[np.ndarray]  # uint8 (H, W, 3) RGB or (H, W) L, as the sample holds them
    text: str


def unconditional_request() -> VLMRequest:
    """The empty prompt without images: what CFG dropout swaps a condition for."""
    return VLMRequest([], [], "")


def rule_for(task: str, op: str) -> Rule:
    """The table's row for (task, op); ValueError naming what the table does not know."""
    ops = CONDITIONING.get(task)
    if ops is None:
        raise ValueError(f"unknown task {task!r}: the conditioning table knows {', '.join(CONDITIONING)}")
    rule = ops.get(op, ops.get(ANY_OP))
    if rule is None:
        raise ValueError(f"unknown op {op!r} for task {task!r}: the conditioning table knows {', '.join(ops)}")
    return rule


def caption_coin(key: str) -> bool:
    """True for about half of all keys: a stable hash (not Python's salted hash()), so every process,
    rank and rerun agrees."""
    return hashlib.sha256(b"collage/inpaint-caption/" + key.encode()).digest()[0] < 128


def split_instruction(prompt: str) -> tuple[str, str]:
    """An inpaint prompt -> (its first sentence: the instruction, the rest: the full image's description)."""
    match = re.match(r"\s*(.*?[.!?])(?:\s+|$)(.*)", prompt, re.DOTALL)
    if match is None:
        return prompt.strip(), ""
    return match.group(1), match.group(2).strip()


def inpaint_text(meta: dict, key: str) -> str:
    """The instruction alone, or (for the keys where caption_coin is true) the instruction and caption."""
    instruction, description = split_instruction(_field(meta, PROMPT))
    caption = _field(meta, CAPTION).strip()
    if caption != _field(meta, PROMPT).strip():  # refined: the caption replaces the template's description
        description = caption[len(instruction):].strip() if caption.startswith(instruction) else caption
    if description and caption_coin(key):
        return f"{instruction} {description}"
    return instruction


def vlm_request(meta: dict, images: dict[str, np.ndarray], key: str) -> VLMRequest:
    """What the VLM reads for one sample: `meta` is its json, `images` its decoded members by stem
    ({"tgt": …, "src": …, "mask": …, "cond": …}), `key` its `__key__` (seeds inpaint's caption half)."""
    task, op = meta.get("task"), meta.get("op")
    rule = rule_for(task, op)
    missing = [name for name in rule.images if name not in images]
    if missing:
        raise ValueError(f"{key}: {task}/{op} needs image member(s) {', '.join(missing)}, "
                         f"the sample has {', '.join(sorted(images)) or 'none'}")
    if rule.text == INSTRUCTION_HALF_CAPTION:
        text = inpaint_text(meta, key)
    else:
        text = _field(meta, rule.text)
    return VLMRequest(list(rule.images), [images[name] for name in rule.images], text)


def _field(meta: dict, which: str) -> str:
    if which == CAPTION and meta.get("caption") is not None:
        return str(meta["caption"])
    if meta.get("prompt") is not None:
        return str(meta["prompt"])
    raise ValueError(f"{meta.get('task')}/{meta.get('op')} sample has no {which!r} field")


def table_markdown() -> str:
    """The table as the docs show it (one row per task and op)."""
    rows = ["| task | op | images | text |", "|---|---|---|---|"]
    for task, ops in CONDITIONING.items():
        for op, rule in ops.items():
            images = ", ".join(f"`{name}`" for name in rule.images) or "none"
            rows.append(f"| {task} | {'all' if op == ANY_OP else op} | {images} | {_TEXT_WORDS[rule.text]} |")
    return "\n".join(rows)
