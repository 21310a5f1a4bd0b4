"""PyTorch adapters: eager modules, TorchScript archives and ``torch.export`` (``.pt2``) programs.

- :mod:`.adapter`: :class:`~.adapter.TorchAdapter` for eager modules (layers, kernels, one-pass
  capture that streams, gradients);
- :mod:`.graph`: the op tracer (one eager forward pass -> dataflow graph, node values, per-merge
  gradients);
- :mod:`.unet`: the U-Net backend on the tracer (:class:`~.unet.TorchUNetBackend`, gradient shares);
- :mod:`.kinds`: THE torch kind table (eager, TorchScript and ``.pt2`` agree);
- :mod:`.state`: ``preserved_model_state`` (the model is left exactly as it was) and host copies;
- :mod:`.files`: TorchScript archives (:class:`~.files.TorchScriptAdapter`);
- :mod:`.export`: ``.pt2`` programs (:class:`~.export.ExportedProgramAdapter`);
- :mod:`.rf`: gradients of a layer's activation with respect to the input (receptive fields).

Importing this package imports no torch.
"""
