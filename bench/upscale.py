"""How far the engine enlarges its assets: the distribution of sprite and photo-crop upscale per task.

A sprite's upscale is the scale of its placement matrix (canvas px per cached sprite px, read from each
object's `matrix` in the written json); a photo crop's is the sample's `photo_upscale` (canvas px per cached
photo px; absent in versions before 0.5). Samples are made in this process (one shard per task) and read
back from the shards.

    python bench/upscale.py                          # every task at 512, square canvases
    python bench/upscale.py --size 512 --aspect-ratios all --n 200
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile

import numpy as np

from collage.api import make_config
from collage.reader import iter_samples
from collage.tasks import TASKS
from collage.worker import make_shard


def upscales(task: str, size: int, n: int, aspect_ratios: str, seed: int) -> tuple[list[float], list[float]]:
    """(sprite upscales, photo upscales) over `n` samples of `task`."""
    cfg = make_config(task=task, n=n, size=size, shard_size=n, aspect_ratios=aspect_ratios, seed=seed)
    sprites, photos = [], []
    with tempfile.TemporaryDirectory() as out:
        make_shard(cfg, 0, out)
        for sample in iter_samples(out, decode=False):
            meta = json.loads(sample["json"])
            for obj in meta.get("objects", []):
                if obj.get("matrix"):
                    linear = np.asarray(obj["matrix"], np.float64)[:, :2]
                    sprites.append(math.sqrt(abs(float(np.linalg.det(linear)))))
            if meta.get("photo_upscale") is not None:
                photos.append(float(meta["photo_upscale"]))
    return sprites, photos


def describe(values: list[float]) -> str:
    if not values:
        return "none drawn"
    v = np.asarray(values)
    return (f"n={len(v):5d}  p50 {np.median(v):.2f}  p95 {np.percentile(v, 95):.2f}  max {v.max():.2f}  "
            f">1.25: {np.mean(v > 1.25 + 1e-6):5.1%}  >2: {np.mean(v > 2):5.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--aspect-ratios", default="square")
    parser.add_argument("--n", type=int, default=120, help="samples per task")
    parser.add_argument("--tasks", default="all")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tasks = sorted(TASKS) if args.tasks == "all" else args.tasks.split(",")
    print(f"upscale at --size {args.size} --aspect-ratios {args.aspect_ratios}, {args.n} samples per task")
    every_sprite, every_photo = [], []
    for task in tasks:
        sprites, photos = upscales(task, args.size, args.n, args.aspect_ratios, args.seed)
        every_sprite += sprites
        every_photo += photos
        print(f"{task:10s} sprites  {describe(sprites)}")
        print(f"{'':10s} photos   {describe(photos)}")
    print(f"{'all':10s} sprites  {describe(every_sprite)}")
    print(f"{'':10s} photos   {describe(every_photo)}")


if __name__ == "__main__":
    main()
