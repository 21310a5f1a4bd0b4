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
    landing = root / "index.html"
    atomic_write_text(landing, _index_html(sections))
    return landing


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
        "<p>Reports of the two bundled demo models (trained in the repository on synthetic images; nothing was downloaded).</p>",
        "<ul>",
    ]
    for section in sections:
        parts.append(
            f"<li><h2><a href='{html.escape(section['href'])}'>demo:{html.escape(section['name'])}</a></h2>"
            f"<p>{html.escape(section['description'])}</p><p class='meta'>{html.escape(section['output'])}</p></li>"
        )
    parts.append("</ul></main></body></html>")
    return "\n".join(parts) + "\n"
