"""Precompute's worker: one source shard in, one feature shard out (FEATURE_FORMAT.md), committed whole.

Pure in (settings, source shard) on CPU: samples are read in shard order and batched in that order, so a
redone shard is the same bytes. A sample that does not decode is skipped and counted, never the end of the
shard; a source tar damaged part-way gives the samples before the damage, and says so in its stats.
"""

from __future__ import annotations

import json
import resource
import tarfile
import time
from dataclasses import dataclass

import torch
from safetensors.torch import save

from collage.shards import shard_stem
from collage.storage import Storage, refusals_as_storage_errors
from collage.writer import ShardWriter

from .conditioning import vlm_request
from .encoders import Encoders
from .inputs import PreparedSample, SourceShard, iter_raw_samples, prepare

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Settings:
    """What a feature run is made with (its identity goes to FEATS/run.json and every stats marker)."""

    size: int
    dtype: str  # storage dtype of the tensors: bf16 | fp16
    batch_size: int
    max_pixels: int | None
    config_digest: str  # of FEATS/run.json's identity


def featurize_shard(encoders: Encoders, settings: Settings, source: SourceShard, out: str) -> dict:
    started = time.time()
    storage = Storage(out)
    skipped, damage = 0, ""
    prepared: list[PreparedSample] = []
    try:
        for key, members in iter_raw_samples(source):
            try:
                prepared.append(prepare(key, members, settings.size, source.external))
            except Exception:  # one corrupt sample: skipped and counted
                skipped += 1
    except (tarfile.TarError, OSError, EOFError) as exc:
        damage = f"{type(exc).__name__}: {exc}"[:200]  # the samples read before the damage are kept
    store = DTYPES[settings.dtype]
    where = f"{out} (writing {shard_stem(source.name, source.shard)})"
    with refusals_as_storage_errors(where), ShardWriter(storage, source.name, source.shard) as writer:
        for start in range(0, len(prepared), settings.batch_size):
            batch = prepared[start:start + settings.batch_size]
            for sample, feats, meta in _encode(encoders, batch, store):
                writer.write(sample.key, {"feats.safetensors": feats, "json": meta},
                             {"task": sample.meta.get("task"), "op": sample.meta.get("op"),
                              "width": sample.meta["width"], "height": sample.meta["height"]})
        return writer.commit({"config": settings.config_digest, "source": source.path, "skipped": skipped,
                              "source_damage": damage, "seconds_encode": round(time.time() - started, 3),
                              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})


def _encode(encoders: Encoders, batch: list[PreparedSample], store: torch.dtype):
    """(sample, feats.safetensors bytes, json bytes) for a batch, in batch order."""
    requests = [vlm_request(s.meta, s.images, s.key) for s in batch]
    vlm = encoders.encode_vlm(requests)
    latents = encoders.encode_latents([s.images["tgt"] for s in batch])
    for sample, request, v, z in zip(batch, requests, vlm, latents):
        tensors = {"latent": z.to(store).contiguous().cpu(), "vlm": v.to(store).contiguous().cpu()}
        meta = {**sample.meta, "vlm_len": int(v.shape[0]), "vlm_images": list(request.image_names),
                "vlm_text": request.text}
        yield sample, save(tensors), json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()
