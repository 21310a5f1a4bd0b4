"""Viewer routes for a dataset scan (``convscope serve MODEL --scan DIR``): a channel's top-k examples.

Cards and examples are looked up by layer id and channel index only (never by a path from the
request), so nothing outside the scan folder's own card list can be served.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ScanView", "add_scan_routes"]


class ScanView:
    """A loaded scan folder, answering per (layer name, channel)."""

    def __init__(self, folder: str | os.PathLike[str], scope: Any = None) -> None:
        from ..scan.result import ScanResult

        self.result = ScanResult.load(folder)
        if scope is not None:  # a scan of another model is refused, not shown as this one's channels
            self.result.check_model(scope)

    def examples(self, layer: str, channel: int) -> dict[str, Any]:
        view = self.result.channel(layer, channel)
        return {
            "layer": layer,
            "channel": channel,
            "images": self.result.images,
            "score": self.result.state.config.get("score"),
            "examples": [e.to_dict() for e in view.examples],
            "bottom": [e.to_dict() for e in view.bottom],
            "stats": view.stats.to_dict(),
            "class_means": view.class_means,
            "card": view.card is not None,
        }

    def card_png(self, layer: str, channel: int) -> bytes | None:
        view = self.result.channel(layer, channel)
        if view.card is None or not view.card.is_file():
            return None
        return view.card.read_bytes()


def add_scan_routes(app: Any, state: Any, scan: ScanView) -> None:
    """``GET /api/scan/layers/{layer_id}/channels/{channel}`` (JSON) and ``.../card.png``."""
    from fastapi import Response

    from .state import ApiError

    def _name(layer_id: str, channel: int) -> str:
        name = state.layer(layer_id).name
        if name not in scan.result.state.layers:
            raise ApiError(404, "not_scanned", f"layer {name} is not in the scan; scan it with --layer {name}")
        if not 0 <= channel < scan.result.layer(name).channels:
            raise ApiError(422, "channel_out_of_range", f"channel {channel} is out of range for {name}")
        return name

    @app.get("/api/scan/layers/{layer_id}/channels/{channel}", tags=["scan"],
             summary="A channel's top-k and bottom-k dataset examples and statistics from the scan")
    def scan_channel(layer_id: str, channel: int) -> dict[str, Any]:
        return scan.examples(_name(layer_id, channel), channel)

    @app.get("/api/scan/layers/{layer_id}/channels/{channel}/card.png", tags=["scan"],
             summary="The channel card (kernel, top-k crops, histogram, statistics)")
    def scan_card(layer_id: str, channel: int) -> Response:
        data = scan.card_png(_name(layer_id, channel), channel)
        if data is None:
            raise ApiError(404, "no_card", "the scan has no card for this channel (scanned with --no-cards)")
        return Response(content=data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
