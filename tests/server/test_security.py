"""Pure security logic of the viewer: Host allowlist, Origin, tokens, path containment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from convscope.server.security import (
    contained_path,
    cookie_name,
    host_policy,
    is_loopback,
    is_wildcard,
    new_token,
    origin_allowed,
    split_host_header,
    tokens_equal,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("LOCALHOST:8000", ("localhost", 8000)),
        ("[::1]:8000", ("::1", 8000)),
        ("example.com", ("example.com", None)),
        ("127.0.0.1:0", None),
        ("127.0.0.1:99999", None),
        ("a@127.0.0.1:8000", None),
        ("127.0.0.1:8000/x", None),
        ("::1", None),
        ("[::1", None),
        ("", None),
    ],
)
def test_split_host_header(value: str, expected: tuple[str, int | None] | None) -> None:
    assert split_host_header(value) == expected


def test_loopback_policy_accepts_only_loopback_names_on_the_port() -> None:
    policy = host_policy("127.0.0.1", 8123)
    for ok in ("127.0.0.1:8123", "localhost:8123", "[::1]:8123"):
        assert policy.allows(ok), ok
    for bad in ("127.0.0.1:8124", "evil.example:8123", "attacker.com", "127.0.0.1", None, "", "localhost.evil.com:8123"):
        assert not policy.allows(bad), bad


def test_policy_without_port_in_header_means_port_80() -> None:
    assert host_policy("127.0.0.1", 80).allows("localhost")
    assert not host_policy("127.0.0.1", 8000).allows("localhost")


def test_specific_address_policy_accepts_that_address_only() -> None:
    policy = host_policy("192.168.1.5", 9000)
    assert policy.allows("192.168.1.5:9000")
    assert not policy.allows("localhost:9000")
    assert not policy.allows("10.0.0.1:9000")


def test_wildcard_policy_accepts_ip_literals_but_not_foreign_names() -> None:
    policy = host_policy("0.0.0.0", 9000)
    assert policy.allows("10.1.2.3:9000")
    assert policy.allows("localhost:9000")
    assert not policy.allows("rebind.attacker.example:9000")


def test_origin_check() -> None:
    policy = host_policy("127.0.0.1", 8000)
    assert origin_allowed(None, policy)
    assert origin_allowed("http://127.0.0.1:8000", policy)
    assert not origin_allowed("http://evil.example:8000", policy)
    assert not origin_allowed("null", policy)
    assert not origin_allowed("https://127.0.0.1:8000", policy)


def test_loopback_and_wildcard_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.0.1")
    assert is_wildcard("0.0.0.0") and is_wildcard("::") and not is_wildcard("127.0.0.1")


def test_tokens_are_random_and_compared_exactly() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 30
    assert tokens_equal(a, a)
    assert not tokens_equal(a[:-1], a)
    assert not tokens_equal(None, a)
    assert not tokens_equal("é" * 10, a)


def test_cookie_name_is_per_port() -> None:
    assert cookie_name(8000) != cookie_name(8001)


def test_contained_path_accepts_files_inside(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"x")
    assert contained_path(root, root / "sub" / "a.png") == (root / "sub" / "a.png").resolve()


def test_contained_path_refuses_dotdot_and_absolute_paths(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    assert contained_path(root, root / ".." / "secret.txt") is None
    assert contained_path(root, "/etc/passwd") is None
    assert contained_path(root, root) is None


def test_contained_path_refuses_symlinks_pointing_outside(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "link.png")
    os.symlink(tmp_path, root / "dirlink")
    assert contained_path(root, root / "link.png") is None
    assert contained_path(root, root / "dirlink" / "secret.png") is None
