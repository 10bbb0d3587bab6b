"""The task registry: the one place that knows which generators exist.

A generator is a plain function `(rng, assets, config) -> Sample`; it may raise `Reject` to have the
sample redrawn. Writer, worker and runner look tasks up here and know nothing else about them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..assets import AssetLibrary
from ..sample import Sample


@dataclass(frozen=True)
class GenConfig:
    """What a generator is told about the sample to make. `options` are the task's run options
    (declared at registration, recorded in run.json), e.g. {"add_background": "mixed"} for edit."""

    op: str
    width: int
    height: int
    options: Mapping[str, str] = field(default_factory=dict)


Generator = Callable[[np.random.Generator, AssetLibrary, GenConfig], Sample]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    ops: tuple[str, ...]
    generate: Generator
    # option name → allowed values, or a check that raises UserError, or None (any value)
    options: Mapping[str, tuple[str, ...] | Callable[[str], None] | None] = field(default_factory=dict)


TASKS: dict[str, TaskSpec] = {}

# Image members each (task, op) must carry, from the sample format; "*" is any op of the task.
MEMBERS: dict[str, dict[str, tuple[str, ...]]] = {
    "t2i": {"*": ("tgt",)},
    "inpaint": {"*": ("src", "tgt", "mask")},
    "edit": {"*": ("src", "tgt", "mask")},
    "drag": {"*": ("src", "tgt", "mask")},
    "reference": {"subject": ("src", "tgt"), "*": ("tgt", "cond")},
    "segdet": {"*": ("src", "tgt")},
}


def required_members(task: str, op: str) -> tuple[str, ...]:
    table = MEMBERS.get(task, {})
    return table.get(op, table.get("*", ("tgt",)))


def register(name: str, ops: tuple[str, ...], options: Mapping | None = None):
    def wrap(fn: Generator) -> Generator:
        TASKS[name] = TaskSpec(name, ops, fn, dict(options or {}))
        return fn
    return wrap


def get_task(name: str) -> TaskSpec:
    from ..errors import UserError

    if name not in TASKS:
        raise UserError(f"unknown task {name!r}: choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


from . import drag, edit, inpaint, reference, segdet, t2i  # noqa: E402,F401  (each registers itself)
