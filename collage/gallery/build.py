"""Build the static QA gallery: pick samples, write thumbnails and per-sample json, render the page.

Sample json is read defensively: a field of the wrong type is left out of the overlays and named on the
card (`field_problems`), never a crash; damage found anywhere is listed in the page's problems panel.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from ..errors import UserError
from ..storage import is_remote
from . import plots
from .page import PANEL_PX, problems_panel, render
from .select import Filters, Picked, Problem, RunInfo, as_number, as_size, as_text, find_shards, pick_samples
from .thumbs import Thumbnails, make_thumbnails, quiet_decoders

MARKER = "gallery.json"  # marks a folder as a gallery this code may overwrite

# Problem kinds in the order the panel lists them: (what a row calls one, how the warning line counts them).
PROBLEM_KINDS = {
    "shard": ("damaged shard", "{n} damaged shard(s) skipped"),
    "sample": ("unreadable sample", "{n} unreadable sample(s) skipped"),
    "image": ("undecodable image", "{n} undecodable image(s) shown as placeholders"),
    "field": ("wrong-typed fields", "{n} sample(s) with wrong-typed fields ignored"),
    "file": ("unreadable file", "{n} unreadable run file(s) done without"),
}
TEXT_FIELDS = ("task", "op", "prompt", "caption", "caption_source")


@dataclass
class GalleryResult:
    path: Path
    samples: int
    shards_read: int
    shards_total: int
    seconds: float
    problems: list[Problem] = field(default_factory=list)  # what was skipped or worked around (see the page)
    bytes_read: int = 0  # of shards and indexes in an object store, as fetched (0 for local sources)
    remote: bool = False  # some source is in an object store


def problem_summary(problems: list[Problem]) -> str:
    """The problems counted by kind in a few words, e.g. `2 damaged shard(s) skipped, 1 undecodable …`."""
    counts = Counter(p.kind for p in problems)
    return ", ".join(phrase.format(n=f"{counts[kind]:,}") for kind, (_, phrase) in PROBLEM_KINDS.items() if counts[kind])


def _pixels(value: float, scale: int) -> float:
    return round(value * scale, 3)


def _text(value, default: str = "") -> str:
    text = as_text(value)
    return default if text is None else text


def _list(value) -> list:
    """A json list, or nothing: a wrong-typed field contributes no overlays (field_problems names it)."""
    return value if isinstance(value, list) else []


def _numbers(value, count: int) -> list[float] | None:
    """`count` finite numbers, or None for an entry that is anything else."""
    if not isinstance(value, (list, tuple)) or len(value) != count:
        return None
    numbers = [as_number(v) for v in value]
    return None if any(v is None for v in numbers) else numbers


def _bbox(entry) -> list[float] | None:
    return _numbers(entry.get("bbox"), 4) if isinstance(entry, dict) else None


def _grey(value) -> int:
    number = as_number(value)
    return 0 if number is None else int(min(255, max(0, number)))


def _rgb(value) -> list[int] | None:
    numbers = _numbers(value, 3)
    return None if numbers is None else [_grey(c) for c in numbers]


def _legend(condition: dict) -> tuple[list[dict], str]:
    """The condition map's legend (segmentation colours or depth levels) and its title."""
    if condition.get("kind") == "seg":
        legend = [{"name": _text(item.get("name")), "rgb": rgb} for item in _list(condition.get("legend"))
                  if isinstance(item, dict) and (rgb := _rgb(item.get("color", (0, 0, 0)))) is not None]
        return legend, "segmentation"
    if condition.get("kind") == "depth":
        background = _grey(condition.get("background", 0))
        return [{"name": "background", "rgb": [background] * 3}] + [
            {"name": _text(level.get("name")), "rgb": [_grey(level.get("value", 0))] * 3}
            for level in _list(condition.get("levels")) if isinstance(level, dict)], "depth (white = near)"
    return [], ""


def overlays(meta: dict) -> tuple[list[list[float]], dict[str, list[list]], list[dict], str]:
    """Drag arrows (pixels), boxes per panel [x0, y0, x1, y1, label, kind], the legend and its title.

    Coordinates are json pixels with the image's top-left corner at 0 and pixel i spanning [i, i+1]: a
    bbox's exclusive x1 is the right edge of its last pixel; a drag point (a pixel centre, x·W an
    integer in the engine's convention) sits at +0.5. Entries of the wrong type are skipped; without a
    usable canvas size nothing can be placed, so only the legend is kept.
    """
    task, op = meta.get("task"), meta.get("op")
    w, h = as_size(meta.get("width")), as_size(meta.get("height"))
    condition = meta.get("condition") if isinstance(meta.get("condition"), dict) else {}
    legend, legend_title = _legend(condition)
    if not w or not h:
        return [], {}, legend, legend_title
    boxes: dict[str, list[list]] = {"src": [], "tgt": []}
    objects = _list(meta.get("objects"))
    object_panel = "src" if (task == "edit" and op == "remove") else "tgt"
    for obj in objects:
        box = _bbox(obj)
        if box:
            boxes[object_panel].append(box + [_text(obj.get("name")), "object"])

    def focus(panel: str, entry) -> None:
        box = _bbox(entry)
        if box:
            boxes[panel].append(box + ["", "focus"])

    target = meta.get("target_object")
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(objects):
        focus(object_panel, objects[target])
    elif isinstance(target, dict):  # the object's record: edit remove / replace show it in the source, else the target
        focus("src" if task == "edit" and op != "add" else "tgt", target)
    if isinstance(meta.get("new_object"), dict):
        focus("tgt", meta["new_object"])
    if condition.get("kind") == "subject":
        focus("src", condition.get("source"))
        focus("tgt", condition.get("target"))
    for box in _list(meta.get("boxes")):  # segdet: normalised [x0, y0, x1, y1]
        box = _numbers(box, 4)
        if box:
            pixel_box = [_pixels(box[0], w), _pixels(box[1], h), _pixels(box[2], w), _pixels(box[3], h)]
            boxes["src"].append(pixel_box + ["", "det"])
            boxes["tgt"].append(pixel_box + ["", "det dash"])  # dashed: the target's own frame shows between

    arrows = []
    for point in _list(meta.get("points")):
        point = _numbers(point, 4)
        if point:
            x, y, dx, dy = point
            arrows.append([round(x * w + 0.5, 3), round(y * h + 0.5, 3),
                           round((x + dx) * w + 0.5, 3), round((y + dy) * h + 0.5, 3)])
    return arrows, {k: v for k, v in boxes.items() if v}, legend, legend_title


def _shown(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)[:40]


def field_problems(meta: dict) -> list[str]:
    """The well-known fields of the wrong type, in a few words each: the card names them, the overlays skip them."""
    bad = [f"{name} is {_shown(meta[name])}, not text" for name in TEXT_FIELDS
           if name in meta and not isinstance(meta[name], str)]
    bad += [f"{name} is {_shown(meta[name])}, not a size in pixels" for name in ("width", "height")
            if name in meta and not as_size(meta[name])]
    usable = {"objects": lambda o: isinstance(o, dict) and (o.get("bbox") is None or _bbox(o) is not None),
              "points": lambda p: _numbers(p, 4) is not None, "boxes": lambda b: _numbers(b, 4) is not None}
    for name, ok in usable.items():
        value = meta.get(name)
        if value is not None and not isinstance(value, list):
            bad.append(f"{name} is {_shown(value)}, not a list")
        elif value and (wrong := sum(not ok(item) for item in value)):
            bad.append(f"{name}: {wrong} of {len(value)} entries unusable")
    for name in ("condition", "transform"):
        if meta.get(name) is not None and not isinstance(meta[name], dict):
            bad.append(f"{name} is {_shown(meta[name])}, not an object")
    return bad


def notes(meta: dict) -> list[str]:
    """A few task fields worth reading next to the images."""
    out = []
    for name in ("mask_kind", "color_name"):
        if meta.get(name):
            out.append(f"{name}: {_text(meta[name])}")
    if _list(meta.get("sides")):
        out.append("sides: " + ", ".join(_text(side) for side in meta["sides"]))
    transform = meta.get("transform")
    if isinstance(transform, dict):
        out.append("transform: " + ", ".join(f"{k} {transform[k]:.3g}" for k in ("tx", "ty", "scale", "angle_deg")
                                             if as_number(transform.get(k)) is not None))
    condition = meta.get("condition")
    if isinstance(condition, dict) and condition.get("kind"):
        out.append(f"condition: {_text(condition['kind'])}")
    if meta.get("facts"):
        out.append("facts: " + json.dumps(meta["facts"], ensure_ascii=False, default=str)[:300])
    return out


def _record(index: int, picked: Picked, thumbs: Thumbnails, issues: list[str]) -> dict:
    """One card's data. `bad`: panels whose image did not decode (a placeholder says so); `issues`: what the
    card warns about (undecodable members, wrong-typed fields)."""
    meta = picked.meta
    arrows, boxes, legend, legend_title = overlays(meta)
    stem = f"s{index:06d}"
    prompt = _text(meta.get("prompt"))
    # fid: what a flag is stored under in the browser. Not the card's position, which another --seed, --n
    # or --task rebuild of the same runs gives to another sample.
    return {"id": stem, "fid": f"{picked.shard}#{picked.key}", "key": picked.key, "run": picked.run, "shard": picked.shard.name,
            "shardPath": str(picked.shard), "task": _text(meta.get("task")), "op": _text(meta.get("op")),
            "prompt": prompt, "caption": _text(meta.get("caption"), prompt),
            "cs": _text(meta.get("caption_source"), "template"), "w": as_size(meta.get("width")),
            "h": as_size(meta.get("height")), "img": {k: f"thumbs/{v}" for k, v in thumbs.files.items()},
            "bad": thumbs.undecodable, "issues": [f"{role} image does not decode" for role in thumbs.undecodable] + issues,
            "json": f"json/{stem}.json", "pts": arrows, "boxes": boxes, "legend": legend,
            "legendTitle": legend_title, "notes": notes(meta)}


def _sample_page(index: int, sample: Picked, out: Path, thumb_size: int) -> tuple[dict, list[Problem]]:
    """Write one sample's thumbnails and json; its card's data and the problems found on the way."""
    stem = f"s{index:06d}"
    thumbs = make_thumbnails(sample.images, out / "thumbs", stem, thumb_size)
    (out / "json" / f"{stem}.json").write_text(json.dumps(sample.meta, indent=1, ensure_ascii=False, default=str))
    issues = field_problems(sample.meta)
    problems = [Problem("image", sample.shard, detail, sample.key) for detail in thumbs.undecodable.values()]
    if issues:
        problems.append(Problem("field", sample.shard, "; ".join(issues), sample.key))
    return _record(index, sample, thumbs, issues), problems


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _text(value, "?")


def _config_line(info: RunInfo) -> str:
    """The run's config in one line, whatever types run.json holds."""
    config = info.config
    if not config:
        unreadable = any(p.path.name == "run.json" for p in info.problems)
        return "run.json unreadable (see the problems panel)" if unreadable else "loose shards (no run.json)"
    mix = ", ".join(f"{_text(m.get('task'))}[{','.join(_text(o) for o in _list(m.get('ops')))}]" if isinstance(m, dict)
                    else _text(m) for m in _list(config.get("mix")))
    return (f"{_text(config.get('name'), info.path.name)} · {mix or 'no run.json'} · n {_count(config.get('n'))} · "
            f"seed {_text(config.get('seed'), '?')} · size {_text(config.get('size'), '?')} "
            f"({_text(config.get('aspect_ratios'), '?')}) · {_text(config.get('image_format'), '?')}")


def _summary(runs: list[RunInfo]) -> tuple[str, str]:
    parts = []
    for info in runs:
        config_line = _config_line(info)
        stats = info.stats
        failures = [("failed draws", stats.get("failures", 0)), ("redraws (rejects)", stats.get("rejects", 0)),
                    ("assets skipped", stats.get("assets_skipped", 0))]
        task_op = sorted((f"{t}/{o}", n) for (t, o), n in info.task_op.items())
        sources = sorted(info.caption_sources.items(), key=lambda kv: str(kv[0]))
        charts = [
            plots.bar_chart("samples per task/op", task_op, chart_class="task-op"),
            plots.bar_chart(f"failures in stats ({stats.get('samples', 0):,} samples, {info.shards_total:,} shards)",
                            failures, colour="#c8553d", chart_class="failures"),
            plots.bar_chart("caption source", [(str(k), v) for k, v in sources], chart_class="caption-sources"),
            plots.column_chart("image sizes (W×H)", plots.size_histogram(info.sizes), width=420, chart_class="sizes"),
            plots.column_chart("aspect ratio (W:H)", plots.aspect_histogram(info.sizes), chart_class="aspects"),
        ]
        parts.append(f'<div class="run"><h2>{escape(str(info.path))}</h2><div class="config">{escape(config_line)}<br>'
                     f"histograms over the {info.shards_read:,} shard(s) read ({info.indexed:,} samples) of "
                     f"{info.shards_total:,}; failures over every shard's stats</div>"
                     f'<div class="charts">{"".join(charts)}</div></div>')
    line = f"{len(runs)} run(s), {sum(r.shards_read for r in runs):,} of {sum(r.shards_total for r in runs):,} shards read"
    damaged = len({p for r in runs for p in r.problems if p.kind == "shard"})  # a set: a run given twice
    return "".join(parts), line + (f", {damaged:,} damaged" if damaged else "")


def _sorted_problems(problems: list[Problem]) -> list[Problem]:
    """Each problem once (a run given twice is read once per mention), in the panel's order."""
    order = list(PROBLEM_KINDS)
    return sorted(dict.fromkeys(problems), key=lambda p: (order.index(p.kind), str(p.path), p.key, p.detail))


def _problems_html(problems: list[Problem]) -> str:
    rows = [(PROBLEM_KINDS[p.kind][0], p.kind, p.path.name, str(p.path), p.key, p.detail) for p in problems]
    return problems_panel(problem_summary(problems), rows) if problems else ""


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the gallery")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise UserError(f"--out {out} is a non-empty folder that is not a gallery; choose a new or empty folder")


def _prepare(out: Path) -> None:
    """Empty the thumbnails and json of an earlier build (the folder was checked by `_check_out`)."""
    for sub in ("thumbs", "json"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)


def _check_filters(tasks: list[str], ops: list[str]) -> None:
    from ..tasks import TASKS, get_task

    for task in tasks:
        get_task(task)
    known = {op for name, spec in TASKS.items() if not tasks or name in tasks for op in spec.ops}
    bad = [op for op in ops if op not in known]
    if bad:
        raise UserError(f"--op {','.join(bad)} is not an op of {', '.join(tasks) or 'any task'}: choose from "
                        f"{','.join(sorted(known))}")


def _split(value: str | list[str] | None) -> list[str]:
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item.strip()]


def build_gallery(sources: list[str] | str, out: str | Path, n: int = 200, seed: int = 0,
                  task: str | list[str] | None = None, op: str | list[str] | None = None, thumb_size: int = 256,
                  workers: int | None = None, title: str | None = None) -> GalleryResult:
    """Write a self-contained gallery (index.html, thumbs/, json/) of up to `n` samples of `sources`
    (run directories and/or .tar shards), picked at random with `seed`, optionally only of some tasks/ops."""
    started = time.perf_counter()
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if n < 1:
        raise UserError(f"--n {n}: show at least one sample")
    if not 32 <= thumb_size <= 2048:
        raise UserError(f"thumbnail size {thumb_size}: use 32 to 2048 px")
    tasks, ops = _split(task), _split(op)
    _check_filters(tasks, ops)
    shards, runs = find_shards([str(s) for s in sources])
    out = Path(out)
    _check_out(out)
    picked = pick_samples(shards, runs, n, seed, Filters(frozenset(tasks), frozenset(ops)))
    skipped = any(p.kind in ("shard", "sample") for r in runs for p in r.problems)
    if not picked and not skipped:  # with damage, an empty page that lists it is still worth writing
        wanted = " ".join(f"--{k} {','.join(v)}" for k, v in (("task", tasks), ("op", ops)) if v)
        raise UserError(f"no samples match {wanted} in {len(shards):,} shard(s)")
    _prepare(out)

    # cv2 decodes, resizes and encodes without the GIL, so threads use every core.
    with quiet_decoders(), ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        made = list(pool.map(lambda item: _sample_page(*item, out, thumb_size), enumerate(picked)))
    records = [record for record, _ in made]
    problems = _sorted_problems([p for r in runs for p in r.problems] + [p for _, found in made for p in found])
    summary_html, summary_line = _summary(runs)
    gallery_id = hashlib.sha1(json.dumps([str(r.path) for r in runs]).encode()).hexdigest()[:12]
    title = title or "collage gallery: " + ", ".join(_text(r.config.get("name"), r.path.name) for r in runs)
    data = {"id": gallery_id, "panel": PANEL_PX, "samples": records}
    page = render(title, data, summary_html, summary_line, _problems_html(problems))
    (out / "index.html").write_text(page, encoding="utf-8")
    seconds = time.perf_counter() - started
    result = GalleryResult(out, len(records), sum(r.shards_read for r in runs), sum(r.shards_total for r in runs), seconds,
                           problems, sum(r.bytes_read for r in runs), any(is_remote(r.path) for r in runs))
    (out / MARKER).write_text(json.dumps({
        "sources": [str(s) for s in sources], "n": n, "seed": seed, "task": tasks, "op": ops,
        "samples": result.samples, "shards_read": result.shards_read, "shards_total": result.shards_total,
        "bytes_read": result.bytes_read,
        "problems": dict(Counter(p.kind for p in problems)), "seconds": round(seconds, 3)}, indent=1))
    return result

