"""`collage verify OUT`: re-hash every shard, check counts against the plan, stats, parquet and sizes.json,
decode every sample, and name every problem found. It never stops at the first damage: each file is
checked on its own, and a check that cannot run is itself reported as a problem."""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections import defaultdict

from .config import RunConfig
from .reader import decode_image
from .runlock import live_holder
from .shards import JOURNAL_SUFFIX, content_problems, read_json, shard_pattern, shard_stem, stats_problem
from .storage import Storage, open_storage
from .tables import read_parquet
from .tasks import required_members

COMMON_FIELDS = ("task", "op", "prompt", "caption", "caption_source", "width", "height", "seed", "objects")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+-\d{6}-\d{6}$")
SHARD_FILE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)-(?P<shard>\d{6})\.(?P<kind>tar|parquet|stats\.json)$")


def run_kind(out: str) -> str | None:
    """The `kind` a run.json declares ("features" for train.precompute output), or None."""
    data, why = read_json(open_storage(out, "OUT", write=False), "run.json")
    return data.get("kind") if why is None and isinstance(data, dict) else None


def verify(out: str, decode: bool = True) -> tuple[list[str], dict]:
    """(problems, totals). An empty problem list means the run is whole and every sample decodes."""
    storage = open_storage(out, "OUT", write=False)
    totals = {"samples": 0, "shards": 0, "bytes": 0}
    if storage.is_file():
        return [f"{out}: a file, not a collage run directory"], totals
    listing = storage.listing()
    if "run.json" not in listing:
        return [f"{out}: no run.json (not a collage run directory)"], totals
    problems: list[str] = []
    cfg = _load_config(storage, problems)
    sizes = _load_sizes(storage, listing, problems)
    if cfg is None:
        name, shards = _shards_on_disk(listing)
        expected, digest = None, None
        problems.append(f"without a readable run.json the plan is unknown: checking the {len(shards)} shard(s) found")
    else:
        name, shards, digest = cfg.name, range(cfg.num_shards), cfg.digest()
        expected = cfg.shard_samples
    seen_keys: set[str] = set()
    for shard in shards:
        try:
            _check_shard(storage, listing, cfg, name, shard, expected, digest, sizes, seen_keys, totals, problems, decode)
        except Exception as exc:  # a damage kind nobody foresaw: name it and go on with the other shards
            problems.append(f"{shard_stem(name, shard)}: could not be checked ({type(exc).__name__}: {exc})")
    _check_folder(listing, cfg, name, sizes, totals, problems, writing=live_holder(storage))
    return problems, totals


def _load_config(storage: Storage, problems: list[str]) -> RunConfig | None:
    data, why = read_json(storage, "run.json")
    if why:
        problems.append(f"run.json: {why}")
        return None
    try:
        cfg = RunConfig.from_json(data)
        cfg.num_shards  # noqa: B018  (a config whose plan cannot be computed is as good as none)
        return cfg
    except Exception as exc:
        problems.append(f"run.json: not a collage run config ({type(exc).__name__}: {exc})")
        return None


def _load_sizes(storage: Storage, listing: dict[str, int], problems: list[str]) -> dict | None:
    if "sizes.json" not in listing:
        problems.append("sizes.json is missing (the run has not finished: rerun the same generate command)")
        return None
    sizes, why = read_json(storage, "sizes.json")
    if why or not isinstance(sizes, dict):
        problems.append(f"sizes.json: {why or 'not a json object of shard → samples'}")
        return None
    return sizes


def _shards_on_disk(listing: dict[str, int]) -> tuple[str, list[int]]:
    """The run name and shard numbers its files show (for a run whose run.json is unreadable)."""
    found: dict[str, set[int]] = defaultdict(set)
    for file_name in listing:
        match = SHARD_FILE.match(file_name)
        if match:
            found[match["name"]].add(int(match["shard"]))
    if not found:
        return "unknown", []
    name = max(found, key=lambda k: len(found[k]))
    return name, sorted(found[name])


def _check_shard(storage: Storage, listing: dict[str, int], cfg: RunConfig | None, name: str, shard: int, expected,
                 digest: str | None, sizes: dict | None, seen_keys: set[str], totals: dict, problems: list[str],
                 decode: bool) -> None:
    stem = shard_stem(name, shard)
    tar_name = f"{stem}.tar"
    if f"{stem}.stats.json" not in listing:
        problems.append(f"{stem}: not finished (no stats file)" + (f"; {tar_name} is there without it" if tar_name in listing else ""))
        return
    stats, why = read_json(storage, f"{stem}.stats.json")
    if why:
        problems.append(f"{stem}.stats.json: {why}")
        stats = {}
    elif digest is not None:
        problem = stats_problem(stats, shard, expected(shard), digest)
        if problem:
            problems.append(f"{stem}: {problem}")
    if not isinstance(stats, dict):
        stats = {}
    if tar_name not in listing:
        problems.append(f"{tar_name}: missing, but its stats file says it is done")
        return
    data = storage.read_bytes(tar_name)
    totals["shards"] += 1
    totals["bytes"] += len(data)
    problems += content_problems(tar_name, data, stats)
    if sizes is not None and tar_name in sizes and sizes.get(tar_name) != stats.get("samples"):
        problems.append(f"{tar_name}: sizes.json says {sizes.get(tar_name)}, stats say {stats.get('samples')}")
    elif sizes is not None and tar_name not in sizes:
        problems.append(f"{tar_name}: not listed in sizes.json")
    keys, ranges = _check_tar(tar_name, stem, data, cfg, seen_keys, problems, decode)
    totals["samples"] += len(keys)
    if "samples" in stats and len(keys) != stats.get("samples"):
        problems.append(f"{tar_name}: holds {len(keys)} samples, stats say {stats.get('samples')}")
    _check_parquet(storage, listing, stem, keys, ranges, problems)


def _check_parquet(storage: Storage, listing: dict[str, int], stem: str, keys: list[str],
                   ranges: dict[str, tuple[int, int]], problems: list[str]) -> None:
    if f"{stem}.parquet" not in listing:
        problems.append(f"{stem}.parquet: missing")
        return
    try:
        table = read_parquet(storage.read_bytes(f"{stem}.parquet"))
        rows = table.column("key").to_pylist() if "key" in table.column_names else None
        has_ranges = {"tar_offset", "tar_length"} <= set(table.column_names)  # absent before collage 0.5.1
        listed = list(zip(table.column("tar_offset").to_pylist(), table.column("tar_length").to_pylist())) \
            if has_ranges else []
    except Exception as exc:  # truncated, garbage, or not parquet at all
        problems.append(f"{stem}.parquet: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        return
    if rows is None:
        problems.append(f"{stem}.parquet: no key column")
    elif rows != keys:
        problems.append(f"{stem}.parquet: {len(rows)} rows whose keys do not match the tar's {len(keys)} samples")
    elif has_ranges:
        wrong = [key for key, (offset, length) in zip(rows, listed) if ranges.get(key) != (offset, length)]
        if wrong:
            problems.append(f"{stem}.parquet: the byte range (tar_offset, tar_length) of {len(wrong)} sample(s) is "
                            f"not where the tar holds them, first {wrong[0]}")


def _check_folder(listing: dict[str, int], cfg: RunConfig | None, name: str, sizes: dict | None, totals: dict,
                  problems: list[str], writing: dict | None) -> None:
    """What the folder holds besides the plan: strays, temporaries, a live writer, count mismatches."""
    if writing is not None:
        problems.append(f"a writer is running in this folder (pid {writing.get('pid', '?')} on "
                        f"{writing.get('host', '?')}): verify again once it has finished")
    pattern = shard_pattern(name)
    for file_name in sorted(listing):
        match = pattern.match(file_name)
        if cfg is not None and match and int(match.group(1)) >= cfg.num_shards:
            problems.append(f"{file_name}: a shard beyond this run's plan of {cfg.num_shards} (glob readers would "
                            "read it); remove it or rerun generate, which removes it")
        elif file_name.endswith(".tar") and not match:
            problems.append(f"{file_name}: a tar that is not part of this run's plan")
        elif file_name.endswith(JOURNAL_SUFFIX) and writing is None:
            problems.append(f"{file_name}: an interrupted shard replacement (rerun `collage caption` with the same "
                            "settings, or generate, to finish it)")
        elif file_name.startswith(".") and file_name.endswith(".tmp") and writing is None:
            problems.append(f"{file_name}: a leftover temporary of an unfinished write (rerun generate to clean up)")
    if cfg is None:
        return
    if sizes is not None and len(sizes) != cfg.num_shards:
        problems.append(f"sizes.json lists {len(sizes)} shards, the plan has {cfg.num_shards}")
    if totals["samples"] != cfg.n and not any("not finished" in p for p in problems):
        problems.append(f"the run holds {totals['samples']} samples, run.json asks for {cfg.n}")


def _check_tar(tar_name: str, stem: str, data: bytes, cfg: RunConfig | None, seen_keys: set[str], problems: list[str],
               decode: bool) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """The keys of the tar's samples, in order, and each one's byte range (offset, length: its members'
    headers and padded data); every problem of its samples goes to `problems`."""
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    order: list[str] = []
    spans: dict[str, list[int]] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    problems.append(f"{tar_name}: member {member.name!r} is not a regular file")
                    continue
                key, _, ext = member.name.partition(".")
                if key not in samples:
                    order.append(key)
                samples[key][ext] = tar.extractfile(member).read()
                end = member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                spans.setdefault(key, [member.offset, end])[1] = end
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        problems.append(f"{tar_name}: not a readable tar ({type(exc).__name__}: {exc}); "
                        f"{len(order)} sample(s) read before the damage")
    image_format = cfg.image_format if cfg else None
    for key in order:
        where = f"{tar_name}:{key}"
        if not KEY_PATTERN.match(key) or not key.startswith(f"{stem}-"):
            problems.append(f"{where}: key does not follow {stem}-{{index:06d}}")
        if key in seen_keys:
            problems.append(f"{where}: key appears twice in the run")
        seen_keys.add(key)
        try:
            _check_sample(where, samples[key], image_format, problems, decode)
        except Exception as exc:  # a json of the wrong shape must not hide the other samples' problems
            problems.append(f"{where}: could not be checked ({type(exc).__name__}: {exc})")
    return order, {key: (start, end - start) for key, (start, end) in spans.items()}


def caption_problems(where: str, meta: dict) -> list[str]:
    """A caption is the template, or an LLM rewrite that passes the guard (collage.captions.check)."""
    source, caption, prompt = meta["caption_source"], meta["caption"], meta["prompt"]
    if source == "template":
        return [] if caption == prompt else [f"{where}: caption_source is template but the caption is not the prompt"]
    if source not in ("llm", "cache"):
        return [f"{where}: caption_source {source!r} is none of template, llm, cache"]
    if not isinstance(caption, str) or not caption.strip():
        return [f"{where}: an empty {source} caption"]
    from .captions import check

    found = check(meta, caption)
    return [f"{where}: its {source} caption fails the guard ({'; '.join(found)[:200]})"] if found else []


def _check_sample(where: str, members: dict[str, bytes], image_format: str | None, problems: list[str],
                  decode: bool) -> None:
    try:
        meta = json.loads(members["json"])
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        problems.append(f"{where}: json member missing or unreadable ({type(exc).__name__}: {exc})")
        return
    if not isinstance(meta, dict):
        problems.append(f"{where}: json member is not an object")
        return
    missing = [f for f in COMMON_FIELDS if f not in meta]
    if missing:
        problems.append(f"{where}: json lacks {missing}")
        return
    problems += caption_problems(where, meta)
    width, height = meta["width"], meta["height"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        problems.append(f"{where}: json width/height {width!r}x{height!r} are not positive integers")
        return
    if image_format and isinstance(meta["task"], str) and isinstance(meta["op"], str):
        want = {f"{m}.{image_format}" if m in ("src", "tgt") else f"{m}.png"
                for m in required_members(meta["task"], meta["op"])}
        absent = sorted(want - set(members))
        if absent:
            problems.append(f"{where}: missing members {absent}")
    if not decode:
        return
    for ext, blob in members.items():
        if ext == "json":
            continue
        try:
            image = decode_image(blob)
        except Exception as exc:
            problems.append(f"{where}.{ext}: does not decode ({type(exc).__name__}: {exc})")
            continue
        if image.shape[:2] != (height, width):
            problems.append(f"{where}.{ext}: {image.shape[1]}x{image.shape[0]}, json says {width}x{height}")
