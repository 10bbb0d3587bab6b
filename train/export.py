"""`python -m train.export RUN_OR_CHECKPOINT --out DIR [--ema]`: one save_pretrained directory (model/ format,
`DreamOmniDiT.from_pretrained` reads it) of a checkpoint's model or EMA weights.

Works for sharded (FSDP, torch.distributed.checkpoint) checkpoints as well as unsharded ones, in one process
without a process group: DCP reads every rank's shards into the full tensors.
"""

from __future__ import annotations

import sys

import click


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="the directory to write")
@click.option("--ema", is_flag=True, help="export the EMA weights instead of the raw ones")
def cli(checkpoint, out, ema):
    from collage.errors import UserError

    from .checkpoint import export, resolve

    try:
        source = resolve(checkpoint)
        path = export(source, out, ema=ema)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise UserError(f"{checkpoint}: cannot export it ({exc})") from None
    click.echo(f"wrote {path} ({'EMA' if ema else 'model'} weights of {source})")


def main(argv: list[str] | None = None) -> int:
    from collage.cli import main as collage_main

    return collage_main(argv, command=cli, prog_name="python -m train.export")


if __name__ == "__main__":
    sys.exit(main())
