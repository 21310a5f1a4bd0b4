"""The founding document's three Keras examples, done with convscope (a few lines each).

    KERAS_BACKEND=torch python examples/seed_keras.py [OUT_DIR]

Builds a small Keras 3 U-Net (functional API, untrained: the point is the plumbing, not the
pictures) and a synthetic RGB image, then writes into OUT_DIR (default ``seed-keras-out``):

1. ``kernels_enc1_conv1.png``: the kernels of a convolution layer
   (founding document: ``model.get_layer(name).get_weights()[0]`` + a matplotlib loop);
2. ``activations_enc2_conv2.png``: the activations of a layer
   (founding document: ``keras.Model(inputs, layer.output).predict(image)``);
3. ``unet/``: encoder, decoder and skip activations of the U-Net, found automatically
   (founding document: three sub-models, one ``predict`` each).

Any Keras 3 backend works; the default here is torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402

import convscope as cs  # noqa: E402


def build_unet(size: int = 64) -> keras.Model:
    """A 3-level U-Net: conv blocks, max-pooling down, Conv2DTranspose up, concatenated skips."""
    layers = keras.layers

    def block(x: keras.KerasTensor, channels: int, name: str) -> keras.KerasTensor:
        x = layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"{name}_conv1")(x)
        return layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"{name}_conv2")(x)

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3), name="image")
    e1 = block(inputs, 8, "enc1")
    e2 = block(layers.MaxPooling2D(name="pool1")(e1), 16, "enc2")
    b = block(layers.MaxPooling2D(name="pool2")(e2), 32, "bottleneck")
    d2 = layers.Conv2DTranspose(16, 2, strides=2, name="up2")(b)
    d2 = block(layers.Concatenate(name="skip2")([d2, e2]), 16, "dec2")
    d1 = layers.Conv2DTranspose(8, 2, strides=2, name="up1")(d2)
    d1 = block(layers.Concatenate(name="skip1")([d1, e1]), 8, "dec1")
    outputs = layers.Conv2D(2, 1, name="head")(d1)
    return keras.Model(inputs, outputs, name="seed_unet")


def synthetic_image(size: int = 64) -> np.ndarray:
    """An (H, W, 3) float32 picture in [0, 1]: a bright disc on a gradient, with a little noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    disc = ((yy - 0.4) ** 2 + (xx - 0.6) ** 2 < 0.05).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 0.05, (size, size))
    return np.clip(np.stack([disc, 0.5 * xx + 0.3 * disc, yy], axis=-1) + noise[..., None], 0, 1).astype(np.float32)


def main(out: Path) -> None:
    model = build_unet()
    image = synthetic_image()  # (H, W, C) like the founding document's image, without the batch axis
    scope = cs.Scope(model)
    out.mkdir(parents=True, exist_ok=True)

    # 1. Kernels of a conv layer.
    #    Founding document: w = model.get_layer("enc1_conv1").get_weights()[0]   # (3, 3, in, out)
    #                       for i in range(w.shape[-1]): plt.subplot(...); plt.imshow(w[:, :, 0, i]) ...
    scope.kernels("enc1_conv1").grid().save(out / "kernels_enc1_conv1.png")

    # 2. Activations of a layer.
    #    Founding document: probe = keras.Model(model.inputs, model.get_layer("enc2_conv2").output)
    #                       maps = probe.predict(image[None])                       # + a matplotlib loop
    scope.activations(image, "enc2_conv2")["enc2_conv2"].grid(top=16, order="mean").save(
        out / "activations_enc2_conv2.png"
    )

    # 3. Encoder, decoder and skip activations of the U-Net.
    #    Founding document: three sub-models (encoder output, decoder output, skip tensor), one predict each.
    #    convscope finds the anatomy itself and captures everything in ONE forward pass:
    flow = scope.unet(image)
    flow.save(out / "unet")  # flow.png (the U), level-N.png (encoder | skip | decoder | merged), unet.json
    print(flow)

    # The same three tensors by name, if you prefer to pick them yourself (one forward pass):
    acts = scope.activations(image, ["enc1_conv2", "dec1_conv2", "skip1"])
    for name, act in acts.items():
        print(f"{name:12s} {act.shape}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("seed-keras-out"))
