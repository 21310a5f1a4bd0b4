"""The FastAPI application of ``convscope serve``: pages, static assets and the JSON API.

The browser only ever sends IDs the server handed out (``i…`` images, ``l…`` layers) and integers
(channel, slice, panel index); it never sends a path or a layer name. Every error is a JSON body
``{"error": {"code": ..., "message": ...}}`` with a 4xx status.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from .._version import __version__
from ..errors import ConvscopeError
from .security import SECURITY_HEADERS, HostPolicy, cookie_name, origin_allowed, tokens_equal
from .state import ApiError, CamQuery, ViewerState, cam_public
from .unet_view import unet_public

__all__ = ["create_app", "STATIC_FILES"]

log = logging.getLogger("convscope.server")

STATIC_FILES: dict[str, str] = {
    "viewer.js": "text/javascript; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "layer-filter.js": "text/javascript; charset=utf-8",  # shared with the report (report/assets)
}
SHARED_WITH_REPORT = ("layer-filter.js",)
PAGES: dict[str, str] = {"/": "index.html", "/api/docs": "api.html"}
PNG_CACHE = "private, max-age=3600"


# -- response models (they document the API in /api/openapi.json) ---------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. unknown_layer, too_many_pixels")
    message: str = Field(description="what went wrong and what to do")


class ErrorBody(BaseModel):
    error: ErrorDetail


class LayerOut(BaseModel):
    id: str = Field(description="layer ID to use in other calls (l0, l1, ...)")
    name: str = Field(description="qualified layer name (display only; never sent back)")
    kind: str
    type: str
    params: int
    out_shape: list[int] | None = None
    has_kernels: bool


class ModelOut(BaseModel):
    name: str
    framework: str
    input: dict[str, Any]
    layers: list[LayerOut]
    unet: bool | None = Field(description="True/False once known (after the first /unet call), else null")
    limits: dict[str, int]


class ImageOut(BaseModel):
    id: str = Field(description="image ID to use in other calls")
    name: str = Field(description="file name (display only)")
    origin: str = Field(description="'folder' (from --images), 'upload' or 'sample'")
    notes: list[str] = Field(default_factory=list, description="how the image was made to fit the model: size used "
                             "(its own unless --size or the model fixes one), channel conversion")
    size: list[int] | None = Field(default=None, description="spatial size the model sees (once prepared)")


class PredictionOut(BaseModel):
    index: int
    probability: float
    score: float


class PredictionsOut(BaseModel):
    kind: str = Field(description="'classes' (a vector of class scores), 'map' (a spatial output) or 'none'")
    top: list[PredictionOut] = Field(default_factory=list, description="the 5 most probable classes")
    softmax: bool | None = Field(default=None, description="probabilities are the softmax of the scores")
    classes: int | None = None
    shape: list[int] | None = None


class ImageList(BaseModel):
    images: list[ImageOut]


class ActivationOut(BaseModel):
    image: str
    layer: LayerOut
    shape: list[int] = Field(description="(C, *spatial) of the activation")
    channels: int
    spatial_dims: int
    slices: int | None = Field(description="slices of 3-D maps (slice slider range: a scan's axial z, else the "
                               "first spatial axis), else null")
    slice_axis: str | None = Field(None, description="what the slice index counts: 'z (axial, radiological)' for a "
                                   "scan, 'D (first spatial axis)' for other 3-D inputs; null for 1-D/2-D")
    slice_middle: int | None = Field(None, description="the default slice: the middle of the region fed to the model")
    health: dict[str, Any] = Field(description="zero fraction, dead channels, saturation (see docs)")
    channel_stats: dict[str, list[float | None]] = Field(description="per channel: min, max, mean, std, zero_fraction")


class UNetOut(BaseModel):
    image: str
    figure: dict[str, Any] | None
    blocks: list[dict[str, Any]] = Field(description="clickable blocks: box as fractions of the figure, layer_id if any")
    panels: list[dict[str, Any]]
    levels: int
    data: Any = None


class CamMapOut(BaseModel):
    index: int
    role: str = Field(description="U-Net role ('encoder 0', 'bottleneck', 'skip 1: skip branch', ...) or the layer name")
    layer: str
    layer_id: str | None = Field(description="the layer's viewer ID when the viewer lists it")
    url: str = Field(description="PNG: the map over the input, with its colour scale")
    scale: list[float] = Field(description="[lo, hi]: data = (relu(resampled raw) - lo) / (hi - lo)")
    raw_range: list[float] = Field(description="min and max of the signed map before ReLU and normalisation")
    notes: list[str] = Field(description="why a map is empty (e.g. the gradient is zero at this layer)")


class CamOut(BaseModel):
    image: str
    mode: str = Field(description="'unet' (every level and skip branch, one shared scale) or 'layer' (the last convolution)")
    method: str
    target: dict[str, Any] = Field(description="class, region and reduction of the score the gradient starts from")
    output_tensor: str | None = Field(description="the tensor the gradient started from (the logits before a final Sigmoid/Softmax)")
    passes: dict[str, int]
    scale: str
    post_processing: dict[str, Any] | None
    maps: list[CamMapOut]
    missing: dict[str, str] = Field(description="U-Net roles without a map, with the reason")


CamMethod = Literal["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"]
CAM_PIXEL = r"^\d{1,6}(,\d{1,6}){1,2}$"
CAM_BOX = r"^\d{1,6},\d{1,6},\d{1,6},\d{1,6}$"


def cam_query(
    cls: int | None = Query(None, ge=0, le=1_000_000, description="class index (default: the predicted class / top-1)"),
    pixel: str | None = Query(None, pattern=CAM_PIXEL, description="'y,x' (2D) or 'z,y,x' (3D): one output pixel (segmentation outputs)"),
    box: str | None = Query(None, pattern=CAM_BOX, description="'x0,y0,x1,y1': a box of output pixels, ends exclusive"),
    method: Annotated[CamMethod, Query(description="gradient CAM method")] = "gradcam",
) -> CamQuery:
    """The validated CAM target of a request (FastAPI dependency)."""
    if pixel is not None and box is not None:
        raise ApiError(422, "bad_target", "give a pixel or a box, not both")
    pos = tuple(int(v) for v in pixel.split(",")) if pixel else None
    rect = tuple(int(v) for v in box.split(",")) if box else None
    if rect is not None and (rect[2] <= rect[0] or rect[3] <= rect[1]):
        raise ApiError(422, "bad_target", f"box {box} is empty: it needs x0 < x1 and y0 < y1")
    return CamQuery(cls=cls, pixel=pos, box=rect, method=method)  # type: ignore[arg-type]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 415, 422)
}
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}, "description": "PNG image"}, **ERRORS}


# -- security middleware ----------------------------------------------------------------------------
class GuardMiddleware:
    """Host allowlist, Origin check, token check and security headers, before any route runs."""

    def __init__(self, app: Any, *, policy: HostPolicy, token: str) -> None:
        self.app = app
        self.policy = policy
        self.token = token
        self.cookie = cookie_name(policy.port)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websockets
            return
        set_cookie: list[str] = []

        async def send_secure(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers[key] = value
                headers.setdefault("cache-control", "no-store")
                for cookie in set_cookie:
                    headers.append("set-cookie", cookie)
            await send(message)

        headers = Headers(scope=scope)
        if not self.policy.allows(headers.get("host")):
            await _send_error(send_secure, 400, "bad_host",
                              "this server only answers requests addressed to the host and port it listens on")
            return
        if not origin_allowed(headers.get("origin"), self.policy):
            await _send_error(send_secure, 403, "bad_origin", "cross-origin requests are refused")
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        cookies = _cookies(headers.get("cookie", ""))
        from_query = tokens_equal(query.get("token"), self.token)
        ok = (
            from_query
            or tokens_equal(cookies.get(self.cookie), self.token)
            or tokens_equal(bearer, self.token)
            or tokens_equal(headers.get("x-convscope-token"), self.token)
        )
        if not ok:
            if scope.get("path") in PAGES and scope.get("method") in ("GET", "HEAD"):
                await _send_plain(send_secure, 401, "This convscope server needs its token: open the URL that "
                                  "`convscope serve` printed (it ends in ?token=...).\n")
            else:
                await _send_error(send_secure, 401, "token_required",
                                  "missing or wrong token: open the URL printed by convscope serve, or send "
                                  "'Authorization: Bearer TOKEN'")
            return
        if from_query:
            set_cookie.append(f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict")
        await self.app(scope, receive, send_secure)


def _cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name not in out:
            out[name] = value
    return out


async def _send_error(send: Any, status: int, code: str, message: str) -> None:
    import json

    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _send_plain(send: Any, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _static_bytes(name: str) -> bytes:
    if name in SHARED_WITH_REPORT:  # one file for the report and the viewer: the same layer filter
        return resources.files("convscope.report").joinpath("assets").joinpath(name).read_bytes()
    return resources.files("convscope.server").joinpath("static").joinpath(name).read_bytes()


def _png(data: bytes) -> Response:
    return Response(content=data, media_type="image/png", headers={"Cache-Control": PNG_CACHE})


# -- the application --------------------------------------------------------------------------------
def create_app(state: ViewerState, *, token: str, policy: HostPolicy, scan: Any = None) -> FastAPI:
    """The viewer app for ``state``, answering only ``policy``'s hosts and requests carrying ``token``.

    Args:
        state: the :class:`ViewerState` (model, images, cache).
        token: the per-run secret (see :func:`convscope.server.security.new_token`).
        policy: accepted Host headers (see :func:`convscope.server.security.host_policy`).
        scan: a :class:`~convscope.server.scan_view.ScanView`: adds the ``/api/scan/...`` routes.
    """
    if not token or len(token) < 16:
        raise ValueError("the server token must be a random string of at least 16 characters (security.new_token())")
    app = FastAPI(
        title="convscope viewer API",
        version=__version__,
        description=(
            "Live view of a CNN's activations and kernels. Images and layers are named by the IDs this "
            "API hands out (GET /api/images, GET /api/model). Every request needs the per-run token "
            "(cookie set by the printed URL, or 'Authorization: Bearer TOKEN'). Errors are JSON "
            "{\"error\": {\"code\", \"message\"}} with a 4xx status."
        ),
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.viewer = state
    static = {name: _static_bytes(name) for name in STATIC_FILES}
    pages = {path: _static_bytes(name) for path, name in PAGES.items()}

    # -- errors: always JSON, never a 500 for bad input --------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(ConvscopeError)
    async def _convscope_error(_request: Request, exc: ConvscopeError) -> JSONResponse:
        return _error(422, "invalid", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("path", "query", "body"))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 415: "unsupported_type"}
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = "no such page or API route; see /api/docs"
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), message)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:  # a bug: still answer JSON
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return _error(500, "internal_error", "internal error in the viewer; see the server's terminal")

    # -- pages and assets ----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(pages["/"], media_type="text/html; charset=utf-8")

    @app.get("/api/docs", include_in_schema=False)
    def api_docs() -> Response:
        return Response(pages["/api/docs"], media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        # a fixed allowlist: the name is a dictionary key, never a path
        if name not in static:
            raise ApiError(404, "not_found", "no such asset")
        return Response(static[name], media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    # -- API -----------------------------------------------------------------------------------------
    @app.get("/api/model", response_model=ModelOut, responses=ERRORS, tags=["model"], summary="Model and its layers")
    def model() -> dict[str, Any]:
        return state.model_info()

    @app.get("/api/images", response_model=ImageList, responses=ERRORS, tags=["images"], summary="Images to choose from")
    def images() -> dict[str, Any]:
        return {"images": state.image_list()}

    @app.post(
        "/api/images",
        response_model=ImageOut,
        status_code=201,
        responses=ERRORS,
        tags=["images"],
        summary="Upload an image (multipart/form-data, field 'file')",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary",
                                            "description": "PNG, JPEG, TIFF, BMP, GIF, WebP or .npy"}},
                }}},
            }
        },
    )
    async def upload(request: Request) -> JSONResponse:
        limit = state.limits.max_upload_bytes
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise ApiError(415, "unsupported_type", "upload the image as multipart/form-data with a field named 'file'")
        length = request.headers.get("content-length")
        envelope = limit + 64 * 1024  # room for the multipart headers around the file
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, "bad_request", "invalid Content-Length")
            if int(length) > envelope:
                raise ApiError(413, "too_large", f"the upload is larger than the limit of {limit:,} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > envelope:
                raise ApiError(413, "too_large", f"the upload is larger than the limit of {limit:,} bytes")

        async def one_chunk() -> Any:
            yield bytes(body)

        try:
            form = await MultiPartParser(request.headers, one_chunk(), max_files=1, max_fields=4,
                                         max_part_size=64 * 1024).parse()
        except MultiPartException as exc:
            raise ApiError(400, "bad_request", f"cannot parse the multipart upload: {exc.message}") from None
        try:
            part = form.get("file")
            if part is None or isinstance(part, str):
                raise ApiError(422, "missing_file", "the upload needs a file field named 'file'")
            data = await part.read()
            if len(data) > limit:
                raise ApiError(413, "too_large", f"the file is {len(data):,} bytes; the limit is {limit:,}")
            image_id, entry = await run_in_threadpool(state.add_upload, data, part.content_type, part.filename)
        finally:
            await form.close()
        return JSONResponse(entry.to_dict(image_id), status_code=201)

    @app.get("/api/images/{image_id}/input.png", responses=PNG_RESPONSE, tags=["images"], summary="The input picture")
    def input_png(
        image_id: str = Path(description="image ID"),
        slice_index: int | None = Query(None, alias="slice", ge=0, description="3-D inputs: slice index"),
    ) -> Response:
        return _png(state.input_png(image_id, slice_index))

    @app.get("/api/images/{image_id}/layers/{layer_id}", response_model=ActivationOut, responses=ERRORS,
             tags=["activations"], summary="Shape, health and per-channel statistics of a layer's activation")
    def layer_activation(image_id: str, layer_id: str) -> dict[str, Any]:
        return state.layer_summary(image_id, layer_id)

    @app.get("/api/images/{image_id}/layers/{layer_id}/grid.png", responses=PNG_RESPONSE, tags=["activations"],
             summary="All channels as one grid image")
    def grid_png(image_id: str, layer_id: str) -> Response:
        return _png(state.grid_png(image_id, layer_id))

    @app.get("/api/images/{image_id}/layers/{layer_id}/channels/{channel}/thumb.png", responses=PNG_RESPONSE,
             tags=["activations"], summary="Small picture of one channel")
    def channel_thumb(image_id: str, layer_id: str, channel: int,
                      slice_index: int | None = Query(None, alias="slice", ge=0)) -> Response:
        return _png(state.channel_png(image_id, layer_id, channel, full=False, slice_index=slice_index))

    @app.get("/api/images/{image_id}/layers/{layer_id}/channels/{channel}/map.png", responses=PNG_RESPONSE,
             tags=["activations"], summary="Full-resolution map of one channel")
    def channel_map(image_id: str, layer_id: str, channel: int,
                    slice_index: int | None = Query(None, alias="slice", ge=0)) -> Response:
        return _png(state.channel_png(image_id, layer_id, channel, full=True, slice_index=slice_index))

    @app.get("/api/images/{image_id}/layers/{layer_id}/channels/{channel}/overlay.png", responses=PNG_RESPONSE,
             tags=["activations"], summary="One channel blended over the input")
    def channel_overlay(image_id: str, layer_id: str, channel: int,
                        slice_index: int | None = Query(None, alias="slice", ge=0)) -> Response:
        return _png(state.overlay_png(image_id, layer_id, channel, slice_index=slice_index))

    @app.get("/api/layers/{layer_id}/weights", responses=ERRORS, tags=["kernels"],
             summary="Weight health: histogram, L2 norm per filter, dead filters, mean, std")
    def layer_weights(layer_id: str) -> dict[str, Any]:
        return state.weights(layer_id)

    @app.get("/api/layers/{layer_id}/kernels.png", responses=PNG_RESPONSE, tags=["kernels"], summary="Kernel grid")
    def layer_kernels(layer_id: str) -> Response:
        return _png(state.kernels_png(layer_id))

    @app.get("/api/images/{image_id}/predictions", response_model=PredictionsOut, responses=ERRORS, tags=["images"],
             summary="The model's top-5 classes with probabilities (classifiers); kind 'map' for spatial outputs")
    def predictions(image_id: str) -> dict[str, Any]:
        return state.predictions(image_id)

    @app.get("/api/images/{image_id}/unet", response_model=UNetOut, responses=ERRORS, tags=["unet"],
             summary="U-Net flow: figure, clickable blocks, level panels (422 if the model is not a U-Net)")
    def unet(image_id: str) -> dict[str, Any]:
        return unet_public(state.unet(image_id), image_id)

    @app.get("/api/images/{image_id}/unet/figure.png", responses=PNG_RESPONSE, tags=["unet"], summary="U-Net flow figure")
    def unet_figure(image_id: str) -> Response:
        view = state.unet(image_id)
        if not view["figure"]:
            raise ApiError(404, "no_figure", "the U-Net flow has no figure")
        return _png(view["figure"])

    @app.get("/api/images/{image_id}/unet/panels/{index}.png", responses=PNG_RESPONSE, tags=["unet"],
             summary="One U-Net level panel")
    def unet_panel(image_id: str, index: int) -> Response:
        panels = state.unet(image_id)["panels"]
        if not 0 <= index < len(panels):
            raise ApiError(422, "panel_out_of_range", f"panel {index} is out of range (0..{len(panels) - 1})")
        return _png(panels[index]["png"])

    @app.get("/api/images/{image_id}/cam", response_model=CamOut, responses=ERRORS, tags=["attribution"],
             summary="CAMs for a target chosen in the page: every U-Net level, or the last convolution")
    def cam(image_id: str, query: Annotated[CamQuery, Depends(cam_query)]) -> dict[str, Any]:
        record = state.cam(image_id, query)
        return cam_public(record, image_id, query, {entry.name: entry.id for entry in state.layers})

    @app.get("/api/images/{image_id}/cam/{index}.png", responses=PNG_RESPONSE, tags=["attribution"],
             summary="One CAM over the input (the same query as /cam)")
    def cam_png(image_id: str, index: int, query: Annotated[CamQuery, Depends(cam_query)]) -> Response:
        return _png(state.cam_png(image_id, query, index))

    @app.get("/api/images/{image_id}/volume", responses=ERRORS, tags=["volumes"],
             summary="Geometry of a 3-D scan input (404 for other inputs)")
    def volume_info(image_id: str) -> dict[str, Any]:
        return state.volume_info(image_id)

    @app.get("/api/images/{image_id}/volume/{plane}/{index}.png", responses=PNG_RESPONSE, tags=["volumes"],
             summary="One plane of a scan (radiological view), optionally with a layer's map")
    def volume_slice(
        image_id: str,
        plane: str,
        index: int,
        layer: str | None = Query(None, description="layer ID whose map is overlaid"),
        channel: int | None = Query(None, ge=0, description="one channel (default: the channel mean)"),
        opacity: float = Query(0.6, ge=0.0, le=1.0, description="overlay opacity"),
        mip: bool = Query(False, description="maximum projection along the plane's normal"),
        cam_map: int | None = Query(None, ge=0, description="overlay CAM number cam_map of GET /cam with the same "
                                    "cls, pixel, box and method (instead of a layer)"),
        cam: Annotated[CamQuery | None, Depends(cam_query)] = None,
    ) -> Response:
        return _png(state.volume_slice_png(image_id, plane, index, layer_id=layer, channel=channel, opacity=opacity, mip=mip,
                                           cam=(cam, cam_map) if cam_map is not None and cam is not None else None))

    @app.get("/api/status", tags=["model"], summary="Cache statistics and forward passes run")
    def status() -> dict[str, Any]:
        return {"cache": state.cache.stats(), "forward_passes": state.captures, "images": len(state.images)}

    if scan is not None:
        from .scan_view import add_scan_routes

        add_scan_routes(app, state, scan)

    app.add_middleware(GuardMiddleware, policy=policy, token=token)
    return app
