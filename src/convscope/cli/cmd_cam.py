"""``convscope cam MODEL IMAGE -o DIR``: class activation maps at any layer (registered in ``main.py``).

Writes ``DIR/<layer>.<method>.png`` (overlay with a colour scale; ``.sN`` per sample for batches),
with ``--arrays`` ``DIR/<layer>.<method>.npz`` (``raw`` (N, *layer_spatial) and ``cam`` (N, *input_spatial)
float32), and ``DIR/manifest.json`` (per map: method, layer, target, output tensor, post-processing, scale).
"""


from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import ConvscopeError

__all__ = ["register", "build_target", "parse_ints"]


def parse_ints(text: str, count: int, what: str, example: str) -> tuple[int, ...]:
    """``"1,2,3,4"`` -> ``(1, 2, 3, 4)``; anything else is one clear error."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) not in ((count,) if count else (2, 3)) or not values:
        raise ConvscopeError(f"{what} must be {example}, got {text!r}")
    return values


def build_target(
    cls: int | None,
    mask: str | None,
    region: str | None,
    pixel: str | None,
    predicted: bool,
    largest: bool,
    output: str | None,
    reduce: str,
) -> Any:
    """The CLI's target options -> a :mod:`convscope.targets` objective."""
    from ..core import targets as tg

    out: int | str | None = None
    if output is not None:
        out = int(output) if output.strip().lstrip("-").isdigit() else output
    given = [n for n, v in (("--mask", mask), ("--region", region), ("--pixel", pixel)) if v is not None]
    if predicted or largest:
        given.append("--predicted")
    if len(given) > 1:
        raise ConvscopeError(f"give only one of --mask, --region, --pixel, --predicted (got {', '.join(given)})")
    if reduce not in ("sum", "mean"):
        raise ConvscopeError(f"--reduce must be sum or mean, got {reduce!r}")
    if cls is not None and cls < 0:
        raise ConvscopeError(f"--class must be a class index >= 0, got {cls}")
    if not given and reduce == "sum":
        return tg.auto(cls, output=out)
    return tg.segmentation(
        cls,
        mask=mask,
        region=parse_ints(region, 4, "--region", "X0,Y0,X1,Y1 (four integers, ends exclusive)") if region else None,
        pixel=parse_ints(pixel, 0, "--pixel", "Y,X (or Z,Y,X for volumes)") if pixel else None,
        predicted=predicted or largest,
        component="largest" if largest else None,
        reduce=reduce,  # type: ignore[arg-type]
        output=out,
    )


def register(app: typer.Typer) -> None:
    """Add the ``cam`` command to ``app`` (called once from ``cli/main.py``)."""
    from .main import ModelArg, _echo, _echo_chunks, _image_or_channels
    from .options import INPUT, MODEL, NO_SHARED, SharedOptions, check_volume_input, shared_options

    @app.command()
    @shared_options(*MODEL, *INPUT, "series", "channels", "intensity", "window", "roi", "roi_size", "slice_", "slices")
    def cam(
        model: ModelArg,
        image: Annotated[Optional[str], typer.Argument(help="input: image (PNG/JPEG/TIFF), .npy, NIfTI (.nii/.nii.gz), DICOM file or series folder", metavar="IMAGE")] = None,
        out: Annotated[Path, typer.Option("--out", "-o", help="output folder (created; only files of this run are written)")] = Path("convscope-cam"),
        layer: Annotated[Optional[list[str]], typer.Option("--layer", "-l", help="layer name (name#k: k-th extra call), or glob (repeatable); default: the last convolution")] = None,
        method: Annotated[Optional[list[str]], typer.Option("--method", "-m", help="gradcam | gradcam++ | hirescam | xgradcam | layercam | eigencam | scorecam | inputxgrad | saliency (repeatable)")] = None,
        cls: Annotated[Optional[int], typer.Option("--class", help="class (output channel); default: the predicted class / top-1")] = None,
        mask: Annotated[Optional[str], typer.Option("--mask", help="region file (PNG, .npy, or NIfTI/DICOM on the scan's grid; nonzero = inside), fitted like the input")] = None,
        region: Annotated[Optional[str], typer.Option("--region", help="box X0,Y0,X1,Y1 in output pixels (ends exclusive)")] = None,
        pixel: Annotated[Optional[str], typer.Option("--pixel", help="one position Y,X (Z,Y,X for volumes)")] = None,
        predicted: Annotated[bool, typer.Option("--predicted", help="region = where the clean pass predicts --class")] = False,
        largest: Annotated[bool, typer.Option("--largest", help="only the largest connected component of the predicted region")] = False,
        output: Annotated[Optional[str], typer.Option("--output", help="model output to explain: index of a tuple/list output or key of a dict output (default: the first full-resolution one)")] = None,
        reduce: Annotated[str, typer.Option("--reduce", help="sum | mean of the logits over the region")] = "sum",
        relu: Annotated[bool, typer.Option("--relu/--no-relu", help="clamp negative evidence to 0 in the drawn maps (raw keeps the sign)")] = True,
        norm: Annotated[str, typer.Option("--cam-normalize", help="max | minmax | none")] = "max",
        shared: Annotated[bool, typer.Option("--shared", help="one colour scale across all maps of this run (default: per map)")] = False,
        arrays: Annotated[bool, typer.Option("--arrays", help="also write <layer>.<method>.npz with raw and cam arrays")] = False,
        progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Score-CAM progress bar on stderr")] = True,
        opts: SharedOptions = NO_SHARED,
    ) -> None:
        """Class activation maps (Grad-CAM family) of a class in a region, at any layers, from one backward pass.

        A 3D scan fed to a 3D model also gets <layer>.<method>.planes.png: the map over the original
        intensities in the axial, coronal and sagittal planes (radiological), geometry in the manifest.
        """
        target = build_target(cls, mask, region, pixel, predicted, largest, output, reduce)
        source = _image_or_channels(image, opts.channels)
        check_volume_input(opts, source)
        scope = opts.scope(model)
        # scope.cam checks the memory (forward + backward, Score-CAM's batches) before decoding and any pass
        cams = scope.cam(source, layer=list(layer) if layer else None, target=target, method=list(method or ["gradcam"]),
                         relu=relu, cam_normalize=norm, shared=shared, size=opts.size, progress=progress, as_set=True)
        prepared = scope.prepare(source, size=opts.size)  # a scan was read once (remembered from scope.cam)
        manifest = cams.save(out, arrays=arrays, volume=prepared.volume)
        for note in cams.notes:
            typer.echo(f"note: {note}", err=True)
        _echo(f"wrote {len(cams)} map(s) to {manifest.parent} (see {manifest.name})")
        _echo_chunks(cams.chunks, prepared.volume.plane if prepared.volume is not None else "")  # scope.cam's memory plan
