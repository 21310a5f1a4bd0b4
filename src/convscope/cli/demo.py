"""``convscope demo``: the HTML report of both bundled demo models, plus a landing page linking them."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..io.files import atomic_write_text

__all__ = ["run_demo", "DEMO_SAMPLES"]

DEMO_SAMPLES = 2
"""Synthetic input images per demo model (seeds ``seed``, ``seed + 1``, ...)."""


def run_demo(
    out: str | Path = "convscope-demo",
    *,
    echo: Callable[[str], None] = print,
    seed: int = 0,
    samples: int = DEMO_SAMPLES,
    progress: bool | None = None,
) -> Path:
    """Write a report for ``demo:cnn`` and ``demo:unet`` under ``out/cnn`` and ``out/unet``.

    Returns ``out/index.html``, a landing page linking both reports.
    """
    from ..scope import Scope

    root = Path(out)
    sections: list[dict[str, Any]] = []
    for name in ("cnn", "unet"):
        scope = Scope(f"demo:{name}")
        images = [scope.sample(seed + k) for k in range(max(1, samples))]
        echo(f"demo:{name}: report")
        index = scope.report(images, root / name, title=f"convscope demo: {name}", progress=progress, echo=echo)
        sections.append({
            "name": name,
            "href": f"{name}/{index.name}",
            "output": _describe_output(scope, scope.prepare(images[0]).batch),
            "description": _description(name),
        })
    volume_section = _volume_demo(root / "unet3d", seed=seed, echo=echo)
    if volume_section is not None:
        sections.append(volume_section)
    landing = root / "index.html"
    atomic_write_text(landing, _index_html(sections))
    return landing


def _volume_demo(out: Path, *, seed: int, echo: Callable[[str], None]) -> dict[str, Any] | None:
    """demo:unet3d on a generated NIfTI scan (read back through the volume reader): activation and
    U-Net planes with the organ label map as outlines, and a page showing them. None (and a line
    saying why) when nibabel is not installed."""
    try:
        import nibabel  # noqa: F401
    except ImportError:
        echo("demo:unet3d skipped: the volume demo needs nibabel (pip install 'convscope[volumes]')")
        return None
    from ..export import write_activations
    from ..io.volume_prep import VolumeOptions
    from ..scope import Scope
    from ..volume_views import stamp
    from .cmd_unet import run_unet
    from ..demo.volume import write_demo_nifti

    echo("demo:unet3d: volume planes")
    scan, labels = write_demo_nifti(out, seed=seed)
    scope = Scope("demo:unet3d")
    scope.volume_options = VolumeOptions(labels=str(labels))
    layers = ["enc1.2", "enc2.5", "bottleneck.5", "dec2.5", "dec1.5", "head"]
    manifest = write_activations(scope, str(scan), out / "activations", layers)
    prepared = scope.prepare(str(scan))
    run_unet(scope.adapter, prepared.batch, None, out / "unet", volume=prepared.volume, view=prepared.view)
    import json

    unet_files = json.loads((out / "unet" / "manifest.json").read_text())["files"]
    dice = next((e.get("dice") for e in unet_files if e["file"] == "output.planes.png"), None)
    act_files = [e["file"] for e in json.loads(manifest.read_text())["files"] if e["file"].endswith(".planes.png")]
    figures = [("unet/" + e["file"], e["file"]) for e in unet_files if e["file"].endswith(".planes.png")]
    figures += [("activations/" + f, f) for f in act_files if f != "input.planes.png"]
    record = prepared.volume
    assert record is not None
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>convscope demo: unet3d</title>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src 'self'\"></head><body>",
        "<h1>convscope demo: unet3d</h1>",
        f"<p>Input: {html.escape(scan.name)} (written by the demo, stored {''.join(record.volume.orientation)}, "
        f"read back and brought to RAS+), {html.escape(stamp(record))}. Axial and coronal planes are radiological "
        "(patient right on the image left). Organ label map: red outlines.</p>",
        f"<p>Dice of the prediction against the label map: {html.escape(json.dumps(dice))}</p>",
    ]
    parts += [f"<figure><img src='{html.escape(src)}' alt='{html.escape(name)}'><figcaption>{html.escape(name)}"
              "</figcaption></figure>" for src, name in figures]
    parts.append("</body></html>")
    atomic_write_text(out / "index.html", "\n".join(parts) + "\n")
    return {"name": "unet3d", "href": "unet3d/index.html", "description": _description("unet3d"),
            "output": f"Dice against the organ label map: {dice}"}


def _description(name: str) -> str:
    from ..demo import _SPECS

    return str(_SPECS[name]["description"])


def _describe_output(scope: Any, batch: np.ndarray) -> str:
    result = scope.adapter.capture(batch, [])
    out = result.output
    if out is None:
        return ""
    if out.ndim == 2:
        from ..demo import load_demo

        names = load_demo(scope.name.split(":")[1]).class_names
        probs = np.exp(out[0] - out[0].max())
        probs /= probs.sum()
        best = int(np.argmax(probs))
        label = names[best] if names else str(best)
        return f"prediction on image 1: {label} ({probs[best]:.0%})"
    return f"output: {'x'.join(map(str, out.shape[1:]))} (foreground pixels on image 1: {float((out[0] > 0).mean()):.1%})"


def _index_html(sections: list[dict[str, Any]]) -> str:
    parts = [
        "<!doctype html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'self'; img-src 'self'\">",
        "<title>convscope demo</title>",
        f"<link rel='stylesheet' href='{html.escape(sections[0]['name'])}/assets/report.css'>" if sections else "",
        "</head><body><main id='main'><h1>convscope demo</h1>",
        "<p>Reports of the bundled demo models (trained in the repository on synthetic images; nothing was downloaded).</p>",
        "<ul>",
    ]
    for section in sections:
        parts.append(
            f"<li><h2><a href='{html.escape(section['href'])}'>demo:{html.escape(section['name'])}</a></h2>"
            f"<p>{html.escape(section['description'])}</p><p class='meta'>{html.escape(section['output'])}</p></li>"
        )
    parts.append("</ul></main></body></html>")
    return "\n".join(parts) + "\n"
