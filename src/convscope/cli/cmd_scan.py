"""``convscope scan MODEL DATA... -o DIR``: per-channel statistics and top-k dataset examples.

Registered on the main app by :func:`register` (one line in ``cli/main.py``).
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import MODEL, NO_SHARED, SharedOptions, shared_options

__all__ = ["register", "scan"]


@shared_options(*MODEL, "size", "normalize", "intensity", "roi", "roi_size", "slice_", "slices", "max_memory")
def scan(
    model: Annotated[str, typer.Argument(help="demo:cnn | demo:unet | package.module:Factory | a model file", metavar="MODEL")],
    data: Annotated[list[str], typer.Argument(help="folders (recursive), globs ('data/**/*.png') or .txt lists of images", metavar="DATA...")],
    out: Annotated[Path, typer.Option("--out", "-o", help="scan folder: scan.json, state.npz, cards/ (checkpoint.npz while running)")] = Path("convscope-scan"),
    layer: Annotated[Optional[list[str]], typer.Option("--layer", "-l", help="layer name or glob (repeatable); default: all convolutions")] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help="layer kind: conv, activation, all ...")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="examples kept per channel (and as many bottom examples)")] = 16,
    score: Annotated[str, typer.Option("--score", help="rank images by the channel's spatial max or mean")] = "max",
    batch_size: Annotated[int, typer.Option("--batch-size", help="images per forward pass")] = 32,
    workers: Annotated[int, typer.Option("--workers", help="decoding threads (they work ahead of the forward pass)")] = 2,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted scan from OUT/checkpoint.npz")] = False,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="write the checkpoint every N batches")] = 20,
    engine: Annotated[str, typer.Option("--engine", help="local | ray (Ray Data actor pool; needs convscope's ray extra)")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="existing Ray cluster (ray://host:10001 or auto); default: a local Ray")] = None,
    ray_actors: Annotated[int, typer.Option("--ray-actors", help="Ray actors (one model each)")] = 2,
    receptive_field: Annotated[str, typer.Option("--receptive-field", help="crops: theoretical | effective | none")] = "theoretical",
    cards: Annotated[bool, typer.Option("--cards/--no-cards", help="draw one channel card PNG per channel (pass 2)")] = True,
    edges_from: Annotated[Optional[Path], typer.Option("--edges-from", help="reuse the histogram edges of this scan folder (for shards you will merge)")] = None,
    bins: Annotated[int, typer.Option("--bins", help="histogram bins per layer")] = 64,
    opts: SharedOptions = NO_SHARED,
) -> None:
    """Scan a dataset: every channel's statistics, its top-k images with receptive-field crops, channel cards."""
    from ..errors import ConvscopeError
    from ..scan.engine import ScanInterrupted

    if receptive_field not in ("theoretical", "effective", "none"):
        raise ConvscopeError(f"--receptive-field must be theoretical, effective or none, got {receptive_field!r}")
    if bins < 1 or workers < 1 or checkpoint_every < 1 or ray_actors < 1:
        raise ConvscopeError("--bins, --workers, --checkpoint-every and --ray-actors must be at least 1")
    if out.exists() and not out.is_dir():
        raise ConvscopeError(f"-o {out} exists and is not a folder; choose another -o")
    if not resume and (out / "checkpoint.npz").exists():
        raise ConvscopeError(f"{out} holds an unfinished scan (checkpoint.npz): continue it with --resume or choose another -o")
    scope = opts.scope(model)
    if receptive_field != "none":
        from ..scan.crops import check_method

        check_method(scope, receptive_field)  # before pass 1
    size, normalize = opts.size, opts.normalize
    started = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 2.0 or done == total:
            last[0] = now
            typer.echo(f"  batch {done}/{total}", err=True)

    out.mkdir(parents=True, exist_ok=True)
    result_ready = False  # pass 1's complete state stays in OUT/checkpoint.npz until pass 2 has written the folder
    try:
        result = scope.scan(  # pass 1
            data, layer or None, kind=kind, top_k=top_k, score=score, batch_size=batch_size, workers=workers,
            size=size, normalize=normalize, crops=False, out=None,
            checkpoint=out, checkpoint_every=checkpoint_every, resume=resume, engine=engine, ray_address=ray_address,
            ray_actors=ray_actors, edges_from=edges_from, bins=bins, progress=progress if sys.stderr.isatty() else None,
            keep_checkpoint=True,
        )
        result_ready = True
        scanned = time.perf_counter() - started
        from ..scan.cards import write_scan
        from ..scan.crops import compute_crops
        from ..scan.engine import finish_checkpoint

        if receptive_field != "none" or cards:  # pass 2: the winners' crops, then the folder with its cards
            compute_crops(scope, result, method=receptive_field, size=size, normalize=normalize)
        path = write_scan(scope, result, out, cards=cards, size=size, normalize=normalize)
        finish_checkpoint(out)
    except ScanInterrupted as exc:
        typer.echo(f"convscope: {exc}", err=True)
        raise SystemExit(130) from None
    except ConvscopeError as exc:
        if result_ready and (out / "checkpoint.npz").exists():  # pass 2 failed: pass 1 is not lost
            raise ConvscopeError(f"{str(exc).rstrip('.')}; the statistics are kept in {out}/checkpoint.npz: continue "
                                 "with --resume once that is fixed") from None
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (cli.main raises it) during pass 2
        if result_ready and (out / "checkpoint.npz").exists():
            from .main import _Terminated

            typer.echo(f"convscope: interrupted after the statistics, while cutting crops and drawing cards; they are kept "
                       f"in {out}/checkpoint.npz: continue with --resume", err=True)
            raise SystemExit(143 if isinstance(exc, _Terminated) else 130) from None
        raise
    dead = sum(len(result.dead_channels(n)) for n in result.layers)
    typer.echo(
        f"scanned {result.images} image{'' if result.images == 1 else 's'} ({len(result.skipped)} skipped) through "
        f"{len(result.layers)} layer{'' if len(result.layers) == 1 else 's'} in "
        f"{scanned:.1f} s; {dead} channel(s) never positive at their layer's output; wrote {path}"
    )
    spec, folder = shlex.quote(model), shlex.quote(str(out))  # a command the user can paste
    typer.echo(f"  see it: convscope serve {spec} --scan {folder}   (or: convscope report {spec} IMAGE --scan {folder} -o REPORT)")
    for file, reason in result.skipped[:5]:
        typer.echo(f"  skipped {file}: {reason}", err=True)
    if len(result.skipped) > 5:
        typer.echo(f"  ... {len(result.skipped) - 5} more skipped files listed in {path}", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``scan`` command to ``app``."""
    app.command(name="scan")(scan)
