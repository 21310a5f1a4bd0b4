"""Tiny factories the CLI tests load as ``tests.cli.models:NAME``."""

from __future__ import annotations

import torch.nn as nn


class TinyNet(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.relu(self.conv1(x)))




def Raising(**kwargs):  # noqa: N802 - a factory name as users write them
    """A factory whose own code fails."""
    raise RuntimeError("the checkpoint server is down")


def NotAModel():  # noqa: N802
    """A factory that returns something that is not a model."""
    return {"conv": "not a module"}


class ManyLayers(nn.Module):
    """A deep, wide-ish plain CNN: slow enough to interrupt mid-run (one PNG per layer)."""

    def __init__(self, depth: int = 60, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(*[nn.Conv2d(width, width, 3, padding=1) for _ in range(depth)])

    def forward(self, x):
        return self.body(self.stem(x))


def WithAtexit(**kwargs):  # noqa: N802
    """TinyNet, and an ``atexit`` handler that writes the file named by ``CONVSCOPE_TEST_ATEXIT``."""
    import atexit
    import os
    from pathlib import Path

    target = os.environ["CONVSCOPE_TEST_ATEXIT"]
    atexit.register(lambda: Path(target).write_text("atexit ran\n"))
    return TinyNet()


def WithWorkerThread(**kwargs):  # noqa: N802
    """TinyNet, and a non-daemon thread that writes ``CONVSCOPE_TEST_THREAD`` after 0.5 s."""
    import os
    import threading
    import time
    from pathlib import Path

    target = os.environ["CONVSCOPE_TEST_THREAD"]

    def late() -> None:
        time.sleep(0.5)
        Path(target).write_text("thread finished\n")

    threading.Thread(target=late, daemon=False).start()
    return TinyNet()
