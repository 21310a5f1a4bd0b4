"""ONNX adapters (onnxruntime on CPU), one module per role.

- :mod:`.adapter`: :class:`~.adapter.OnnxAdapter` (layers, kernels, one-run capture);
- :mod:`.graph`: the dataflow graph and node values of the U-Net view (no autograd: no gradients);
- :mod:`.kinds`: THE ONNX kind table;
- :mod:`.files`: reading ``.onnx`` files safely (external data checked before any byte is read).

Importing this package imports no onnx.
"""
