"""Turn a :class:`convscope.unet_flow.UNetFlow` into what the viewer shows: PNGs and clickable blocks."""

from __future__ import annotations

import json
from typing import Any

from ..report.builder import _unet_level_count, _unet_views, picture_hovers, unet_blocks

__all__ = ["unet_view", "unet_public"]


def unet_view(flow: Any, layer_ids: dict[str, str]) -> dict[str, Any]:
    """PNG bytes of the figure and level panels, plus block boxes (fractions of the figure) linked to layer IDs
    and the hover regions (``hovers``: full text of each shortened name or skip label)."""
    figure, panels = _unet_views(flow)
    view: dict[str, Any] = {"figure": None, "width": None, "height": None, "blocks": [], "hovers": [], "panels": [],
                            "levels": _unet_level_count(flow)}
    if figure is not None:
        view["figure"] = figure.to_png()
        view["width"], view["height"] = figure.width, figure.height
        view["blocks"] = unet_blocks(flow, figure, layer_ids)
        view["hovers"] = picture_hovers(figure)
    for caption, picture in panels:
        view["panels"].append({"caption": caption, "png": picture.to_png(), "width": picture.width, "height": picture.height,
                               "hovers": picture_hovers(picture)})
    data: Any = None
    if hasattr(flow, "to_json"):
        try:
            raw = flow.to_json()
            data = json.loads(raw) if isinstance(raw, str) else raw
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError):
            data = None
    view["data"] = data
    return view


def unet_public(view: dict[str, Any], image_id: str) -> dict[str, Any]:
    """The JSON the API returns (PNG bytes replaced by their URLs)."""
    base = f"/api/images/{image_id}/unet"
    return {
        "image": image_id,
        "figure": {"url": f"{base}/figure.png", "width": view["width"], "height": view["height"]} if view["figure"] else None,
        "blocks": view["blocks"],
        "hovers": view.get("hovers", []),
        "panels": [
            {"index": i, "caption": p["caption"], "url": f"{base}/panels/{i}.png", "width": p["width"], "height": p["height"],
             "hovers": p.get("hovers", [])}
            for i, p in enumerate(view["panels"])
        ],
        "levels": view["levels"],
        "data": view["data"],
    }
