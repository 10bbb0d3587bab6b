"""The run configuration: what a run makes (task mix, counts, sizes, formats), written to OUT/run.json.

Everything here is identity: two runs with the same config and package version make the same bytes.
How a run is executed (workers, cluster address) is not part of it.
"""

from __future__ import annotations

import functools
import itertools
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from . import FORMAT_VERSION, __version__
from .errors import UserError
from .sample import IMAGE_FORMATS

ASPECT_BUCKETS = 31  # 4:1 … 1:1 … 1:4, evenly spaced in log-ratio
MAX_SHARDS = 1_000_000  # shard numbers have six digits in file names and keys
SIZE_MULTIPLE = 16  # FLUX VAE (8×) × the DiT's 2× patch


@dataclass(frozen=True)
class MixEntry:
    task: str
    ops: tuple[str, ...]
    weight: float = 1.0
    options: tuple[tuple[str, str], ...] = ()  # the task's run options, sorted (key, value) pairs


@dataclass(frozen=True)
class RunConfig:
    name: str  # the task, or the pipeline's name: shard files are {name}-{shard:06d}.tar
    mix: tuple[MixEntry, ...]
    n: int
    seed: int = 0
    size: int = 512
    aspect_ratios: str = "square"  # "all": the 31 buckets around size², common ratios most; "uniform": all alike
    shard_size: int = 1000
    image_format: str = "jpg"
    max_upscale: float = 1.25  # no sprite or photo crop is enlarged past this × its cached pixels (assets.library)
    assets_digest: str = ""
    version: str = __version__
    format_version: int = FORMAT_VERSION
    pipeline: dict = field(default_factory=dict, compare=False, hash=False)
    captions: dict = field(default_factory=dict, compare=False, hash=False)  # inline captioning's CaptionConfig

    def to_json(self) -> dict:
        data = asdict(self)
        if not data["captions"]:  # runs without inline captions keep the digest they always had
            del data["captions"]
        data["mix"] = [dict(task=m.task, ops=list(m.ops), weight=m.weight, options=dict(m.options)) for m in self.mix]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "RunConfig":
        data = dict(data)
        data["mix"] = tuple(MixEntry(m["task"], tuple(m["ops"]), float(m["weight"]),
                                     parse_options(m.get("options"))) for m in data["mix"])
        return cls(**data)

    def identity(self) -> dict:
        """The fields a rerun into the same OUT must match."""
        data = self.to_json()
        data.pop("pipeline", None)
        return data

    def digest(self) -> str:
        """16 hex digits of the identity: every stats marker carries it, so a shard of another config is
        recognised whatever put it there (an older run still writing, a copied file)."""
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @functools.cached_property
    def stream(self) -> int:
        """64 bits of the run's name and task mix: every sample's seed and choices mix them in, so runs of two
        tasks (or ops, options, mixes) with the same --seed never draw the same scenes."""
        mix = [[m.task, list(m.ops), m.weight, list(map(list, m.options))] for m in self.mix]
        canonical = json.dumps([self.name, mix], sort_keys=True, separators=(",", ":"))
        return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "little")

    @property
    def num_shards(self) -> int:
        return math.ceil(self.n / self.shard_size)

    def shard_samples(self, shard: int) -> int:
        if not 0 <= shard < self.num_shards:  # an empty shard would pass for a finished one
            raise ValueError(f"shard {shard} is outside this run's {self.num_shards} shards (0–{self.num_shards - 1})")
        return min(self.shard_size, self.n - shard * self.shard_size)


@functools.lru_cache(maxsize=16)
def aspect_buckets(size: int) -> tuple[tuple[int, int], ...]:
    """(width, height) of the 31 buckets, area ≈ size², sides multiples of 16."""
    out = []
    for k in range(-(ASPECT_BUCKETS // 2), ASPECT_BUCKETS // 2 + 1):
        ratio = 4.0 ** (k / (ASPECT_BUCKETS // 2))
        w = max(SIZE_MULTIPLE, round(size * math.sqrt(ratio) / SIZE_MULTIPLE) * SIZE_MULTIPLE)
        h = max(SIZE_MULTIPLE, round(size / math.sqrt(ratio) / SIZE_MULTIPLE) * SIZE_MULTIPLE)
        out.append((w, h))
    return tuple(out)  # every sample asks: computed once per size


ASPECT_SIGMA = 0.5  # "all": a bucket's weight is exp(-ln(ratio)² / 2σ²): 1:1 1, 4:3 0.85, 16:9 0.52, 2:1 0.38, 4:1 0.02


@functools.lru_cache(maxsize=16)
def aspect_cumulative(size: int, prior: str) -> tuple[float, ...]:
    """Cumulative weights of the buckets of `size` under `prior` ("all": toward common ratios; "uniform")."""
    weights = [1.0 if prior == "uniform" else math.exp(-math.log(w / h) ** 2 / (2 * ASPECT_SIGMA ** 2))
               for w, h in aspect_buckets(size)]
    return tuple(itertools.accumulate(weights))


def validate(cfg: RunConfig) -> None:
    from .tasks import get_task

    if cfg.image_format not in IMAGE_FORMATS:
        raise UserError(f"--image-format {cfg.image_format!r}: choose one of {', '.join(IMAGE_FORMATS)}")
    if not 64 <= cfg.size <= 4096 or cfg.size % SIZE_MULTIPLE:
        raise UserError(f"--size {cfg.size}: use a multiple of {SIZE_MULTIPLE} between 64 and 4096 (e.g. 512)")
    if not 1 <= cfg.shard_size <= 1_000_000:
        raise UserError(f"--shard-size {cfg.shard_size}: use 1 to 1,000,000 samples per shard (e.g. 1000)")
    if cfg.num_shards > MAX_SHARDS:
        raise UserError(f"--n {cfg.n:,} in shards of {cfg.shard_size:,} makes {cfg.num_shards:,} shards; at most "
                        f"{MAX_SHARDS:,} (shard numbers have six digits): raise --shard-size or lower --n")
    if not 1.0 <= cfg.max_upscale <= 8.0:
        raise UserError(f"--max-upscale {cfg.max_upscale}: use 1.0 (never enlarge an asset) to 8.0 (e.g. 1.25)")
    if cfg.aspect_ratios not in ("square", "all", "uniform"):
        raise UserError(f"--aspect-ratios {cfg.aspect_ratios!r}: choose 'square', 'all' or 'uniform'")
    if not 0 <= cfg.seed < 2**63:
        raise UserError(f"--seed {cfg.seed}: use a whole number from 0 to 2**63-1")
    if not cfg.mix:
        raise UserError("nothing to generate: give --task or --pipeline")
    for entry in cfg.mix:
        spec = get_task(entry.task)
        bad = [op for op in entry.ops if op not in spec.ops]
        if bad or not entry.ops:
            raise UserError(f"--ops {','.join(bad) or '(none)'} is not an op of {entry.task}: choose from {','.join(spec.ops)}")
        if not (entry.weight > 0 and math.isfinite(entry.weight)):
            raise UserError(f"task {entry.task} has weight {entry.weight}: weights must be positive finite numbers")
        for key, value in entry.options:
            if key not in spec.options:
                known = ", ".join(spec.options) or "none"
                raise UserError(f"option {key!r} is not an option of {entry.task} (its options: {known})")
            allowed = spec.options[key]
            if callable(allowed):
                allowed(value)  # the task's own check; raises UserError
            elif allowed is not None and value not in allowed:
                raise UserError(f"option {key}={value!r} for {entry.task}: choose one of {', '.join(allowed)}")
        if spec.check is not None:
            spec.check(entry.ops, dict(entry.options))  # options that go together (or with ops); raises UserError


def parse_options(pairs: list[str] | tuple[str, ...] | dict | None) -> tuple[tuple[str, str], ...]:
    """`["add_background=mixed", …]` or a dict → sorted (key, value) pairs."""
    if not pairs:
        return ()
    if isinstance(pairs, dict):
        return tuple(sorted((str(k), str(v)) for k, v in pairs.items()))
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option {pair!r}: write KEY=VALUE, e.g. --option add_background=mixed")
        out[key.strip()] = value.strip()
    return tuple(sorted(out.items()))


def parse_ops(task: str, ops: str | None) -> tuple[str, ...]:
    from .tasks import get_task

    spec = get_task(task)
    if not ops:
        return spec.ops
    chosen = tuple(o.strip() for o in ops.split(",") if o.strip())
    bad = [o for o in chosen if o not in spec.ops]
    if bad or not chosen:
        raise UserError(f"--ops {ops!r}: {task} ops are {','.join(spec.ops)}")
    return chosen


def load_pipeline(path: str | Path) -> tuple[str, tuple[MixEntry, ...], dict]:
    """A pipeline yaml: `name`, and `tasks: [{task, weight, ops?}]`; weights are relative (e.g. millions)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"--pipeline {path}: cannot read it ({exc.strerror}); pass a yaml file such as pipelines/dreamomni.yaml") from None
    except yaml.YAMLError as exc:
        raise UserError(f"--pipeline {path} is not valid yaml: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list) or not data["tasks"]:
        raise UserError(f"--pipeline {path} needs a `tasks:` list of {{task, weight, ops}} entries")
    name = str(data.get("name") or path.stem)
    if not name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"--pipeline {path}: name {name!r} may hold only letters, digits, '-' and '_' (it names the shards)")
    mix = []
    for i, item in enumerate(data["tasks"]):
        if not isinstance(item, dict) or "task" not in item:
            raise UserError(f"--pipeline {path}: tasks[{i}] needs a `task:` key")
        ops = item.get("ops")
        ops = ",".join(ops) if isinstance(ops, list) else ops
        try:
            weight = float(item.get("weight", 1))
        except (TypeError, ValueError):
            raise UserError(f"--pipeline {path}: tasks[{i}].weight {item.get('weight')!r} is not a number") from None
        if not (weight > 0 and math.isfinite(weight)):
            raise UserError(f"--pipeline {path}: tasks[{i}].weight {item.get('weight')!r} must be a positive finite "
                            "number (weights are relative, e.g. millions of samples)")
        options = item.get("options") or {}
        if not isinstance(options, dict):
            raise UserError(f"--pipeline {path}: tasks[{i}].options must be a mapping, e.g. {{add_background: mixed}}")
        mix.append(MixEntry(str(item["task"]), parse_ops(str(item["task"]), ops), weight, parse_options(options)))
    return name, tuple(mix), data
