"""The hand-framed PNG encoder: every decoder we and our readers use gets back the exact pixels."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from collage.sample import encode_png


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (512, 512), (300, 1200), (5, 9, 3), (512, 384, 3)])
def test_png_round_trip(shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    image[: shape[0] // 2] = 0  # runs as in real masks, as well as noise
    data = encode_png(image)
    pil = Image.open(io.BytesIO(data))
    assert pil.mode == ("L" if len(shape) == 2 else "RGB")
    assert np.array_equal(np.asarray(pil), image)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decoded if len(shape) == 2 else decoded[..., ::-1], image)
    Image.open(io.BytesIO(data)).verify()  # chunk CRCs


def test_png_of_a_view_is_the_view():
    """Strided views (crops, flipped channels) encode what they show, not the memory behind them."""
    base = np.arange(40 * 60 * 3, dtype=np.uint32).astype(np.uint8).reshape(40, 60, 3)
    for view in (base[5:30, 7:50], base[..., ::-1], base[:, :, 1]):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(view)))), view)
