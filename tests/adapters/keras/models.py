"""Small Keras models for the adapter tests (built on whichever Keras backend the run uses)."""

from __future__ import annotations

from typing import Any

import numpy as np

import keras


class Counter(keras.layers.Layer):
    """Identity that counts how many times it ran on real (non-symbolic) tensors."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, inputs: Any) -> Any:
        if not isinstance(inputs, keras.KerasTensor) and "meta" not in str(getattr(inputs, "device", "")):
            self.calls += 1
        return inputs


def randomize_bn(model: Any) -> None:
    rng = np.random.default_rng(3)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.uniform(-1, 1, tuple(layer.moving_mean.shape)).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2, tuple(layer.moving_variance.shape)).astype("float32"))


def small_net(data_format: str = "channels_last") -> Any:
    """Input 8x8x3 -> counter -> conv c1 -> bn -> relu -> dropout -> conv c2."""
    keras.utils.set_random_seed(0)
    shape = (3, 8, 8) if data_format == "channels_first" else (8, 8, 3)
    inputs = keras.Input(shape, name="image")
    x = Counter(name="count")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", data_format=data_format, name="c1")(x)
    x = keras.layers.BatchNormalization(axis=1 if data_format == "channels_first" else -1, name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Conv2D(2, 3, padding="same", data_format=data_format, name="c2")(x)
    model = keras.Model(inputs, x, name="small")
    randomize_bn(model)
    return model


def nested_net() -> Any:
    """A functional model holding a Sequential block and a functional sub-model that nests another."""
    keras.utils.set_random_seed(1)
    block = keras.Sequential(
        [keras.Input((8, 8, 4)), keras.layers.Conv2D(4, 3, padding="same", name="conv"), keras.layers.ReLU(name="act")],
        name="block",
    )
    deep_in = keras.Input((4, 4, 4))
    deep = keras.Model(deep_in, keras.layers.Conv2D(4, 1, name="conv")(deep_in), name="deep")
    mid_in = keras.Input((8, 8, 4))
    y = keras.layers.MaxPooling2D(name="pool")(mid_in)
    y = deep(y)
    y = keras.layers.UpSampling2D(name="up")(y)
    mid = keras.Model(mid_in, y, name="mid")
    inputs = keras.Input((8, 8, 3), name="image")
    x = Counter(name="count")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(x)
    a = block(x)
    b = mid(a)
    x = keras.layers.Concatenate(name="cat")([a, b])
    x = keras.layers.Conv2D(2, 1, name="head")(x)
    return keras.Model(inputs, x, name="outer")


class Subclassed(keras.Model):
    """A subclassed model: kernels visible, no recorded graph."""

    def __init__(self) -> None:
        super().__init__(name="sub")
        self.c1 = keras.layers.Conv2D(4, 3, padding="same", name="c1")
        self.c2 = keras.layers.Conv2D(2, 1, name="c2")

    def call(self, inputs: Any) -> Any:
        return self.c2(self.c1(inputs))


def to_numpy(x: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def channels_first(x: Any) -> np.ndarray:
    return np.moveaxis(to_numpy(x), -1, 1)


def image(n: int = 1, shape: tuple[int, ...] = (3, 8, 8)) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float32)
