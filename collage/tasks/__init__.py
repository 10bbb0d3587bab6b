"""The task registry: the one place that knows which generators exist.

A generator is a plain function `(rng, assets, config) -> Sample`; it may raise `Reject` to have the
sample redrawn. Writer, worker and runner look tasks up here and know nothing else about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..assets import AssetLibrary
from ..sample import Sample


@dataclass(frozen=True)
class GenConfig:
    """What a generator is told about the sample to make."""

    op: str
    width: int
    height: int


Generator = Callable[[np.random.Generator, AssetLibrary, GenConfig], Sample]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    ops: tuple[str, ...]
    generate: Generator


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


def register(name: str, ops: tuple[str, ...]):
    def wrap(fn: Generator) -> Generator:
        TASKS[name] = TaskSpec(name, ops, fn)
        return fn
    return wrap


def get_task(name: str) -> TaskSpec:
    from ..errors import UserError

    if name not in TASKS:
        raise UserError(f"unknown task {name!r}: choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


from . import drag, edit, inpaint, reference, segdet, t2i  # noqa: E402,F401  (each registers itself)
