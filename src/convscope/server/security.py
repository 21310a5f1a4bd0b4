"""Security policy of ``convscope serve``: pure functions, no web framework imported.

* Bind address: loopback unless the user names another host (then a warning is printed).
* Token: a random per-run token is required on every request (query ``?token=``, once, then an
  ``HttpOnly; SameSite=Strict`` cookie; or ``Authorization: Bearer``), as in Jupyter.
* Host header: only the address being served is accepted, so a DNS-rebinding page (whose Host is
  the attacker's name) is refused even before the token check.
* Content-Security-Policy without external sources on every response.
* File containment: a path is served only when its real path lies inside the real path of the
  allowed root (symlinks and ``..`` resolved first).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CSP",
    "SECURITY_HEADERS",
    "HostPolicy",
    "host_policy",
    "split_host_header",
    "is_loopback",
    "is_wildcard",
    "new_token",
    "tokens_equal",
    "cookie_name",
    "contained_path",
    "origin_allowed",
]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""Content-Security-Policy of every response: only the server's own scripts, styles and images."""

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def is_wildcard(host: str) -> bool:
    """``0.0.0.0``, ``::`` or empty: listen on every interface."""
    ip = _ip(host) if host else None
    return host in ("", "*") or (ip is not None and ip.is_unspecified)


def is_loopback(host: str) -> bool:
    """``127.0.0.0/8``, ``::1`` or ``localhost``."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def split_host_header(value: str) -> tuple[str, int | None] | None:
    """``"127.0.0.1:8000"`` -> ``("127.0.0.1", 8000)``; ``"[::1]:80"`` -> ``("::1", 80)``; ``"a.b"`` -> ``("a.b", None)``.

    Returns None for a malformed value (bad port, junk characters, user info).
    """
    text = value.strip().lower()
    if not text or any(ch in text for ch in "/\\@ \t?#%"):
        return None
    port_text: str | None = None
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
        if _ip(host) is None:
            return None
    else:
        if text.count(":") > 1:  # a bare IPv6 literal is not a valid Host header
            return None
        host, _, port_text_raw = text.partition(":")
        port_text = port_text_raw if ":" in text else None
    if not host:
        return None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        return host, int(port_text)
    return host, None


@dataclass(frozen=True)
class HostPolicy:
    """Which ``Host`` header values the server answers.

    Attributes:
        port: the port being served; the header's port (80 when absent) must equal it.
        names: accepted host names (lower-case), e.g. ``localhost``.
        ips: accepted IP literals.
        any_ip: accept every IP literal (wildcard bind). An IP literal can never be a
            DNS-rebinding name, so this keeps the rebinding protection.
    """

    port: int
    names: frozenset[str]
    ips: frozenset[str]
    any_ip: bool = False

    def allows(self, header: str | None) -> bool:
        if not header:
            return False
        parsed = split_host_header(header)
        if parsed is None:
            return False
        host, port = parsed
        if (port if port is not None else 80) != self.port:
            return False
        ip = _ip(host)
        if ip is not None:
            return self.any_ip or str(ip) in self.ips
        return host.rstrip(".") in self.names or host in self.names

    def allowed_origins(self, scheme: str = "http") -> set[str]:
        origins = set()
        for name in self.names:
            origins.add(f"{scheme}://{name}:{self.port}")
        for ip in self.ips:
            shown = f"[{ip}]" if ":" in ip else ip
            origins.add(f"{scheme}://{shown}:{self.port}")
        if self.port == 80:
            origins |= {o[: -len(":80")] for o in list(origins)}
        return origins


def host_policy(bind_host: str, port: int, extra_names: tuple[str, ...] = ()) -> HostPolicy:
    """The Host policy for a server bound to ``bind_host:port``.

    * loopback bind: ``localhost``, ``127.0.0.1``, ``::1`` and the bound address;
    * a specific address or name: that address or name (plus ``localhost`` names if loopback);
    * wildcard (``0.0.0.0``/``::``): loopback names, this machine's host name and FQDN, and any IP literal.
    """
    names = {n.lower() for n in extra_names}
    ips: set[str] = set()
    any_ip = False
    ip = _ip(bind_host) if bind_host else None
    if is_wildcard(bind_host):
        any_ip = True
        names |= {"localhost"}
        for getter in (socket.gethostname, socket.getfqdn):
            try:
                name = getter().lower()
            except OSError:  # pragma: no cover - depends on the machine
                continue
            if name:
                names.add(name)
    elif ip is not None:
        ips.add(str(ip))
        if ip.is_loopback:
            names.add("localhost")
            ips |= {"127.0.0.1", "::1"}
    else:
        names.add(bind_host.lower().rstrip("."))
        if is_loopback(bind_host):
            ips |= {"127.0.0.1", "::1"}
            names.add("localhost")
    return HostPolicy(port=int(port), names=frozenset(names), ips=frozenset(ips), any_ip=any_ip)


def origin_allowed(origin: str | None, policy: HostPolicy) -> bool:
    """An ``Origin`` header (sent with cross-site and POST requests) must name the served address.

    A missing Origin is allowed (non-browser clients, same-origin GETs); ``"null"`` is refused.
    """
    if origin is None:
        return True
    text = origin.strip().lower()
    if not text.startswith("http://"):  # the server speaks plain HTTP only
        return False
    return policy.allows(text[len("http://") :].rstrip("/"))


def new_token(nbytes: int = 24) -> str:
    """A random URL-safe token (``secrets.token_urlsafe``)."""
    return secrets.token_urlsafe(nbytes)


def tokens_equal(given: str | None, expected: str) -> bool:
    """Constant-time comparison; None or non-ASCII never matches."""
    if not given:
        return False
    try:
        return hmac.compare_digest(given.encode("ascii"), expected.encode("ascii"))
    except UnicodeEncodeError:
        return False


def cookie_name(port: int) -> str:
    """Per-port cookie name (cookies are not port-scoped, so two servers must not share one)."""
    return f"convscope-token-{int(port)}"


def contained_path(root: str | os.PathLike[str], candidate: str | os.PathLike[str]) -> Path | None:
    """The real path of ``candidate`` if it is a regular file inside the real path of ``root``, else None.

    Resolves ``..``, symbolic links (final and parent components) and relative paths before the
    containment check, so a link pointing outside ``root`` is refused.
    """
    try:
        real_root = Path(os.path.realpath(root))
        real = Path(os.path.realpath(candidate))
    except (OSError, ValueError):
        return None
    if real == real_root or real_root not in real.parents:
        return None
    try:
        if not real.is_file():
            return None
    except OSError:
        return None
    return real
