"""Samples/s the feature loader (train/data.py) delivers per CPU worker — read + decode + bucket + collate —
from feature shards at 256² and 512², against baselines measured in the same run on the same shards:

- `wds bare`: webdataset iterating the shards (members read, nothing decoded): the floor of a wds loader;
- `wds+st`: webdataset + `safetensors.torch.load` + json + per-bucket batching + padding + stacking, the
  straightforward loader one would write with webdataset;
- `ours w=0`: FeatureLoader in the main process (one CPU core does everything);
- `ours w=1`: FeatureLoader with one DataLoader worker (adds the hand-over to the main process);
also samples per CPU-second of the process that builds the batches (robust to a busy machine).

Shards mirror FEATURE_FORMAT.md: latent (16, H/8, W/8) and vlm (~300 × 1536) in bf16, three aspect buckets
around the size. They are written once under --dir and read from the page cache (warmed first), so this
measures CPU cost, not the disk. The machine's speed drifts: compare within one run.

    python bench/loader.py                      # 256 and 512, 800 samples each, best of 3
    python bench/loader.py --sizes 512 --samples 2000 --batch 64
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # run as a script: import the repo's packages

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402
import webdataset as wds  # noqa: E402
from safetensors.torch import load, save  # noqa: E402

from collage.config import aspect_buckets  # noqa: E402
from train.data import FeatureLoader, LoaderConfig  # noqa: E402

BUCKETS = (13, 15, 17)


def write_feats(out: Path, size: int, samples: int, per_shard: int, hidden: int, vlm_len: int) -> Path:
    out = out / f"feats{size}"
    if (out / "sizes.json").exists() and sum(json.loads((out / "sizes.json").read_text()).values()) == samples:
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng, g, sizes = np.random.default_rng(0), torch.Generator().manual_seed(0), {}
    for shard in range(-(-samples // per_shard)):
        name, n = f"bench-{shard:06d}.tar", min(per_shard, samples - shard * per_shard)
        with wds.TarWriter(str(out / name), mtime=0) as writer:
            for i in range(n):
                bucket = int(rng.choice(BUCKETS, p=[0.25, 0.5, 0.25]))
                width, height = aspect_buckets(size)[bucket]
                length = int(rng.integers(vlm_len - 40, vlm_len + 41))
                feats = {"latent": torch.randn(16, height // 8, width // 8, generator=g).bfloat16(),
                         "vlm": torch.randn(length, hidden, generator=g).bfloat16()}
                meta = {"task": "t2i", "op": "external", "caption": "a photo", "width": width, "height": height,
                        "bucket": bucket, "vlm_len": length, "vlm_images": [], "vlm_text": "a photo"}
                writer.write({"__key__": f"bench-{shard:06d}-{i:06d}", "feats.safetensors": save(feats),
                              "json": json.dumps(meta).encode()})
        sizes[name] = n
    (out / "sizes.json").write_text(json.dumps(sizes))
    return out


def urls(feats: Path) -> list[str]:
    return [str(feats / name) for name in sorted(json.loads((feats / "sizes.json").read_text()))]


def wds_bare(feats: Path, total: int) -> float:
    n, start = 0, time.perf_counter()
    while n < total:
        for sample in wds.WebDataset(urls(feats), shardshuffle=False, empty_check=False):
            n += len(sample["feats.safetensors"]) > 0
    return n / (time.perf_counter() - start)


def wds_safetensors(feats: Path, total: int, batch: int, cap: int) -> float:
    """The plain webdataset way: decode each sample, bucket by shape, pad and stack full buckets."""
    n, start, pending = 0, time.perf_counter(), {}
    while n < total:
        for sample in wds.WebDataset(urls(feats), shardshuffle=False, empty_check=False):
            tensors = load(sample["feats.safetensors"])
            meta = json.loads(sample["json"])
            queue = pending.setdefault(tuple(tensors["latent"].shape), [])
            queue.append((tensors, meta))
            if len(queue) == batch:
                vlms = [t["vlm"][:cap] for t, _ in queue]
                latent = torch.stack([t["latent"] for t, _ in queue])
                vlm = torch.nn.utils.rnn.pad_sequence(vlms, batch_first=True)
                mask = torch.arange(vlm.shape[1])[None] < torch.tensor([len(v) for v in vlms])[:, None]
                n += len(queue) + 0 * latent.shape[0] * mask.shape[0]
                queue.clear()
    return n / (time.perf_counter() - start)


def ours(feats: Path, total: int, batch: int, cap: int, workers: int) -> tuple[float, float]:
    """(samples/s of wall time, samples per CPU-second of the process that builds the batches)."""
    config = LoaderConfig(sources=[str(feats)], batch_size=batch, max_vlm_len=cap, num_workers=workers,
                          epoch_samples=total + 4 * batch, seed=0)
    loader = FeatureLoader(config)
    it = iter(loader)
    next(it)  # start-up (worker spawn, first shard indexes) is not throughput
    builder = psutil.Process().children()[0] if workers else psutil.Process()
    n, start, cpu = 0, time.perf_counter(), sum(builder.cpu_times()[:2])
    for b in it:
        n += b["latent"].shape[0]
        if n >= total:
            break
    rate, cpu = n / (time.perf_counter() - start), n / (sum(builder.cpu_times()[:2]) - cpu)
    it.close()
    return rate, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--samples", type=int, default=800, help="samples per size (~1 MB each)")
    ap.add_argument("--per-shard", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=1536, help="VLM hidden size (Qwen2-VL 2B: 1536)")
    ap.add_argument("--vlm-len", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-vlm-len", type=int, default=512)
    ap.add_argument("--passes", type=int, default=3, help="how many times each measurement reads the data")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many interleaved runs")
    ap.add_argument("--dir", default="/tmp/collage-bench-loader")
    args = ap.parse_args()
    torch.set_num_threads(1)  # per CPU worker
    print(f"{'size':>5} {'bytes/sample':>12} {'wds bare':>10} {'wds+st':>10} {'ours w=0':>10} {'ours w=1':>10}"
          "   samples/s (one core each)")
    for size in args.sizes:
        feats = write_feats(Path(args.dir), size, args.samples, args.per_shard, args.hidden, args.vlm_len)
        for url in urls(feats):  # warm the page cache
            Path(url).read_bytes()
        total = args.samples * args.passes
        per_sample = sum(Path(u).stat().st_size for u in urls(feats)) / args.samples
        runs = {"bare": [], "plain": [], "w0": [], "w1": []}
        for _ in range(args.repeat):  # interleaved, best of each: the machine's load drifts
            runs["bare"].append(wds_bare(feats, total))
            runs["plain"].append(wds_safetensors(feats, total, args.batch, args.max_vlm_len))
            runs["w0"].append(ours(feats, total, args.batch, args.max_vlm_len, 0))
            runs["w1"].append(ours(feats, total, args.batch, args.max_vlm_len, 1))
        bare, plain = max(runs["bare"]), max(runs["plain"])
        (w0, w0_cpu), (w1, w1_cpu) = max(runs["w0"]), max(runs["w1"])
        print(f"{size:>5} {per_sample:>12,.0f} {bare:>10,.0f} {plain:>10,.0f} {w0:>10,.0f} {w1:>10,.0f}"
              f"   ours/wds+st {w0 / plain:.1f}×, ours/wds bare {w0 / bare:.1f}×; per CPU-second of the "
              f"building process: w=0 {w0_cpu:,.0f}, w=1 worker {w1_cpu:,.0f}", flush=True)


if __name__ == "__main__":
    main()
