"""The task registry: the one place that knows which generators exist.

A generator is a plain function `(rng, assets, config) -> Sample`; it may raise `Reject` to have the
sample redrawn. Writer, worker and runner look tasks up here and know nothing else about them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from ..assets import AssetLibrary
from ..errors import UserError
from ..sample import Sample

if TYPE_CHECKING:
    from ..config import RunConfig


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
    # op → asset kinds (manifest `kind`s) it cannot draw a sample without; check_assets tests them at run start
    requires: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # a check of one mix entry's ops and options together (after each option's own), raising UserError
    check: Callable[[tuple[str, ...], Mapping[str, str]], None] | None = None


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


def register(name: str, ops: tuple[str, ...], options: Mapping | None = None,
             requires: Mapping[str, tuple[str, ...]] | None = None,
             check: Callable[[tuple[str, ...], Mapping[str, str]], None] | None = None):
    def wrap(fn: Generator) -> Generator:
        TASKS[name] = TaskSpec(name, ops, fn, dict(options or {}), dict(requires or {}), check)
        return fn
    return wrap


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}: choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


def check_assets(cfg: RunConfig, assets: AssetLibrary) -> None:
    """Raise UserError when an op of the run's mix needs an asset kind of which no usable asset is left.

    Run before any shard is made: without it every worker would retry such an op until it gave up, and the
    user would get tracebacks instead of one line saying what to import.
    """
    for entry in cfg.mix:
        spec = get_task(entry.task)
        for op in entry.ops:
            for kind in spec.requires.get(op, ()):
                rows = [r for r in assets.rows if r["kind"] == kind]
                if any(r["id"] not in assets.skipped for r in rows):
                    continue
                how = f"import working {kind}s with `collage assets import --kind {kind} --folder …`"
                if not rows:
                    raise UserError(f"{entry.task}/{op} needs {kind}s, but the manifests hold none; {how}")
                first = rows[0]["id"]
                which = f"the manifests' one {kind} is unusable (" if len(rows) == 1 else \
                    f"none of the manifests' {len(rows)} {kind}s is usable (first: "
                raise UserError(f"{entry.task}/{op} needs {kind}s, but {which}{first}: {assets.skipped[first]}); {how}")


from . import drag, edit, inpaint, reference, segdet, t2i  # noqa: E402,F401  (each registers itself)
