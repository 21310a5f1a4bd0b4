"""The report's channel atlas: one page of a dataset scan's channel cards, per layer, lazy-loaded.

``write_atlas(scan_dir, report_dir)`` copies the scan's cards into ``report_dir/atlas/`` (the
report stays self-contained), writes ``report_dir/atlas.html`` and links it from ``index.html``.
"""

from __future__ import annotations

import html
import os
import shutil
from pathlib import Path
from typing import Any

from ..io.files import atomic_write_text

__all__ = ["write_atlas"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem}
.cards{display:flex;flex-wrap:wrap;gap:8px}
.cards figure{margin:0;border:1px solid #ddd;padding:4px;background:#fff}
.cards figcaption{font-size:12px;color:#555}
.meta{color:#555;font-size:13px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
"""


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def write_atlas(scan: str | os.PathLike[str] | Any, report_dir: str | os.PathLike[str], *, link: bool = True) -> Path:
    """Write ``atlas.html`` for the scan folder ``scan`` (or a loaded :class:`ScanResult`) into ``report_dir``.

    Returns the path of ``atlas.html``. Cards are ``<img loading="lazy">``: a browser fetches only the
    ones scrolled into view, so a scan of thousands of channels opens at once.
    """
    from ..scan.result import ScanError, ScanResult

    result = scan if isinstance(scan, ScanResult) else ScanResult.load(scan)
    if result.path is None:
        raise ScanError("the scan has no folder on disk; save it first (result.save(DIR))")
    out = Path(report_dir)
    doc = result.to_json()
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Channel atlas: {html.escape(str(doc.get('model')))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Channel atlas: {html.escape(str(doc.get('model')))}</h1>",
        f"<p class='meta'>{doc['images']} images scanned, {len(doc['skipped'])} skipped; examples ranked by the channel's "
        f"spatial {html.escape(str(doc['config'].get('score')))}; crops are receptive fields of the arg-max position. "
        "<a href='index.html'>back to the report</a></p>",
        "<nav><ul>" + "".join(f"<li><a href='#L{i}'>{html.escape(layer['name'])}</a> ({layer['channels']} channels, "
                              f"{len(layer['dead'])} dead)</li>" for i, layer in enumerate(doc["layers"])) + "</ul></nav>",
    ]
    for i, layer in enumerate(doc["layers"]):
        name = layer["name"]
        parts.append(f"<h2 id='L{i}'>{html.escape(name)}</h2>")
        parts.append(
            f"<p class='meta'>dead (never positive): {html.escape(str(layer['dead']) if layer['dead'] else 'none')}; "
            f"always on: {html.escape(str(layer['always_on']) if layer['always_on'] else 'none')}</p>"
        )
        cards = layer.get("cards") or []
        figures = []
        for c, rel in enumerate(cards):
            if not rel:
                continue
            src = result.path / rel
            if not src.is_file():
                continue
            target = out / "atlas" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            st = layer["stats"][c]
            figures.append(
                f"<figure><img loading='lazy' src='atlas/{html.escape(rel)}' alt='{html.escape(name)} channel {c}'>"
                f"<figcaption>channel {c}: mean {_fmt(st['mean'])}, max {_fmt(st['max'])}</figcaption></figure>"
            )
        if figures:
            parts.append("<details><summary>channel cards</summary><div class='cards'>" + "".join(figures) + "</div></details>")
        else:
            rows = "".join(
                f"<tr><td>{c}</td><td>{_fmt(s['mean'])}</td><td>{_fmt(s['std'])}</td><td>{_fmt(s['max'])}</td>"
                f"<td>{_fmt(s['positive_fraction'])}</td></tr>"
                for c, s in enumerate(layer["stats"])
            )
            parts.append(f"<table><tr><th>ch</th><th>mean</th><th>std</th><th>max</th><th>positive</th></tr>{rows}</table>")
    parts.append("</body></html>")
    path = atomic_write_text(out / "atlas.html", "".join(parts))
    index = out / "index.html"
    if link and index.is_file():
        text = index.read_text(encoding="utf-8")
        marker = "<!-- convscope:atlas -->"
        if marker not in text and "<body" in text:
            at = text.index(">", text.index("<body")) + 1
            text = (text[:at] + f"{marker}<p class='atlas-link'><a href='atlas.html'>Channel atlas (dataset scan of "
                    f"{doc['images']} images)</a></p>" + text[at:])
            atomic_write_text(index, text)
    return path
