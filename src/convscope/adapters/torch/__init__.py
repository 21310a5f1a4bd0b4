"""PyTorch adapters: eager modules, TorchScript archives and ``torch.export`` (``.pt2``) programs.

- :mod:`.kinds`: THE torch kind table (eager, TorchScript and ``.pt2`` agree);
- :mod:`.state`: ``preserved_model_state`` (the model is left exactly as it was) and host copies;
- :mod:`.files`: TorchScript archives (:class:`~.files.TorchScriptAdapter`);
- :mod:`.export`: ``.pt2`` programs (:class:`~.export.ExportedProgramAdapter`).

The eager adapter and the op tracer still live at ``convscope.adapters.torch_adapter`` and
``convscope.adapters.torch_graph`` (to become ``adapter`` and ``graph`` here). Importing this
package imports no torch.
"""
