"""``convscope serve``: a local live viewer (FastAPI + uvicorn) for activations, kernels and the U-Net flow.

Pure logic lives in small modules that import no web framework: :mod:`.security` (Host/Origin
allowlist, token, CSP, path containment), :mod:`.registry` (opaque IDs), :mod:`.cache` (LRU by
bytes, single flight), :mod:`.images` (upload decoding with size and pixel limits) and
:mod:`.state` (the viewer's model, images and renderers). :mod:`.app` (FastAPI) and :mod:`.run`
(uvicorn) are imported only when a server is created.

    >>> from convscope.server import ViewerServer
    >>> with ViewerServer.create(scope, images="imgs/", port=0) as server:
    ...     print(server.url)
"""

from __future__ import annotations

from typing import Any

__all__ = ["serve", "ViewerServer", "ViewerState", "ServerLimits", "create_app"]


def __getattr__(name: str) -> Any:
    if name in ("serve", "ViewerServer"):
        from . import run

        return getattr(run, name)
    if name in ("ViewerState", "ServerLimits"):
        from . import state

        return getattr(state, name)
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
