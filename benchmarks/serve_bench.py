"""T5: ``convscope serve`` on T1's model (ResNet-50): latency of a layer-grid request
(``GET /api/images/{image}/layers/{layer}/grid.png``) on loopback, with 1 and with 8 concurrent
clients.

The server runs as a real ``python -m convscope serve benchmarks.models:resnet50 --images DIR
--port 0`` process; clients are threads with one keep-alive ``http.client`` connection each.
Every client works on its own images (random 224x224 RGB PNGs in DIR), and for each image:
  cold    the first grid request for the image: one forward pass (all viewer layers) + drawing
          and encoding that layer's grid
  warm    another layer of the same size for the same image: activations cached, grid drawn and
          encoded
  cached  the first layer's grid again, ``CACHED_REPEATS`` times: served from the PNG cache
p50/p95 of each kind are reported, plus the server's start-up time (spawn to first answer) and its
peak RSS (``VmHWM``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER = "layer2.1.conv3"  # 512 x 28 x 28: a 1312 x 1312 px grid
WARM_LAYER = "layer2.2.conv3"  # same shape
TINY_LAYER, TINY_WARM = "layer2.1.conv3", "layer2.2.conv3"
CACHED_REPEATS = 10
TARGET_CACHED_P95_MS = 100.0


def server_available() -> bool:
    return (ROOT / "src" / "convscope" / "server" / "__init__.py").exists()


def _write_images(folder: Path, count: int, size: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class Client:
    def __init__(self, host: str, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=300)
        self.headers = {"x-convscope-token": token, "Host": f"{host}:{port}"}

    def get(self, path: str) -> tuple[float, bytes, str]:
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {resp.status}: {body[:300]!r}")
        return elapsed, body, resp.getheader("content-type", "")

    def json(self, path: str) -> dict:
        return json.loads(self.get(path)[1])

    def close(self) -> None:
        self.conn.close()


def _client_run(client: Client, images: list[str], layer: str, warm: str, out: dict, barrier: threading.Barrier) -> None:
    barrier.wait()
    for image in images:
        t, body, ctype = client.get(f"/api/images/{image}/layers/{layer}/grid.png")
        if not body.startswith(b"\x89PNG") or "png" not in ctype:
            raise RuntimeError("the grid answer is not a PNG")
        out["cold"].append(t)
        out["warm"].append(client.get(f"/api/images/{image}/layers/{warm}/grid.png")[0])
        for _ in range(CACHED_REPEATS):
            out["cached"].append(client.get(f"/api/images/{image}/layers/{layer}/grid.png")[0])


def _phase(host: str, port: int, token: str, clients: int, images: list[str], layer: str, warm: str) -> dict:
    per = len(images) // clients
    results = [{"cold": [], "warm": [], "cached": []} for _ in range(clients)]
    conns = [Client(host, port, token) for _ in range(clients)]
    barrier = threading.Barrier(clients)
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            _client_run(conns[i], images[i * per : (i + 1) * per], layer, warm, results[i], barrier)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    if errors:
        raise errors[0]
    merged = {k: [v for r in results for v in r[k]] for k in ("cold", "warm", "cached")}
    return {
        "clients": clients,
        "wall_s": wall,
        **{
            kind: {"n": len(vals), "p50_ms": 1000 * statistics.median(vals), "p95_ms": 1000 * _percentile(vals, 95)}
            for kind, vals in merged.items()
        },
    }


def _peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def run_serve_bench(args: argparse.Namespace, base: Path) -> dict:
    summary: dict = {"task": "T5", "title": "convscope serve on ResNet-50: layer-grid request latency", "ways": {}}
    if not server_available():
        summary["note"] = "NOT RUN (stub): convscope.server does not exist yet"
        return summary
    tiny = getattr(args, "size", "full") == "tiny"
    single, per_client, clients = (2, 1, 2) if tiny else (10, 3, 8)
    folder = base / "T5" / "images"
    if folder.exists():
        for old in folder.glob("*.png"):
            old.unlink()
    _write_images(folder, single + clients * per_client, 32 if tiny else 224)
    cmd = [sys.executable, "-m", "convscope", "serve", "benchmarks.models:resnet50", "--images", str(folder),
           "--port", "0"]
    if tiny:
        cmd += ["--kwargs", json.dumps({"width": 4})]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    log_path = base / "T5" / "server.log"
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    url = None
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            match = re.search(r"open (http://([^:/]+):(\d+)/\?token=(\S+))", line)
            if match:
                url = match
                break
        if url is None:
            raise RuntimeError("convscope serve did not print its URL:\n" + "".join(lines)[-3000:])
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
        host, port, token = url.group(2), int(url.group(3)), url.group(4)
        probe = Client(host, port, token)
        model = probe.json("/api/model")
        startup = time.perf_counter() - t0
        ids = {layer["name"]: layer["id"] for layer in model["layers"]}
        layer, warm = (TINY_LAYER, TINY_WARM) if tiny else (LAYER, WARM_LAYER)
        listing = probe.json("/api/images")
        images = [item["id"] for item in (listing["images"] if isinstance(listing, dict) else listing)]
        probe.close()
        phases = [
            _phase(host, port, token, 1, images[:single], ids[layer], ids[warm]),
            _phase(host, port, token, clients, images[single:], ids[layer], ids[warm]),
        ]
        peak = _peak_rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_path.write_text("".join(lines))
    summary["serve"] = {"startup_s": startup, "peak_mib": peak, "layer": layer, "warm_layer": warm, "phases": phases}
    rows = [f"server start-up (spawn to first API answer) {startup:.2f} s, peak RSS {peak or float('nan'):.0f} MiB; "
            f"grid of {layer} (warm: {warm})"]
    for ph in phases:
        parts = "  ".join(f"{kind} p50 {ph[kind]['p50_ms']:7.1f} p95 {ph[kind]['p95_ms']:7.1f} ms (n={ph[kind]['n']})"
                          for kind in ("cold", "warm", "cached"))
        rows.append(f"{ph['clients']} client{'s' if ph['clients'] > 1 else ' '}: {parts}")
    worst = max(ph["cached"]["p95_ms"] for ph in phases)
    rows.append(f"cached p95 (worst of 1 and {clients} clients) = {worst:.1f} ms "
                f"(target < {TARGET_CACHED_P95_MS:.0f} ms: {'met' if worst < TARGET_CACHED_P95_MS else 'MISSED'})")
    summary["lines"] = rows
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="full", choices=("full", "tiny"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ns = parser.parse_args()
    result = run_serve_bench(ns, ns.out)
    print("\n".join(result.get("lines", [result.get("note", "")])))
