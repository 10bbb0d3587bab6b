"""Atomic, resumable training checkpoints in RUN, from one process or many.

Layout of one checkpoint, RUN/step-000010/:
    model/            config.json + model.safetensors (model/ format: DreamOmniDiT.from_pretrained reads it)
    ema.safetensors   the fp32 EMA weights;  ema.json its counters
    optim.pt          optimizer state_dict (torch.save, loads with weights_only=True)
    dcp/              instead of the three above when the model is FSDP-sharded: model, optim and ema as one
                      torch.distributed.checkpoint (each rank writes its shards; `export` makes a model/ dir)
    sched.json        LR scheduler state (without lambdas: rebuilt from the config)
    rank-00000/       per process: rng.pt (torch, CUDA, numpy, python and the noise generators' states)
                      and loader.json (its loaders' positions)
    meta.json         step, world size, config; written last, so a checkpoint without it is incomplete

Writing: every rank writes into RUN/.tmp-step-000010/, fsyncs its files; after a barrier rank 0 writes
meta.json, fsyncs the directory, renames it to step-000010, fsyncs RUN, then replaces RUN/latest (a text
file naming the checkpoint) atomically (latest.tmp, fsync, os.replace, fsync RUN). Only the last K are
kept. A failure on any rank (a full disk) fails the save on every rank and leaves the previous checkpoint.
Loading: temporary directories (a save killed half-way) are removed; `latest` is tried first, then the
step-* directories newest first; the first one every rank can read wins.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger("train.checkpoint")
STEP_RE = re.compile(r"^step-(\d{6,})$")
TMP_PREFIX = ".tmp-"
# Fault injection for the tests: seconds to stop half-way through a save (after the model, before meta.json).
PAUSE_ENV = "COLLAGE_TEST_CHECKPOINT_PAUSE"


class CheckpointError(RuntimeError):
    """A save that failed (on any rank); the previous checkpoint is untouched."""


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def rank_dir(rank: int) -> str:
    return f"rank-{rank:05d}"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:  # some file systems refuse fsync on directories
        pass


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for f in files:
            _fsync_file(Path(dirpath) / f)
        _fsync_dir(Path(dirpath))


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))


def rng_state(generators: list[torch.Generator] = ()) -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
             "python": [py_state[0], list(py_state[1]), py_state[2]],
             "generators": [g.get_state() for g in generators]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generators: list[torch.Generator] = ()) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", [])
    if len(saved) != len(generators):
        raise ValueError(f"checkpoint has {len(saved)} noise generators, this run {len(generators)}")
    for g, s in zip(generators, saved):
        g.set_state(s)


def list_checkpoints(run: Path) -> list[tuple[int, Path]]:
    """Complete-looking checkpoints (step, path), oldest first."""
    out = []
    if Path(run).is_dir():
        for p in Path(run).iterdir():
            m = STEP_RE.match(p.name)
            if m and p.is_dir() and (p / "meta.json").is_file():
                out.append((int(m.group(1)), p))
    return sorted(out)


def clean_temporaries(run: Path) -> list[Path]:
    removed = []
    if run.is_dir():
        for p in run.iterdir():
            if p.name.startswith(TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed.append(p)
                log.warning("removed an unfinished checkpoint write: %s", p)
    return removed


def _single():
    from .parallel import World

    return World(0, 1, 0, torch.device("cpu"), False)


def _sharded(model) -> bool:
    from .parallel import is_fsdp

    return is_fsdp(model)


def _dcp_state(model, optimizer, ema) -> dict:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer),
            "ema": ema.shadow}


def save_checkpoint(run: Path, step: int, *, model, ema, optimizer, scheduler_state: dict, loader_state,
                    config: dict, keep_last: int, world=None, generators: list[torch.Generator] = ()) -> Path:
    """Write checkpoint `step` (collective when world is distributed); CheckpointError if any rank failed."""
    from .parallel import unwrap

    world = world or _single()
    run = Path(run)
    tmp = run / f"{TMP_PREFIX}{step_name(step)}"
    sharded = _sharded(model)
    error = None
    if world.main:
        try:
            run.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        except OSError as exc:
            error = exc
    if _any_failed(world, error):
        raise CheckpointError(f"could not start checkpoint {step_name(step)} in {run}: {error or 'another rank failed'}")
    try:
        if sharded:  # collective: every rank writes its shards
            import torch.distributed.checkpoint as dcp

            dcp.save(_dcp_state(model, optimizer, ema), checkpoint_id=str(tmp / "dcp"))
        mine = tmp / rank_dir(world.rank)
        mine.mkdir()
        torch.save(rng_state(generators), mine / "rng.pt")
        _write_json(mine / "loader.json", loader_state)
        if world.main:
            if not sharded:
                unwrap(model).save_pretrained(tmp / "model")
                ema_state = ema.state_dict()
                save_file({k: v.contiguous() for k, v in ema_state["shadow"].items()}, str(tmp / "ema.safetensors"))
                torch.save(optimizer.state_dict(), tmp / "optim.pt")
            _write_json(tmp / "ema.json", ema.state_dict()["meta"])
            _write_json(tmp / "sched.json", scheduler_state)
        pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
        if pause > 0:
            time.sleep(pause)
        _fsync_tree(mine)
        if world.main:
            _fsync_tree(tmp)
    except Exception as exc:  # noqa: BLE001 - every rank must hear of it, whatever it is
        error = exc
    if _any_failed(world, error):
        if world.main:
            shutil.rmtree(tmp, ignore_errors=True)
        what = error if error is not None else "another rank failed"
        raise CheckpointError(f"saving {step_name(step)} into {run} failed ({what}); the previous checkpoint is "
                              "kept") from error

    final = run / step_name(step)
    if world.main:
        try:
            _write_json(tmp / "meta.json", {"step": step, "world_size": world.size, "sharded": sharded,
                                            "config": config})
            _fsync_file(tmp / "meta.json")
            _fsync_dir(tmp)
            if final.exists():  # a rerun saving the same step again: replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_dir(run)
            pointer = run / "latest.tmp"
            pointer.write_text(final.name + "\n")
            _fsync_file(pointer)
            os.replace(pointer, run / "latest")
            _fsync_dir(run)
            for _, old in list_checkpoints(run)[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            error = exc
    if _any_failed(world, error):
        if world.main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"saving {step_name(step)} into {run} failed ({error or 'on rank 0'}); "
                              "the previous checkpoint is kept") from error
    return final


def _any_failed(world, error) -> bool:
    """Did any rank fail (a collective: every rank must call it)."""
    return world.any([error is not None])[0]


def _read_rank(path: Path, rank: int) -> dict:
    mine = path / rank_dir(rank)
    return {"rng": torch.load(mine / "rng.pt", weights_only=True),
            "loader": json.loads((mine / "loader.json").read_text())}


def _read(path: Path, rank: int) -> dict:
    meta = json.loads((path / "meta.json").read_text())
    state = {"meta": meta, "step": int(meta["step"]), "path": path, "sharded": bool(meta.get("sharded")),
             "sched": json.loads((path / "sched.json").read_text()),
             "ema_meta": json.loads((path / "ema.json").read_text()), **_read_rank(path, rank)}
    if state["sharded"]:
        if not (path / "dcp" / ".metadata").is_file():
            raise FileNotFoundError(f"{path / 'dcp'} has no .metadata")
    else:
        state["model"] = load_file(str(path / "model" / "model.safetensors"))
        state["ema"] = {"shadow": load_file(str(path / "ema.safetensors")), "meta": state["ema_meta"]}
        state["optim"] = torch.load(path / "optim.pt", weights_only=True)
    return state


def candidates(run: Path) -> list[Path]:
    """Complete-looking checkpoints, the one `latest` names first, then newest first."""
    found = [p for _, p in reversed(list_checkpoints(run))]
    pointer = run / "latest"
    if pointer.is_file():
        named = run / pointer.read_text().strip()
        if named in found:
            found.remove(named)
            found.insert(0, named)
    return found


def load_latest(run: Path, world=None) -> dict | None:
    """The newest checkpoint of RUN every rank can read, as a dict (meta, step, path, sharded, sched, ema_meta,
    rng, loader of this rank; unsharded: model, ema, optim tensors too), or None when RUN has none.
    Unfinished temporary directories are removed first (by rank 0). Apply it with `restore`."""
    world = world or _single()
    run = Path(run)
    if world.main and run.is_dir():
        clean_temporaries(run)
        (run / "latest.tmp").unlink(missing_ok=True)
    world.barrier()
    names = world.broadcast_object([p.name for p in candidates(run)] if run.is_dir() else [])
    for name in names:
        path, state, error = run / name, None, None
        try:
            state = _read(path, world.rank)
        except Exception as exc:  # noqa: BLE001 - damaged: fall back to the one before
            error = exc
        if not _any_failed(world, error):
            return state
        log.warning("checkpoint %s is not loadable (%s); trying an older one", path, error or "on another rank")
    return None


def restore(state: dict, *, model, ema, optimizer) -> None:
    """Load a checkpoint's model, EMA and optimizer state into the (possibly wrapped or sharded) objects."""
    from .parallel import unwrap

    if state["sharded"] != _sharded(model):
        kind = "sharded (FSDP)" if state["sharded"] else "unsharded (one process or DDP)"
        raise ValueError(f"{state['path']} is {kind}: resume it with the same train.parallel")
    if state["sharded"]:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        target = _dcp_state(model, optimizer, ema)
        dcp.load(target, checkpoint_id=str(state["path"] / "dcp"))
        set_model_state_dict(model, target["model"])
        set_optimizer_state_dict(model, optimizer, target["optim"])
        ema.updates = int(state["ema_meta"].get("updates", 0))
        return
    unwrap(model).load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optim"])


def resolve(path: str | Path) -> Path:
    """A RUN (its latest checkpoint), a step-NNNNNN directory, or a save_pretrained directory, as a directory."""
    path = Path(path)
    if (path / "latest").is_file() or list_checkpoints(path):
        found = candidates(path)
        if not found:
            raise FileNotFoundError(f"{path} has no complete checkpoint")
        return found[0]
    return path


def full_state(path: str | Path, ema: bool = False) -> tuple[dict, dict[str, torch.Tensor]]:
    """(DiTConfig fields, full fp32 state dict) of a checkpoint, sharded or not, or of a save_pretrained dir,
    read in this one process (no process group needed)."""
    path = resolve(path)
    meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").is_file() else None
    if meta is None:  # a save_pretrained directory
        if ema:
            raise FileNotFoundError(f"{path} is a model directory without EMA weights")
        return json.loads((path / "config.json").read_text()), load_file(str(path / "model.safetensors"))
    from .config import Config, apply, dit_config

    model_cfg = dit_config(apply(Config(), {"model": meta["config"]["model"]}).model)
    fields = {k: getattr(model_cfg, k) for k in model_cfg.__dataclass_fields__}
    if not meta.get("sharded"):
        name = "ema.safetensors" if ema else "model/model.safetensors"
        return fields, load_file(str(path / name))
    import torch.distributed.checkpoint as dcp
    from model.dit import DreamOmniDiT

    model = DreamOmniDiT(model_cfg)
    state = {k: v.float() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load({"ema" if ema else "model": state}, checkpoint_id=str(path / "dcp"), no_dist=True)
    return fields, state


def export(path: str | Path, out: str | Path, ema: bool = False) -> Path:
    """Write one save_pretrained directory (model/ format) of a checkpoint's model or EMA weights."""
    from model.dit import DiTConfig, DreamOmniDiT

    fields, state = full_state(path, ema=ema)
    with torch.device("meta"):
        model = DreamOmniDiT(DiTConfig(**fields))
    model.load_state_dict(state, strict=True, assign=True)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    _fsync_tree(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.rename(tmp, out)
    return out
