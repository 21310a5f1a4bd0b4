"""One progress bar per command: its total is known from the start and it ends at 100%.

* In a terminal: a tqdm bar on stderr, shown only once the work has taken :data:`DELAY` seconds
  (quick commands print nothing), and only when stderr is a terminal unless forced.
* In Jupyter: the notebook widget (``tqdm.notebook``, needs ``ipywidgets``) or nothing at all,
  never a stream of stderr lines.
* Without tqdm: nothing.

Commands count what they write, e.g. one step per layer grid; the writer calls :meth:`Progress.track`
on each queued job. Thread-safe (jobs finish on the output folder's threads).
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["Progress", "DELAY", "in_notebook"]

DELAY = 1.0
"""Seconds before a terminal bar appears."""

T = TypeVar("T")


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (an IPython ``ZMQInteractiveShell``)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _make_bar(total: int, desc: str, unit: str, enabled: bool | None) -> Any:
    """A tqdm bar, or None (disabled, no tqdm, no widgets in Jupyter, stderr not a terminal)."""
    if enabled is False:
        return None
    if in_notebook():
        try:
            import ipywidgets  # noqa: F401 - tqdm.notebook needs it
            from tqdm.notebook import tqdm as notebook_tqdm
        except ImportError:
            return None
        return notebook_tqdm(total=total, desc=desc, unit=unit, leave=True)
    if enabled is None and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in the cli extra
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True, delay=DELAY)


class Progress:
    """A bar over ``total`` steps.

    Args:
        total: the number of steps, known before the work starts.
        desc: the label (``"convscope activations"``).
        unit: what a step is (``"layer"``, ``"file"``).
        enabled: True (always, also when stderr is not a terminal), False (never), None (auto:
            a terminal or a notebook).

    Use as a context manager: a block that completes leaves the bar at 100% (``total`` of ``total``);
    one that raises closes the bar where it stood.
    """

    def __init__(self, total: int, desc: str, *, unit: str = "step", enabled: bool | None = None) -> None:
        self.total = max(0, int(total))
        self.done = 0
        self._lock = threading.Lock()
        self._bar = _make_bar(self.total, desc, unit, enabled) if self.total else None

    @property
    def shown(self) -> bool:
        """Whether a bar exists (it may still be waiting for its delay)."""
        return self._bar is not None

    def advance(self, steps: int = 1) -> None:
        with self._lock:
            steps = max(0, min(steps, self.total - self.done))
            self.done += steps
            if self._bar is not None and steps:
                self._bar.update(steps)

    def track(self, future: Future[T]) -> Future[T]:
        """Advance one step when ``future`` is done (successfully or not); returns it."""
        future.add_done_callback(lambda _f: self.advance(1))
        return future

    def finish(self) -> None:
        """Complete the bar (100%) and close it."""
        self.advance(self.total - self.done)
        self.close()

    def close(self) -> None:
        with self._lock:
            bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.close()
