"""``convscope demo``: kernels, activations (and the U-Net flow) of both bundled demo models, plus an index page."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..io.files import atomic_write_text

__all__ = ["run_demo"]


def run_demo(out: str | Path = "convscope-demo", *, echo: Callable[[str], None] = print, seed: int = 0) -> Path:
    """Write everything for ``demo:cnn`` and ``demo:unet`` under ``out`` and return ``out/index.html``."""
    from ..render.picture import Picture
    from ..scope import Scope

    root = Path(out)
    sections: list[dict[str, Any]] = []
    for name in ("cnn", "unet"):
        scope = Scope(f"demo:{name}")
        sample = scope.sample(seed)
        folder = root / name
        prepared = scope.prepare(sample)
        if prepared.display is not None:
            Picture(prepared.display[0]).save(folder / "input.png")
        echo(f"demo:{name}: kernels")
        scope.save_kernels(folder / "kernels", labels=False)
        echo(f"demo:{name}: activations")
        scope.save_activations(sample, folder / "activations", overlay=True, labels=True)
        extra: list[str] = []
        if name == "unet":
            try:
                flow = scope.unet(sample)
            except (ImportError, NotImplementedError):
                flow = None
            if flow is not None:
                echo("demo:unet: U-Net flow")
                written = flow.save(folder / "unet")
                extra = [str(Path(p).relative_to(root)) for p in written if str(p).endswith(".png")]
        sections.append({"name": name, "folder": folder, "extra": extra, "output": _describe_output(scope, prepared.batch)})
    index = root / "index.html"
    atomic_write_text(index, _index_html(root, sections))
    return index


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
        return f"prediction: {label} ({probs[best]:.0%})"
    return f"output: {'x'.join(map(str, out.shape[1:]))} (foreground pixels: {float((out[0] > 0).mean()):.1%})"


def _index_html(root: Path, sections: list[dict[str, Any]]) -> str:
    import json

    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>convscope demo</title>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'\">",
        "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1400px}img{image-rendering:pixelated;max-width:100%;"
        "border:1px solid #ccc}figure{display:inline-block;margin:.5em;vertical-align:top}figcaption{font-family:monospace}"
        "h2{border-bottom:1px solid #888}</style></head><body><h1>convscope demo</h1>",
    ]
    for section in sections:
        name = section["name"]
        folder: Path = section["folder"]
        parts.append(f"<h2>demo:{html.escape(name)}</h2><p>{html.escape(section['output'])}</p>")
        if (folder / "input.png").exists():
            parts.append(f"<figure><img src='{name}/input.png' alt='input sample'><figcaption>input</figcaption></figure>")
        for rel in section["extra"]:
            parts.append(f"<figure><img src='{html.escape(rel)}' alt='{html.escape(rel)}'><figcaption>{html.escape(rel)}</figcaption></figure>")
        for kind in ("kernels", "activations"):
            manifest = json.loads((folder / kind / "manifest.json").read_text())
            parts.append(f"<h3>{kind}</h3>")
            for entry in manifest["files"]:
                if not entry["file"].endswith(".png"):
                    continue
                src = f"{name}/{kind}/{entry['file']}"
                caption = f"{entry.get('layer', '')} {entry.get('kind', '')} {'x'.join(map(str, entry.get('shape', [])))}"
                parts.append(
                    f"<figure><img src='{html.escape(src)}' alt='{html.escape(caption)}' loading='lazy'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
    parts.append("</body></html>")
    return "\n".join(parts)
