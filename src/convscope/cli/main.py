"""``convscope`` command line: ``layers``, ``kernels``, ``activations``, ``unet``, ``report``, ``serve``, ``demo``.

The model options (``--kwargs``, ``--weights``, ``--trust``, ``--device``) and the image options
(``--size``, ``--normalize``) mean the same in every command. Errors print one line and exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

app = typer.Typer(
    name="convscope",
    help="See what a CNN learned (kernels) and what it does with an input (activations); U-Nets first-class.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ModelArg = Annotated[str, typer.Argument(help="demo:cnn | demo:unet | package.module:Factory | a model file", metavar="MODEL")]
KwargsOpt = Annotated[Optional[str], typer.Option("--kwargs", help="JSON keyword arguments for the factory, e.g. '{\"in_channels\": 1}'")]
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", help="state dict file (.safetensors, .pt, .pth), loaded with weights_only=True")]
TrustOpt = Annotated[bool, typer.Option("--trust", help="allow files that can run code when loaded (pickled whole models, TorchScript, .pt2, Keras .h5 models and Lambda layers). Only for files you trust")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="cpu | cuda | cuda:N | mps (default: cpu)")]
SizeOpt = Annotated[Optional[str], typer.Option("--size", help="resize the input: 64 or 64x96 (DxHxW for volumes)")]
NormalizeOpt = Annotated[Optional[str], typer.Option("--normalize", help="imagenet | none | MEAN,STD | m1:m2:m3,s1:s2:s3")]
LayerOpt = Annotated[Optional[list[str]], typer.Option("--layer", "-l", help="layer name or glob (repeatable); default: all convolutions")]
KindOpt = Annotated[Optional[str], typer.Option("--kind", help="layer kind: conv, conv_transpose, activation, norm, pool, all ...")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="output folder (created; only files of this run are written)")]


def _scope(model: str, kwargs: str | None, weights: Path | None, trust: bool, device: str | None, normalize: str | None = None) -> Any:
    from ..scope import Scope

    scope = Scope(model, kwargs=kwargs, weights=weights, trust=trust, device=device)
    if normalize is not None:
        scope.normalize = normalize
    return scope


def _echo(text: str) -> None:
    typer.echo(text)


@app.command()
def layers(
    model: ModelArg,
    image: Annotated[Optional[str], typer.Argument(help="optional input, to show output shapes")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    containers: Annotated[bool, typer.Option("--containers", help="also list blocks/Sequentials")] = False,
    kind: KindOpt = None,
    kwargs: KwargsOpt = None,
    weights: WeightsOpt = None,
    trust: TrustOpt = False,
    device: DeviceOpt = None,
    size: SizeOpt = None,
    normalize: NormalizeOpt = None,
) -> None:
    """List the layers: name, kind, kernel, stride, groups, output shape, parameters."""
    scope = _scope(model, kwargs, weights, trust, device, normalize)
    table = scope.layers(image, kind=kind, containers=containers, size=size)
    if as_json:
        _echo(json.dumps({"model": scope.name, "framework": scope.adapter.framework, "layers": table.to_json()}, indent=2))
    else:
        _echo(str(table))


@app.command()
def kernels(
    model: ModelArg,
    out: OutOpt = Path("convscope-kernels"),
    layer: LayerOpt = None,
    kind: KindOpt = None,
    scale: Annotated[str, typer.Option("--scale", help="symmetric | minmax | percentile")] = "symmetric",
    per: Annotated[str, typer.Option("--normalize-per", help="filter | shared (one scale for the layer)")] = "filter",
    cmap: Annotated[Optional[str], typer.Option("--cmap", help="colormap (default RdBu_r, gray for minmax)")] = None,
    rgb: Annotated[Optional[bool], typer.Option("--rgb/--no-rgb", help="first-layer RGB kernels as colour images (default: auto)")] = None,
    labels: Annotated[bool, typer.Option("--labels", help="draw filter indices")] = False,
    arrays: Annotated[bool, typer.Option("--arrays", help="also write raw weights as .npz")] = False,
    kwargs: KwargsOpt = None,
    weights: WeightsOpt = None,
    trust: TrustOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Write one kernel grid per convolution layer into OUT, plus manifest.json."""
    scope = _scope(model, kwargs, weights, trust, device)
    manifest = scope.save_kernels(out, layer or None, kind=kind, scale=scale, normalize=per, cmap=cmap, rgb=rgb,
                                  labels=labels, arrays=arrays)
    _report_written(manifest)


@app.command()
def activations(
    model: ModelArg,
    image: Annotated[str, typer.Argument(help="input image (PNG/JPEG/TIFF) or .npy array")],
    out: OutOpt = Path("convscope-activations"),
    layer: LayerOpt = None,
    kind: KindOpt = None,
    top: Annotated[Optional[int], typer.Option("--top", help="only the K strongest channels (by --order)")] = None,
    order: Annotated[str, typer.Option("--order", help="index | mean | max | l2")] = "index",
    sample: Annotated[Optional[list[int]], typer.Option("--sample", help="batch sample(s) to draw (default: all)")] = None,
    overlay: Annotated[bool, typer.Option("--overlay", help="also write the channel-mean map blended on the input")] = False,
    cmap: Annotated[str, typer.Option("--cmap")] = "viridis",
    scale: Annotated[str, typer.Option("--scale", help="minmax | symmetric | percentile")] = "minmax",
    per: Annotated[str, typer.Option("--normalize-per", help="channel | shared")] = "channel",
    volume: Annotated[str, typer.Option("--volume", help="3D maps: slices | mip")] = "slices",
    labels: Annotated[bool, typer.Option("--labels", help="draw channel indices")] = False,
    arrays: Annotated[bool, typer.Option("--arrays", help="also write raw activations as .npz")] = False,
    train: Annotated[bool, typer.Option("--train-mode", help="capture in training mode (state restored after)")] = False,
    kwargs: KwargsOpt = None,
    weights: WeightsOpt = None,
    trust: TrustOpt = False,
    device: DeviceOpt = None,
    size: SizeOpt = None,
    normalize: NormalizeOpt = None,
) -> None:
    """Capture the chosen layers in ONE forward pass and write their channel grids into OUT."""
    scope = _scope(model, kwargs, weights, trust, device, normalize)
    manifest = scope.save_activations(
        image, out, layer or None, kind=kind, top=top, order=order, samples=sample or None, cmap=cmap,
        scale=scale, normalize=per, labels=labels, overlay=overlay, volume=volume, arrays=arrays, size=size,
        train=train,
    )
    _report_written(manifest)


@app.command()
def unet(
    model: ModelArg,
    image: Annotated[str, typer.Argument(help="input image (PNG/JPEG/TIFF) or .npy array")],
    out: OutOpt = Path("convscope-unet"),
    target: Annotated[Optional[int], typer.Option("--target", help="output channel scored for the gradient share (default: predicted class)")] = None,
    mask: Annotated[Optional[str], typer.Option("--mask", help="region (image or .npy, nonzero = inside) the gradient-share score is summed over")] = None,
    thumbnail: Annotated[str, typer.Option("--thumbnail", help="flow-figure thumbnails: mean | top")] = "mean",
    top: Annotated[int, typer.Option("--top", help="channels per grid in the level panels")] = 8,
    kwargs: KwargsOpt = None,
    weights: WeightsOpt = None,
    trust: TrustOpt = False,
    device: DeviceOpt = None,
    size: SizeOpt = None,
    normalize: NormalizeOpt = None,
) -> None:
    """Find the U-Net's encoder, bottleneck, decoder and skips; write flow.png, level-N.png, unet.json."""
    from .cmd_unet import run_unet

    scope = _scope(model, kwargs, weights, trust, device, normalize)
    prepared = scope.prepare(image, size=size)
    mask_array = _read_mask(mask) if mask is not None else None
    paths = run_unet(scope.adapter, prepared.batch, prepared.display[0] if prepared.display is not None else None,
                     out, target=target, mask=mask_array, thumbnail=thumbnail, top=top)
    _echo(f"wrote {len(paths)} files to {out}: " + ", ".join(Path(p).name for p in paths))


def _read_mask(path: str) -> Any:
    """A mask file (image or .npy) -> ``(*spatial)`` bool array (nonzero = inside)."""
    import numpy as np

    from ..io.images import prepare_input

    prepared = prepare_input(path, channels=None)
    return np.any(prepared.batch[0] != 0, axis=0)


@app.command()
def report(
    model: ModelArg,
    images: Annotated[list[str], typer.Argument(help="input images (PNG/JPEG/TIFF) or .npy arrays", metavar="IMAGE...")],
    out: OutOpt = Path("convscope-report"),
    layer: LayerOpt = None,
    kind: KindOpt = None,
    top: Annotated[int, typer.Option("--top", help="layers with more channels show their K strongest first; the full grid loads on demand")] = 64,
    cmap: Annotated[str, typer.Option("--cmap", help="colormap of activation grids")] = "viridis",
    unet: Annotated[bool, typer.Option("--unet/--no-unet", help="add the U-Net flow when the model is a U-Net")] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar on stderr")] = True,
    kwargs: KwargsOpt = None,
    weights: WeightsOpt = None,
    trust: TrustOpt = False,
    device: DeviceOpt = None,
    size: SizeOpt = None,
    normalize: NormalizeOpt = None,
    scan: Annotated[Optional[Path], typer.Option("--scan", help="a `convscope scan` folder: adds a channel atlas page")] = None,
) -> None:
    """Write a self-contained HTML report (index.html + images, works offline) into OUT.

    Default layers: convolutions and activation layers (--layer / --kind to choose).
    """
    scope = _scope(model, kwargs, weights, trust, device, normalize)
    index = scope.report(images, out, layers=layer or None, kind=kind, top=top, cmap=cmap, unet=unet, size=size,
                         progress=progress, echo=_echo, scan=scan)
    _echo(f"wrote {index} (open it in a browser; every file is listed in {index.parent / 'manifest.json'})")


@app.command()
def serve(
    model: ModelArg,
    images: Annotated[Optional[Path], typer.Option("--images", help="folder of images to choose from (only files inside it are served)")] = None,
    host: Annotated[str, typer.Option("--host", help="address to listen on (default 127.0.0.1: this machine only). Any other address prints a warning")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to listen on (0: any free port)")] = 8000,
    layer: LayerOpt = None,
    kind: KindOpt = None,
    cache_mb: Annotated[int, typer.Option("--cache-mb", help="memory budget of the activation cache (MiB)")] = 512,
    max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", help="largest accepted upload (MiB)")] = 20,
    scan: Annotated[Optional[Path], typer.Option("--scan", help="a `convscope scan` folder: clicking a channel shows its dataset examples")] = None,
    kwargs: KwargsOpt = None,
    weights: WeightsOpt = None,
    trust: TrustOpt = False,
    device: DeviceOpt = None,
    size: SizeOpt = None,
    normalize: NormalizeOpt = None,
) -> None:
    """Live viewer in the browser: choose or upload an image, browse layers and channels, see the U-Net flow.

    Every request needs the random token in the printed URL.
    """
    from ..server.run import serve as run_server
    from ..server.state import ServerLimits

    if cache_mb < 1 or max_upload_mb < 1:
        raise ValueError("--cache-mb and --max-upload-mb must be at least 1")
    scope = _scope(model, kwargs, weights, trust, device, normalize)
    limits = ServerLimits(cache_bytes=cache_mb * 1024 * 1024, max_upload_bytes=max_upload_mb * 1024 * 1024)
    run_server(scope, images=images, host=host, port=port, layers=layer or None, kind=kind, size=size, limits=limits,
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
    _echo(f"wrote {len(data['files'])} files to {manifest.parent} (see {manifest.name})")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line on stderr and exit status 2."""
    from ..errors import ConvscopeError

    try:
        app(args=argv, standalone_mode=False)
    except ConvscopeError as exc:
        typer.echo(f"convscope: error: {exc}", err=True)
        raise SystemExit(2) from None
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        typer.echo(f"convscope: error: {exc}", err=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        typer.echo("convscope: interrupted", err=True)
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here with standalone_mode=False
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        if isinstance(exc, click.exceptions.Abort):
            raise SystemExit(1) from None
        raise


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
