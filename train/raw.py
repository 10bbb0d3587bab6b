"""The loader's raw path, for small runs: sample shards (collage runs, img2dataset data) fed without a
separate precompute step.

The encoders run in the loader's process, frozen and under inference mode, through the very code the
precompute stage runs (`train.precompute` with the in-process backend) into a cache folder keyed by what
went in; the loader then streams that folder like any feature directory. So the raw path and the feature
path cannot drift apart — after decoding they are the same code — and the raw path inherits precompute's
guarantees: resumable, the same bytes on a rerun, corrupt samples skipped and counted. Ranks share the
cache: the first one in encodes (holding the folder's run lock), the others wait for it and then find
every shard done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
import time
from pathlib import Path

from collage.errors import UserError

log = logging.getLogger("train.data")
WAIT_SECONDS = 2.0


def is_feature_source(path: str) -> bool:
    """A feature directory (run.json of kind "features"; without a run.json, tars of `feats.safetensors`
    members), or a shard inside one."""
    folder = Path(path) if os.path.isdir(path) else Path(path).parent
    try:
        return json.loads((folder / "run.json").read_text()).get("kind") == "features"
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError):
        return False
    tars = [Path(path)] if path.endswith(".tar") else sorted(folder.glob("*.tar"))[:1]
    try:
        with tarfile.open(tars[0]) as tar:
            return any(m.name.endswith(".feats.safetensors") for _, m in zip(range(4), tar))
    except (IndexError, OSError, tarfile.TarError):
        return False


def default_cache_root() -> Path:
    return Path(os.environ.get("COLLAGE_CACHE", Path.home() / ".cache" / "collage")) / "features"


def featurized(source: str, vlm_dir: str, vae_dir: str, size: int, cache_root: str | Path | None = None,
               dtype: str = "bf16", batch_size: int = 8) -> str:
    """The feature folder of sample source `source` (encoded here on first use; waited for if another
    process is encoding it)."""
    from .precompute import precompute

    key = json.dumps([os.path.abspath(source), os.path.abspath(vlm_dir), os.path.abspath(vae_dir), size, dtype])
    out = Path(cache_root or default_cache_root()) / hashlib.sha256(key.encode()).hexdigest()[:16]
    out.parent.mkdir(parents=True, exist_ok=True)
    import torch

    threads = torch.get_num_threads()  # the encoding worker pins one thread; the trainer keeps its own
    try:
        while True:
            try:
                precompute([source], str(out), vlm_dir, vae_dir, size=size, dtype=dtype, device="auto",
                           batch_size=batch_size, backend="local")
                return str(out)
            except UserError as exc:
                if "being written by another run" not in str(exc):
                    raise
                log.info("waiting for another process to finish encoding %s into %s", source, out)
                time.sleep(WAIT_SECONDS)
    finally:
        torch.set_num_threads(threads)
