"""Model files for the loading tests: valid ones, broken ones, and booby-trapped pickles."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch

from tests.adapters.onnx.nets import export_onnx, export_pt2
from tests.cli.models import TinyNet

FACTORY = "tests.cli.models:TinyNet"


class Payload:
    """Pickles to a call that writes ``sentinel``: if it ever runs, the file appears."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (exec, (f"open({self.sentinel!r}, 'w').write('payload ran')",))


def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


def write_valid(folder: Path, suffix: str) -> Path:
    """A valid file of each format convscope reads (TinyNet: 3 -> 4 -> 4 channels, input 16x16)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"model{suffix}"
    net = tiny_net()
    if suffix == ".onnx":
        return export_onnx(net, path, (1, 3, 16, 16))
    if suffix == ".pt2":
        return export_pt2(net, path, (1, 3, 16, 16))
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
        return path
    torch.save(net.state_dict(), path)
    return path


def png_bytes() -> bytes:
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def booby_trapped_pickle(path: Path, sentinel: Path, *, legacy: bool = False) -> Path:
    """A torch.save file holding a state dict plus a Payload object."""
    state = {"conv1.weight": torch.zeros(4, 3, 3, 3), "evil": Payload(sentinel)}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def booby_trapped_pt2(valid_pt2: Path, path: Path, sentinel: Path) -> Path:
    """A copy of a valid .pt2 whose first weight is stored as a pickle (``"use_pickle": true``) holding a
    Payload: ``torch.export.load`` reads such weights with ``torch.load(weights_only=False)``, which runs it."""
    import json

    buffer = io.BytesIO()
    torch.save(Payload(sentinel), buffer)
    with zipfile.ZipFile(valid_pt2) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("weights/weight_0"):
                data = buffer.getvalue()
            elif item.filename.endswith("weights/model_weights_config.json"):
                config = json.loads(data)
                for entry in config["config"].values():
                    if entry["path_name"] == "weight_0":
                        entry["use_pickle"] = True
                data = json.dumps(config).encode()
            target.writestr(item, data)
    return path
