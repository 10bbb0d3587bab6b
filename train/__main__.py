"""`python -m train --config train/configs/tiny.yaml --data FEATS --out RUN [--steps N] [--set KEY=VALUE ...]`
(or `torchrun --nproc-per-node G -m train ...`: every process runs this)

Trains a DreamOmni DiT on precomputed feature shards; rerunning into the same RUN resumes from its latest
checkpoint. User mistakes (a missing FEATS, an unknown config key or preset) are one line and exit 2.
"""

from __future__ import annotations

import os
import sys

import click


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True, help="yaml config")
@click.option("--data", multiple=True, help="feature directory (repeatable); overrides data.sources")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="run directory (resumed if it exists)")
@click.option("--steps", type=int, default=None, help="total steps (overrides train.steps)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config field")
def cli(config_path, data, out, steps, overrides):
    from .config import load_config
    from .loop import TrainingError, TrainingStopped, train

    extra = list(overrides)
    if data:
        extra.append("data.sources=[" + ", ".join(repr(d) for d in data) + "]")
    if steps is not None:
        extra.append(f"train.steps={steps}")
    cfg = load_config(config_path, extra)
    try:
        summary = train(cfg, out, echo=lambda m: click.echo(m, err=True))
    except TrainingError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except TrainingStopped as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    if summary["start"] < summary["steps"] and os.environ.get("RANK", "0") == "0":
        click.echo(f"step {summary['steps']}: loss {summary['loss']:.4f} -> {out}")


def main(argv: list[str] | None = None) -> int:
    from collage.cli import main as collage_main

    return collage_main(argv, command=cli, prog_name="python -m train")


if __name__ == "__main__":
    sys.exit(main())
