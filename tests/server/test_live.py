"""A real uvicorn server on a free loopback port: concurrent clients, raw request paths, the CLI."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import convscope as cs
from tests.report.nets import unet_image
from tests.server.conftest import png_bytes

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def live(unet_scope: cs.Scope, images_dir: Path) -> Iterator[Any]:
    from convscope.server.run import ViewerServer

    server = ViewerServer.create(unet_scope, images=images_dir, host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        server.stop()


def test_live_server_binds_loopback_on_a_free_port(live: Any) -> None:
    assert live.sock.getsockname()[0] == "127.0.0.1"
    assert live.port > 0 and live.url.startswith(f"http://127.0.0.1:{live.port}/?token=")
    response = httpx.get(live.url)
    assert response.status_code == 200 and "convscope" in response.text


def test_concurrent_clients_get_consistent_answers(live: Any) -> None:
    headers = {"Authorization": f"Bearer {live.token}"}
    with httpx.Client(base_url=live.base_url, headers=headers, timeout=60) as client:
        images = [i["id"] for i in client.get("/api/images").json()["images"] if i["name"] != "broken.png"]
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        try:
            with httpx.Client(base_url=live.base_url, headers=headers, timeout=60) as client:
                got = []
                if k % 4 == 3:
                    r = client.post("/api/images", files={"file": (f"u{k}.png", png_bytes(unet_image(k)), "image/png")})
                    got.append(r.status_code)
                    target = r.json()["id"]
                else:
                    target = images[k % len(images)]
                for layer in ("l0", f"l{k % 8}", "l20"):
                    got.append(client.get(f"/api/images/{target}/layers/{layer}").status_code)
                    for channel in range(2):
                        got.append(client.get(f"/api/images/{target}/layers/{layer}/channels/{channel}/thumb.png").status_code)
                got.append(client.get(f"/api/images/{target}/layers/l0/channels/1/overlay.png").status_code)
                got.append(client.get(f"/api/images/{target}/unet").status_code)
                with lock:
                    statuses.extend(got)
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert statuses and set(statuses) <= {200, 201}, sorted(set(statuses))
    # one forward pass per image for the activations, however many clients asked at once
    assert live.state.captures == len(images) + 2


@pytest.mark.parametrize(
    "raw_path",
    [
        "/static/../app.py",
        "/static/../../../../etc/passwd",
        "/../../etc/passwd",
        "//etc/passwd",
        "/static//etc/passwd",
        "/static/%2e%2e/%2e%2e/secret.txt",
        "/api/images/../../secret.txt",
        "/api/images/%2e%2e%2f%2e%2e%2fsecret.txt/input.png",
        "/api/images/..%5c..%5csecret.txt/input.png",
    ],
)
def test_raw_traversal_request_lines_are_refused(live: Any, raw_path: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    try:
        conn.putrequest("GET", raw_path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{live.port}")
        conn.putheader("Authorization", f"Bearer {live.token}")
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status in (400, 404)
    assert b"TOP-SECRET" not in body and b"root:" not in body and b"import " not in body


def test_dns_rebinding_host_is_refused_on_the_live_server(live: Any) -> None:
    response = httpx.get(f"{live.base_url}/api/model", headers={"Host": f"rebind.attacker.example:{live.port}",
                                                                 "Authorization": f"Bearer {live.token}"})
    assert response.status_code == 400


def test_cli_serve_on_all_interfaces_warns_and_requires_the_token(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "convscope", "serve", "tests.report.nets:evil_net", "--host", "0.0.0.0", "--port", "0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 90
        lines = []
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"open (http://\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url, "".join(lines)
        base = url.split("/?token=")[0]
        assert httpx.get(f"{base}/api/model", timeout=10).status_code == 401
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200
        cookie = page.headers["set-cookie"].split(";")[0]
        assert httpx.get(f"{base}/api/model", headers={"Cookie": cookie}, timeout=10).status_code == 200
    finally:
        proc.terminate()
        try:
            _out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
    assert "WARNING" in err and "0.0.0.0" in err
