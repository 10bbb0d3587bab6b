"""Atomic, resumable training checkpoints in RUN.

Layout of one checkpoint, RUN/step-000010/:
    model/            config.json + model.safetensors (model/ format: DreamOmniDiT.from_pretrained reads it)
    ema.safetensors   the fp32 EMA weights;  ema.json its counters
    optim.pt          optimizer state_dict (torch.save, loads with weights_only=True)
    sched.json        LR scheduler state (without lambdas: rebuilt from the config)
    rng.pt            torch CPU (and CUDA) generator states, numpy's and python's
    loader.json       FeatureLoader.state_dict() (the position after the last batch trained on)
    meta.json         step and config; written last, so a checkpoint without it is incomplete

Writing: everything goes to RUN/.tmp-step-000010-<pid>/, every file and the directory are fsynced, the
directory is renamed to step-000010, RUN is fsynced, then RUN/latest (a text file naming the checkpoint)
is replaced atomically (write latest.tmp, fsync, os.replace, fsync RUN). Only the last K are kept.
Loading: temporary directories (a save killed half-way) are removed; `latest` is tried first, then the
step-* directories newest first; the first complete, readable one wins.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger("train.checkpoint")
STEP_RE = re.compile(r"^step-(\d{6,})$")
TMP_PREFIX = ".tmp-"


def step_name(step: int) -> str:
    return f"step-{step:06d}"


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


def rng_state() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
             "python": [py_state[0], list(py_state[1]), py_state[2]]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(run: Path) -> list[tuple[int, Path]]:
    """Complete-looking checkpoints (step, path), oldest first."""
    out = []
    if run.is_dir():
        for p in run.iterdir():
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


def save_checkpoint(run: Path, step: int, *, model, ema, optimizer, scheduler_state: dict, loader_state: dict,
                    config: dict, keep_last: int) -> Path:
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    name = step_name(step)
    tmp = run / f"{TMP_PREFIX}{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model.save_pretrained(tmp / "model")
    ema_state = ema.state_dict()
    save_file({k: v.contiguous() for k, v in ema_state["shadow"].items()}, str(tmp / "ema.safetensors"))
    _write_json(tmp / "ema.json", ema_state["meta"])
    torch.save(optimizer.state_dict(), tmp / "optim.pt")
    _write_json(tmp / "sched.json", scheduler_state)
    torch.save(rng_state(), tmp / "rng.pt")
    _write_json(tmp / "loader.json", loader_state)
    _write_json(tmp / "meta.json", {"step": step, "config": config})
    _fsync_tree(tmp)

    final = run / name
    if final.exists():  # a rerun saving the same step again: replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(run)
    pointer = run / "latest.tmp"
    pointer.write_text(name + "\n")
    _fsync_file(pointer)
    os.replace(pointer, run / "latest")
    _fsync_dir(run)

    for _, old in list_checkpoints(run)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _read(path: Path) -> dict:
    state = {
        "meta": json.loads((path / "meta.json").read_text()),
        "model": load_file(str(path / "model" / "model.safetensors")),
        "ema": {"shadow": load_file(str(path / "ema.safetensors")),
                "meta": json.loads((path / "ema.json").read_text())},
        "optim": torch.load(path / "optim.pt", weights_only=True),
        "sched": json.loads((path / "sched.json").read_text()),
        "rng": torch.load(path / "rng.pt", weights_only=True),
        "loader": json.loads((path / "loader.json").read_text()),
    }
    state["step"] = int(state["meta"]["step"])
    state["path"] = path
    return state


def load_latest(run: Path) -> dict | None:
    """The newest readable checkpoint of RUN as a dict (meta, model, ema, optim, sched, rng, loader, step,
    path), or None when RUN has none. Unfinished temporary directories are removed first."""
    run = Path(run)
    if not run.is_dir():
        return None
    clean_temporaries(run)
    (run / "latest.tmp").unlink(missing_ok=True)
    candidates = [p for _, p in reversed(list_checkpoints(run))]
    pointer = run / "latest"
    if pointer.is_file():
        named = run / pointer.read_text().strip()
        if named in candidates:
            candidates.remove(named)
            candidates.insert(0, named)
    for path in candidates:
        try:
            return _read(path)
        except Exception as exc:  # damaged: fall back to the one before
            log.warning("checkpoint %s is not loadable (%s); trying an older one", path, exc)
    return None
