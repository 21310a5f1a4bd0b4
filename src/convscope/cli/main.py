"""``convscope`` command line: ``layers``, ``kernels``, ``activations``, ``unet``, ``report``, ``serve``, ``demo``.

The model options (``--kwargs``, ``--weights``, ``--trust``, ``--device``) and the image options
(``--size``, ``--normalize``) mean the same in every command. Errors print one line and exit 2.
"""

# no ``from __future__ import annotations`` here: typer would ``eval`` every annotation string of every
# command at start-up (~0.25 s for ~450 strings); real annotation objects cost nothing
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .options import INPUT, MODEL, NO_SHARED, VOLUME, SharedOptions, check_volume_input, shared_options

app = typer.Typer(
    name="convscope",
    help="See what a CNN learned (kernels) and what it does with an input (activations); U-Nets first-class.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ModelArg = Annotated[str, typer.Argument(help="demo:cnn | demo:unet | package.module:Factory | a model file", metavar="MODEL")]
LayerOpt = Annotated[Optional[list[str]], typer.Option("--layer", "-l", help="layer name or glob (repeatable); default: all convolutions")]
ViewLayerOpt = Annotated[Optional[list[str]], typer.Option(
    "--layer", "-l", help="layer name or glob (repeatable); default: convolutions and activation layers")]
KindOpt = Annotated[Optional[str], typer.Option("--kind", help="layer kind: conv, conv_transpose, activation, norm, pool, all ...")]
ProgressOpt = Annotated[Optional[bool], typer.Option(
    "--progress/--no-progress", help="one progress bar on stderr, shown when the command takes over a second "
    "(default: when stderr is a terminal)")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="output folder (created; only files of this run are written)")]
FormatOpt = Annotated[str, typer.Option("--format", help="picture format: png | svg | pdf, or several comma-separated (png,svg,pdf)")]


def _show_version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"convscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="print the version and exit")] = False,
    traceback: Annotated[bool, typer.Option("--traceback", help="on an error, print the full traceback "
                                            "(also accepted after the command)")] = False,
) -> None:
    """See what a CNN learned (kernels) and what it does with an input (activations); U-Nets first-class."""


def _image_or_channels(image: str | None, channels: str | None) -> str:
    if image is not None and channels:
        raise ValueError("give either an IMAGE or --channels, not both")
    if image is not None:
        return image
    if not channels:
        raise ValueError("give an input IMAGE (a picture, .npy, NIfTI file or DICOM folder) or --channels a,b,...")
    return channels


def _echo(text: str) -> None:
    typer.echo(text)


@app.command()
@shared_options(*MODEL, *INPUT, "series", "slice_")
def layers(
    model: ModelArg,
    image: Annotated[Optional[str], typer.Argument(help="optional input, to show output shapes", metavar="[IMAGE]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    containers: Annotated[bool, typer.Option("--containers", help="also list blocks/Sequentials")] = False,
    kind: KindOpt = None,
    opts: SharedOptions = NO_SHARED,
) -> None:
    """List the layers: name, kind, kernel, stride, groups, output shape, parameters."""
    if image is not None:
        check_volume_input(opts, image)
    scope = opts.scope(model)
    table = scope.layers(image, kind=kind, containers=containers, size=opts.size)
    if as_json:
        _echo(json.dumps({"model": scope.name, "framework": scope.adapter.framework, "layers": table.to_json()}, indent=2))
    else:
        _echo(str(table))


@app.command()
@shared_options(*MODEL)
def kernels(
    model: ModelArg,
    out: OutOpt = Path("convscope-kernels"),
    layer: LayerOpt = None,
    kind: KindOpt = None,
    scale: Annotated[str, typer.Option("--scale", help="symmetric | minmax | percentile")] = "symmetric",
    per: Annotated[str, typer.Option("--normalize-per", help="filter | shared (one scale for the layer)")] = "filter",
    cmap: Annotated[Optional[str], typer.Option("--cmap", help="colormap (default RdBu_r, gray for minmax)")] = None,
    rgb: Annotated[Optional[bool], typer.Option("--rgb/--no-rgb", help="draw the layers whose filters have 3 input "
                   "channels (an RGB first layer) as colour images; other layers as usual. An error if no chosen layer "
                   "has 3 (default: auto, the same rule)")] = None,
    labels: Annotated[bool, typer.Option("--labels", help="draw filter indices")] = False,
    arrays: Annotated[bool, typer.Option("--arrays", help="also write raw weights as .npz")] = False,
    fmt: FormatOpt = "png",
    progress: ProgressOpt = None,
    opts: SharedOptions = NO_SHARED,
) -> None:
    """Write one kernel grid per convolution layer into OUT, plus manifest.json."""
    scope = opts.scope(model)
    manifest = scope.save_kernels(out, layer or None, kind=kind, scale=scale, normalize=per, cmap=cmap, rgb=rgb,
                                  labels=labels, arrays=arrays, formats=fmt, progress=progress)
    _report_written(manifest)


@app.command()
@shared_options(*MODEL, *INPUT, *VOLUME)
def activations(
    model: ModelArg,
    image: Annotated[Optional[str], typer.Argument(help="input: image (PNG/JPEG/TIFF), .npy, NIfTI (.nii/.nii.gz), DICOM file or series folder", metavar="IMAGE")] = None,
    out: OutOpt = Path("convscope-activations"),
    layer: LayerOpt = None,
    kind: KindOpt = None,
    top: Annotated[Optional[int], typer.Option("--top", help="only the K strongest channels (by --order)")] = None,
    order: Annotated[str, typer.Option("--order", help="index | mean | max | l2")] = "index",
    sample: Annotated[Optional[list[int]], typer.Option("--sample", help="batch sample(s) to draw (default: all)")] = None,
    overlay: Annotated[bool, typer.Option("--overlay", help="also write the channel-mean map blended on the input")] = False,
    overlay_cmap: Annotated[str, typer.Option("--overlay-cmap", help="colormap of --overlay heat maps")] = "jet",
    overlay_alpha: Annotated[float, typer.Option("--overlay-alpha", help="heat-map weight of --overlay in [0, 1] (0: only the image)")] = 0.5,
    cmap: Annotated[str, typer.Option("--cmap")] = "viridis",
    scale: Annotated[str, typer.Option("--scale", help="minmax | symmetric | percentile")] = "minmax",
    per: Annotated[str, typer.Option("--normalize-per", help="channel | shared")] = "channel",
    volume: Annotated[str, typer.Option("--volume", help="3D maps: slices | mip")] = "slices",
    labels: Annotated[bool, typer.Option("--labels", help="draw channel indices")] = False,
    arrays: Annotated[bool, typer.Option("--arrays", help="also write raw activations as .npz")] = False,
    fmt: FormatOpt = "png",
    full_resolution: Annotated[bool, typer.Option("--full-resolution", help="never downsample grids (default: cells averaged down so a grid is at most 1024 px per side; --arrays always has every value)")] = False,
    train: Annotated[bool, typer.Option("--train-mode", help="capture in training mode (state restored after)")] = False,
    progress: ProgressOpt = None,
    opts: SharedOptions = NO_SHARED,
) -> None:
    """Capture the chosen layers in ONE forward pass and write their channel grids into OUT.

    3D scans also get input.planes.png and LAYER.planes.png (axial/coronal/sagittal, radiological).
    """
    image = _image_or_channels(image, opts.channels)
    check_volume_input(opts, image)
    scope = opts.scope(model)
    manifest = scope.save_activations(
        image, out, layer or None, kind=kind, top=top, order=order, samples=sample or None, cmap=cmap,
        scale=scale, normalize=per, labels=labels, overlay=overlay, volume=volume, arrays=arrays, size=opts.size,
        train=train, formats=fmt, overlay_cmap=overlay_cmap, overlay_alpha=overlay_alpha,
        full_resolution=full_resolution, progress=progress,
    )
    _report_written(manifest)


@app.command()
@shared_options(*MODEL, *INPUT, *VOLUME)
def unet(
    model: ModelArg,
    image: Annotated[Optional[str], typer.Argument(help="input: image (PNG/JPEG/TIFF), .npy, NIfTI (.nii/.nii.gz), DICOM file or series folder", metavar="IMAGE")] = None,
    out: OutOpt = Path("convscope-unet"),
    target: Annotated[Optional[int], typer.Option("--target", help="output channel scored for the gradient share (default: predicted class)")] = None,
    mask: Annotated[Optional[str], typer.Option("--mask", help="region (image or .npy, nonzero = inside) the gradient-share score is summed over")] = None,
    thumbnail: Annotated[str, typer.Option("--thumbnail", help="flow-figure thumbnails: mean | top")] = "mean",
    top: Annotated[int, typer.Option("--top", help="channels per grid in the level panels")] = 8,
    fmt: FormatOpt = "png",
    progress: ProgressOpt = None,
    cam: Annotated[bool, typer.Option("--cam", help="add a Grad-CAM row (every level, both skip branches, one scale): cam.png")] = False,
    cam_class: Annotated[Optional[list[int]], typer.Option("--class", help="with --cam: class to explain (repeatable; default the predicted class)")] = None,
    opts: SharedOptions = NO_SHARED,
) -> None:
    """Find the U-Net's encoder, bottleneck, decoder and skips; write flow.png, level-N.png, unet.json.

    3D scans also get input/output/level planes (*.planes.png: axial, coronal, sagittal).
    """
    from .cmd_unet import run_unet

    if cam_class and not cam:
        raise ValueError("--class chooses the class of the CAM row; add --cam (or use --target for the gradient share)")
    image = _image_or_channels(image, opts.channels)
    check_volume_input(opts, image)
    scope = opts.scope(model)
    plan = scope.plan_slices(image, size=opts.size, mode="gradients",  # --slices: chunks that fit, backward included
                             what="the U-Net flow (every layer, one backward pass)")
    prepared = scope.prepare(image, size=opts.size)
    mask_array = _read_mask(mask, prepared) if mask is not None else None
    paths = run_unet(scope.adapter, prepared.batch, prepared.display[0] if prepared.display is not None else None,
                     out, target=target, mask=mask_array, thumbnail=thumbnail, top=top, formats=fmt, volume=prepared.volume,
                     progress=progress, cam_classes=(cam_class or []) if cam else None, chunks=plan,
                     view=prepared.view)
    _echo(f"wrote {len(paths)} file{'' if len(paths) == 1 else 's'} to {out}: " + ", ".join(Path(p).name for p in paths))
    _echo_chunks(plan.describe(), prepared.volume.plane if prepared.volume is not None else "")


def _read_mask(path: str, prepared: Any = None) -> Any:
    """A mask file (image or .npy) -> ``(*spatial)`` bool array (nonzero = inside).

    For a scan, the mask is a volume on the scan's grid, cropped/padded (or sliced) like the input.
    """
    import numpy as np

    from ..io.images import prepare_input

    if prepared is not None and prepared.volume is not None:
        from ..io.volume_prep import fit_mask_file

        return fit_mask_file(path, prepared.volume)

    prepared = prepare_input(path, channels=None)
    return np.any(prepared.batch[0] != 0, axis=0)


@app.command()
@shared_options(*MODEL, *INPUT, "series", "intensity", "window", "roi", "roi_size", "slice_")
def report(
    model: ModelArg,
    images: Annotated[list[str], typer.Argument(help="input images (PNG/JPEG/TIFF) or .npy arrays", metavar="IMAGE...")],
    out: OutOpt = Path("convscope-report"),
    layer: ViewLayerOpt = None,
    kind: KindOpt = None,
    top: Annotated[int, typer.Option("--top", help="layers with more channels show their K strongest first; the full grid loads on demand")] = 64,
    cmap: Annotated[str, typer.Option("--cmap", help="colormap of activation grids")] = "viridis",
    unet: Annotated[bool, typer.Option("--unet/--no-unet", help="add the U-Net flow when the model is a U-Net")] = True,
    progress: ProgressOpt = None,
    scan: Annotated[Optional[Path], typer.Option("--scan", help="a `convscope scan` folder: adds a channel atlas page")] = None,
    opts: SharedOptions = NO_SHARED,
) -> None:
    """Write a self-contained HTML report (index.html + images, works offline) into OUT.

    Default layers: convolutions and activation layers (--layer / --kind to choose).
    """
    scope = opts.scope(model)
    index = scope.report(images, out, layers=layer or None, kind=kind, top=top, cmap=cmap, unet=unet, size=opts.size,
                         progress=progress, echo=_echo, scan=scan)
    _echo(f"wrote {index} (open it in a browser; every file is listed in {index.parent / 'manifest.json'})")


@app.command()
@shared_options(*MODEL, *INPUT, "intensity", "window", "roi", "roi_size", "slice_")
def serve(
    model: ModelArg,
    images: Annotated[Optional[Path], typer.Option("--images", help="folder of images to choose from (only files inside it are served)")] = None,
    host: Annotated[str, typer.Option("--host", help="address to listen on (default 127.0.0.1: this machine only). Any other address prints a warning")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to listen on (0: any free port)")] = 8000,
    layer: ViewLayerOpt = None,
    kind: KindOpt = None,
    cache_mb: Annotated[int, typer.Option("--cache-mb", help="memory budget of the activation cache (MiB)")] = 512,
    max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", help="largest accepted upload (MiB)")] = 20,
    scan: Annotated[Optional[Path], typer.Option("--scan", help="a `convscope scan` folder: clicking a channel shows its dataset examples")] = None,
    opts: SharedOptions = NO_SHARED,
) -> None:
    """Live viewer in the browser: choose or upload an image, browse layers and channels, see the U-Net flow.

    Every request needs the random token in the printed URL. NIfTI/DICOM files and DICOM series
    folders in --images (and uploaded .nii/.nii.gz/.dcm files) are read as volumes.
    """
    from ..server.run import check_address
    from ..server.run import serve as run_server
    from ..server.state import ServerLimits

    if cache_mb < 1 or max_upload_mb < 1:
        raise ValueError("--cache-mb and --max-upload-mb must be at least 1")
    check_address(host, port)  # before the model is loaded
    scope = opts.scope(model)
    limits = ServerLimits(cache_bytes=cache_mb * 1024 * 1024, max_upload_bytes=max_upload_mb * 1024 * 1024)
    run_server(scope, images=images, host=host, port=port, layers=layer or None, kind=kind, size=opts.size, limits=limits,
               echo=_echo, warn=lambda text: typer.echo(text, err=True), scan=scan)


@app.command()
def demo(
    out: OutOpt = Path("convscope-demo"),
) -> None:
    """Run convscope on the bundled demo models (no downloads) and write an index.html to look at."""
    from .demo import run_demo

    index = run_demo(out, echo=_echo)
    _echo(f"open {index.resolve()}")


from .cmd_scan import register as _register_scan  # noqa: E402

_register_scan(app)


def _report_written(manifest: Path) -> None:
    data = json.loads(manifest.read_text())
    command = data.get("command")
    ours = [entry for entry in data["files"] if entry.get("command", command) == command]
    count = len(ours)
    _echo(f"wrote {count} file{'' if count == 1 else 's'} to {manifest.parent} (see {manifest.name})")
    missing = data.get("not_executed")
    if missing:
        _echo(f"{len(missing['layers'])} selected layer(s) {missing['reason']}: {', '.join(missing['layers'])}")
    _echo_chunks(data.get("chunks"), (data.get("volume") or {}).get("plane", ""))


def _echo_chunks(chunks: Any, plane: str) -> None:
    """One line when the slices of a volume went through the model in several chunks."""
    if chunks and chunks.get("chunks", 1) > 1:
        _echo(f"{chunks['samples']} {plane} slices in {chunks['chunks']} chunks of up to {chunks['chunk_size']} "
              f"(about {chunks['estimate']} per chunk, within --max-memory)")


def _parser_exceptions() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """The (usage-error, exit, abort) exception classes of the parser typer runs on.

    typer >= 0.20 carries its own copy of click (``typer._click``), older typer uses ``click``; both may be
    loaded at once. The classes are found from what typer itself exports (``typer.BadParameter``'s
    bases, ``typer.Exit``, ``typer.Abort``) and from any click copy already imported, so an
    ``isinstance`` check matches whichever copy raised.
    """
    usage: list[type[BaseException]] = []
    exits: list[type[BaseException]] = [typer.Exit]
    aborts: list[type[BaseException]] = [typer.Abort]
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == "ClickException":
            usage.append(cls)
    for name in ("click.exceptions", "typer._click.exceptions"):
        module = sys.modules.get(name)
        if module is None:
            continue
        for attr, bucket in (("ClickException", usage), ("Exit", exits), ("Abort", aborts)):
            found = getattr(module, attr, None)
            if isinstance(found, type) and issubclass(found, BaseException) and found not in bucket:
                bucket.append(found)
    return tuple(usage), tuple(exits), tuple(aborts)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _usage_line(exc: BaseException) -> str:
    """``convscope: error: MESSAGE (see 'convscope CMD --help')`` for a parser error."""
    format_message = getattr(exc, "format_message", None)
    message = _one_line(format_message() if callable(format_message) else str(exc))
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "convscope"
    return f"convscope: error: {message} (see '{path} --help')"


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so the same clean-up runs as for Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def _out_dir_of(argv: list[str]) -> str | None:
    """The ``-o/--out`` value of ``argv`` (for the interruption message), if given."""
    for i, arg in enumerate(argv):
        if arg in ("-o", "--out") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--out="):
            return arg[len("--out="):]
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; every usage or input error is ONE line on stderr and exit status 2.

    * parser errors (unknown command/option, missing or malformed value): exit 2;
    * ``ConvscopeError``/``ValueError`` and file errors from the run: exit 2;
    * an exception from the user's own code (a factory) arrives as ``ModelLoadError`` naming its type
      and message; ``--traceback`` (anywhere on the line) prints the full traceback instead;
    * Ctrl-C: exit 130, SIGTERM: exit 143, with ``convscope: interrupted; DIR is left as before``
      (output folders are committed all at once at the end of a run, see ``OutputDir``);
    * anything else is a bug: one line naming it, exit 1 (``--traceback`` for the details).
    """
    import signal

    from ..errors import ConvscopeError

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]  # the same (help on stdout, exit 0) with every typer/click version
    show_traceback = "--traceback" in args[: args.index("--")] if "--" in args else "--traceback" in args
    if show_traceback:
        args = [a for a in args if a != "--traceback"]
    usage, exits, aborts = _parser_exceptions()
    previous_term = None
    if threading_is_main():
        previous_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        command = typer.main.get_command(app)
        with command.make_context("convscope", args) as ctx:
            command.invoke(ctx)
    except KeyboardInterrupt as exc:
        where = _out_dir_of(args)
        place = f"; {where} is left as before" if where else ""
        typer.echo(f"convscope: interrupted{place}", err=True)
        raise SystemExit(143 if isinstance(exc, _Terminated) else 130) from None
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - sorted below; nothing else escapes as a traceback
        usage, exits, aborts = _parser_exceptions()  # a click copy may have been imported meanwhile
        if isinstance(exc, exits):
            raise SystemExit(getattr(exc, "exit_code", 0)) from None
        if isinstance(exc, aborts):
            typer.echo("convscope: aborted", err=True)
            raise SystemExit(1) from None
        if show_traceback:
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__)
        if isinstance(exc, usage):
            if type(exc).__name__ == "NoArgsIsHelpError" and getattr(exc, "ctx", None) is not None:
                typer.echo(exc.ctx.get_help(), err=True)  # type: ignore[attr-defined]
                raise SystemExit(2) from None
            typer.echo(_usage_line(exc), err=True)
            raise SystemExit(2) from None
        if isinstance(exc, (ConvscopeError, ValueError, OSError)):
            typer.echo(f"convscope: error: {_error_text(exc)}", err=True)
            raise SystemExit(2) from None
        if isinstance(exc, MemoryError):
            typer.echo("convscope: error: out of memory; use a smaller --size, fewer --layer, or a smaller batch "
                       "(convscope estimates the need beforehand: see --max-memory)", err=True)
            raise SystemExit(2) from None
        hint = "" if show_traceback else " (run again with --traceback for the details)"
        typer.echo(f"convscope: internal error: {type(exc).__name__}: {_one_line(str(exc))}{hint}", err=True)
        raise SystemExit(1) from None
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def run() -> None:
    """The console script (``convscope``, ``python -m convscope``): :func:`main`, then a quick exit.

    When ``main`` is done the outputs are complete on disk; what is left is the interpreter's own
    teardown (destroying every module and object of torch, TensorFlow...), about 0.2-0.3 s that the
    user would wait for nothing. So after flushing stdout/stderr and running the ``atexit`` handlers
    (logging, Ray, coverage, the user's own) the process ends with ``os._exit``. It exits the normal
    way when any other non-daemon thread is still alive (a thread pool, a server), so no work is cut short.
    """
    _one_malloc_arena()
    try:
        main()
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    _exit_now(code)


def _one_malloc_arena() -> None:
    """glibc: every thread allocates from the main arena (``M_ARENA_MAX`` = 1), unless the user set
    ``MALLOC_ARENA_MAX``. The rendering threads' temporaries otherwise live in per-thread arenas
    that are trimmed and faulted in again grid after grid: on 2 cores ``activations`` on ResNet-50
    at 896x896 spent 0.2 s more in the kernel (about 0.1 s of wall time). The forward pass's own
    allocations are on the main thread, so they are not affected (a bare forward pass runs no
    faster with it). Elsewhere (no glibc ``mallopt``) this does nothing."""
    import os

    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(-8, 1)  # M_ARENA_MAX (malloc.h)


def _exit_now(code: Any) -> None:
    import atexit
    import os
    import threading

    if isinstance(code, str):  # SystemExit("message"): printed, status 1 (as the interpreter does)
        print(code, file=sys.stderr)
        code = 1
    status = 0 if code is None else int(code)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if others:
        raise SystemExit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe (convscope ... | head): nothing left to say
            status = status or 1
    os._exit(status)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _error_text(exc: BaseException) -> str:
    """One line for a user/environment error; OS errors name the file and say what failed."""
    if isinstance(exc, OSError):
        target = exc.filename or ""
        reason = exc.strerror or _one_line(str(exc)) or type(exc).__name__
        if isinstance(exc, PermissionError):
            return f"{reason}: {target} (choose a folder you can write to, e.g. -o ~/convscope-out)" if target else reason
        return f"{reason}: {target}" if target else reason
    return _one_line(str(exc)) or type(exc).__name__


from .cmd_cam import register as _register_cam  # noqa: E402  (needs the option types above)

_register_cam(app)

if __name__ == "__main__":  # pragma: no cover
    run()
