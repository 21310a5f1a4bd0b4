"""The console script ends quickly once its outputs are on disk, without cutting anything short."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cli.test_cli_errors import _env, cli


def test_the_output_is_complete_and_the_status_zero(tmp_path) -> None:
    result = cli("layers", "tests.cli.models:TinyNet", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["layers"]  # stdout flushed in full before the quick exit
    assert [r["name"] for r in rows] == ["conv1", "relu", "conv2"]


def test_atexit_handlers_of_the_users_code_still_run(tmp_path) -> None:
    marker = tmp_path / "atexit.txt"
    result = cli("layers", "tests.cli.models:WithAtexit", CONVSCOPE_TEST_ATEXIT=str(marker))
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "atexit ran\n"


def test_a_live_worker_thread_is_waited_for(tmp_path) -> None:
    marker = tmp_path / "thread.txt"
    result = cli("layers", "tests.cli.models:WithWorkerThread", CONVSCOPE_TEST_THREAD=str(marker))
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "thread finished\n"


def test_error_status_survives_the_quick_exit(tmp_path) -> None:
    result = cli("layers", "tests.cli.models:Raising")
    assert result.returncode == 2
    assert result.stderr.startswith("convscope: error:")


def test_python_dash_m_takes_the_same_path(tmp_path) -> None:
    marker = tmp_path / "atexit.txt"
    env = {**_env(), "CONVSCOPE_TEST_ATEXIT": str(marker)}
    result = subprocess.run([sys.executable, "-m", "convscope", "layers", "tests.cli.models:WithAtexit"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "conv1" in result.stdout and marker.exists()


def test_threads_share_one_malloc_arena_unless_the_user_chose(monkeypatch) -> None:
    import ctypes

    from convscope.cli import main as cli_main

    calls: list[tuple[int, int]] = []

    class FakeLibc:
        class mallopt:  # noqa: N801 - stands in for the C function
            argtypes: list = []

            def __new__(cls, option: int, value: int) -> int:  # type: ignore[misc]
                calls.append((option, value))
                return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    cli_main._one_malloc_arena()
    assert calls == [(-8, 1)]  # M_ARENA_MAX = 1
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    cli_main._one_malloc_arena()
    assert calls == [(-8, 1)]  # the user's setting stands
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    cli_main._one_malloc_arena()
    assert calls == [(-8, 1)]  # no glibc
