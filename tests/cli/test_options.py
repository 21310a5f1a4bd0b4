"""The shared options are declared once (cli/options.py): same flag, help and default in every command."""

from __future__ import annotations

import pytest
import typer

from convscope.cli.main import app
from convscope.cli.options import SHARED, SharedOptions, shared_options

MODEL_COMMANDS = ["layers", "kernels", "activations", "unet", "report", "serve", "cam", "scan"]


def _options(command) -> dict[str, tuple[str, object]]:
    return {opt: (p.help, p.default) for p in command.params for opt in getattr(p, "opts", []) if opt.startswith("--")}


@pytest.fixture(scope="module")
def commands():
    return typer.main.get_command(app).commands


def test_every_model_command_takes_the_model_options_with_one_help_text(commands) -> None:
    seen: dict[str, tuple[str, object]] = {}
    for name in MODEL_COMMANDS:
        options = _options(commands[name])
        for flag in ("--kwargs", "--weights", "--trust", "--device"):
            assert flag in options, (name, flag)
            assert seen.setdefault(flag, options[flag]) == options[flag], (name, flag)


def test_volume_options_are_the_same_wherever_they_appear(commands) -> None:
    by_flag: dict[str, set[tuple[str, object]]] = {}
    for name in MODEL_COMMANDS:
        for flag, value in _options(commands[name]).items():
            if flag in ("--slice", "--slices", "--roi", "--roi-size", "--window", "--intensity", "--series",
                        "--channels", "--label-map", "--max-memory", "--size", "--normalize"):
                by_flag.setdefault(flag, set()).add(value)
    assert by_flag["--slices"] and all(len(values) == 1 for values in by_flag.values()), by_flag
    assert "--slices" in _options(commands["cam"]) and "--label-map" in _options(commands["unet"])


def test_shared_options_come_after_a_commands_own_and_reach_it_as_one_value() -> None:
    got: list[SharedOptions] = []

    @shared_options("device", "size")
    def command(model: str, top: int = 3, opts: SharedOptions = SharedOptions()) -> None:  # noqa: B008
        got.append(opts)

    import inspect

    assert list(inspect.signature(command).parameters) == ["model", "top", "device", "size"]
    command(model="m", top=1, device="cpu", size="32")
    assert got[0].device == "cpu" and got[0].size == "32" and got[0].kwargs is None and got[0].trust is False
    with pytest.raises(ValueError, match="unknown shared options"):
        shared_options("colour")
    assert len(SHARED) == len(set(SHARED)) == 16
