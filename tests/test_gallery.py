"""The QA gallery in a real headless Chromium: it loads cleanly, filters work, overlays sit where the shard
json says (measured on screenshot pixels), flags export and are excluded on read."""

from __future__ import annotations

import csv
import io
import json
import os
import math
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from collage.api import generate_run, iter_samples
from collage.cli import main
from collage.gallery import build_gallery, make_server
from collage.gallery.page import OVERLAY_COLOURS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
LETTERBOX = (0x3A, 0x3A, 0x3A)  # the frame background around a letterboxed image (page.py)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, assets):
    """Small png runs: drag on non-square canvases, segdet, reference seg/depth, t2i; several shards each."""
    root = tmp_path_factory.mktemp("runs")
    specs = {
        # seed 4: holds a non-square sample with a long, isolated drag (test_drag_arrows_and_dots_…)
        "drag": dict(task="drag", n=8, seed=4, ops=["translate"], aspect_ratios="all", shard_size=4),
        "segdet": dict(task="segdet", n=6, seed=4, ops=["segment", "detect"], aspect_ratios="all", shard_size=3),
        "reference": dict(task="reference", n=4, seed=3, ops=["seg", "depth"], shard_size=2),  # holds both ops
        "t2i": dict(task="t2i", n=4, seed=6, ops=["text", "shapes"], shard_size=2),
    }
    for name, spec in specs.items():
        generate_run(out=str(root / name), size=256, image_format="png", backend="local", **spec)
        # the tests below need every op of each run: a seed whose few samples miss one must be changed
        ops = {op for index in (root / name).glob("*.parquet") for op in pq.read_table(index, columns=["op"])["op"].to_pylist()}
        assert ops == set(spec["ops"]), (name, ops)
    return {name: root / name for name in specs}


@pytest.fixture(scope="module")
def samples(runs):
    """Every sample's json, by key, read back from the shards (the truth the page is checked against)."""
    return {s["__key__"]: s["json"] for s in iter_samples([str(u) for r in runs.values() for u in sorted(r.glob("*.tar"))],
                                                          decode=True)}


@pytest.fixture(scope="module")
def gallery(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("gallery") / "site"
    result = build_gallery([str(p) for p in runs.values()], out, n=100, seed=0)
    return out, result


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        # CI installs it (.ci/run): there a missing browser is a failure, not a skip.
        (pytest.fail if os.environ.get("CI") else pytest.skip)("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else __import__("playwright.sync_api").sync_api
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, gallery):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1, accept_downloads=True)
    page = context.new_page()
    page.errors = []
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto((gallery[0] / "index.html").as_uri())
    page.wait_for_selector("body[data-ready='1']")
    yield page
    context.close()


def visible_keys(page) -> list[str]:
    return page.eval_on_selector_all(".card:not([hidden])", "nodes => nodes.map(n => n.dataset.key)")


def shot(locator) -> np.ndarray:
    """The element's pixels: a page screenshot clipped to its box rounded out to whole pixels, then cut to the
    pixels whose centres lie inside the box (layout may put the element at fractional coordinates)."""
    box = locator.bounding_box()
    left, top = math.floor(box["x"]), math.floor(box["y"])
    clip = {"x": left, "y": top, "width": math.ceil(box["x"] + box["width"]) - left,
            "height": math.ceil(box["y"] + box["height"]) - top}
    pixels = np.asarray(Image.open(io.BytesIO(locator.page.screenshot(clip=clip))).convert("RGB")).astype(int)
    first_x, first_y = round(box["x"] - left), round(box["y"] - top)  # 1 when the first pixel's centre is outside
    return pixels[first_y:first_y + round(box["height"]), first_x:first_x + round(box["width"])]


def panel_frame(page, key: str, role: str):
    frame = page.locator(f'.card[data-key="{key}"] .panel[data-role="{role}"] .frame')
    frame.scroll_into_view_if_needed()
    frame.locator("img").evaluate("img => img.decode()")  # lazy image: loaded and decoded before any screenshot
    return frame


def overlay_pixels(page, frame) -> tuple[np.ndarray, np.ndarray]:
    """The frame's pixels with overlays on, and where they differ from the same frame with overlays off."""
    with_overlays = shot(frame)
    page.uncheck("#f-overlays")
    plain = shot(frame)
    page.check("#f-overlays")
    return with_overlays, np.abs(with_overlays - plain).sum(axis=2) > 0


def of_colour(pixels: np.ndarray, changed: np.ndarray, name: str, tolerance: int = 12) -> np.ndarray:
    return changed & (np.abs(pixels - np.array(OVERLAY_COLOURS[name])).max(axis=2) <= tolerance)


def displayed(frame_size: tuple[int, int], width: int, height: int):
    """json pixel → frame pixel for an image shown letterboxed ('contain') in the frame."""
    fw, fh = frame_size
    scale = min(fw / width, fh / height)
    ox, oy = (fw - width * scale) / 2, (fh - height * scale) / 2
    return lambda x, y: (ox + x * scale, oy + y * scale)


def image_rect_on_screen(plain: np.ndarray) -> tuple[int, int, int, int]:
    """Where the image itself shows in a frame screenshot: everything that is not the letterbox colour."""
    content = np.abs(plain - np.array(LETTERBOX)).max(axis=2) > 6
    ys, xs = np.nonzero(content)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_page_loads_without_console_errors_and_summarises_the_runs(page, gallery, samples):
    out, result = gallery
    assert result.samples == len(samples), "n above the run sizes shows every sample"
    assert page.errors == []
    assert sorted(page.eval_on_selector_all(".card", "nodes => nodes.map(n => n.dataset.key)")) == sorted(samples)
    for key, meta in list(samples.items())[:3]:  # the ids, prompt, caption, source and json link of a card
        card = page.locator(f'.card[data-key="{key}"]')
        assert meta["prompt"] in card.locator(".prompt").inner_text()
        assert card.locator(".caption-source").inner_text() == meta["caption_source"]
        assert key.rsplit("-", 1)[0] + ".tar" in card.locator(".shard").inner_text()
        linked = json.loads((out / card.locator(".json-link").get_attribute("href")).read_text())
        assert linked == meta
    # Summary plots: one chart set per run, bars counting what the shards hold.
    assert page.locator(".run").count() == 4
    bars = page.eval_on_selector_all("svg.task-op rect.bar", "rs => rs.map(r => [r.dataset.label, +r.dataset.value])")
    assert Counter({label: value for label, value in bars}) == Counter(f"{m['task']}/{m['op']}" for m in samples.values())
    aspects = page.eval_on_selector_all("svg.aspects rect.bar", "rs => rs.map(r => +r.dataset.value)")
    assert sum(aspects) == len(samples) and page.locator("svg.failures rect.bar").count() == 4 * 3
    assert page.errors == []


def test_filters_change_what_is_shown(page, samples):
    page.select_option("#f-task", "segdet")
    assert sorted(visible_keys(page)) == sorted(k for k, m in samples.items() if m["task"] == "segdet")
    page.select_option("#f-op", "detect")
    detect = sorted(k for k, m in samples.items() if m["op"] == "detect")
    assert sorted(visible_keys(page)) == detect
    assert page.inner_text("#shown") == f"{len(detect)} of {len(samples)} shown"
    page.select_option("#f-task", "")
    page.select_option("#f-op", "")
    assert len(visible_keys(page)) == len(samples)
    sources = {m["caption_source"] for m in samples.values()}
    page.select_option("#f-source", sorted(sources)[0])
    assert sorted(visible_keys(page)) == sorted(k for k, m in samples.items() if m["caption_source"] == sorted(sources)[0])
    page.select_option("#f-source", "")
    word = next(m for m in samples.values() if m["task"] == "t2i")["prompt"].split()[-1].strip(".").lower()
    page.fill("#f-search", word)
    expected = sorted(k for k, m in samples.items() if word in (m["prompt"] + "\n" + m["caption"] + "\n" + k).lower())
    assert 0 < len(expected) < len(samples) and sorted(visible_keys(page)) == expected
    page.fill("#f-search", "no prompt says this")
    assert visible_keys(page) == []
    assert page.errors == []


def test_drag_arrows_and_dots_are_where_the_json_says(page, samples):
    # a non-square canvas and a point far enough from the others to measure it alone
    chosen = None
    for key, meta in samples.items():
        if meta["task"] != "drag" or meta["width"] == meta["height"]:
            continue
        w, h = meta["width"], meta["height"]
        scale = 200 / max(w, h)
        ends = [((x * w + 0.5) * scale, (y * h + 0.5) * scale, ((x + dx) * w + 0.5) * scale, ((y + dy) * h + 0.5) * scale)
                for x, y, dx, dy in meta["points"]]
        for i, (hx, hy, tx, ty) in enumerate(ends):
            others = [end for j, e in enumerate(ends) if j != i for end in ((e[0], e[1]), (e[2], e[3]))]
            inside = all(8 < px < w * scale - 8 and 8 < py < h * scale - 8 for px, py in ((hx, hy), (tx, ty)))
            if inside and np.hypot(tx - hx, ty - hy) > 24 and all(np.hypot(ox - px, oy - py) > 12 for ox, oy in others
                                                                   for px, py in ((hx, hy), (tx, ty))):
                chosen = (key, i)
                break
        if chosen:
            break
    assert chosen, "the drag fixture should hold a non-square sample with a long, isolated drag away from the edges"
    key, index = chosen
    meta = samples[key]
    w, h = meta["width"], meta["height"]
    x, y, dx, dy = meta["points"][index]
    for role in ("src", "tgt"):
        frame = panel_frame(page, key, role)
        pixels, changed = overlay_pixels(page, frame)
        size = (pixels.shape[1], pixels.shape[0])
        to_screen = displayed(size, w, h)
        # The image itself sits where this mapping says (independent of the overlay code): its letterboxed rect.
        page.uncheck("#f-overlays")
        x0, y0, x1, y1 = image_rect_on_screen(shot(frame))
        page.check("#f-overlays")
        assert np.allclose((x0, y0), to_screen(0, 0), atol=1.01) and np.allclose((x1, y1), to_screen(w, h), atol=1.01)
        # (x, y) is a pixel centre: json pixel x·W spans [x·W, x·W + 1) on the canvas.
        handle = to_screen(x * w + 0.5, y * h + 0.5)
        target = to_screen((x + dx) * w + 0.5, (y + dy) * h + 0.5)
        for name, centre in (("handle", handle), ("target", target)):
            ys, xs = np.nonzero(of_colour(pixels, changed, name))
            near = np.hypot(xs - centre[0], ys - centre[1]) < 7
            assert near.sum() >= 12, f"no {name} dot at {centre} in {role}"
            # within 2 screen px of the point (of a 200 px panel): the arrowhead may cover part of the target dot
            assert np.hypot(xs[near].mean() - centre[0], ys[near].mean() - centre[1]) < 2.0, (name, role)
        ys, xs = np.nonzero(of_colour(pixels, changed, "arrow"))
        for t in (0.4, 0.6):  # the shaft runs from the handle toward the target
            px, py = handle[0] + t * (target[0] - handle[0]), handle[1] + t * (target[1] - handle[1])
            assert np.hypot(xs - px, ys - py).min() < 1.5, (t, role)
    assert page.errors == []


def test_boxes_are_where_the_json_says_and_on_the_painted_object(page, samples):
    def roomy(m):  # a box large enough on screen for its edges to be checked away from its corners
        x0, y0, x1, y1 = m["boxes"][0]
        return x1 - x0 > 0.05 and y1 - y0 > 0.05

    key, meta = next((k, m) for k, m in samples.items()
                     if m["op"] == "segment" and m["width"] != m["height"] and roomy(m))
    w, h = meta["width"], meta["height"]
    x0, y0, x1, y1 = meta["boxes"][0]
    frame = panel_frame(page, key, "src")
    pixels, changed = overlay_pixels(page, frame)
    to_screen = displayed((pixels.shape[1], pixels.shape[0]), w, h)
    left, top = to_screen(x0 * w, y0 * h)
    right, bottom = to_screen(x1 * w, y1 * h)
    box = of_colour(pixels, changed, "box")
    for edge_x in (left, right):  # each vertical edge: a line of box colour down the box's height
        column = box[int(top) + 3:int(bottom) - 3, max(0, round(edge_x) - 2):round(edge_x) + 2].any(axis=1)
        assert column.mean() > 0.9, edge_x
    for edge_y in (top, bottom):
        row = box[max(0, round(edge_y) - 2):round(edge_y) + 2, int(left) + 3:int(right) - 3].any(axis=0)
        assert row.mean() > 0.9, edge_y
    ys, xs = np.nonzero(box)
    assert abs(xs.min() - left) <= 1.5 and abs(xs.max() + 1 - right) <= 1.5
    assert abs(ys.min() - top) <= 1.5 and abs(ys.max() + 1 - bottom) <= 1.5
    # The target paints the object in `color`: the painted region on screen (pixels of that colour that
    # differ from the source; the background may hold the colour too) fills the same box.
    tgt = panel_frame(page, key, "tgt")
    page.uncheck("#f-overlays")
    plain, plain_src = shot(tgt), shot(frame)
    page.check("#f-overlays")
    painted = (np.abs(plain - np.array(meta["color"])).max(axis=2) <= 24) & (np.abs(plain - plain_src).max(axis=2) > 24)
    rows, cols = np.nonzero(painted.sum(axis=1) >= 2)[0], np.nonzero(painted.sum(axis=0) >= 2)[0]
    # The painted region lies inside the box and spans most of it (thin parts of an object blend with their
    # surroundings when the browser scales the image down, so its extent on screen can fall short of the box).
    tol = 2 * max(1.0, (right - left) / ((x1 - x0) * w))
    assert cols.min() >= left - tol and cols.max() + 1 <= right + tol
    assert rows.min() >= top - tol and rows.max() + 1 <= bottom + tol
    assert cols.max() + 1 - cols.min() >= 0.4 * (right - left) and rows.max() + 1 - rows.min() >= 0.4 * (bottom - top)
    # objects[].bbox: one green box per object on the target.
    assert page.locator(f'.card[data-key="{key}"] .panel[data-role="tgt"] rect.object').count() == len(meta["objects"])
    assert page.errors == []


def test_segmentation_legend_names_the_colours(page, samples):
    key, meta = next((k, m) for k, m in samples.items() if m["op"] == "seg")
    frame = panel_frame(page, key, "cond")
    rows = frame.locator(".legend div:has(i)")
    swatch = "e => getComputedStyle(e).backgroundColor"
    shown = [(rows.nth(i).inner_text().strip(), rows.nth(i).locator("i").evaluate(swatch)) for i in range(rows.count())]
    expected = [(item["name"], "rgb({}, {}, {})".format(*item["color"])) for item in meta["condition"]["legend"]]
    assert shown == expected
    # drawn over the condition map (inside its frame), and hidden with the other overlays
    legend, box = frame.locator(".legend"), frame.bounding_box()
    inner = legend.bounding_box()
    assert box["x"] <= inner["x"] and inner["x"] + inner["width"] <= box["x"] + box["width"]
    assert box["y"] <= inner["y"] and inner["y"] + inner["height"] <= box["y"] + box["height"]
    with_legend = shot(frame)
    page.uncheck("#f-overlays")
    assert not legend.is_visible() and (shot(frame) != with_legend).any()
    page.check("#f-overlays")


def test_flags_export_and_are_excluded_on_read(page, gallery, runs, samples, tmp_path):
    keys = sorted(samples)
    flagged = {keys[1]: "wrong points", keys[-2]: "wrong boxes"}
    for key, reason in flagged.items():
        card = page.locator(f'.card[data-key="{key}"]')
        card.locator(".reason").select_option(reason)
        card.locator(".flag-btn").click()
    page.locator(f'.card[data-key="{keys[-2]}"] .note').fill('box is 3 px "wide", off')
    assert page.inner_text("#flag-count") == "2 flagged"
    page.check("#f-flagged")
    assert sorted(visible_keys(page)) == sorted(flagged)
    page.uncheck("#f-flagged")
    with page.expect_download() as info:
        page.click("#export-json")
    assert info.value.suggested_filename == "flags.json"
    flags_json = tmp_path / "flags.json"
    info.value.save_as(flags_json)
    rows = json.loads(flags_json.read_text())
    assert {row["key"]: row["reason"] for row in rows} == {keys[1]: "wrong points",
                                                         keys[-2]: 'wrong boxes: box is 3 px "wide", off'}
    with page.expect_download() as info:
        page.click("#export-csv")
    flags_csv = tmp_path / "flags.csv"
    info.value.save_as(flags_csv)
    csv_rows = list(csv.DictReader(io.StringIO(flags_csv.read_text())))
    assert {row["key"]: row["reason"] for row in csv_rows} == {row["key"]: row["reason"] for row in rows}
    # Flags survive a reload (kept in the browser's storage).
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert page.inner_text("#flag-count") == "2 flagged"
    # The trainer's reader skips them, from either file or a plain key list.
    sources = [str(u) for r in runs.values() for u in sorted(r.glob("*.tar"))]
    for exclude in (flags_json, flags_csv, list(flagged)):
        read = [s["__key__"] for s in iter_samples(sources, decode=False, exclude=exclude)]
        assert sorted(read) == sorted(set(keys) - set(flagged))
    text_list = tmp_path / "bad.txt"
    text_list.write_text(f"# flagged\n{keys[0]}\n")
    assert keys[0] not in {s["__key__"] for s in iter_samples(sources, decode=False, exclude=text_list)}
    page.click("#clear-flags")
    assert page.inner_text("#flag-count") == "0 flagged"
    assert page.errors == []


def test_big_runs_are_sampled_not_read_whole(runs, tmp_path):
    drag = runs["drag"]  # 2 shards of 4
    out = tmp_path / "g"
    one = build_gallery([str(drag)], out, n=2, seed=1)
    assert (one.samples, one.shards_read, one.shards_total) == (2, 2, 2)
    first = json.loads((out / "gallery.json").read_text())
    keys = lambda: sorted(json.loads(p.read_text())["seed"] for p in (out / "json").glob("*.json"))  # noqa: E731
    seeds_one = keys()
    build_gallery([str(drag)], out, n=2, seed=1)
    assert keys() == seeds_one, "the same seed shows the same samples"
    assert first["shards_read"] == 2
    shards = sorted(str(p) for p in runs["segdet"].glob("*.tar"))  # 2 shards of 3: n=1 opens one shard only
    single = build_gallery(shards, out, n=1, seed=0, task="segdet")
    assert (single.samples, single.shards_read) == (1, 1)
    only = build_gallery([str(p) for p in runs.values()], out, n=100, seed=0, task="segdet", op="detect")
    metas = [json.loads(p.read_text()) for p in (out / "json").glob("*.json")]
    assert metas and {(m["task"], m["op"]) for m in metas} == {("segdet", "detect")} and only.samples == len(metas)


def test_cli_gallery_and_its_errors(runs, tmp_path, capsys):
    out = tmp_path / "site"
    shard = str(runs["segdet"] / "segdet-000000.tar")
    assert main(["gallery", str(runs["t2i"]), shard, "--out", str(out), "--n", "5"]) == 0
    assert "gallery: 5 samples" in capsys.readouterr().out and (out / "index.html").exists()
    for args, words in [
        ([str(tmp_path / "nope"), "--out", str(out)], ["nope", "no such run directory"]),
        ([str(runs["t2i"]), "--out", str(runs["drag"])], ["not a gallery"]),
        ([str(runs["t2i"]), "--out", str(tmp_path / "g2"), "--task", "drag", "--op", "canny"], ["--op canny"]),
        ([str(runs["t2i"]), "--out", str(tmp_path / "g2"), "--task", "segdet"], ["no samples match --task segdet"]),
    ]:
        assert main(["gallery", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and all(w in err[0] for w in words), err
    assert not (tmp_path / "g2").exists()


def test_serve_binds_loopback_only(gallery):
    server = make_server(gallery[0], 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as response:
            assert response.status == 200 and b"window.GALLERY" in response.read()
    finally:
        server.shutdown()
        server.server_close()
