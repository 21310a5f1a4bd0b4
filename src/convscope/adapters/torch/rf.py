"""Input gradients of single activations (effective receptive fields) for torch models.

One forward and one backward pass per batch: sample ``n``'s cotangent is one-hot at
``(channels[n], *positions[n])`` of the layer's output, so each sample gets the gradient of its own
activation (samples do not interact in eval mode). ``torch.autograd.grad`` on the input only: no
parameter ``.grad`` is touched, and the model's state is restored (``preserved_model_state``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ConvscopeError, LayerNotFoundError
from .state import preserved_model_state

__all__ = ["activation_input_gradients"]


def activation_input_gradients(
    adapter: Any, batch: np.ndarray, layer: str, channels: np.ndarray, positions: np.ndarray
) -> np.ndarray:
    """``d act[n, channels[n], positions[n]] / d input[n]`` as ``(N, C_in, *spatial)`` float32.

    Args:
        adapter: a torch :class:`~convscope.adapters.torch.adapter.TorchAdapter`.
        batch: ``(N, C, *spatial)`` float32 input.
        layer: module name (``name#k``: its k-th extra call).
        channels: ``(N,)`` channel per sample; positions: ``(N, d)`` spatial index per sample.
    """
    import torch

    model = adapter.model
    name, _, call = layer.partition("#")
    modules = dict(model.named_modules())
    if name not in modules:
        raise LayerNotFoundError(f"no layer named {name!r}")
    wanted_call = int(call) if call else 0
    captured: list[Any] = []

    def hook(_m: Any, _i: Any, output: Any) -> None:
        captured.append(output if isinstance(output, torch.Tensor) else None)

    with preserved_model_state(model):
        handle = modules[name].register_forward_hook(hook)
        try:
            x = adapter.to_tensor(batch).detach().requires_grad_(True)
            with torch.enable_grad():
                model(x)
                if len(captured) <= wanted_call or captured[wanted_call] is None:
                    raise ConvscopeError(f"layer {layer} produced no tensor in the forward pass")
                act = captured[wanted_call]
                weights = torch.zeros_like(act)
                for n, (c, pos) in enumerate(zip(channels, positions)):
                    index = (n, int(c), *(int(p) for p in pos))
                    weights[index] = 1.0
                (grad,) = torch.autograd.grad(act, x, grad_outputs=weights, allow_unused=True)
        finally:
            handle.remove()
            captured.clear()
    if grad is None:
        return np.zeros(batch.shape, dtype=np.float32)
    return np.ascontiguousarray(grad.detach().to("cpu", dtype=torch.float32).numpy())
