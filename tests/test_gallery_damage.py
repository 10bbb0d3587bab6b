"""`collage gallery` on damaged runs: each kind of damage is skipped or worked around, counted in one warning
line on stderr and listed in the page's problems panel (checked in a real headless Chromium), never a crash.

Every test damages a fresh copy of one real run the way disks and interrupted copies do, then runs the CLI
as a user does (`python -m collage gallery`).
"""

from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collage.api import generate_run
from conftest import run_cli
from test_gallery import browser  # noqa: F401  (the headless Chromium fixture, shared)

SHARDS = 6  # of 2 samples each: src.jpg, tgt.jpg, mask.png and json per sample
WARNING_END = "; see the page's problems panel"


@pytest.fixture(scope="module")
def run(tmp_path_factory, assets) -> Path:
    out = tmp_path_factory.mktemp("intact") / "drag"
    generate_run(out=str(out), task="drag", n=2 * SHARDS, seed=3, size=128, image_format="jpg", backend="local",
                 shard_size=2, ops=["translate"])
    assert len(list(out.glob("*.tar"))) == SHARDS
    return out


@pytest.fixture
def copy(run, tmp_path) -> Path:
    """A fresh copy of the run, to damage."""
    return Path(shutil.copytree(run, tmp_path / "run"))


@pytest.fixture
def open_page(browser):  # noqa: F811  (the imported fixture)
    contexts = []

    def open_(html: Path):
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.goto(html.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        return page

    yield open_
    for context in contexts:
        context.close()


def shard(run: Path, number: int) -> Path:
    return run / f"drag-{number:06d}.tar"


def read_members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def keys_of(tar_path: Path) -> list[str]:
    return sorted({name.split(".")[0] for name in read_members(tar_path)})


def rewrite(tar_path: Path, changes: dict[str, bytes | None]) -> None:
    """Rewrite the shard with python's tarfile, some members' bytes replaced (None: the member left out)."""
    members = read_members(tar_path)
    assert set(changes) <= set(members), sorted(changes)
    with tarfile.open(tar_path, "w") as tar:
        for name, data in members.items():
            data = changes.get(name, data)
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def json_of(run: Path, key: str) -> dict:
    return json.loads(read_members(shard(run, int(key.split("-")[1])))[f"{key}.json"])


def member_offsets(tar_path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tar_path) as tar:
        return tar.getmembers()


def gallery(tmp_path: Path, *sources: Path, warned: bool = True) -> tuple[str, Path]:
    """`collage gallery SOURCES`: it must exit 0 and write the page, with no traceback and (when `warned`)
    exactly one warning line on stderr, which is returned with the page's path."""
    out = tmp_path / "site"
    result = run_cli("gallery", *map(str, sources), "--out", str(out), "--n", "100")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.startswith("gallery: ") and (out / "index.html").is_file()
    lines = result.stderr.strip().splitlines()
    if not warned:
        assert lines == []
        return "", out / "index.html"
    assert len(lines) == 1 and lines[0].startswith("warning: ") and lines[0].endswith(WARNING_END), lines
    return lines[0], out / "index.html"


def problem_rows(page) -> list[dict]:
    return page.eval_on_selector_all("#problems tr.problem", """rows => rows.map(r => ({kind: r.dataset.kind,
        file: r.querySelector('.file').textContent, key: r.querySelector('.key').textContent,
        detail: r.querySelector('.detail').textContent}))""")


def card_keys(page) -> list[str]:
    return sorted(page.eval_on_selector_all(".card", "nodes => nodes.map(n => n.dataset.key)"))


def test_damaged_shards_are_skipped_counted_and_listed(copy, tmp_path, open_page):
    intact = keys_of(shard(copy, 4)) + keys_of(shard(copy, 5))
    cut = member_offsets(shard(copy, 0))[5]  # the second sample's src.jpg: cut in half
    shard(copy, 0).write_bytes(shard(copy, 0).read_bytes()[:cut.offset_data + cut.size // 2])
    shard(copy, 1).write_bytes(random.Random(1).randbytes(shard(copy, 1).stat().st_size))
    shard(copy, 2).write_bytes(b"")
    header = bytearray(shard(copy, 3).read_bytes())
    header[148:156] = b"0000000\0"  # the first header's checksum field: a valid number, the wrong sum
    shard(copy, 3).write_bytes(bytes(header))

    line, html = gallery(tmp_path, copy)
    assert line == "warning: 4 damaged shard(s) skipped" + WARNING_END
    page = open_page(html)
    assert page.locator("#problems").is_visible()
    rows = {row["file"]: row for row in problem_rows(page)}
    assert sorted(rows) == [shard(copy, i).name for i in range(4)] and {r["kind"] for r in rows.values()} == {"shard"}
    assert rows[shard(copy, 0).name]["detail"].startswith("truncated")
    assert "not a readable tar" in rows[shard(copy, 1).name]["detail"]
    assert rows[shard(copy, 2).name]["detail"] == "empty (0 bytes)"
    assert "bad checksum" in rows[shard(copy, 3).name]["detail"]
    assert card_keys(page) == intact, "the intact shards' samples are all shown"
    assert "2 of 6 shards read, 4 damaged" in page.inner_text("#summary summary")
    assert page.errors == []


def test_damage_tarfile_passes_over_quietly_is_found(copy, tmp_path, open_page):
    """tarfile stops without an error at a corrupt header after the first or at a cut between members, and
    reads an all-zero file as an empty archive: each would silently lose samples."""
    second_sample = member_offsets(shard(copy, 0))[4].offset  # the header of the second sample's first member
    data = bytearray(shard(copy, 0).read_bytes())
    data[second_sample:second_sample + 512] = random.Random(2).randbytes(512)
    shard(copy, 0).write_bytes(bytes(data))
    shard(copy, 1).write_bytes(shard(copy, 1).read_bytes()[:member_offsets(shard(copy, 1))[4].offset])
    shard(copy, 2).unlink()  # sizes.json still lists it
    shard(copy, 3).write_bytes(bytes(shard(copy, 3).stat().st_size))

    line, html = gallery(tmp_path, copy)
    assert line == "warning: 4 damaged shard(s) skipped" + WARNING_END
    page = open_page(html)
    rows = {row["file"]: row["detail"] for row in problem_rows(page)}
    assert rows[shard(copy, 0).name].startswith(f"corrupt member header at byte {second_sample:,}")
    assert rows[shard(copy, 1).name].startswith("truncated: the file ends after 4 member(s)")
    assert rows[shard(copy, 2).name].startswith("missing")
    assert rows[shard(copy, 3).name].startswith("holds no members")
    assert card_keys(page) == keys_of(shard(copy, 4)) + keys_of(shard(copy, 5))
    assert page.errors == []


def test_unreadable_json_members_are_listed_and_wrong_typed_fields_ignored(copy, tmp_path, open_page):
    a, b = keys_of(shard(copy, 0))
    c, d = keys_of(shard(copy, 1))
    e, f = keys_of(shard(copy, 2))
    g, h = keys_of(shard(copy, 3))
    rewrite(shard(copy, 0), {f"{a}.json": b"{not json", f"{b}.json": b"[1, 2, 3]"})
    rewrite(shard(copy, 1), {f"{c}.json": b"\xff\xfe\x00 not utf-8", f"{d}.json": b'"just text"'})
    shard(copy, 1).with_suffix(".parquet").unlink()  # this shard's index comes from its json members
    wrong = {**json_of(copy, e), "width": "128px", "objects": 5, "points": [["a", 0.1, 0.1, 0.1]], "prompt": 7}
    nan = {**json_of(copy, f), "height": float("nan"), "target_object": 99, "transform": [1, 2]}
    rewrite(shard(copy, 2), {f"{e}.json": json.dumps(wrong).encode(), f"{f}.json": json.dumps(nan).encode()})
    rewrite(shard(copy, 3), {f"{g}.json": b"[" * 100_000 + b"]" * 100_000, f"{h}.json": None})

    line, html = gallery(tmp_path, copy)
    assert line == "warning: 6 unreadable sample(s) skipped, 2 sample(s) with wrong-typed fields ignored" + WARNING_END
    page = open_page(html)
    rows = problem_rows(page)
    assert sorted(r["key"] for r in rows if r["kind"] == "sample") == sorted([a, b, c, d, g, h])
    details = {r["key"]: r["detail"] for r in rows}
    assert "not an object" in details[b] and "not an object" in details[d] and "no json member" in details[h]
    assert sorted(r["key"] for r in rows if r["kind"] == "field") == [e, f]
    everything = [k for i in range(SHARDS) for k in keys_of(shard(copy, i)) if k not in (a, b, c, d, g, h)]
    assert card_keys(page) == sorted(everything)
    card = page.locator(f'.card[data-key="{e}"]')
    issues = card.locator(".issues").inner_text()
    assert all(word in issues for word in ("width", "objects", "points", "prompt")), issues
    assert card.locator(".prompt").inner_text() == "prompt: 7"
    assert card.locator("svg.ov").count() == 0, "no overlay without a usable canvas size"
    assert "height" in page.locator(f'.card[data-key="{f}"] .issues').inner_text()
    assert page.errors == []


def test_undecodable_images_show_placeholders_and_are_counted(copy, tmp_path, open_page):
    a, b = keys_of(shard(copy, 0))
    c, d = keys_of(shard(copy, 1))
    members = read_members(shard(copy, 1))
    jpeg = members[f"{d}.tgt.jpg"]
    rewrite(shard(copy, 0), {f"{a}.tgt.jpg": random.Random(3).randbytes(5000), f"{b}.src.jpg": b""})
    rewrite(shard(copy, 1), {f"{c}.mask.png": members[f"{c}.mask.png"][:200],  # libpng: "incomplete" on stderr
                             f"{d}.tgt.jpg": jpeg[:30] + bytes(60) + jpeg[90:]})  # libjpeg: "Corrupt JPEG data"

    line, html = gallery(tmp_path, copy)  # the codecs' own complaints must not reach stderr
    assert line == "warning: 4 undecodable image(s) shown as placeholders" + WARNING_END
    page = open_page(html)
    rows = problem_rows(page)
    assert sorted((r["kind"], r["key"]) for r in rows) == sorted(("image", k) for k in (a, b, c, d))
    assert all("does not decode" in r["detail"] for r in rows)
    assert card_keys(page) == sorted(k for i in range(SHARDS) for k in keys_of(shard(copy, i))), "no card is dropped"
    for key, role, label in ((a, "tgt", "target"), (b, "src", "source"), (c, "mask", "mask overlay"), (d, "tgt", "target")):
        card = page.locator(f'.card[data-key="{key}"]')
        frame = card.locator(f'.panel[data-role="{role}"] .frame')
        assert frame.get_attribute("class") == "frame empty undecodable" and frame.inner_text() == f"undecodable {label}"
        assert frame.is_visible() and f"{role} image does not decode" in card.locator(".issues").inner_text()
    # the other panels of those cards still show their images; d's mask is shown alone (no target to tint)
    assert page.locator(f'.card[data-key="{a}"] .panel[data-role="src"] img').count() == 1
    assert page.locator(f'.card[data-key="{d}"] .panel[data-role="mask"] img').count() == 1
    assert page.locator(".frame.undecodable").count() == 4
    assert page.errors == []


def test_unreadable_run_files_are_worked_around(copy, tmp_path, open_page):
    (copy / "run.json").write_bytes(random.Random(4).randbytes(300))
    (copy / "sizes.json").write_text('{"drag-000000.tar": 2,')
    shard(copy, 0).with_suffix(".stats.json").write_text("not json")
    shard(copy, 1).with_suffix(".stats.json").write_text("[2, 3]")
    shard(copy, 2).with_suffix(".parquet").write_bytes(random.Random(5).randbytes(2000))
    index = shard(copy, 3).with_suffix(".parquet")
    table = pq.read_table(index)
    column = table.schema.get_field_index("width")
    pq.write_table(table.set_column(column, "width", pa.array(["wide"] * table.num_rows)), index)

    line, html = gallery(tmp_path, copy)
    assert line == "warning: 6 unreadable run file(s) done without" + WARNING_END
    page = open_page(html)
    rows = {r["file"]: r["detail"] for r in problem_rows(page) if r["kind"] == "file"}
    assert sorted(rows) == sorted(["run.json", "sizes.json", "drag-000000.stats.json", "drag-000001.stats.json",
                                   "drag-000002.parquet", "drag-000003.parquet"])
    assert "not an object" in rows["drag-000001.stats.json"] and "wrong type (width)" in rows["drag-000003.parquet"]
    assert card_keys(page) == sorted(k for i in range(SHARDS) for k in keys_of(shard(copy, i))), "every sample is shown"
    assert "run.json unreadable" in page.inner_text(".run .config")
    aspects = page.eval_on_selector_all("svg.aspects rect.bar", "rs => rs.map(r => +r.dataset.value)")
    assert sum(aspects) == 2 * SHARDS, "the histograms read the json members where the index is unusable"
    assert page.errors == []


@pytest.mark.parametrize("config", [[1, 2], {"name": 7, "n": "lots", "mix": 5, "seed": None},
                                    {"name": "r", "mix": [{"task": "drag", "ops": "translate"}, 3]}],
                         ids=["a-list", "wrong-types", "odd-mix"])
def test_run_json_of_the_wrong_shape(copy, tmp_path, config):
    (copy / "run.json").write_text(json.dumps(config))
    line, html = gallery(tmp_path, copy, warned=isinstance(config, list))
    text = html.read_text()
    assert text.count('<div class="run">') == 1 and text.count('"key":"drag-') == 2 * SHARDS, "every sample is shown"
    if isinstance(config, list):
        assert line == "warning: 1 unreadable run file(s) done without" + WARNING_END and "not an object" in text


def test_a_run_with_no_readable_shard_still_gets_a_page(copy, tmp_path, open_page):
    for i in range(SHARDS):
        shard(copy, i).write_bytes(random.Random(i).randbytes(3000))
    line, html = gallery(tmp_path, copy)
    assert line == f"warning: {SHARDS} damaged shard(s) skipped" + WARNING_END
    page = open_page(html)
    assert card_keys(page) == [] and len(problem_rows(page)) == SHARDS
    assert page.inner_text("#shown") == "0 of 0 shown"
    assert page.errors == []
