"""Render label queries against plain numpy definitions."""

import numpy as np

from collage.render import composite, mask_bbox


def _bbox_by_definition(mask):
    cols = np.flatnonzero(mask.any(axis=0))
    if len(cols) == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def test_mask_bbox_matches_its_definition():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        h, w = rng.integers(1, 40, 2)
        mask = rng.random((h, w)) < rng.choice([0, 0.001, 0.05, 0.5])
        if rng.random() < 0.3:
            mask = mask.astype(np.uint8) * int(rng.integers(1, 256))
        if rng.random() < 0.2:
            mask = mask[::2]  # a strided view
        assert mask_bbox(mask) == _bbox_by_definition(mask)


def test_composite_is_premultiplied_over_rounded_to_nearest():
    """composite() against out = fg + bg·(255 − a)/255 in floats, on crops that mix transparent, opaque and
    partial alpha, placed inside a larger canvas (nothing outside the box may change)."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        canvas = rng.integers(0, 256, (h + 12, w + 9, 3), dtype=np.uint8)
        alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
        alpha[alpha < 60], alpha[alpha > 200] = 0, 255
        rgb = (rng.integers(0, 256, (h, w, 3)) * alpha[..., None] // 255).astype(np.uint8)  # premultiplied
        y0, x0 = int(rng.integers(0, 13)), int(rng.integers(0, 10))
        under = canvas[y0:y0 + h, x0:x0 + w].astype(np.float64)
        expected = canvas.copy()
        expected[y0:y0 + h, x0:x0 + w] = np.clip(rgb + np.rint(under * (255 - alpha[..., None]) / 255), 0, 255)
        got = composite(canvas, x0, y0, np.dstack([rgb, alpha]))
        assert np.array_equal(got, alpha) and np.array_equal(canvas, expected)


def test_shifted_layers_reuse_the_warp_and_match_a_fresh_render():
    """render.Warps: a layer declared as another moved by whole pixels shows the same pixels as warping it
    afresh (OpenCV samples at 1/32 px, so at most a rounding step apart), in and partly off the canvas."""
    from collage.assets import Sprite
    from collage.geometry import sprite_matrix
    from collage.render import Layer, Scene, Warps, render

    rng = np.random.default_rng(1)
    alpha = np.zeros((40, 30), np.uint8)
    alpha[3:37, 4:27] = 255
    rgb = (rng.integers(0, 256, (40, 30, 3)) * alpha[..., None] // 255).astype(np.uint8)
    sprite = Sprite("test:sprite", "block", "sticker", np.dstack([rgb, alpha]))
    background = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    source = Layer(sprite, sprite_matrix((40, 30), 1.3, 12.0, (60.3, 50.7)))
    for dx, dy, reused in ((21, -9, True), (-17, 30, True), (90, 0, False)):  # the last leaves the canvas
        moved_matrix = source.matrix.copy()
        moved_matrix[:, 2] += (dx, dy)
        moved = Layer(sprite, moved_matrix)
        warps = Warps()
        warps.shifted(moved, source, dx, dy)
        shared = render(Scene(background, [source, moved]), warps=warps)
        fresh = render(Scene(background, [source, moved]))
        assert np.abs(shared.rgb.astype(int) - fresh.rgb).max() <= 1
        assert shared.boxes == fresh.boxes
        assert (warps.get(moved, 160, 120)[2] is warps.get(source, 160, 120)[2]) == reused


def test_alpha_window_is_the_full_canvas_alpha_cut_to_the_window():
    """Rendered.alpha_window against pasting each layer's crop into a zero canvas and slicing it."""
    from collage.render import Rendered

    rng = np.random.default_rng(2)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(5, 40, 2))
        crops, boxes = [], []
        for _ in range(3):
            if rng.random() < 0.2:
                crops.append(None)
                boxes.append(None)
                continue
            x0, y0 = int(rng.integers(0, w - 1)), int(rng.integers(0, h - 1))
            x1, y1 = int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))
            crops.append(rng.integers(0, 256, (y1 - y0, x1 - x0), dtype=np.uint8))
            boxes.append((x0, y0, x1, y1))
        rendered = Rendered(np.zeros((h, w, 3), np.uint8), crops, boxes)
        wx0, wy0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        window = slice(wy0, int(rng.integers(wy0 + 1, h + 1))), slice(wx0, int(rng.integers(wx0 + 1, w + 1)))
        for i, (crop, box) in enumerate(zip(crops, boxes)):
            full = np.zeros((h, w), np.uint8)
            if box is not None:
                full[box[1]:box[3], box[0]:box[2]] = crop
            assert np.array_equal(rendered.alpha_window(i, window), full[window])
