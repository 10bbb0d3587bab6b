"""Prompts of every task and op, drawn straight from the generators: every template renders and is
reachable, `template_id` names it, articles agree with the nouns, the background is named, and a depth
prompt with one object says no "back to front"."""

from __future__ import annotations

import re

import numpy as np
import inflect
import pytest

from collage import words
from collage.errors import Reject
from collage.tasks import TASKS, GenConfig
from prompt_checks import fields_of, templates_of

OPS = [(task, op) for task in sorted(TASKS) for op in TASKS[task].ops]
TRIES = 400


@pytest.fixture(scope="module")
def drawn(assets):
    """{(task, op): [sample meta]}, drawn until every template of the op was used (or TRIES draws)."""
    out = {}
    for task, op in OPS:
        wanted = {f"{task}.{op}.{k}" for k in range(len(templates_of(task, op)))}
        metas, used = [], set()
        for seed in range(TRIES):
            try:
                sample = TASKS[task].generate(np.random.default_rng(seed), assets, GenConfig(op, 144, 112))
            except Reject:
                continue
            metas.append(sample.meta)
            used.add(sample.meta["template_id"])
            if used >= wanted and len(metas) >= 40:
                break
        out[(task, op)] = metas
    return out


def test_every_op_has_several_templates():
    for task, op in OPS:
        templates = templates_of(task, op)
        assert len(templates) >= 3, (task, op)
        assert len(set(templates)) == len(templates)


@pytest.mark.parametrize("task, op", OPS)
def test_every_template_renders_and_is_reachable(drawn, task, op):
    metas = drawn[(task, op)]
    templates = templates_of(task, op)
    used = {m["template_id"] for m in metas}
    assert used == {f"{task}.{op}.{k}" for k in range(len(templates))}
    for meta in metas:
        task_, op_, k = meta["template_id"].split(".")
        assert (task_, op_) == (task, op)
        template = templates[int(k)]
        head = meta["prompt"]
        if task == "inpaint":  # the template, then the content sentences
            head = meta["prompt"].split(" The full image ")[0]
        elif task == "t2i" and op == "stickers":  # the template, then the relations
            head = meta["prompt"].split(". The ")[0].rstrip(".") + "."
        fields_of(template, head)
        assert "{" not in meta["prompt"] and "}" not in meta["prompt"]


ENGLISH = inflect.engine()


@pytest.mark.parametrize("task, op", OPS)
def test_no_literal_background_and_articles_agree(drawn, task, op):
    for meta in drawn[(task, op)]:
        prompt = meta["prompt"]
        assert "on a background" not in prompt
        for match in re.finditer(r"\b(a|an|A|An) ([a-z][\w'-]*)", prompt):  # every article, as inflect has it
            article, word = match.group(1).lower(), match.group(2)
            assert ENGLISH.a(word).split(" ")[0] == article, f"{article!r} before {word!r}: {prompt}"
        for entry in meta["objects"]:
            name = entry["name"]
            if task == "t2i" and op in ("text", "shapes"):
                continue  # strings and shape groups, not asset names
            phrase = words.noun_phrase(name)
            for match in re.finditer(rf"\b(a|an|one|A|An|One) {re.escape(phrase)}\b", prompt):
                article = match.group(1).lower()
                assert words.countable(name), f"{article!r} before the plural or mass noun {name!r}: {prompt}"
                if article != "one":
                    assert words.with_article(name) == f"{article} {phrase}", prompt


BACKGROUND = re.compile(r"(gradient|checkerboard|stripes|polka dots|dotted background|texture|[a-z] background|tiles|bokeh|plaid"
                        r"|photo of|a photo\b|silhouette|art\b|artwork|illustration|painting|drawing|render|image of)")
NAMED = {("t2i", "text"), ("t2i", "shapes"), ("t2i", "stickers"), ("inpaint", "inpaint"), ("inpaint", "outpaint"),
         ("reference", "canny"), ("reference", "depth"), ("reference", "seg"), ("reference", "subject")}


def test_prompts_name_the_background(drawn):
    """Ops whose prompt describes the whole picture name what the background shows; edit and drag do in
    some templates (those with a {background} field)."""
    for task, op in OPS:
        for meta in drawn[(task, op)]:
            template = templates_of(task, op)[int(meta["template_id"].split(".")[-1])]
            if (task, op) in NAMED or "{background}" in template:
                assert BACKGROUND.search(meta["prompt"]), meta["prompt"]


def test_single_object_depth_prompts_say_no_order(drawn):
    depth = drawn[("reference", "depth")]
    singles = [m for m in depth if len(m["objects"]) == 1]
    several = [m for m in depth if len(m["objects"]) > 1]
    assert singles and several
    assert all("back to front" not in m["prompt"] for m in singles)
    assert all("from back to front" in m["prompt"] for m in several)


def test_target_object_is_the_object_record(drawn):
    for task, op in OPS:
        if task not in ("edit", "drag", "segdet"):
            continue
        for meta in drawn[(task, op)]:
            target = meta["target_object"]
            assert isinstance(target, dict) and {"id", "asset", "name", "bbox"} <= set(target)
            listed = {o["id"]: o for o in meta["objects"]}
            if task != "edit" or op != "replace":
                assert listed[target["id"]] == target
            if task == "edit" and op == "replace":
                assert listed[meta["new_object"]["id"]] == meta["new_object"]


@pytest.mark.parametrize("task, op", OPS)
def test_every_sample_records_its_background(drawn, task, op):
    """json `background`: the noun phrase of what lies behind the objects; prompts that name the background
    use exactly it (drag and edit instructions need not name it)."""
    for meta in drawn[(task, op)]:
        background = meta["background"]
        assert isinstance(background, str) and background and background != "a background"
        if task in ("t2i", "inpaint") or (task == "reference" and op != "seg"):
            assert background.lower() in meta["prompt"].lower(), (background, meta["prompt"])
