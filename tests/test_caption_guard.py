"""The caption guard (`collage.captions.check`): goals on the stored labelled set, and unit cases per check."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from collage.captions import check

DATA = Path(__file__).parent / "data" / "guard"


def _rows():
    return [json.loads(line) for line in (DATA / "set.jsonl").read_text().splitlines() if line.strip()]


def test_goals_hold_per_task_on_stored_set():
    stats = defaultdict(lambda: {"faithful": [0, 0], "error": [0, 0]})
    for row in _rows():
        problems = check(row["meta"], row["caption"])
        ok = (not problems) if row["label"] == "faithful" else bool(problems)
        s = stats[row["meta"]["task"]][row["label"]]
        s[0] += ok
        s[1] += 1
    assert set(stats) == {"t2i", "edit", "drag", "inpaint", "reference", "segdet"}
    for task, s in stats.items():
        f, e = s["faithful"], s["error"]
        assert f[1] >= 60 and e[1] >= 60, (task, s)
        assert f[0] / f[1] >= 0.90, (task, f)
        assert e[0] / e[1] >= 0.99, (task, e)


def test_stored_set_has_handwritten_and_every_error_kind():
    rows = _rows()
    assert sum(r["kind"] == "hand" for r in rows) >= 60
    kinds = {r["kind"] for r in rows if r["label"] == "error"}
    assert {"count", "colour", "quoted", "relation", "swap", "drop", "drag", "target", "extra"} <= kinds
    assert (DATA / "set.jsonl").stat().st_size < 2.5e6


def test_template_prompts_pass():
    for row in _rows()[::7]:
        assert check(row["meta"], row["meta"]["prompt"]) == [], row["meta"]["prompt"]


TEXT = {"task": "t2i", "op": "text", "background": "a photo of a cat",
        "prompt": 'An image with the text "Happy 2 You" in large red letters and the text "hot dog" in small blue '
                  'letters, on a photo of a cat.',
        "objects": [{"id": 0, "asset": "font:x", "name": "Happy 2 You"}, {"id": 1, "asset": "font:y", "name": "hot dog"}],
        "facts": {"texts": [{"text": "Happy 2 You", "color": "red", "outline": None},
                            {"text": "hot dog", "color": "blue", "outline": None}]}}


def test_text_verbatim_and_numbers_inside_quotes():
    assert check(TEXT, 'The words "Happy 2 You" in red and "hot dog" in blue over a photo of a cat.') == []
    # verbatim without quotes is fine; the "2" inside the text is not a count, "hot dog"/"cat" are not added objects
    assert check(TEXT, "Red letters spell Happy 2 You and blue ones spell hot dog, over a cat photo.") == []
    assert "missing quoted text 'Happy 2 You'" in check(TEXT, 'The words "Happy two You" in red and "hot dog" in blue.')
    assert "missing quoted text 'Happy 2 You'" in check(TEXT, 'The words "happy 2 you" in red and "hot dog" in blue.')
    assert any("colour of text 'hot dog'" in p for p in check(TEXT, '"Happy 2 You" in red and "hot dog" in green.'))
    assert any(p.startswith("adds quoted text") for p in
               check(TEXT, '"Happy 2 You" in red, "hot dog" in blue and "Sale" in red.'))


SHAPES = {"task": "t2i", "op": "shapes", "background": "a white background",
          "prompt": "A picture with two small red triangles (one at the top, one on the left) and one large blue star "
                    "in the center, on a white background.",
          "objects": [{"name": "red triangle"}, {"name": "red triangle"}, {"name": "blue star"}],
          "facts": {"shapes": [{"kind": "triangle", "color": "red", "count": 2},
                               {"kind": "star", "color": "blue", "count": 1}]}}


@pytest.mark.parametrize("caption", [
    "Two red triangles and a blue star on a white background.",
    "2 small red triangles and 1 large blue star on white.",
    "A pair of red triangles and a single blue star, on a white background.",
    "On a white background there are two little red triangles and one blue star.",
])
def test_shapes_faithful(caption):
    assert check(SHAPES, caption) == []


@pytest.mark.parametrize("caption, problem", [
    ("Three red triangles and a blue star.", "count of red triangles: 2 expected, 3 said"),
    ("Two green triangles and a blue star.", "missing shapes: 2 red triangles"),
    ("Two red triangles and a blue circle.", "missing shapes: 1 blue stars"),
    ("Red triangles and a blue star.", "count of red triangles: 2 expected, not said"),
    ("Two red triangles, a blue star and a green hexagon.", "adds shapes: green hexagon"),
])
def test_shapes_errors(caption, problem):
    assert problem in check(SHAPES, caption)


STICKERS = {"task": "t2i", "op": "stickers", "background": "blue and white stripes",
            "prompt": "Stickers of one hot dog, two cats and one pair of jeans on blue and white stripes. "
                      "The hot dog is to the left of the pair of jeans. The cat is above the hot dog.",
            "objects": [{"name": "hot dog"}, {"name": "cat"}, {"name": "cat"}, {"name": "jeans"}],
            "facts": {"counts": {"hot dog": 1, "cat": 2, "jeans": 1},
                      "relations": [["hot dog", "left of", "jeans"]]}}


@pytest.mark.parametrize("caption", [
    "A hot dog, 2 cats and a pair of jeans on blue and white stripes; the hot dog is left of the jeans.",
    "Two cats, one hot dog and one pair of jeans. The jeans are to the right of the hot dog.",
    "There are two cats, a hot dog beside... no: a hot dog on the left of the jeans, and a pair of jeans.",
])
def test_stickers_faithful(caption):
    assert check(STICKERS, caption) == [], check(STICKERS, caption)


def test_stickers_errors():
    assert "count of cat: 2 expected, 3 said" in check(STICKERS, "A hot dog, three cats and a pair of jeans; the hot "
                                                                 "dog is left of the jeans.")
    flipped = check(STICKERS, "A hot dog, two cats and a pair of jeans; the hot dog is right of the jeans.")
    assert any(p.startswith("relation of hot dog and jeans") for p in flipped)
    assert "missing relation: hot dog left of jeans" in check(STICKERS, "A hot dog, two cats and a pair of jeans.")
    # "dog" is not "hot dog": a caption that says only "dog" drops the hot dog and adds a dog
    p = check(STICKERS, "A dog, two cats and a pair of jeans; the dog is left of the jeans.")
    assert "missing object 'hot dog'" in p and "adds object 'dog'" in p
    assert "adds object 'giraffe'" in check(STICKERS, "A hot dog, two cats, a giraffe and a pair of jeans; the hot dog "
                                                      "is left of the jeans.")


def test_relation_synonyms_and_inverse():
    meta = {"task": "t2i", "op": "stickers", "prompt": "", "background": "a white background",
            "facts": {"counts": {"cat": 1, "owl": 1}, "relations": [["cat", "below", "owl"]]}}
    for ok in ("A cat beneath an owl.", "A cat under an owl.", "An owl above a cat.", "An owl over a cat."):
        assert check(meta, ok) == [], ok
    assert check(meta, "A cat above an owl.") and check(meta, "An owl beneath a cat.")


EDIT = {"task": "edit", "op": "remove", "prompt": "Remove the cat.", "background": "a white background",
        "objects": [{"name": "cat"}, {"name": "owl"}], "target_object": {"name": "cat"}}


def test_edit_verbs_and_target():
    assert check(EDIT, "Erase the cat.") == []
    assert check(EDIT, "Take the cat out of the picture.") == []
    assert "edit verb: remove expected, add said" in check(EDIT, "Add a cat.")
    assert "missing object 'cat'" in check(EDIT, "Remove the owl.")
    rep = dict(EDIT, op="replace", prompt="Replace the cat with an owl.", new_object={"name": "owl"})
    assert check(rep, "Swap the cat for an owl.") == []
    assert check(rep, "Turn the cat into an owl.") == []
    assert any("replace direction" in p for p in check(rep, "Replace the owl with a cat."))
    assert any("edit verb: replace expected" in p for p in check(rep, "Remove the cat and the owl."))
    add = dict(EDIT, op="add", prompt="Add a cat at the top.")
    assert check(add, "Insert a cat near the top.") == []
    assert "edit verb: add expected, remove said" in check(add, "Remove a cat at the top.")


DRAG = {"task": "drag", "op": "translate", "background": "a white background",
        "prompt": "Drag the cat: (0.412, 0.305, 0.120, -0.044); (0.451, 0.350, 0.120, -0.044)",
        "objects": [{"name": "cat"}], "target_object": {"name": "cat"},
        "points": [[0.412, 0.305, 0.12, -0.044], [0.451, 0.35, 0.12, -0.044]]}


def test_drag_tuples():
    assert check(DRAG, "Move the cat with (0.412, 0.305, 0.120, -0.044) and (0.451, 0.350, 0.120, -0.044).") == []
    assert any(p.startswith("drag point 2") for p in
               check(DRAG, "Move the cat: (0.412, 0.305, 0.120, -0.044); (0.451, 0.350, 0.121, -0.044)"))
    assert any(p.startswith("drag point") for p in
               check(DRAG, "Move the cat: (0.451, 0.350, 0.120, -0.044); (0.412, 0.305, 0.120, -0.044)"))
    assert "drag points: 2 tuples expected, 1 said" in check(DRAG, "Move the cat: (0.412, 0.305, 0.120, -0.044)")


def test_segdet_and_inpaint():
    seg = {"task": "segdet", "op": "segment", "prompt": "Paint the cat red.", "color_name": "red",
           "background": "a photo of a retina", "objects": [{"name": "cat"}], "target_object": {"name": "cat"}}
    assert check(seg, "Color the cat in red.") == []
    p = check(seg, "Color the cat in blue.")
    assert "missing colour 'red'" in p and "adds colour 'blue'" in p
    inp = {"task": "inpaint", "op": "inpaint", "background": "a photo of a cat",
           "prompt": "Fill in the gray area. The full image shows an owl and french fries on a photo of a cat.",
           "objects": [{"name": "owl"}, {"name": "french fries"}], "hidden": [{"name": "owl"}]}
    assert check(inp, "Fill the gray hole; the picture has an owl and some french fries over a cat photo.") == []
    assert "missing object 'french fries'" in check(inp, "Fill the gray hole; the picture has an owl.")


@pytest.mark.parametrize("meta, caption", [
    ({}, "a cat"), (None, "a cat"), ({"task": "t2i"}, ""), (TEXT, None), (TEXT, 42), ([], []),
    ({"task": "t2i", "op": "stickers", "facts": {"counts": None, "relations": [[1, 2]]}}, "x"),
    ({"task": "drag", "prompt": None, "points": "oops"}, "(1, 2, 3, 4)"),
    ({"task": "edit", "op": "replace", "target_object": "cat", "new_object": 3}, "Replace it."),
    ({"task": "t2i", "op": "shapes", "facts": {"shapes": [{"kind": None}]}}, "two red"),
    ({"task": "t2i", "op": "text", "facts": {"texts": [{"text": 5}, "x"]}}, '"q"'),
])
def test_never_raises(meta, caption):
    out = check(meta, caption)
    assert isinstance(out, list) and all(isinstance(p, str) for p in out)


def test_what_smollm2_got_past_the_first_guard_is_caught_now():
    """Real SmolLM2-135M answers (tests/data/guard/real_model.jsonl), e.g. a third position invented for two
    hexagons; and its copy of a worked example ("A poster with the words…" for a texture) is refused."""
    from collage.captions.prompt import Refused, build_request, clean_answer

    rows = [json.loads(line) for line in (DATA / "real_model.jsonl").read_text().splitlines() if line.strip()]
    texture = next(r for r in rows if r["meta"]["prompt"].startswith("A soft mottled"))
    request = build_request(texture["meta"]["prompt"])
    with pytest.raises(Refused, match="copies the worked example"):
        clean_answer("A poster with the words [T1] written in large orange letters with a green outline in the "
                     "center.", "stop", request)
    hexagons = next(r for r in rows if r["caption"].startswith("Two large pink hexagons"))
    assert "adds position 'top'" in check(hexagons["meta"], hexagons["caption"])
    for row in rows:
        assert bool(check(row["meta"], row["caption"])) == (row["label"] == "error") or row["caption"].startswith(
            "Swap the pig nose for a person in a motorized"), row["caption"]


def test_positions_relations_and_frame_words():
    meta = {"task": "edit", "op": "add", "prompt": "Put a bat on the left of the picture.",
            "target_object": {"id": 0, "name": "bat"}, "objects": [{"id": 0, "name": "bat"}], "background": ""}
    assert check(meta, "Put a bat on the left.") == []
    assert check(meta, "Add a bat right at the left side.") == []
    assert "adds position 'top'" in check(meta, "Put a bat at the top left.") or \
        "adds position 'top left'" in check(meta, "Put a bat at the top left.")
