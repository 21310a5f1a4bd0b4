from __future__ import annotations

import pytest

from convscope.core.layers import LayerInfo, format_layer_table, select_layers
from convscope.errors import LayerNotFoundError

LAYERS = [
    LayerInfo("enc1", "container", "Block", is_leaf=False),
    LayerInfo("enc1.conv", "conv", "Conv2d", 1, 8, (3, 3), (1, 1), params=80),
    LayerInfo("enc1.relu", "activation", "ReLU"),
    LayerInfo("enc2.conv", "conv", "Conv2d", 8, 16, (3, 3), (1, 1), params=1168),
    LayerInfo("up1", "conv_transpose", "ConvTranspose2d", 16, 8, (2, 2), (2, 2), transposed=True),
    LayerInfo("head", "conv", "Conv2d", 8, 1, (1, 1), (1, 1)),
]


def names(layers):
    return [layer.name for layer in layers]


def test_default_selects_every_convolution_including_transposed():
    assert names(select_layers(LAYERS)) == ["enc1.conv", "enc2.conv", "up1", "head"]


def test_exact_name():
    assert names(select_layers(LAYERS, "enc1.relu")) == ["enc1.relu"]


def test_glob_matches_all_kinds_in_model_order():
    assert names(select_layers(LAYERS, "enc*")) == ["enc1", "enc1.conv", "enc1.relu", "enc2.conv"]


def test_glob_with_kind():
    assert names(select_layers(LAYERS, "enc*", kind="conv")) == ["enc1.conv", "enc2.conv"]


def test_kind_only():
    assert names(select_layers(LAYERS, None, kind="conv_transpose")) == ["up1"]


def test_several_patterns_keep_model_order_without_duplicates():
    assert names(select_layers(LAYERS, ["head", "enc*.conv", "enc1.conv"])) == ["enc1.conv", "enc2.conv", "head"]


def test_unknown_name_lists_close_names():
    with pytest.raises(LayerNotFoundError) as info:
        select_layers(LAYERS, "enc1.cnv")
    message = str(info.value)
    assert "no layer named 'enc1.cnv'" in message and "enc1.conv" in message


def test_unknown_name_is_a_value_error_and_key_error():
    with pytest.raises(ValueError):
        select_layers(LAYERS, "nothing")
    with pytest.raises(KeyError):
        select_layers(LAYERS, "nothing")


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(LayerNotFoundError, match="pattern 'dec\\*' matches no layer"):
        select_layers(LAYERS, "dec*")


def test_kernel_requirement_rejects_non_conv_exact_name():
    with pytest.raises(ValueError, match="not a convolution"):
        select_layers(LAYERS, "enc1.relu", require="kernel")


def test_unknown_kind_lists_kinds():
    with pytest.raises(ValueError, match="unknown layer kind 'convs'"):
        select_layers(LAYERS, None, kind="convs")


def test_table_has_header_and_one_row_per_layer():
    text = format_layer_table(LAYERS)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["name", "kind", "type"]
    assert len(lines) == len(LAYERS) + 2
    assert "1,168" in text


def test_an_exact_name_with_glob_characters_is_taken_literally():
    layers = LAYERS + [LayerInfo("block[1]", "conv", "Conv2D")]
    assert names(select_layers(layers, "block[1]")) == ["block[1]"]
