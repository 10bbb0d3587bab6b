"""The `collage` command: a thin layer over collage.api. No task logic lives here."""

from __future__ import annotations

import logging
from collections import Counter
import os
import sys

import click

from . import interrupts
from .counts import parse_count
from .errors import ServerDown, StorageError, UserError


class CountType(click.ParamType):
    name = "count"

    def convert(self, value, param, ctx):
        try:
            # the flag as the user typed it (--shard-size), not the Python name (shard_size)
            return parse_count(value, param.opts[0] if param and param.opts else "count")
        except UserError as exc:
            self.fail(str(exc), param, ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="collage")
def cli() -> None:
    """collage: synthetic, exactly labelled training data for unified image generation and editing."""


def caption_options(prefix: str = ""):
    """The caption flags, for `collage caption` (no prefix) and inline in `collage generate` (--caption-…)."""
    p = f"--{prefix}"
    options = [
        click.option(f"{p}base-url", f"{prefix.replace('-', '_')}base_url", default=None,
                     help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL). "
                          "The key comes from $OPENAI_API_KEY only."),
        click.option(f"{p}model", f"{prefix.replace('-', '_')}model", default=None, help="Model name the server serves."),
        click.option(f"{p}concurrency", f"{prefix.replace('-', '_')}concurrency", type=click.IntRange(1, 4096),
                     default=32, show_default=True, help="Requests in flight (per generate worker when inline)."),
        click.option(f"{p}timeout", f"{prefix.replace('-', '_')}timeout", type=click.FloatRange(0.1, 3600), default=30.0,
                     show_default=True, help="Seconds per request, whatever the server does."),
        click.option(f"{p}max-retries", f"{prefix.replace('-', '_')}max_retries", type=click.IntRange(0, 20), default=2,
                     show_default=True, help="Retries after a server fault, and re-asks after a refused answer."),
        click.option(f"{p}temperature", f"{prefix.replace('-', '_')}temperature", type=click.FloatRange(0, 2),
                     default=0.7, show_default=True),
        click.option(f"{p}max-tokens", f"{prefix.replace('-', '_')}max_tokens", type=click.IntRange(16, 8192),
                     default=256, show_default=True, help="Answer budget (a reasoning model needs more)."),
        click.option(f"{p}tasks", f"{prefix.replace('-', '_')}tasks", default=None,
                     help="Only these tasks' captions (comma-separated; default all)."),
        click.option(f"{p}cache", f"{prefix.replace('-', '_')}cache", default=None, type=click.Path(file_okay=False),
                     help="Answer cache folder (default: ~/.cache/collage/captions)."),
        click.option(f"{p}give-up-after", f"{prefix.replace('-', '_')}give_up_after", type=click.FloatRange(1, 86400),
                     default=120.0, show_default=True,
                     help="Stop (resumably) after this many seconds in which the server answered nothing."),
    ]

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def caption_settings(values: dict, prefix: str = ""):
    from .captions.settings import make_caption_settings

    key = prefix.replace("-", "_")
    return make_caption_settings(values[f"{key}base_url"], values[f"{key}model"], values[f"{key}concurrency"],
                                 values[f"{key}timeout"], values[f"{key}max_retries"], values[f"{key}temperature"],
                                 values[f"{key}tasks"], values[f"{key}cache"], values[f"{key}max_tokens"],
                                 values[f"{key}give_up_after"], flag=f"--{prefix}")


@cli.command()
@click.option("--task", help="One task: drag, t2i, inpaint, edit, reference, segdet.")
@click.option("--pipeline", type=click.Path(dir_okay=False), help="A task mix, e.g. pipelines/dreamomni.yaml.")
@click.option("--n", "n", type=CountType(), default="1000", show_default=True, help="Samples: 1000, 1.5k, 12M, 12_000_000.")
@click.option("--out", required=True, help="Run directory (local path, or s3://… through fsspec).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--size", type=int, default=512, show_default=True, help="Canvas side (or base side for aspect buckets).")
@click.option("--aspect-ratios", type=click.Choice(["square", "all", "uniform"]), default="square", show_default=True,
              help="'all': draw each canvas from the 31 aspect buckets 4:1 … 1:4 around size², common ratios most "
                   "(weight exp(-ln(ratio)²/0.5): 16:9 half as often as 1:1, 4:1 one in fifty); 'uniform': all alike.")
@click.option("--max-upscale", type=float, default=1.25, show_default=True,
              help="Never draw a sprite or photo crop larger than this × its pixels (sprites are rasterised from "
                   "SVG where they can be; too-small ones are passed over or drawn smaller).")
@click.option("--ops", help="Comma-separated ops of --task (default: all of them).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A task option, e.g. add_background=mixed (edit) or depth_model=/path (reference); repeatable.")
@click.option("--shard-size", type=CountType(), default="1000", show_default=True)
@click.option("--image-format", type=click.Choice(["jpg", "png", "webp"]), default="jpg", show_default=True)
@click.option("--workers", type=click.IntRange(1, 4096), help="Local Ray instance size (default: all cores).")
@click.option("--address", help="An existing Ray cluster, e.g. 10.0.0.1:6379 or auto.")
@click.option("--backend", type=click.Choice(["ray", "local"]), default="ray", show_default=True,
              help="'local' runs shards in this process, one after another (for debugging).")
@click.option("--assets", "manifest_dir", type=click.Path(file_okay=False), help="Asset manifest folder (default: assets_manifest/).")
@click.option("--dry-run", is_flag=True, help="Print the shard plan and estimated size; write nothing.")
@click.option("--force", is_flag=True, help="Replace a run with a different config in --out.")
@click.option("--check-existing", is_flag=True,
              help="Re-hash every finished shard before skipping it (default: sizes and config always, hashes "
                   "when the run is local and at most 2 GiB).")
@click.option("--no-progress", is_flag=True)
@caption_options("caption-")
def generate(task, pipeline, n, out, seed, size, aspect_ratios, max_upscale, ops, options, shard_size, image_format, workers, address, backend,
             manifest_dir, dry_run, force, check_existing, no_progress, **caption_values) -> None:
    """Generate N samples into webdataset shards (resumable: rerun the same command to finish). With
    --caption-model, each shard's captions are refined by an LLM before it is committed (as `collage caption`)."""
    import dataclasses

    from .api import make_config
    from .config import validate
    from .runner import estimate_bytes_per_sample, plan_text, run

    cfg = make_config(task, n, seed, size, ops, shard_size, image_format, pipeline, aspect_ratios, manifest_dir,
                      list(options), max_upscale)
    validate(cfg)
    caption_runtime = None
    if caption_values["caption_model"] or caption_values["caption_base_url"]:
        caption_config, caption_runtime = caption_settings(caption_values, "caption-")
        cfg = dataclasses.replace(cfg, captions=caption_config.to_json())
    if dry_run:
        click.echo(plan_text(cfg, estimate_bytes_per_sample(cfg, manifest_dir)))
        return
    summary = run(cfg, out, backend=backend, workers=workers, address=address, manifest_dir=manifest_dir, force=force,
                  progress=not no_progress and sys.stderr.isatty(), check_existing=True if check_existing else None,
                  note=lambda line: click.echo(f"note: {line}", err=True), caption_runtime=caption_runtime)
    rate = summary.made / max(summary.seconds, 1e-9)  # this run's own pace, not the shards found done
    click.echo(f"{'done' if summary.ok else 'incomplete'}: {summary.samples:,} samples in {summary.shards:,} shards "
               f"({summary.skipped_shards:,} already done), {summary.bytes / 1e6:,.1f} MB, {summary.failures} failed draws, "
               f"{summary.rejects} redraws, {summary.assets_skipped} assets skipped, {summary.seconds:,.1f} s "
               f"({rate:,.0f} samples/s) → {out}")
    failed_captions = summary.captions.get("failed", 0)
    if cfg.captions:
        c = summary.captions
        click.echo(f"captions: {c.get('refined', 0):,} refined, {c.get('cache', 0):,} from cache, "
                   f"{c.get('rejected', 0):,} rejected by the guard, {failed_captions:,} failed, "
                   f"{c.get('rejected', 0) + failed_captions + c.get('skipped', 0):,} kept as template")
    if not summary.ok:
        for shard, why in sorted(summary.failed_shards.items()):
            click.echo(f"shard {shard} failed: {why}", err=True)
        raise SystemExit(1)
    if failed_captions:
        click.echo(f"{failed_captions:,} captions failed on the server and kept their template: retry them with "
                   f"`collage caption {out}` and the same --caption-… settings (without the prefix)", err=True)
        raise SystemExit(1)


@cli.command()
@click.argument("out")
@click.option("--no-decode", is_flag=True, help="Check hashes and counts only.")
def verify(out, no_decode) -> None:
    """Re-hash every shard, check counts against stats and sizes.json, decode every sample (sample runs and
    train.precompute feature directories alike)."""
    from .verify import run_kind, verify as run_verify

    if run_kind(out) == "features":  # a feature directory: train.verify knows its contract
        from train.verify import report, verify_features

        report(out, *verify_features(out, decode=not no_decode))
        return
    problems, totals = run_verify(out, decode=not no_decode)
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        click.echo(f"verify: {len(problems)} problem(s) in {out}", err=True)
        raise SystemExit(1)
    click.echo(f"verify: ok: {totals['samples']:,} samples in {totals['shards']:,} shards, {totals['bytes'] / 1e6:,.1f} MB")


@cli.command()
@click.argument("out")
@caption_options()
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Processes (default: one per 48 requests of --concurrency, at most the cores); the concurrency "
                   "is split between them.")
@click.option("--dry-run", is_flag=True, help="Print what would be captioned; send and write nothing.")
@click.option("--force", is_flag=True, help="Caption again a run captioned with another caption config.")
@click.option("--no-progress", is_flag=True)
def caption(out, workers, dry_run, force, no_progress, **values) -> None:
    """Refine the captions of a finished run with an LLM (guarded: facts kept or the template stays).
    Resumable: rerun the same command after any interruption."""
    from .captions.run import caption_run
    from .errors import ServerDown

    config, runtime = caption_settings(values)
    runtime.workers = workers
    try:
        summary = caption_run(out, config, runtime, force=force, dry_run=dry_run,
                              progress=not no_progress and sys.stderr.isatty(),
                              note=lambda line: click.echo(f"note: {line}", err=True))
    except ServerDown as exc:
        click.echo(f"error: --base-url {runtime.base_url}: {exc}; the pass stopped, finished shards are kept: rerun "
                   "the same command to resume", err=True)
        raise SystemExit(1) from None
    if dry_run:
        todo = summary.shards - summary.done_before
        click.echo(f"caption {out}: {todo:,} of {summary.shards:,} shards to caption with {config.model} "
                   f"(tasks {','.join(config.tasks)}); {summary.done_before:,} done by this pass")
        return
    rate = summary.asked / max(summary.seconds, 1e-9)
    status = "done" if summary.complete else "incomplete"
    click.echo(f"{status}: {summary.line()}; {summary.captioned:,} shards captioned, {summary.done_before:,} already "
               f"done; {summary.requests:,} requests, {sum(summary.faults.values()):,} server faults, "
               f"{summary.seconds:,.1f} s ({rate:,.1f} captions/s) → {out}")
    if not summary.complete:
        click.echo(f"{summary.counts['failed']:,} captions failed on the server and kept their template: rerun the "
                   "same command to retry them", err=True)
        raise SystemExit(1)


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Gallery folder to write.")
@click.option("--n", "n", type=CountType(), default="200", show_default=True, help="Samples to show.")
@click.option("--task", help="Only these tasks (comma-separated).")
@click.option("--op", help="Only these ops (comma-separated).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True, help="Which shards and samples.")
@click.option("--thumb-size", type=click.IntRange(32, 2048), default=256, show_default=True, help="Thumbnail long side.")
@click.option("--serve", is_flag=True, help="Then serve it on http://127.0.0.1:PORT until Ctrl-C.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
def gallery(sources, out_dir, n, task, op, seed, thumb_size, serve, port) -> None:
    """Write a static QA gallery (index.html + thumbnails) of SOURCES: run directories or .tar shards, local
    or in an object store (s3://bucket/run)."""
    from .gallery import build_gallery, make_server
    from .gallery.build import problem_summary

    result = build_gallery(list(sources), out_dir, n=n, seed=seed, task=task, op=op, thumb_size=thumb_size)
    fetched = f" ({result.bytes_read / 1e6:,.1f} MB fetched from the store)" if result.remote else ""
    click.echo(f"gallery: {result.samples:,} samples from {result.shards_read:,} of {result.shards_total:,} shards{fetched} "
               f"in {result.seconds:,.1f} s → {result.path / 'index.html'}")
    if result.problems:  # damage is shown on the page, not fatal: one line here points there
        click.echo(f"warning: {problem_summary(result.problems)}; see the page's problems panel", err=True)
    if serve:
        try:
            server = make_server(out_dir, port)
        except OSError as exc:
            raise UserError(f"--port {port}: cannot serve on 127.0.0.1 ({exc.strerror}); try another --port") from None
        click.echo(f"serving on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


@cli.command()
@click.option("--task", required=True, help="The task to illustrate (one row per op).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def sheet(task, out, size, seed) -> None:
    """Write a small PNG contact sheet: one example per op (source | target | mask | condition)."""
    from .sheet import make_sheet

    click.echo(f"wrote {make_sheet(task, out, size=size, seed=seed)}")


@cli.group()
def assets() -> None:
    """Build asset manifests and import the sets you own."""


@assets.command("build")
@click.option("--sets", help="Comma-separated built-in sets (default: all that are installed).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Manifest folder (default: assets_manifest/).")
@click.option("--size", type=int, default=512, show_default=True,
              help="Decode for runs of this --size (sprites are cached, and SVGs drawn, at the size it draws them).")
def assets_build(sets, out_dir, size) -> None:
    """Write manifests of the built-in sets and decode them into the pixel cache."""
    from .assets import AssetLibrary
    from .assets.build import build_builtin
    from .assets.library import sprite_side_for

    counts = build_builtin(out_dir, sets.split(",") if sets else None, note=lambda m: click.echo(f"note: {m}"))
    for name, count in counts.items():
        click.echo(f"{name}: {count:,} assets")
    library = AssetLibrary(out_dir, warn=False, sprite_max_side=sprite_side_for(size))
    why = Counter("duplicate pictures" if v.startswith("the same picture") else "opaque rectangles"
                  if v.startswith("an opaque rectangle") else "unreadable or unusable" for v in library.skipped.values())
    skipped = ", ".join(f"{n:,} {k}" for k, n in sorted(why.items())) or "none"
    click.echo(f"cache: {len(library.sprites):,} sprites, {len(library.photos)} photos, {len(library.fonts)} fonts ready "
               f"(skipped: {skipped}) in {library.cache_dir}")


@assets.command("import")
@click.option("--folder", required=True, type=click.Path(), help="A folder of images (RGBA for stickers/cutouts) or fonts.")
@click.option("--kind", required=True, type=click.Choice(["sticker", "cutout", "background", "font"]))
@click.option("--prefix", required=True, help="Id prefix and manifest name: assets_manifest/user-PREFIX.parquet.")
@click.option("--license", "license_", required=True, help="The set's licence, e.g. CC-BY-4.0.")
@click.option("--attribution", default="")
@click.option("--name-from", type=click.Choice(["filename", "folder"]), default="filename", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False))
def assets_import(folder, kind, prefix, license_, attribution, name_from, out_dir) -> None:
    """Import a folder of RGBA images, photos or fonts as a user asset set."""
    from .assets.build import import_folder, import_fonts

    _check_prefix(prefix)
    result = import_fonts(folder, prefix, license_, out_dir) if kind == "font" else \
        import_folder(folder, kind, prefix, license_, attribution, name_from, out_dir)
    skipped = f" ({result.skipped_text()})" if result.skipped else ""
    click.echo(f"imported {result.imported:,} {kind}s as user-{prefix}.parquet{skipped}")


@assets.command("import-coco")
@click.option("--annotations", required=True, type=click.Path(), help="COCO instances json.")
@click.option("--images", required=True, type=click.Path(), help="The folder its file_name entries are in.")
@click.option("--prefix", required=True)
@click.option("--license", "license_", required=True)
@click.option("--min-area", type=float, default=1024.0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False))
def assets_import_coco(annotations, images, prefix, license_, min_area, out_dir) -> None:
    """Import COCO-style instance polygons as cutouts named by category."""
    from .assets.build import import_coco

    _check_prefix(prefix)
    result = import_coco(annotations, images, prefix, license_, min_area, out_dir)
    skipped = f" ({result.skipped_text()})" if result.skipped else ""
    click.echo(f"imported {result.imported:,} cutouts as user-{prefix}.parquet{skipped}")


def _check_prefix(prefix: str) -> None:
    if not prefix.replace("-", "").replace("_", "").isalnum():
        raise UserError(f"--prefix {prefix!r}: use letters, digits, '-' and '_' only")


def main(argv: list[str] | None = None, command: click.Command | None = None, prog_name: str = "collage") -> int:
    """Entry point: user mistakes become one line on stderr and exit code 2, never a traceback. Other
    commands of the project (`python -m train.precompute`) pass their own click `command`."""
    logging.basicConfig(level=os.environ.get("COLLAGE_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    interrupts.install()
    try:
        (command or cli).main(args=argv, prog_name=prog_name, standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.UsageError as exc:
        click.echo(f"error: {exc.format_message()}" + (f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""), err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return 2
    except StorageError as exc:  # a worker's write was refused (disk full, read-only): the run stopped
        click.echo(f"error: {exc}", err=True)
        return 1
    except ServerDown as exc:  # the caption server is gone or refuses us: the run stopped, resumable
        click.echo(f"error: the caption server: {exc}; finished shards are kept: rerun the same command to resume",
                   err=True)
        return 1
    except OSError as exc:  # the file system said no (disk full, permissions): say so in one line
        click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        return 1
    except (KeyboardInterrupt, click.Abort):
        if interrupts.terminated():  # Ray may re-raise our Terminated as a plain KeyboardInterrupt
            click.echo("\nterminated: finished shards are kept; rerun the same command to resume", err=True)
            return 143
        click.echo("\ninterrupted: finished shards are kept; rerun the same command to resume", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
