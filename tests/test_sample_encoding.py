"""The hand-framed PNG encoder: every decoder we and our readers use gets back the exact pixels."""

import hashlib
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


@pytest.mark.parametrize("key", ["drag-000003-000017", "a-long-pipeline-name-" * 6 + "000000-000001"])
def test_tar_members_are_webdatasets_bytes(tmp_path, key):
    """The writer's own member writes give exactly the tar webdataset's TarWriter gives, and it reads back."""
    import webdataset as wds

    from collage.writer import TAR_MODE, TAR_MTIME, TAR_OWNER, TarMembers

    samples = [(f"{key}{i}", {"tgt.jpg": bytes(range(256)) * (i + 1), "json": b'{"a":1}', "mask.png": b""})
               for i in range(3)]
    ours, theirs = io.BytesIO(), io.BytesIO()
    tar = TarMembers(ours)
    writer = wds.TarWriter(theirs, encoder=False, mtime=TAR_MTIME, user=TAR_OWNER, group=TAR_OWNER, mode=TAR_MODE)
    for k, members in samples:
        tar.add(k, members)
        writer.write({"__key__": k, **members})
    tar.close()
    writer.close()
    assert ours.getvalue() == theirs.getvalue()
    assert tar.size == len(ours.getvalue()) and tar.sha.hexdigest() == hashlib.sha256(ours.getvalue()).hexdigest()
    path = tmp_path / "s.tar"
    path.write_bytes(ours.getvalue())
    read = [(s["__key__"], s["tgt.jpg"], s["json"]) for s in wds.WebDataset(str(path), shardshuffle=False)]
    assert read == [(k, m["tgt.jpg"], m["json"]) for k, m in samples]
