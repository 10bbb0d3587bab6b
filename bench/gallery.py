"""Gallery build time: a 1,000-sample gallery from a 100-shard mixed run (and a 200-sample one).

Makes the run once (1,000 samples at 128², 10 per shard, the DreamOmni task mix, jpg) unless --run points
at an existing one, then times `build_gallery` end to end (pick shards, read, thumbnails, json, page).

    python bench/gallery.py                          # run in a temporary folder
    python bench/gallery.py --run /tmp/mix100 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from collage.api import generate_run
from collage.gallery import build_gallery

REPO = Path(__file__).resolve().parents[1]


def make_run(run: Path, samples: int, shard_size: int, size: int) -> None:
    if (run / "sizes.json").exists() and sum(json.loads((run / "sizes.json").read_text()).values()) == samples:
        return
    pipeline = REPO / "pipelines" / "dreamomni.yaml"
    started = time.perf_counter()
    summary = generate_run(str(run), pipeline=str(pipeline), n=samples, seed=0, size=size, shard_size=shard_size,
                           aspect_ratios="all", backend="local")
    print(f"made the run: {summary.samples:,} samples in {summary.shards:,} shards ({pipeline.name}, {size}², "
          f"{time.perf_counter() - started:.1f} s) in {run}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="Run directory to build from (made here when missing).")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=10)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 200], help="Gallery sizes to time.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or Path(tmp) / "run"
        run.parent.mkdir(parents=True, exist_ok=True)
        make_run(run, args.samples, args.shard_size, args.size)
        for n in args.n:
            times, result = [], None
            for i in range(args.repeat):
                started = time.perf_counter()
                result = build_gallery([str(run)], Path(tmp) / f"gallery-{n}", n=n, seed=i)
                times.append(time.perf_counter() - started)
            size_mb = sum(p.stat().st_size for p in result.path.rglob("*") if p.is_file()) / 1e6
            print(f"gallery of {result.samples:,} samples from {result.shards_read:,} of {result.shards_total:,} shards: "
                  f"median {statistics.median(times):.2f} s over {args.repeat} builds "
                  f"(min {min(times):.2f}, max {max(times):.2f}), {size_mb:.1f} MB")


if __name__ == "__main__":
    main()
