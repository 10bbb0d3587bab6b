"""`python -m train.verify FEATS` (or `collage verify FEATS`): check a feature directory whole.

Every stats marker of this run's config, every tar re-hashed against it, every sample's tensors decoded and
checked against the contract (FEATURE_FORMAT.md): `latent` (16, H/8, W/8) of the json's size, `vlm` (L, D)
with D the run's hidden size and L = `vlm_len` ≥ 1, in the run's dtype; keys unique; sizes.json, strays,
temporaries and a live writer reported. Names every problem; never stops at the first.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from collections import defaultdict

import click

from collage.runlock import live_holder
from collage.shards import content_problems, read_json, stats_problem
from collage.storage import Storage, open_storage

DTYPE_NAMES = {"bf16": "torch.bfloat16", "fp16": "torch.float16"}
JSON_FIELDS = ("task", "op", "width", "height", "vlm_len", "vlm_images", "vlm_text")


def verify_features(out: str, decode: bool = True) -> tuple[list[str], dict]:
    from .precompute import digest_of

    storage = open_storage(out, "FEATS", write=False)
    totals = {"samples": 0, "shards": 0, "bytes": 0}
    ident, why = read_json(storage, "run.json")
    if why or not isinstance(ident, dict) or ident.get("kind") != "features":
        return [f"{out}: run.json is {why or 'not a feature run'} (not a train.precompute directory)"], totals
    problems: list[str] = []
    listing = storage.listing()
    sizes, why = read_json(storage, "sizes.json")
    if why or not isinstance(sizes, dict):
        problems.append(f"sizes.json: {why or 'not a json object'} (rerun the same precompute command)")
        sizes = None
    digest = digest_of(ident)
    hidden = (ident.get("encoders") or {}).get("vlm", {}).get("hidden_size")
    dtype = DTYPE_NAMES.get(ident.get("dtype"))
    seen: set[str] = set()
    stems = [s for s in ident.get("shards") or [] if isinstance(s, str)]
    for stem in stems:
        try:
            _check_shard(storage, listing, stem, digest, hidden, dtype, sizes, seen, totals, problems, decode)
        except Exception as exc:  # a damage kind nobody foresaw: name it, go on
            problems.append(f"{stem}: could not be checked ({type(exc).__name__}: {exc})")
    planned = {f"{s}{suffix}" for s in stems for suffix in (".tar", ".parquet", ".stats.json")}
    writing = live_holder(storage)
    if writing is not None:
        problems.append(f"a writer is running in this folder (pid {writing.get('pid', '?')}): verify once it has finished")
    for name in sorted(listing):
        if name.endswith((".tar", ".parquet", ".stats.json")) and name not in planned:
            problems.append(f"{name}: not a shard of this feature run (glob readers would read it)")
        elif name.startswith(".") and name.endswith(".tmp") and writing is None:
            problems.append(f"{name}: a leftover temporary of an unfinished write")
    if sizes is not None and len(sizes) != len(stems):
        problems.append(f"sizes.json lists {len(sizes)} shards, the run has {len(stems)}")
    if "uncond.safetensors" not in listing:
        problems.append("uncond.safetensors is missing (the unconditional features for CFG dropout)")
    return problems, totals


def _check_shard(storage: Storage, listing: dict, stem: str, digest: str, hidden, dtype, sizes, seen: set[str],
                 totals: dict, problems: list[str], decode: bool) -> None:
    tar_name = f"{stem}.tar"
    if f"{stem}.stats.json" not in listing:
        problems.append(f"{stem}: not finished (no stats file)")
        return
    stats, why = read_json(storage, f"{stem}.stats.json")
    shard = int(stem.rsplit("-", 1)[1])
    problem = f"its stats file is {why}" if why else stats_problem(stats, shard, None, digest)
    if problem:
        problems.append(f"{stem}: {problem}")
        return
    if tar_name not in listing:
        problems.append(f"{tar_name}: missing, but its stats file says it is done")
        return
    data = storage.read_bytes(tar_name)
    totals["shards"] += 1
    totals["bytes"] += len(data)
    problems += content_problems(tar_name, data, stats)
    if sizes is not None and sizes.get(tar_name) != stats["samples"]:
        problems.append(f"{tar_name}: sizes.json says {sizes.get(tar_name)}, stats say {stats['samples']}")
    count = _check_tar(tar_name, data, hidden, dtype, seen, problems, decode)
    totals["samples"] += count
    if count != stats["samples"]:
        problems.append(f"{tar_name}: holds {count} samples, stats say {stats['samples']}")


def _check_tar(tar_name: str, data: bytes, hidden, dtype, seen: set[str], problems: list[str], decode: bool) -> int:
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    key, _, suffix = member.name.partition(".")
                    samples[key][suffix] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        problems.append(f"{tar_name}: not a readable tar ({type(exc).__name__}: {exc})")
    for key, members in samples.items():
        where = f"{tar_name}:{key}"
        if key in seen:
            problems.append(f"{where}: key appears twice in the run")
        seen.add(key)
        try:
            _check_sample(where, members, hidden, dtype, problems, decode)
        except Exception as exc:
            problems.append(f"{where}: could not be checked ({type(exc).__name__}: {exc})")
    return len(samples)


def _check_sample(where: str, members: dict[str, bytes], hidden, dtype, problems: list[str], decode: bool) -> None:
    if set(members) != {"feats.safetensors", "json"}:
        problems.append(f"{where}: members {sorted(members)}, the contract has feats.safetensors and json")
        return
    try:
        meta = json.loads(members["json"])
    except ValueError as exc:
        problems.append(f"{where}: json unreadable ({exc})")
        return
    missing = [f for f in JSON_FIELDS if not isinstance(meta, dict) or f not in meta]
    if missing:
        problems.append(f"{where}: json lacks {missing}")
        return
    if not decode:
        return
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(members["feats.safetensors"])
    except (SafetensorError, ValueError, RuntimeError) as exc:
        problems.append(f"{where}: feats.safetensors does not decode ({exc})")
        return
    latent, vlm = tensors.get("latent"), tensors.get("vlm")
    if latent is None or vlm is None:
        problems.append(f"{where}: feats.safetensors holds {sorted(tensors)}, needs latent and vlm")
        return
    want = (16, meta["height"] // 8, meta["width"] // 8)
    if tuple(latent.shape) != want:
        problems.append(f"{where}: latent {tuple(latent.shape)}, the json's {meta['width']}x{meta['height']} needs {want}")
    if vlm.ndim != 2 or vlm.shape[0] != meta["vlm_len"] or vlm.shape[0] < 1 or (hidden and vlm.shape[1] != hidden):
        problems.append(f"{where}: vlm {tuple(vlm.shape)}, expected ({meta['vlm_len']}, {hidden}) with L ≥ 1")
    for name, tensor in (("latent", latent), ("vlm", vlm)):
        if dtype and str(tensor.dtype) != dtype:
            problems.append(f"{where}: {name} is {tensor.dtype}, the run stores {dtype}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("feats")
@click.option("--no-decode", is_flag=True, help="Check hashes and counts only.")
def cli(feats: str, no_decode: bool) -> None:
    """Check a feature directory: hashes, counts, and that every sample decodes to the contract's shapes."""
    report(feats, *verify_features(feats, decode=not no_decode))


def report(out: str, problems: list[str], totals: dict) -> None:
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        click.echo(f"verify: {len(problems)} problem(s) in {out}", err=True)
        raise SystemExit(1)
    click.echo(f"verify: ok: {totals['samples']:,} samples in {totals['shards']:,} feature shards, "
               f"{totals['bytes'] / 1e6:,.1f} MB")


def main(argv: list[str] | None = None) -> int:
    from collage.cli import main as collage_main

    return collage_main(argv, command=cli, prog_name="python -m train.verify")


if __name__ == "__main__":
    sys.exit(main())
