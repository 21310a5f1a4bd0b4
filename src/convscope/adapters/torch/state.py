"""Leave-no-trace guarantees for torch models: snapshot and restore everything a capture could touch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["preserved_model_state", "model_fingerprint", "host_copy", "tensors_digest"]

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


@contextlib.contextmanager
def preserved_model_state(model: Any, *, train_mode: bool = False) -> Iterator[Any]:
    """Put ``model`` in eval (or train) mode for a capture and restore it exactly afterwards.

    Restored in ``finally`` (also when the body raises):
    - the ``training`` flag of every submodule (users mix modes, e.g. frozen BatchNorm);
    - ``requires_grad`` of every parameter;
    - every buffer's values (BatchNorm running statistics, ``num_batches_tracked``), which a
      train-mode forward pass would otherwise update;
    - every hook dictionary: hooks added inside the block are removed, the user's kept, in order;
    - gradients (``.grad``) of every parameter, which a backward pass inside the block would change.

    Yields the model (unchanged object). Raises ``ConvscopeError`` for a model with uninitialised
    lazy layers, whose first forward pass would create weights (a change that cannot be undone).
    """
    import torch
    from torch.nn.parameter import UninitializedParameter

    lazy = [name for name, param in model.named_parameters() if isinstance(param, UninitializedParameter)]
    if lazy:
        from ...errors import ConvscopeError

        raise ConvscopeError(
            f"the model has lazy layers whose weights do not exist yet ({lazy[0]}"
            + (f" and {len(lazy) - 1} more" if len(lazy) > 1 else "")
            + "); a forward pass would create them and so change the model. Run one forward pass "
            "yourself first (model(example_input)), then use convscope"
        )
    modules = list(model.modules())
    training = [m.training for m in modules]
    params = list(model.parameters())
    requires_grad = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    hook_snapshots = [
        [(name, dict(getattr(m, name))) for name in _HOOK_DICTS if isinstance(getattr(m, name, None), dict)]
        for m in modules
    ]
    try:
        model.train(train_mode)
        yield model
    finally:
        for module, flag in zip(modules, training):
            module.training = flag
        for param, flag, grad in zip(params, requires_grad, grads):
            if param.requires_grad != flag:
                param.requires_grad_(flag)
            param.grad = grad
        with torch.no_grad():
            for buffer, saved in buffers:
                if buffer.shape == saved.shape and not torch.equal(buffer, saved):
                    buffer.copy_(saved)
        for module, snapshot in zip(modules, hook_snapshots):
            for name, saved_hooks in snapshot:
                current = getattr(module, name)
                if list(current) != list(saved_hooks):
                    current.clear()
                    current.update(saved_hooks)


def model_fingerprint(model: Any) -> dict[str, Any]:
    """Everything :func:`preserved_model_state` promises to keep, as comparable values (for tests)."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()],
        "hooks": [
            [(name, list(getattr(m, name))) for name in _HOOK_DICTS if isinstance(getattr(m, name, None), dict)]
            for m in model.modules()
        ],
    }


def host_copy(tensor: Any) -> Any:
    """A float32, C-contiguous numpy copy of ``tensor`` on the host (``(N, C, *spatial)`` stays as is).

    Always a copy (later in-place ops on the tensor cannot reach it), whatever the tensor's dtype
    (float16/bfloat16 are upcast; numpy has no bfloat16), device or memory format (channels_last
    tensors come back in the logical NCHW order, contiguous).
    """
    import torch

    return tensor.detach().to("cpu", dtype=torch.float32, copy=True, memory_format=torch.contiguous_format).numpy()


def tensors_digest(named: Any) -> str:
    """:func:`convscope.core.digest.digest_arrays` of ``(name, value)`` pairs (a ``state_dict``'s items).

    Each tensor is hashed as its raw bytes on the host, whatever its dtype (bfloat16 and float8 have
    no numpy dtype: the torch dtype and shape go into the name) or device; quantized tensors as their
    dequantized values, sparse ones dense. Non-tensor entries (a module's extra state) are left out.
    """
    import torch

    from ...core.digest import digest_arrays

    def arrays() -> Any:
        for name, value in named:
            if not isinstance(value, torch.Tensor):
                continue  # a module's extra state: any object, no stable bytes to hash
            tensor = value.detach()
            if tensor.is_quantized:
                tensor = tensor.dequantize()
            if tensor.layout != torch.strided:
                tensor = tensor.to_dense()
            flat = tensor.to("cpu").contiguous().reshape(-1)
            yield f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}", flat.view(torch.uint8).numpy()

    return digest_arrays(arrays())
