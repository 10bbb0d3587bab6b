"""Test helpers: read a prompt back against the template its json names (`template_id`)."""

from __future__ import annotations

import importlib
import re

FIELD = re.compile(r"\{(\w+)\}")


def templates_of(task: str, op: str) -> tuple[str, ...]:
    """The op's templates, from the task module's TEMPLATES."""
    return importlib.import_module(f"collage.tasks.{task}").TEMPLATES[op]


def template_for(meta: dict) -> str:
    """The template a sample's `template_id` ("task.op.k") names."""
    task, op, k = meta["template_id"].split(".")
    assert task == meta["task"] and op == meta["op"], meta["template_id"]
    return templates_of(task, op)[int(k)]


def fields_of(template: str, text: str, **known: str) -> dict[str, str]:
    """The field values that make `template` read `text` (a field used twice must read the same; `known`
    fields must read exactly their value); AssertionError when the text is not the template's."""
    pattern, seen, last = "", set(), 0
    for m in FIELD.finditer(template):
        pattern += re.escape(template[last:m.start()])
        name = m.group(1)
        if name in known:
            value = f"(?P<{name}>{re.escape(known[name])})"
        else:
            value = f"(?P<{name}>.+?)"
        pattern += f"(?P={name})" if name in seen else value
        seen.add(name)
        last = m.end()
    pattern += re.escape(template[last:])
    match = re.fullmatch(pattern, text, flags=re.S)
    assert match, (template, text)
    return match.groupdict()
