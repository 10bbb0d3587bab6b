"""A gallery of a run in an object store: bytes fetched and time, by byte ranges vs whole shards.

Makes a drag run locally (default 10 shards of 100 samples at 512², about 13 MB a shard), starts moto's S3
server on loopback (the tests' tests/s3_server.py), uploads the run twice — as written, and with its parquet
indexes stripped of `tar_offset` / `tar_length` as collage < 0.5.1 wrote them, which the gallery reads by
walking each shard whole — then builds the same gallery from both and from the local folder. Loopback has
no latency and ~GB/s bandwidth, so the times here favour fetching whole shards; the MB fetched is what
carries over to a real store (at 100 MB/s per client, 136 MB is 1.4 s of transfer, 6 MB 0.06 s).

    python bench/gallery_store.py
    python bench/gallery_store.py --shards 20 --n 200
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from collage.api import generate_run
from collage.gallery import build_gallery

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def upload(s3, folder: Path, prefix: str, strip_ranges: bool) -> str:
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        if strip_ranges and path.suffix == ".parquet":
            sink = io.BytesIO()
            pq.write_table(pq.read_table(path).drop_columns(["tar_offset", "tar_length"]), sink)
            data = sink.getvalue()
        s3.client.put_object(Bucket=s3.bucket, Key=f"{prefix}/{path.name}", Body=data)
    return f"s3://{s3.bucket}/{prefix}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from s3_server import s3_server

    with tempfile.TemporaryDirectory() as tmp, s3_server() as s3:
        run = Path(tmp) / "run"
        generate_run(str(run), task="drag", n=args.shards * args.shard_size, seed=0, size=args.size,
                     shard_size=args.shard_size, backend="local")
        shard_bytes = sum(p.stat().st_size for p in run.glob("*.tar"))
        os.environ.update({k: v for k, v in s3.env.items() if k.startswith("AWS_")})
        sources = {"local folder": str(run), "store, byte ranges": upload(s3, run, "ranged", False),
                   "store, whole shards (< 0.5.1 index)": upload(s3, run, "whole", True)}
        print(f"run: {args.shards} shards × {args.shard_size} drag samples at {args.size}², "
              f"{shard_bytes / 1e6:,.1f} MB of tars; gallery --n {args.n}")
        results = {}
        for _ in range(args.repeat):  # the best of the repeats: the first remote build also pays s3fs's set-up
            for label, source in sources.items():
                started = time.perf_counter()
                result = build_gallery([source], Path(tmp) / label.replace(" ", "_"), n=args.n, seed=0)
                seconds = time.perf_counter() - started
                if label not in results or seconds < results[label][0]:
                    results[label] = (seconds, result)
        base_seconds, _ = results["store, whole shards (< 0.5.1 index)"]
        for label, (seconds, result) in results.items():
            print(f"{label:38s} {result.samples:4d} samples from {result.shards_read} shards  "
                  f"{result.bytes_read / 1e6:8.2f} MB fetched ({result.bytes_read / shard_bytes:6.1%} of the tars)  "
                  f"{seconds:6.2f} s  ({seconds / base_seconds:.2f}× the whole-shard time)")


if __name__ == "__main__":
    main()
