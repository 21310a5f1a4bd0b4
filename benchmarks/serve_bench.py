"""T5: ``convscope serve`` on T1's model, latency of a layer-grid request (p50/p95) with 1 and 8
concurrent clients on loopback, cold and cached.

STUB until ``convscope.server`` exists: the task reports that it was not run.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path


def server_available() -> bool:
    try:
        return importlib.util.find_spec("convscope.server") is not None
    except ModuleNotFoundError:
        return False


def run_serve_bench(args: argparse.Namespace, base: Path) -> dict:
    summary = {"task": "T5", "title": "convscope serve on ResNet-50: layer-grid request latency", "ways": {}}
    if not server_available():
        summary["note"] = "NOT RUN (stub): convscope.server does not exist yet"
    return summary
