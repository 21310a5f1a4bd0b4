"""Keras 3 adapters (any backend: torch, TensorFlow, JAX), one module per role.

- :mod:`.adapter`: :class:`~.adapter.KerasAdapter` (layers, kernels, one-pass capture that streams,
  gradients);
- :mod:`.graph`: walking a functional graph in one pass, entering nested sub-models;
- :mod:`.kinds`: THE Keras kind table;
- :mod:`.runtime`: importing Keras, host copies, calling layers as ``Functional`` does;
- :mod:`.grad`: one VJP through a forward pass on each backend (``torch.autograd``,
  ``tf.GradientTape``, ``jax.vjp``);
- :mod:`.unet`: the U-Net backend (graph, node values, gradient shares);
- :mod:`.files`: ``.keras`` / legacy ``.h5`` loading.

Importing this package imports no Keras.
"""
