"""Build the static QA gallery: pick samples, write thumbnails and per-sample json, render the page."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from pathlib import Path

from ..errors import UserError
from . import plots
from .page import PANEL_PX, render
from .select import Filters, Picked, RunInfo, find_shards, pick_samples
from .thumbs import make_thumbnails

MARKER = "gallery.json"  # marks a folder as a gallery this code may overwrite


@dataclass
class GalleryResult:
    path: Path
    samples: int
    shards_read: int
    shards_total: int
    seconds: float


def _pixels(value, scale: int) -> float:
    return round(float(value) * scale, 3)


def _bbox(entry) -> list[float] | None:
    box = entry.get("bbox") if isinstance(entry, dict) else None
    return [float(v) for v in box] if isinstance(box, (list, tuple)) and len(box) == 4 else None


def overlays(meta: dict) -> tuple[list[list[float]], dict[str, list[list]], list[dict], str]:
    """Drag arrows (pixels), boxes per panel [x0, y0, x1, y1, label, kind], the legend and its title.

    Coordinates are json pixels with the image's top-left corner at 0 and pixel i spanning [i, i+1]: a
    bbox's exclusive x1 is the right edge of its last pixel; a drag point (a pixel centre, x·W an
    integer in the engine's convention) sits at +0.5.
    """
    task, op = meta.get("task"), meta.get("op")
    w, h = int(meta.get("width") or 0), int(meta.get("height") or 0)
    boxes: dict[str, list[list]] = {"src": [], "tgt": []}
    objects = meta.get("objects") or []
    object_panel = "src" if (task == "edit" and op == "remove") else "tgt"
    for obj in objects:
        box = _bbox(obj)
        if box:
            boxes[object_panel].append(box + [str(obj.get("name", "")), "object"])

    def focus(panel: str, entry) -> None:
        box = _bbox(entry)
        if box:
            boxes[panel].append(box + ["", "focus"])

    target = meta.get("target_object")
    if isinstance(target, int) and 0 <= target < len(objects):
        focus(object_panel, objects[target])
    elif isinstance(target, dict):  # edit: the object removed / replaced (source) or added (target)
        focus("tgt" if op == "add" else "src", target)
    if isinstance(meta.get("new_object"), dict):
        focus("tgt", meta["new_object"])
    condition = meta.get("condition") if isinstance(meta.get("condition"), dict) else {}
    if condition.get("kind") == "subject":
        focus("src", condition.get("source"))
        focus("tgt", condition.get("target"))
    for box in meta.get("boxes") or []:  # segdet: normalised [x0, y0, x1, y1]
        if isinstance(box, (list, tuple)) and len(box) == 4:
            pixel_box = [_pixels(box[0], w), _pixels(box[1], h), _pixels(box[2], w), _pixels(box[3], h)]
            boxes["src"].append(pixel_box + ["", "det"])
            boxes["tgt"].append(pixel_box + ["", "det dash"])  # dashed: the target's own frame shows between

    arrows = []
    for point in meta.get("points") or []:
        if isinstance(point, (list, tuple)) and len(point) == 4:
            x, y, dx, dy = (float(v) for v in point)
            arrows.append([round(x * w + 0.5, 3), round(y * h + 0.5, 3),
                           round((x + dx) * w + 0.5, 3), round((y + dy) * h + 0.5, 3)])

    legend, legend_title = [], ""
    if condition.get("kind") == "seg":
        legend_title = "segmentation"
        legend = [{"name": str(item.get("name")), "rgb": [int(c) for c in item.get("color", (0, 0, 0))]}
                  for item in condition.get("legend") or [] if isinstance(item, dict)]
    elif condition.get("kind") == "depth":
        legend_title = "depth (white = near)"
        background = int(condition.get("background", 0))
        legend = [{"name": "background", "rgb": [background] * 3}] + [
            {"name": str(level.get("name")), "rgb": [int(level.get("value", 0))] * 3}
            for level in condition.get("levels") or [] if isinstance(level, dict)]
    return arrows, {k: v for k, v in boxes.items() if v}, legend, legend_title


def notes(meta: dict) -> list[str]:
    """A few task fields worth reading next to the images."""
    out = []
    for name in ("mask_kind", "color_name"):
        if meta.get(name):
            out.append(f"{name}: {meta[name]}")
    if meta.get("sides"):
        out.append("sides: " + ", ".join(map(str, meta["sides"])))
    transform = meta.get("transform")
    if isinstance(transform, dict):
        out.append("transform: " + ", ".join(f"{k} {transform[k]:.3g}" for k in ("tx", "ty", "scale", "angle_deg")
                                             if isinstance(transform.get(k), (int, float))))
    condition = meta.get("condition")
    if isinstance(condition, dict) and condition.get("kind"):
        out.append(f"condition: {condition['kind']}")
    if meta.get("facts"):
        out.append("facts: " + json.dumps(meta["facts"], ensure_ascii=False)[:300])
    return out


def _record(index: int, picked: Picked, images: dict[str, str]) -> dict:
    meta = picked.meta
    arrows, boxes, legend, legend_title = overlays(meta)
    stem = f"s{index:06d}"
    prompt = str(meta.get("prompt", ""))
    # fid: what a flag is stored under in the browser. Not the card's position, which another --seed, --n
    # or --task rebuild of the same runs gives to another sample.
    return {"id": stem, "fid": f"{picked.shard}#{picked.key}", "key": picked.key, "run": picked.run, "shard": picked.shard.name,
            "shardPath": str(picked.shard), "task": str(meta.get("task", "")), "op": str(meta.get("op", "")),
            "prompt": prompt, "caption": str(meta.get("caption", prompt)),
            "cs": str(meta.get("caption_source", "template")), "w": int(meta.get("width") or 0),
            "h": int(meta.get("height") or 0), "img": {k: f"thumbs/{v}" for k, v in images.items()},
            "json": f"json/{stem}.json", "pts": arrows, "boxes": boxes, "legend": legend,
            "legendTitle": legend_title, "notes": notes(meta)}


def _summary(runs: list[RunInfo]) -> tuple[str, str]:
    parts = []
    for info in runs:
        config = info.config
        mix = ", ".join(f"{m.get('task')}[{','.join(m.get('ops', []))}]" for m in config.get("mix", []))
        config_line = (f"{config.get('name', info.path.name)} · {mix or 'no run.json'} · n {config.get('n', '?'):,} · "
                       f"seed {config.get('seed', '?')} · size {config.get('size', '?')} "
                       f"({config.get('aspect_ratios', '?')}) · {config.get('image_format', '?')}"
                       if config else "loose shards (no run.json)")
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
    return "".join(parts), line


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
    if not picked:
        wanted = " ".join(f"--{k} {','.join(v)}" for k, v in (("task", tasks), ("op", ops)) if v)
        raise UserError(f"no samples match {wanted} in {len(shards):,} shard(s)")
    _prepare(out)

    thumbs = out / "thumbs"

    def work(item: tuple[int, Picked]) -> dict:
        index, sample = item
        images = make_thumbnails(sample.images, thumbs, f"s{index:06d}", thumb_size)
        (out / "json" / f"s{index:06d}.json").write_text(json.dumps(sample.meta, indent=1, ensure_ascii=False))
        return _record(index, sample, images)

    # cv2 decodes, resizes and encodes without the GIL, so threads use every core.
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        records = list(pool.map(work, enumerate(picked)))
    summary_html, summary_line = _summary(runs)
    gallery_id = hashlib.sha1(json.dumps([str(r.path) for r in runs]).encode()).hexdigest()[:12]
    title = title or "collage gallery: " + ", ".join(r.config.get("name", r.path.name) for r in runs)
    data = {"id": gallery_id, "panel": PANEL_PX, "samples": records}
    (out / "index.html").write_text(render(title, data, summary_html, summary_line), encoding="utf-8")
    seconds = time.perf_counter() - started
    result = GalleryResult(out, len(records), sum(r.shards_read for r in runs), sum(r.shards_total for r in runs), seconds)
    (out / MARKER).write_text(json.dumps({
        "sources": [str(s) for s in sources], "n": n, "seed": seed, "task": tasks, "op": ops,
        "samples": result.samples, "shards_read": result.shards_read, "shards_total": result.shards_total,
        "seconds": round(seconds, 3)}, indent=1))
    return result

