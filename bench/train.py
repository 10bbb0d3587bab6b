"""The training step as the trainer (train/loop.py) runs it: its time, throughput and overhead, on CPU here and,
when a GPU is visible, the MFU of the 0.85b and 2.5b presets. Every ratio is against a baseline measured in
the same run on the same machine.

CPU (always; about a minute on 2 idle cores, up to a few when they are shared):
1. Data: a small collage run (t2i + edit, 16 samples each, 128 px) precomputed at 256² with the tiny random
   encoders (train/tiny.py: VLM hidden 64) into a temporary folder, or --data FEATS to reuse one.
2. The tiny preset through the real trainer: train.loop.train with train/configs/tiny.yaml, eval, samples,
   TensorBoard, the progress bar and checkpoints (but the final one) off; --rounds fresh runs of --steps
   steps; medians over RUN/metrics.jsonl (samples_per_s, tokens_per_s, tflops, data_wait, peak_mem_gib)
   after --skip warm-up steps of each run. Baseline: the *bare step* — flow loss forward + backward + the
   trainer's AdamW (train.optim), no loader, EMA, grad clip, schedule or metrics — of the same model on the
   trainer's own batches (the same loader config, so the same shapes and FLOPs) held in memory, in segments
   before, between and after the trainer's runs, so a drift of the machine's load hits both alike (and shows
   as the segments disagreeing). trainer/bare is the loop's overhead, also taken run by run against the bare
   segments either side and batch by batch, best against best (the figure a busy machine disturbs least);
   data_wait the share of the step spent waiting on the loader.
3. A "0.85b-width slice": model.dit.PRESETS["0.85b"]'s width, heads and conv widths with --slice-depth joint
   blocks (and, for the fit, --fit-depth), vlm_dim 64, one synthetic batch at 256² (latent 32×32) with
   --slice-vlm-len VLM tokens: median bare step time and achieved TFLOP/s (train.metrics.train_flops: model
   FLOPs, 3 × forward), the depths stepped in turn. The full 0.85b step (26 blocks) is *extrapolated*
   linearly in depth through the two depths (and, as a cross-check, in proportion to FLOPs from the first)
   — not measured.

GPU (when torch.cuda.is_available(), else one line; sized so that one run of `--no-cpu` takes < 8 minutes on
one H200 (--gpu-budget-s caps it; every figure has its own time cap and try/except and goes on after an
error; all figures go to --json and to $OUT/bench_train.json as they come):
- MFU of the 0.85b preset (vlm_dim 3584) at 256² (latent 32², --gpu-batch-256) and 512² (latent 64²,
  --gpu-batch-512) in bf16 autocast, eager and with torch.compile per block (train.parallel.wrap_model with
  compile=True, as the trainer does), synthetic inputs (latent (B,16,h,w), vlm (B,256,3584) and an all-true
  mask, as a padded batch has; the trainer passes none when nothing is padded). The trainer's defaults hold: deterministic algorithms on (warn
  only, which also fills uninitialised memory) and TF32; two more eager runs at 256² show what the mask
  (unmasked lets SDPA use flash) and the deterministic default cost.
  Timed with CUDA events over --gpu-steps steps after --gpu-warmup; also the optimizer's share of the step
  (the trainer's AdamW, foreach=True). MFU = 3·forward_flops·B / step time / peak (train.metrics.peak_tflops:
  989 TFLOP/s dense bf16 on H100/H200).
- The 2.5b preset's largest batch at 256² on one GPU with activation checkpointing and FSDP2 (fully_shard per
  block) on a 1-rank NCCL process group: the batch doubles from --fsdp-start-batch until CUDA runs out of
  memory (a fresh model each try); the largest that fits, its peak memory and MFU.
- Whether the loader keeps up: FeatureLoader batches/s (num_workers --loader-workers) on the tiny features
  and on synthetic shards of the real VLM width (3584) at 256² and 512², against the GPU step rate → the
  projected data-wait fraction, max(0, 1 − loader rate × step time).
Order: eager runs, loader, 2.5b search, then the compiled runs (the least predictable start-up); a figure
the budget no longer covers is skipped with a line (and "skipped" in the JSON).

    .venv/bin/python bench/train.py                          # CPU figures (+ the GPU ones when one is visible)
    python bench/train.py --no-cpu --json bench_train.json   # the GPU run only (< 8 min on one H200)
    .venv/bin/python bench/train.py --no-cpu --gpu-dry-run   # the GPU code paths on CPU, tiny shapes
    .venv/bin/python bench/train.py --steps 60 --slice-batch 2 --data FEATS
"""

from __future__ import annotations

import os

# Fewer fragmentation OOMs in the batch search; read when CUDA's allocator starts (nothing happens on CPU).
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from io import BytesIO  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO)  # run as a script, sys.path[0] is bench/: import the repo's packages instead

import torch  # noqa: E402

from model.dit import PRESETS, DiTConfig, DreamOmniDiT, num_params  # noqa: E402
from model.flow import flow_loss, resolution_shift, sample_t  # noqa: E402
from train.config import OptimConfig, TrainLoopConfig  # noqa: E402
from train.metrics import peak_tflops, train_flops  # noqa: E402
from train.optim import build_optimizer  # noqa: E402

FALLBACK_PEAK = 989.0  # dense bf16 TFLOP/s of an H100/H200, when the device's peak is not known


# ----------------------------------------------------------------------------- output


class Table:
    """Rows of (figure, value, unit, note); printed as they come and again as one table at the end."""

    def __init__(self):
        self.rows: list[tuple[str, float | None, str, str]] = []

    def add(self, figure: str, value: float | None, unit: str, note: str = "") -> None:
        self.rows.append((figure, value, unit, note))
        print(f"  {figure}: {fmt(value)} {unit}{'  (' + note + ')' if note else ''}", flush=True)

    def print(self, title: str) -> None:
        if not self.rows:
            return
        width = max(len(r[0]) for r in self.rows)
        print(f"\n{title}\n{'figure':<{width}}  {'value':>10}  unit")
        for figure, value, unit, note in self.rows:
            print(f"{figure:<{width}}  {fmt(value):>10}  {unit}{'   ' + note if note else ''}")


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def median(xs) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


# ----------------------------------------------------------------------------- the step


def synthetic_batch(cfg: DiTConfig, batch: int, latent: int, vlm_len: int, device: torch.device, mask: bool = True):
    """(x0, feats, mask) as the trainer moves them to the device: fp32 latent and VLM features, bool mask
    (drawn on the device: a 2.5b batch search's inputs are GBs)."""
    g = torch.Generator(device=device).manual_seed(0)
    x0 = torch.randn(batch, cfg.in_channels, latent, latent, generator=g, device=device)
    feats = torch.randn(batch, vlm_len, cfg.vlm_dim, generator=g, device=device)
    keep = torch.ones(batch, vlm_len, dtype=torch.bool, device=device) if mask else None
    return x0, feats, keep


class Marks:
    """Timestamps on the device's timeline: CUDA events on a GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, a, b) -> float:
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def bare_step(model, optimizer, x0, feats, mask, gen, dtype, device, marks: Marks) -> tuple:
    """One optimizer step as train/loop.py does it, minus loader, grad clip, schedule, EMA and metrics:
    t and noise drawn on the device, flow loss forward + backward under autocast, AdamW. Returns 3 marks."""
    B, _, h, w = x0.shape
    m0 = marks.now()
    optimizer.zero_grad(set_to_none=True)
    t = sample_t(B, shift=resolution_shift(h, w), generator=gen, device=device)
    noise = torch.randn(x0.shape, generator=gen, device=device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        loss = flow_loss(model, x0, feats, mask, t=t, noise=noise)
        loss.backward()
    m1 = marks.now()
    optimizer.step()
    return m0, m1, marks.now()


def time_steps(model, optimizer, batches: list, steps: int, warmup: int, dtype: torch.dtype,
               device: torch.device) -> dict:
    """Run warmup + steps bare steps, cycling through batches [(x0, feats, mask)]. Per timed step: seconds of
    the whole step, of forward + backward and of the optimizer; `mean` is the window's wall time / steps on
    the device's timeline (CUDA events), `first` the first warm-up step (compilation, lazy init)."""
    marks, gen = Marks(device), torch.Generator(device=device).manual_seed(0)
    cycle = itertools.cycle(batches)
    first = None
    for i in range(warmup):
        marks.sync()
        t0 = time.perf_counter()
        bare_step(model, optimizer, *next(cycle), gen, dtype, device, marks)
        marks.sync()
        first = time.perf_counter() - t0 if i == 0 else first
    records = []
    marks.sync()
    wall = time.perf_counter()
    for _ in range(steps):
        records.append(bare_step(model, optimizer, *next(cycle), gen, dtype, device, marks))
    marks.sync()
    wall = time.perf_counter() - wall
    step = [marks.seconds(a, c) for a, _, c in records]
    out = {"step": step, "fwd_bwd": [marks.seconds(a, b) for a, b, _ in records],
           "opt": [marks.seconds(b, c) for _, b, c in records], "first": first, "wall": wall / max(steps, 1)}
    out["mean"] = (marks.seconds(records[0][0], records[-1][2]) / steps) if steps else float("nan")
    return out


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# ----------------------------------------------------------------------------- data


def build_features(root: Path, n: int) -> Path:
    """A small collage run (t2i + edit), precomputed at 256² with the tiny random encoders: ROOT/feats."""
    from collage.api import generate_run
    from train.precompute import precompute
    from train.tiny import build_tiny_vae, build_tiny_vlm

    feats = root / "feats"
    if (feats / "sizes.json").exists():
        return feats
    vlm, vae = str(build_tiny_vlm(root / "vlm")), str(build_tiny_vae(root / "vae"))
    sources = []
    for task in ("t2i", "edit"):
        generate_run(out=str(root / task), task=task, n=n, seed=0, size=128, shard_size=8, backend="local")
        sources.append(str(root / task))
    precompute(sources, str(feats), vlm, vae, size=256, device="cpu", backend="local")
    return feats


def write_synthetic_feats(out: Path, size: int, samples: int, per_shard: int, hidden: int, vlm_len: int) -> Path:
    """Feature shards as FEATURE_FORMAT.md (and bench/loader.py) lay them out, random bf16 tensors of the real
    sizes: latent (16, H/8, W/8), vlm (~vlm_len × hidden), three aspect buckets; plus uncond.safetensors."""
    import numpy as np
    from safetensors.torch import save, save_file

    from collage.config import aspect_buckets

    out = out / f"synthetic{size}-{hidden}"
    if (out / "sizes.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng, g, sizes = np.random.default_rng(0), torch.Generator().manual_seed(0), {}
    for shard in range(-(-samples // per_shard)):
        name, count = f"synthetic-{shard:06d}.tar", min(per_shard, samples - shard * per_shard)
        with tarfile.open(out / name, "w") as tar:
            for i in range(count):
                bucket = int(rng.choice((13, 15, 17), p=[0.25, 0.5, 0.25]))
                width, height = aspect_buckets(size)[bucket]
                length = int(rng.integers(max(1, vlm_len - 40), vlm_len + 41))
                tensors = {"latent": torch.randn(16, height // 8, width // 8, generator=g).bfloat16(),
                           "vlm": torch.randn(length, hidden, generator=g).bfloat16()}
                meta = {"task": "t2i", "op": "external", "caption": "a photo", "width": width, "height": height,
                        "bucket": bucket, "vlm_len": length, "vlm_images": [], "vlm_text": "a photo"}
                key = f"synthetic-{shard:06d}-{i:06d}"
                for suffix, data in (("feats.safetensors", save(tensors)), ("json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, BytesIO(data))
        sizes[name] = count
    save_file({"vlm": torch.randn(8, hidden, generator=g).bfloat16()}, out / "uncond.safetensors")
    (out / "sizes.json").write_text(json.dumps(sizes))
    for name in sizes:  # warm the page cache: this measures the loader's CPU cost, not the disk
        (out / name).read_bytes()
    return out


# ----------------------------------------------------------------------------- CPU part


def tiny_config(feats: Path, args) -> tuple:
    from train.config import load_config

    overrides = [f"train.steps={args.steps}", "eval.every=0", "eval.sample_every=0", f"train.ckpt_every={10**9}",
                 "train.tensorboard=false", "train.progress=false", "train.log_every=1", "train.device=cpu",
                 f"data.num_workers={args.workers}", f"data.batch_size={args.batch}"]
    cfg = load_config(REPO / "train/configs/tiny.yaml", overrides)
    cfg.data.sources = [str(feats)]
    return cfg, overrides


def trainer_figures(cfg, run: Path, skip: int) -> dict:
    """train.loop.train into RUN, then medians over RUN/metrics.jsonl after `skip` steps."""
    from train.loop import train

    t0 = time.perf_counter()
    summary = train(cfg, run, echo=lambda message: None)
    wall = time.perf_counter() - t0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    records = [r for r in records if "samples_per_s" in r]
    kept = [r for r in records if r["step"] > skip] or records
    batch = cfg.data.batch_size  # log_every=1 and one batch size for every bucket: samples per step
    step_s = [batch / r["samples_per_s"] for r in kept]
    fields = ("samples_per_s", "tokens_per_s", "tflops", "data_wait")
    return {"summary": summary, "wall": wall, "steps": len(records), "kept": len(kept), "step_s": step_s,
            "by_step": {r["step"]: batch / r["samples_per_s"] for r in kept},
            "step": median(step_s), "records": {k: [r[k] for r in kept] for k in fields},
            "peak_mem_gib": max(r["peak_mem_gib"] for r in kept),
            "sum_steps": sum(batch / r["samples_per_s"] for r in records)}


def trainer_batches(cfg, count: int) -> list:
    """The trainer's first `count` batches (same loader config, no held-out set as eval is off), in memory."""
    from train.loop import build_loader

    loader = build_loader(cfg)
    it = iter(loader)
    out = [(b["latent"].float(), b["vlm"].float(), b["vlm_mask"]) for b in itertools.islice(it, count)]
    it.close()
    return out


def tiny_bare_model(cfg):
    from train.config import dit_config

    torch.manual_seed(cfg.train.seed)
    model = DreamOmniDiT(dit_config(cfg.model)).train()
    return model, build_optimizer(model, cfg.optim)


@contextlib.contextmanager
def determinism(enabled: bool):
    """The trainer's torch.use_deterministic_algorithms setting for the baseline too (restored after)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def slice_steps(depths: list[int], args, device: torch.device) -> dict:
    """The 0.85b-width slices, one model per depth, stepped in turn (depth a, depth b, a, b, ...) so a drift of
    the machine's load hits every depth alike: per depth the bare-step times."""
    models = {}
    for depth in depths:
        cfg = dataclasses.replace(PRESETS["0.85b"], name=f"0.85b-slice{depth}", depth=depth, vlm_dim=64)
        torch.manual_seed(0)
        model = DreamOmniDiT(cfg).to(device).train()
        models[depth] = (cfg, model, build_optimizer(model, OptimConfig()),
                         synthetic_batch(cfg, args.slice_batch, 32, args.slice_vlm_len, device))
    runs = {depth: {"step": [], "fwd_bwd": [], "opt": []} for depth in depths}
    for i in range(args.slice_warmup + args.slice_iters):
        for depth, (cfg, model, optimizer, batch) in models.items():
            res = time_steps(model, optimizer, [batch], 1, 0, torch.float32, device)
            if i >= args.slice_warmup:
                for key in runs[depth]:
                    runs[depth][key] += res[key]
    out = {}
    for depth, (cfg, model, _, _) in models.items():
        flops, step = train_flops(cfg, args.slice_batch, 32, 32, args.slice_vlm_len), median(runs[depth]["step"])
        out[depth] = {"cfg": cfg, "params": sum(p.numel() for p in model.parameters()), "step": step,
                      "best": min(runs[depth]["step"]), "fwd_bwd": median(runs[depth]["fwd_bwd"]),
                      "opt": median(runs[depth]["opt"]), "flops": flops, "tflops": flops / step / 1e12,
                      "steps": runs[depth]["step"]}
    return out


def cpu_part(args, feats: Path, work: Path, report: dict) -> None:
    device = torch.device("cpu")
    table = Table()
    print(f"\n== CPU: {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f} at the start "
          f"(the cores may be shared: compare within one run)", flush=True)

    # -- the tiny preset: the trainer vs the bare step, on the same batches, interleaved:
    #    bare, trainer, bare, trainer, ..., bare (the trainer's rounds are fresh runs)
    cfg, overrides = tiny_config(feats, args)
    print(f"tiny preset through train.loop.train, {args.rounds} runs of {args.steps} steps between bare segments: "
          f"train/configs/tiny.yaml + {' '.join(overrides)}", flush=True)
    batches = trainer_batches(cfg, args.steps)
    model, optimizer = tiny_bare_model(cfg)
    segments, rounds = [], []
    for r in range(args.rounds + 1):
        with determinism(cfg.train.deterministic):
            time_steps(model, optimizer, batches, 0, args.skip if r == 0 else 1, torch.float32, device)  # warm-up
            # then every batch once, in the trainer's order: bare step i is the trainer's step i + 1
            seg = time_steps(model, optimizer, batches, len(batches), 0, torch.float32, device)
        seg["all"], seg["step"] = seg["step"], seg["step"][args.skip:]  # medians: the trainer's kept batches
        segments.append(seg)
        if r == args.rounds:
            break
        run = work / f"run-tiny-{r}"
        if run.exists():
            import shutil

            shutil.rmtree(run)
        rounds.append(trainer_figures(cfg, run, args.skip))
    bare_steps = [x for seg in segments for x in seg["step"]]
    bare = median(bare_steps)
    tr_steps = [x for rd in rounds for x in rd["step_s"]]
    tr_step = median(tr_steps)
    # per round: the trainer against the mean of the bare segments either side of it (drift-robust)
    pairs = [rd["step"] / statistics.fmean([median(segments[i]["step"]), median(segments[i + 1]["step"])])
             for i, rd in enumerate(rounds)]
    # per batch: the best trainer step over its runs against the best bare step over the segments (the same
    # batch, so the same work; the best of several is what a busy machine disturbs least)
    matched = [min(rd["by_step"][j + 1] for rd in rounds) / min(seg["all"][j] for seg in segments)
               for j in range(args.skip, len(batches)) if all(j + 1 in rd["by_step"] for rd in rounds)]
    tr = {k: median(x for rd in rounds for x in rd["records"][k]) for k in
          ("samples_per_s", "tokens_per_s", "tflops", "data_wait")}
    tr["data_wait_mean"] = statistics.fmean(x for rd in rounds for x in rd["records"]["data_wait"])
    tr["peak_mem_gib"] = max(rd["peak_mem_gib"] for rd in rounds)
    flops = statistics.fmean(train_flops(model.cfg, x.shape[0], x.shape[2], x.shape[3], f.shape[1])
                             for x, f, _ in batches)  # the batches differ in padded VLM length only
    bare_tflops = flops / bare / 1e12
    n_tokens = median(x.shape[0] * (x.shape[2] // 2) * (x.shape[3] // 2) for x, _, _ in batches)
    vlm_len = median(f.shape[1] for _, f, _ in batches)
    outside = statistics.fmean(rd["wall"] - rd["sum_steps"] for rd in rounds)
    seg_medians = [median(seg["step"]) for seg in segments]
    print(f"  {num_params(model.cfg) / 1e6:.3f}M params, batch {cfg.data.batch_size} at latent "
          f"{batches[0][0].shape[2]}×{batches[0][0].shape[3]}, median padded VLM length {vlm_len:.0f}; "
          f"{outside:.1f} s a trainer run outside its logged steps (start-up, loader start, final checkpoint); "
          f"trainer medians over steps > {args.skip} of each run", flush=True)
    table.add("tiny trainer step (median)", tr_step * 1e3, "ms",
              f"{len(tr_steps)} steps; per run " + ", ".join(f"{rd['step'] * 1e3:.1f}" for rd in rounds)
              + f"; best {min(tr_steps) * 1e3:.1f}")
    table.add("tiny bare step (median)", bare * 1e3, "ms",
              f"fwd+bwd {median(x for seg in segments for x in seg['fwd_bwd']) * 1e3:.2f} ms + AdamW "
              f"{median(x for seg in segments for x in seg['opt']) * 1e3:.2f} ms; per segment "
              f"{', '.join(f'{m * 1e3:.1f}' for m in seg_medians)}; best {min(bare_steps) * 1e3:.1f}")
    table.add("tiny trainer samples/s", tr["samples_per_s"], "samples/s")
    table.add("tiny trainer tokens/s", tr["tokens_per_s"], "tokens/s", f"{n_tokens:.0f} latent tokens a batch")
    table.add("tiny trainer achieved", tr["tflops"], "TFLOP/s")
    table.add("tiny bare achieved", bare_tflops, "TFLOP/s")
    table.add("tiny trainer data wait", tr["data_wait"], "fraction", f"mean {tr['data_wait_mean']:.3f}; "
              f"num_workers {cfg.data.num_workers}")
    table.add("tiny trainer peak RSS", tr["peak_mem_gib"], "GiB", "the whole process's")
    overhead = tr_step - bare
    wait = tr["data_wait"] * tr_step
    table.add("trainer − bare step", overhead * 1e3, "ms",
              f"data wait {wait * 1e3:.2f} ms, the rest (clip, schedule, EMA, loss tally, metrics) "
              f"{(overhead - wait) * 1e3:.2f} ms")
    del model, optimizer, batches

    # -- the 0.85b-width slice
    depths = [args.slice_depth] + ([args.fit_depth] if args.fit_depth and args.fit_depth != args.slice_depth else [])
    slices = slice_steps(depths, args, device)
    for depth, s in slices.items():
        print(f"0.85b-width slice, depth {depth}: {s['params'] / 1e6:.1f}M params, batch {args.slice_batch} at 256² "
              f"(latent 32×32 = 256 tokens) + {args.slice_vlm_len} VLM tokens (vlm_dim 64), fp32; step times "
              f"{', '.join(f'{x:.2f}' for x in s['steps'])} s", flush=True)
        table.add(f"0.85b slice ({depth} blocks) bare step", s["step"], "s",
                  f"fwd+bwd {s['fwd_bwd']:.2f} s + AdamW {s['opt']:.3f} s; best {s['best']:.2f} s")
        table.add(f"0.85b slice ({depth} blocks) achieved", s["tflops"], "TFLOP/s",
                  f"{s['flops'] / 1e9:.0f} GFLOP a step")
    release(device)
    full = PRESETS["0.85b"]
    a = slices[args.slice_depth]
    full_flops = train_flops(dataclasses.replace(full, vlm_dim=64), args.slice_batch, 32, 32, args.slice_vlm_len)
    extrapolated = {}
    if len(slices) == 2:
        (d0, s0), (d1, s1) = sorted(slices.items())
        per_block = (s1["step"] - s0["step"]) / (d1 - d0)
        extrapolated["linear"] = linear = s0["step"] + per_block * (full.depth - d0)
        table.add(f"0.85b full ({full.depth} blocks) step, EXTRAPOLATED", linear, "s",
                  f"linear in depth through {d0} and {d1} blocks: {per_block:.2f} s a block; "
                  f"{full_flops / linear / 1e12:.3g} TFLOP/s")
    extrapolated["flops"] = proportional = a["step"] * full_flops / a["flops"]
    table.add(f"0.85b full ({full.depth} blocks) step, EXTRAPOLATED", proportional, "s",
              f"∝ FLOPs from {args.slice_depth} blocks ({full_flops / 1e12:.2f} TFLOP a step), i.e. at "
              f"{a['tflops']:.3g} TFLOP/s")

    table.print("CPU figures")
    print("\nratios (same run):")
    ratios = {"trainer/bare step (medians)": tr_step / bare,
              "trainer/bare step (per run vs the bare segments around it)": median(pairs),
              "trainer/bare step (per batch, best of each; median over batches)": median(matched),
              "bare segments slowest/fastest (the machine's drift)": max(seg_medians) / min(seg_medians),
              "trainer data-wait fraction": tr["data_wait"],
              "trainer overhead besides data wait": (overhead - wait) / tr_step,
              "0.85b-slice/tiny TFLOP/s (trainer)": a["tflops"] / tr["tflops"],
              "0.85b-slice/tiny TFLOP/s (bare)": a["tflops"] / bare_tflops}
    for name, value in ratios.items():
        print(f"  {name}: {value:.3f}{'×' if '/' in name.split(' (')[0] else ''}")
    report["cpu"] = {"threads": torch.get_num_threads(), "load_avg_end": os.getloadavg()[0],
                     "rows": [dict(zip(("figure", "value", "unit", "note"), r)) for r in table.rows],
                     "ratios": ratios, "extrapolated_0.85b_step_s": extrapolated,
                     "per_run_trainer_vs_bare": pairs, "per_batch_best_trainer_vs_bare": matched}
    load = os.getloadavg()[0]
    print(f"load average at the end {load:.2f}" + (
        f" — more than the {os.cpu_count()} cores: other work shared them, the medians are noisy; the best-of "
        f"figures and the interleaved ratios are the ones to trust" if load > (os.cpu_count() or 1) else ""),
        flush=True)


# ----------------------------------------------------------------------------- GPU part


class Deadline(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise Deadline inside the block after `seconds` (SIGALRM; the main thread only)."""
    if not seconds or seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def handler(signum, frame):
        raise Deadline(f"over its time cap of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GpuRun:
    """Runs each figure under its own try/except and time cap, within an overall budget; writes the report
    (JSON) after every figure so a run cut short still brings back what it measured."""

    def __init__(self, args, report: dict, device: torch.device, paths: list[Path]):
        self.args, self.report, self.device, self.paths = args, report, device, paths
        self.start = time.perf_counter()
        self.figures = report.setdefault("gpu", {})

    def left(self) -> float:
        return self.args.gpu_budget_s - (time.perf_counter() - self.start)

    def run(self, key: str, cap_s: float, fn, *a, **kw):
        left = self.left()
        if left < min(30.0, cap_s):
            print(f"{key}: skipped, {max(left, 0):.0f} s of --gpu-budget-s left", flush=True)
            self.figures[key] = {"skipped": f"budget: {max(left, 0):.0f} s left"}
            self.dump()
            return None
        t0 = time.perf_counter()
        try:
            with deadline(min(cap_s, left)):
                result = fn(*a, **kw)
        except Exception as exc:  # noqa: BLE001 — every figure goes on after an error
            message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            print(f"{key}: error after {time.perf_counter() - t0:.0f} s: {message}", flush=True)
            if self.args.verbose:
                traceback.print_exc()
            result = {"error": message}
        finally:
            with contextlib.suppress(Exception):
                torch._dynamo.reset()
            release(self.device)
        result = dict(result or {})
        result["seconds"] = round(time.perf_counter() - t0, 2)
        self.figures[key] = result
        self.dump()
        return None if "error" in result else result

    def dump(self) -> None:
        text = json.dumps(self.report, indent=1, default=str)
        for path in self.paths:
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)


def gpu_shapes(args) -> dict:
    """The GPU part's sizes, or tiny ones on CPU for --gpu-dry-run (the same code paths)."""
    if not args.gpu_dry_run:
        return {"cfg": {name: dataclasses.replace(PRESETS[name], vlm_dim=args.gpu_vlm_dim) for name in ("0.85b", "2.5b")},
                "latent": {256: 32, 512: 64}, "batch": {256: args.gpu_batch_256, 512: args.gpu_batch_512},
                "vlm_len": args.gpu_vlm_len, "steps": args.gpu_steps, "warmup": args.gpu_warmup,
                "fsdp": (args.fsdp_start_batch, args.fsdp_max_batch), "loader_workers": args.loader_workers,
                "synthetic": (args.synthetic_samples, 64, args.gpu_vlm_dim, args.gpu_vlm_len), "loader_batches": 20}
    small = dict(width=64, heads=4, depth=2, conv_channels=16, conv_blocks=1, vlm_dim=64, time_freq_dim=64)
    return {"cfg": {name: dataclasses.replace(PRESETS[name], **small) for name in ("0.85b", "2.5b")},
            "latent": {256: 8, 512: 16}, "batch": {256: 2, 512: 1}, "vlm_len": 16, "steps": 2, "warmup": 1,
            "fsdp": (1, 4), "loader_workers": [2], "synthetic": (16, 8, 64, 16), "loader_batches": 4}


def mfu_figure(cfg: DiTConfig, batch: int, latent: int, vlm_len: int, steps: int, warmup: int,
               device: torch.device, compile: bool, mask: bool, peak: float, deterministic: bool = True) -> dict:
    with determinism(deterministic):
        return _mfu_figure(cfg, batch, latent, vlm_len, steps, warmup, device, compile, mask, peak) | {
            "deterministic": deterministic}


def _mfu_figure(cfg, batch, latent, vlm_len, steps, warmup, device, compile, mask, peak) -> dict:
    from train.parallel import World, compute_dtype, wrap_model

    tcfg = TrainLoopConfig(device=device.type, compile=compile)
    dtype = compute_dtype(tcfg, device) if device.type == "cuda" else torch.bfloat16  # bf16 autocast
    torch.manual_seed(0)
    with torch.device(device):
        model = DreamOmniDiT(cfg)
    model = wrap_model(model.train(), tcfg, World(0, 1, 0, device, False))  # compile per block, as the trainer
    optimizer = build_optimizer(model, OptimConfig())
    inputs = synthetic_batch(cfg, batch, latent, vlm_len, device, mask)
    res = time_steps(model, optimizer, [inputs], steps, warmup, dtype, device)
    flops = train_flops(cfg, batch, latent, latent, vlm_len)
    step = res["mean"]
    out = {"preset": cfg.name, "batch": batch, "latent": latent, "vlm_len": vlm_len, "vlm_dim": cfg.vlm_dim,
           "compile": compile, "mask": mask, "dtype": str(dtype), "steps": steps,
           "step_ms": step * 1e3, "step_ms_median": median(res["step"]) * 1e3,
           "fwd_bwd_ms": median(res["fwd_bwd"]) * 1e3, "opt_ms": median(res["opt"]) * 1e3,
           "first_step_s": res["first"], "samples_per_s": batch / step, "train_tflop_per_step": flops / 1e12,
           "tflops": flops / step / 1e12, "mfu": flops / step / 1e12 / peak,
           "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}
    del model, optimizer, inputs
    return out


def fsdp_search(cfg: DiTConfig, latent: int, vlm_len: int, start: int, largest: int, steps: int,
                device: torch.device, peak: float, left) -> dict:
    """Double the batch until OOM: each try a fresh model, activation checkpointing + FSDP2 on a 1-rank group.
    `left()`: seconds this figure may still take; it stops before a try that would not fit in them (and keeps
    what it has when its time cap strikes during a try)."""
    import torch.distributed as dist

    from train.parallel import World, compute_dtype, wrap_model

    cuda = device.type == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                            world_size=1, **({"device_id": device} if cuda else {}))
    tcfg = TrainLoopConfig(device=device.type, parallel="fsdp", activation_checkpointing=True)
    dtype = compute_dtype(tcfg, device) if cuda else torch.bfloat16
    world = World(0, 1, 0, device, True)
    tries, fits, oom, stopped = [], {}, None, None
    try:
        batch = start
        while batch <= largest:
            t0 = time.perf_counter()
            model = optimizer = inputs = None
            try:
                torch.manual_seed(0)
                with torch.device(device):
                    model = DreamOmniDiT(cfg)
                model = wrap_model(model.train(), tcfg, world)
                optimizer = build_optimizer(model, OptimConfig())
                inputs = synthetic_batch(cfg, batch, latent, vlm_len, device)
                res = time_steps(model, optimizer, [inputs], steps, 1, dtype, device)
                peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
            except torch.cuda.OutOfMemoryError as exc:
                oom = batch
                tries.append({"batch": batch, "oom": str(exc).splitlines()[0][:200]})
                print(f"  2.5b fsdp+ac batch {batch}: out of memory", flush=True)
                break
            except Deadline:
                tries.append({"batch": batch, "deadline": True})
                stopped = f"the time cap struck during batch {batch}"
                print(f"  2.5b fsdp+ac batch {batch}: the figure's time cap struck during this try", flush=True)
                break
            finally:
                del model, optimizer, inputs
                release(device)
            step = res["mean"]
            flops = train_flops(cfg, batch, latent, latent, vlm_len)
            fits[batch] = {"batch": batch, "step_ms": step * 1e3, "first_step_s": res["first"],
                           "opt_ms": median(res["opt"]) * 1e3, "samples_per_s": batch / step,
                           "tflops": flops / step / 1e12, "mfu": flops / step / 1e12 / peak,
                           "peak_mem_gib": peak_mem}
            tries.append(fits[batch])
            print(f"  2.5b fsdp+ac batch {batch}: {step * 1e3:.0f} ms a step, MFU {fits[batch]['mfu']:.1%}, "
                  f"{time.perf_counter() - t0:.0f} s for the try", flush=True)
            # the next try is ~2x this one's time (+ build); stop before the budget runs out
            if left() < 3 * (time.perf_counter() - t0) + 20:
                stopped = f"stopped after batch {batch}: the time left would not cover batch {2 * batch}"
                print(f"  2.5b fsdp+ac: {stopped}", flush=True)
                break
            batch *= 2
    finally:
        dist.destroy_process_group()
    best = fits[max(fits)] if fits else None
    return {"preset": cfg.name, "latent": latent, "vlm_len": vlm_len, "vlm_dim": cfg.vlm_dim,
            "activation_checkpointing": True, "parallel": "fsdp (1 rank)", "dtype": str(dtype),
            "largest_batch": max(fits) if fits else None, "first_oom_batch": oom, "capped_at": largest,
            "stopped": stopped,
            "best": best, "tries": tries}


def loader_figure(source: Path, batch: int, workers: int, batches: int, max_vlm_len: int | None) -> dict:
    """FeatureLoader as train.loop.build_loader makes it (fp32 batches, cfg dropout 0.1): batches/s."""
    from train.data import FeatureLoader, LoaderConfig

    loader = FeatureLoader(LoaderConfig(sources=[(str(source), 1.0)], batch_size=batch, seed=0, num_workers=workers,
                                        cfg_dropout=0.1, max_vlm_len=max_vlm_len, dtype="fp32"))
    t0 = time.perf_counter()
    it = iter(loader)
    first = next(it)
    startup = time.perf_counter() - t0
    t0, n, samples = time.perf_counter(), 0, 0
    for b in itertools.islice(it, batches):
        n, samples = n + 1, samples + b["latent"].shape[0]
    rate = n / (time.perf_counter() - t0)
    it.close()
    return {"source": str(source), "batch": batch, "workers": workers, "batches": n, "startup_s": startup,
            "batches_per_s": rate, "samples_per_s": rate * samples / max(n, 1),
            "latent": list(first["latent"].shape), "vlm": list(first["vlm"].shape)}


def gpu_part(args, feats: Path, work: Path, report: dict) -> None:
    from train.loop import seed_everything
    from train.parallel import set_backend_flags

    dry = args.gpu_dry_run
    device = torch.device("cpu") if dry else torch.device("cuda", 0)
    if not dry:
        torch.cuda.set_device(device)
    trainer_defaults = TrainLoopConfig()
    seed_everything(0, trainer_defaults.deterministic)  # as the trainer's default config: deterministic, TF32
    set_backend_flags(trainer_defaults)
    paths = [Path(p) for p in ([args.json] if args.json else [])]
    if os.environ.get("OUT"):
        paths.append(Path(os.environ["OUT"]) / "bench_train.json")
    name = "CPU (dry run)" if dry else torch.cuda.get_device_name(device)
    peak = peak_tflops(device, torch.bfloat16, args.peak_tflops)
    peak_note = "" if peak else f" (unknown; using {FALLBACK_PEAK})"
    peak = peak or FALLBACK_PEAK
    report["gpu_meta"] = {"device": name, "torch": torch.__version__, "peak_tflops": peak, "dry_run": dry,
                          "deterministic": trainer_defaults.deterministic, "tf32": trainer_defaults.tf32,
                          "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
                          "memory_gib": (torch.cuda.get_device_properties(device).total_memory / 2**30
                                         if not dry else None)}
    print(f"\n== GPU{' DRY RUN on CPU, tiny shapes' if dry else ''}: {name}, peak {peak:.0f} TFLOP/s bf16"
          f"{peak_note}, budget {args.gpu_budget_s:.0f} s; writing {', '.join(map(str, paths)) or 'no JSON'}",
          flush=True)
    sh = gpu_shapes(args)
    runner = GpuRun(args, report, device, paths)
    table = Table()
    cap_eager, cap_compile = (90, 150) if not dry else (120, 300)

    def mfu(key, preset, size, compile, mask=True, cap=cap_eager, deterministic=trainer_defaults.deterministic):
        cfg, latent, batch = sh["cfg"][preset], sh["latent"][size], sh["batch"][size]
        r = runner.run(key, cap, mfu_figure, cfg, batch, latent, sh["vlm_len"], sh["steps"], sh["warmup"], device,
                       compile, mask, peak, deterministic)
        if r:
            table.add(f"{preset} {size}² B={batch} {'compiled' if compile else 'eager'}"
                      f"{'' if mask else ' no mask'}{'' if deterministic else ' nondeterministic'} MFU", r["mfu"], "",
                      f"{r['step_ms']:.1f} ms a step (AdamW "
                      f"{r['opt_ms']:.1f} ms), {r['tflops']:.1f} TFLOP/s, peak {fmt(r['peak_mem_gib'])} GiB, first "
                      f"step {r['first_step_s']:.1f} s")
        return r

    eager = {size: mfu(f"0.85b_{size}_eager", "0.85b", size, False) for size in (256, 512)}
    mfu("0.85b_256_eager_nomask", "0.85b", 256, False, mask=False)
    mfu("0.85b_256_eager_nondeterministic", "0.85b", 256, False, deterministic=False)

    # -- does the loader keep up? (before the compiled runs: cheap, and independent of them)
    loaders = {}
    samples, per_shard, hidden, vlm_len = sh["synthetic"]
    sources = {"tiny256": (feats, 256)}
    for size in (256, 512):
        try:
            sources[f"synthetic{size}"] = (write_synthetic_feats(work, size, samples, per_shard, hidden, vlm_len), size)
        except Exception as exc:  # noqa: BLE001
            print(f"synthetic {size}² shards: error {type(exc).__name__}: {exc}", flush=True)
    for label, (source, size) in sources.items():
        for workers in sh["loader_workers"]:
            key = f"loader_{label}_w{workers}"
            r = runner.run(key, 40, loader_figure, source, sh["batch"][size], workers, sh["loader_batches"], 512)
            if r:
                loaders[key] = (r, size)
                table.add(f"loader {label} B={r['batch']} w={workers}", r["batches_per_s"], "batches/s",
                          f"{r['samples_per_s']:.0f} samples/s, vlm {tuple(r['vlm'][1:])}, start-up {r['startup_s']:.1f} s")

    # -- 2.5b: the largest batch with activation checkpointing + FSDP2 on one GPU
    start, largest = sh["fsdp"]
    cap_fsdp = 150 if not dry else 200
    ends = time.perf_counter() + min(cap_fsdp, max(runner.left(), 0))
    r = runner.run("2.5b_fsdp_ac_256", cap_fsdp + 30, fsdp_search, sh["cfg"]["2.5b"], sh["latent"][256],
                   sh["vlm_len"], start, largest, args.fsdp_steps if not dry else 1, device, peak,
                   lambda: ends - time.perf_counter())
    if r and r.get("best"):
        b = r["best"]
        table.add("2.5b 256² fsdp+ac largest batch", r["largest_batch"], "samples",
                  f"first OOM at {r['first_oom_batch']}" if r["first_oom_batch"]
                  else f"NOT the limit: {r['stopped'] or 'no OOM up to --fsdp-max-batch ' + str(r['capped_at'])}")
        table.add(f"2.5b 256² fsdp+ac B={b['batch']} MFU", b["mfu"], "",
                  f"{b['step_ms']:.0f} ms a step, {b['tflops']:.1f} TFLOP/s (recompute not counted)")

    # -- compiled (per block, as train.compile=true): last, the slowest to start
    compiled = {size: mfu(f"0.85b_{size}_compiled", "0.85b", size, True, cap=cap_compile)
                for size in (256, 512)} if not args.no_compile else {}

    table.print("GPU figures" + (" (DRY RUN: CPU, tiny shapes — not meaningful numbers)" if dry else ""))
    ratios = {}
    for size in (256, 512):
        if eager.get(size) and compiled.get(size):
            ratios[f"compiled/eager step time {size}²"] = compiled[size]["step_ms"] / eager[size]["step_ms"]
        if eager.get(size):
            ratios[f"AdamW share of the eager step {size}²"] = eager[size]["opt_ms"] / eager[size]["step_ms"]
    if eager.get(256) and eager.get(512):
        ratios["MFU 512²/256² (eager)"] = eager[512]["mfu"] / eager[256]["mfu"]
    nomask = runner.figures.get("0.85b_256_eager_nomask", {})
    if eager.get(256) and "step_ms" in nomask:
        ratios["masked/unmasked step time 256²"] = eager[256]["step_ms"] / nomask["step_ms"]
    nondet = runner.figures.get("0.85b_256_eager_nondeterministic", {})
    if eager.get(256) and "step_ms" in nondet:
        ratios["deterministic/nondeterministic step time 256²"] = eager[256]["step_ms"] / nondet["step_ms"]
    for key, (r, size) in loaders.items():
        for kind, steps in (("eager", eager), ("compiled", compiled)):
            if steps.get(size):
                keep_up = r["batches_per_s"] * steps[size]["step_ms"] / 1e3
                ratios[f"{key} rate × {kind} {size}² step"] = keep_up
                ratios[f"{key} projected data wait ({kind} {size}²)"] = max(0.0, 1.0 - keep_up)
    if ratios:
        print("\nratios (same run):")
        for k, v in ratios.items():
            print(f"  {k}: {v:.3f}")
    report["gpu_ratios"] = ratios
    report["gpu_rows"] = [dict(zip(("figure", "value", "unit", "note"), r)) for r in table.rows]
    runner.dump()


# ----------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="a feature directory to reuse (default: build the small one into a temp dir)")
    p.add_argument("--dir", help="keep the work (features, the trainer's RUN, synthetic shards) here")
    p.add_argument("--n", type=int, default=16, help="samples per task of the collage run")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads (default: torch's)")
    p.add_argument("--no-cpu", action="store_true", help="skip the CPU figures (the data is still built)")
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU figures even when a GPU is visible")
    g = p.add_argument_group("CPU")
    g.add_argument("--steps", type=int, default=20, help="trainer steps per run (tiny preset)")
    g.add_argument("--rounds", type=int, default=2, help="trainer runs, each between two bare segments")
    g.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the medians")
    g.add_argument("--batch", type=int, default=4, help="tiny data.batch_size (tiny.yaml: 4)")
    g.add_argument("--workers", type=int, default=0, help="tiny data.num_workers (tiny.yaml: 0)")
    g.add_argument("--slice-depth", type=int, default=2, help="joint blocks of the 0.85b-width slice")
    g.add_argument("--fit-depth", type=int, default=4, help="second depth for the linear fit (0: none)")
    g.add_argument("--slice-batch", type=int, default=1)
    g.add_argument("--slice-vlm-len", type=int, default=256)
    g.add_argument("--slice-iters", type=int, default=3)
    g.add_argument("--slice-warmup", type=int, default=1)
    g = p.add_argument_group("GPU")
    g.add_argument("--json", help="write the figures (GPU and CPU) as JSON here (also $OUT/bench_train.json)")
    g.add_argument("--gpu-batch-256", type=int, default=32)
    g.add_argument("--gpu-batch-512", type=int, default=8)
    g.add_argument("--gpu-vlm-dim", type=int, default=3584, help="VLM width (Qwen2-VL 7B: 3584)")
    g.add_argument("--gpu-vlm-len", type=int, default=256)
    g.add_argument("--gpu-steps", type=int, default=10)
    g.add_argument("--gpu-warmup", type=int, default=3)
    g.add_argument("--no-compile", action="store_true", help="skip the torch.compile figures")
    g.add_argument("--fsdp-start-batch", type=int, default=16)
    g.add_argument("--fsdp-max-batch", type=int, default=1024)
    g.add_argument("--fsdp-steps", type=int, default=2, help="timed steps per try of the 2.5b batch search")
    g.add_argument("--loader-workers", type=int, nargs="+", default=[4, 8])
    g.add_argument("--synthetic-samples", type=int, default=256, help="samples per size of the real-width shards")
    g.add_argument("--peak-tflops", type=float, help="the device's peak (default: train.metrics.peak_tflops)")
    g.add_argument("--gpu-budget-s", type=float, default=420, help="the GPU part's overall time budget")
    g.add_argument("--gpu-dry-run", action="store_true", help=argparse.SUPPRESS)  # GPU code paths, CPU, tiny
    g.add_argument("--verbose", action="store_true", help="tracebacks of the GPU figures' errors")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report = {"args": vars(args), "torch": torch.__version__, "threads": torch.get_num_threads()}
    with contextlib.ExitStack() as stack:
        work = Path(args.dir) if args.dir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-train-")))
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        feats = Path(args.data) if args.data else build_features(work / "data", args.n)
        torch.set_num_threads(args.threads)  # precompute's in-process worker leaves the process at 1 thread
        print(f"features: {feats} ({time.perf_counter() - t0:.1f} s){'' if args.data else ' built'}; "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
        if not args.no_cpu:
            cpu_part(args, feats, work, report)
        if args.no_gpu:
            pass
        elif torch.cuda.is_available() or args.gpu_dry_run:
            gpu_part(args, feats, work, report)
        else:
            print("\nGPU part skipped: torch.cuda.is_available() is False")
        if args.json and "gpu" not in report:
            Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":  # spawning code (collage's local backend, loader workers) only under this guard
    main()
