"""One kind taxonomy: the eager, TorchScript and .pt2 forms of a model report the same kind for every
layer, and the torch, Keras and ONNX forms of one architecture agree."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

from convscope.adapters import adapter_for
from convscope.adapters.torch_export import ExportedProgramAdapter
from convscope.core.kinds import KIND, graph_op_of, layer_kind_of
from convscope.core.layers import KINDS


class Zoo(nn.Module):
    """Module types the first wave's three torch maps disagreed on, plus the common ones."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.rms = nn.RMSNorm([4, 8, 8])
        self.threshold = nn.Threshold(0.1, 0.0)
        self.softsign = nn.Softsign()
        self.hardtanh = nn.Hardtanh()
        self.unshuffle = nn.PixelUnshuffle(2)
        self.shuffle = nn.PixelShuffle(2)
        self.gn = nn.GroupNorm(2, 4)
        self.pad = nn.ZeroPad2d(1)
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(1)
        self.up = nn.Upsample(scale_factor=2)
        self.deconv = nn.ConvTranspose2d(4, 2, 1)
        self.block = nn.Sequential(nn.Conv2d(2, 2, 1), nn.SiLU())
        self.flat = nn.Flatten()
        self.fc = nn.Linear(2 * 10 * 10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        x = self.hardtanh(self.softsign(self.threshold(self.rms(x))))
        x = self.gn(self.shuffle(self.unshuffle(x)))
        x = self.up(self.avg(self.pool(self.pad(x))))
        x = self.block(self.deconv(x))
        return self.fc(self.flat(x))


@pytest.fixture(scope="module")
def forms():
    torch.manual_seed(0)
    model = Zoo().eval()
    example = torch.zeros(2, 2, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
        program = torch.export.export(model, (example,))
    return {
        "eager": adapter_for(model),
        "torchscript": adapter_for(scripted),
        "pt2": ExportedProgramAdapter(program),
    }


def kinds(adapter) -> dict[str, str]:
    return {info.name: info.kind for info in adapter.layers()}


def test_every_kind_is_in_the_taxonomy(forms):
    for adapter in forms.values():
        assert set(kinds(adapter).values()) <= set(KINDS)


def test_eager_torchscript_and_pt2_agree_on_every_layer(forms):
    eager = kinds(forms["eager"])
    for form in ("torchscript", "pt2"):
        other = kinds(forms[form])
        shared = eager.keys() & other.keys()
        for name in ("conv", "bn", "rms", "threshold", "softsign", "unshuffle", "shuffle", "up", "deconv", "fc"):
            assert name in shared, f"{form} lacks {name}"
        assert {n: other[n] for n in shared} == {n: eager[n] for n in shared}, form
    assert eager["rms"] == "norm" and eager["threshold"] == "activation" and eager["softsign"] == "activation"
    assert eager["unshuffle"] == "pool" and eager["shuffle"] == "upsample" and eager["block"] == "container"


def test_core_derivations():
    assert layer_kind_of("concat") == layer_kind_of("join") == "merge"
    assert layer_kind_of("pad") == "other" and layer_kind_of("other", container=True) == "container"
    assert graph_op_of("join") == "other" and graph_op_of("concat") == "concat"
    assert {layer_kind_of(k) for k in KIND} <= set(KINDS)


ARCH_KINDS = ["conv", "activation", "pool", "conv", "activation", "upsample", "merge", "conv", "activation", "conv"]


class TorchArch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.r1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.r2 = nn.ReLU()
        self.up = nn.Upsample(scale_factor=2)
        self.c3 = nn.Conv2d(8, 4, 3, padding=1)
        self.r3 = nn.ReLU()
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.r1(self.c1(x))
        b = self.up(self.r2(self.c2(self.pool(a))))
        return self.head(self.r3(self.c3(torch.cat([b, a], 1))))


def keras_arch():
    keras = pytest.importorskip("keras")
    L = keras.layers
    inputs = keras.Input((8, 8, 1))
    a = L.ReLU(name="r1")(L.Conv2D(4, 3, padding="same", name="c1")(inputs))
    b = L.UpSampling2D(name="up")(L.ReLU(name="r2")(L.Conv2D(4, 3, padding="same", name="c2")(L.MaxPooling2D(name="pool")(a))))
    c = L.Concatenate(name="cat")([b, a])
    return keras.Model(inputs, L.Conv2D(2, 1, name="head")(L.ReLU(name="r3")(L.Conv2D(4, 3, padding="same", name="c3")(c))))


def test_torch_keras_and_onnx_forms_of_one_architecture_agree(tmp_path):
    import convscope
    from tests.adapters.onnx.nets import export_onnx

    torch.manual_seed(0)
    model = TorchArch().eval()
    torch_kinds = [k for k in kinds(adapter_for(model)).values() if k != "container"]
    # eager torch has no layer for the functional torch.cat: the merge is in the graph
    assert torch_kinds == [k for k in ARCH_KINDS if k != "merge"]
    keras_kinds = list(kinds(adapter_for(keras_arch())).values())
    assert keras_kinds == ARCH_KINDS
    onnx = convscope.load(export_onnx(model, tmp_path / "arch.onnx", (1, 1, 8, 8))).adapter
    assert [k for k in kinds(onnx).values() if k in KINDS and k != "other"] == ARCH_KINDS
