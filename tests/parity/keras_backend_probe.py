"""Run as ``KERAS_BACKEND=<b> python -m tests.parity.keras_backend_probe MODEL.keras OUT.npz``.

Loads the .keras file through convscope on the current backend and writes every number the
cross-backend test compares: layer names/kinds, kernels, activations, U-Net view and shares, gradients.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(model_path: str, out_path: str) -> None:
    import convscope
    from convscope.core.objective import ChannelObjective

    scope = convscope.load(model_path)
    x = np.random.default_rng(7).standard_normal((2, 1, 16, 16)).astype(np.float32)
    layers = scope.adapter.layers()
    convs = [info.name for info in layers if info.kind == "conv"]
    arrays: dict[str, np.ndarray] = {}
    for name in convs:
        arrays[f"kernel/{name}"] = scope.adapter.kernel(name).weights
    names = [info.name for info in layers if info.kind != "container"]
    captured = scope.adapter.capture(x, names)
    for name, value in captured.activations.items():
        arrays[f"act/{name}"] = value
    flow = scope.unet(x)
    grads = scope.adapter.gradients(x, convs, ChannelObjective(channel=1), with_input=True)
    for name, value in grads.gradients.items():
        arrays[f"grad/{name}"] = value
    arrays["input_gradient"] = grads.input_gradient
    meta = {
        "backend": __import__("keras").backend.backend(),
        "layers": [(info.name, info.kind) for info in layers],
        "skips": [(flow.name(s.source), flow.name(s.merge)) for s in flow.structure.skips],
        "energy": [m.energy_share for m in flow.metrics],
        "gradient": [m.gradient_share for m in flow.metrics],
    }
    np.savez(out_path, meta=json.dumps(meta), **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
