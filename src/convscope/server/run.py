"""Start the live viewer: bind the socket, print the token URL, run uvicorn."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .security import host_policy, is_loopback, is_wildcard, new_token
from .state import ServerLimits, ViewerState

if TYPE_CHECKING:
    from ..scope import Scope

__all__ = ["ViewerServer", "serve", "bind_socket", "DEFAULT_HOST", "DEFAULT_PORT"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def check_address(host: str, port: int) -> list[Any]:
    """Validate ``--host``/``--port`` before anything is loaded; returns ``getaddrinfo``'s answer.

    Raises:
        ConvscopeError: a port outside 0..65535 (``getaddrinfo`` would wrap it silently: 99999 is
            port 34463), or a host name that does not resolve.
    """
    from ..errors import ConvscopeError

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConvscopeError(f"--port must be between 0 and 65535 (0: any free port), got {port}")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else str(exc)
        raise ConvscopeError(f"--host {host!r} does not resolve ({reason}); use an address of this machine, "
                             f"e.g. 127.0.0.1") from None
    if not infos:
        raise ConvscopeError(f"--host {host!r} does not resolve; use an address of this machine, e.g. 127.0.0.1")
    return infos


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: a free port), IPv4 or IPv6."""
    infos = check_address(host, port)
    family, socktype, proto, _, addr = infos[0]
    # proto must be IPPROTO_TCP so the event loop switches off Nagle's delay (~40 ms per small reply)
    sock = socket.socket(family, socktype, proto or socket.IPPROTO_TCP)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and is_wildcard(host):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host") from None
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    if is_wildcard(host):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@dataclass
class ViewerServer:
    """A configured viewer: ``url`` (with the token), and ``run()`` / ``start()`` + ``stop()``.

    Build it with :meth:`create`; ``start()`` serves on a background thread (tests, notebooks),
    ``run()`` blocks (the CLI).
    """

    app: Any
    state: ViewerState
    sock: socket.socket
    host: str
    port: int
    token: str
    _server: Any = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}/?token={self.token}"

    @property
    def base_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}"

    @classmethod
    def create(
        cls,
        scope: Scope,
        *,
        images: str | os.PathLike[str] | None = None,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        token: str | None = None,
        layers: Any = None,
        kind: str | None = None,
        size: Any = None,
        normalize: str | None = None,
        limits: ServerLimits | None = None,
        scan: str | os.PathLike[str] | None = None,
    ) -> ViewerServer:
        from .app import create_app

        state = ViewerState(scope, images_dir=images, layers=layers, kind=kind, size=size, normalize=normalize, limits=limits)
        scan_view = None
        if scan is not None:  # read and checked against the model before the port is taken
            from .scan_view import ScanView

            scan_view = ScanView(scan, scope)
        sock = bind_socket(host, port)
        actual_port = int(sock.getsockname()[1])
        secret = token or new_token()
        app = create_app(state, token=secret, policy=host_policy(host, actual_port), scan=scan_view)
        return cls(app=app, state=state, sock=sock, host=host, port=actual_port, token=secret)

    def _make_server(self, log_level: str) -> Any:
        import uvicorn

        config = uvicorn.Config(
            self.app,
            log_level=log_level,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        return self._server

    def run(self, log_level: str = "warning") -> None:
        """Serve until interrupted (Ctrl+C)."""
        server = self._make_server(log_level)
        try:
            server.run(sockets=[self.sock])
        finally:
            self.sock.close()

    def start(self, log_level: str = "warning", timeout: float = 20.0) -> ViewerServer:
        """Serve on a daemon thread; returns once the server accepts connections."""
        server = self._make_server(log_level)
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self.sock]}, name="convscope-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the convscope viewer did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> ViewerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    scope: Scope,
    *,
    images: str | os.PathLike[str] | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    layers: Any = None,
    kind: str | None = None,
    size: Any = None,
    normalize: str | None = None,
    limits: ServerLimits | None = None,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
    log_level: str = "warning",
    scan: str | os.PathLike[str] | None = None,
) -> None:
    """Serve the live viewer of ``scope`` until interrupted.

    Listens on ``127.0.0.1`` by default. Another ``host`` (``0.0.0.0`` for every interface) prints a
    warning: the model and images become reachable from the network, protected only by the token.
    Every request needs the random per-run token in the printed URL.
    """
    server = ViewerServer.create(scope, images=images, host=host, port=port, layers=layers, kind=kind, size=size,
                                 normalize=normalize, limits=limits, scan=scan)
    warn = warn or (lambda text: print(text, file=sys.stderr))
    if not is_loopback(host):
        warn(
            f"convscope serve: WARNING: listening on {host}:{server.port}, not only on this machine "
            f"(127.0.0.1). Anyone who can reach this address and has the token URL can see the model and "
            f"upload images. Share the URL only with people you trust; use --host 127.0.0.1 to stay local."
        )
    folder = f", images from {images}" if images is not None else ""
    shown = len(server.state.layers)
    total = sum(1 for info in scope.adapter.layers() if info.is_leaf)
    chosen = "chosen with --layer/--kind" if layers is not None or kind is not None else "convolutions and activations"
    count = len(server.state.images)
    echo(f"convscope viewer for {scope.name}: {shown} of {total} layers shown ({chosen}; `convscope layers` lists "
         f"all {total}), {count} image{'' if count == 1 else 's'}{folder}")
    echo(f"open {server.url}")
    if is_wildcard(host):
        try:
            name = socket.gethostname()
            echo(f"  or, from another machine: http://{name}:{server.port}/?token={server.token}")
        except OSError:  # pragma: no cover
            pass
    echo("press Ctrl+C to stop")
    server.run(log_level=log_level)
