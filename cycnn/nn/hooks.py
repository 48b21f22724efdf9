"""Observers of a model, built on its hooks: per-layer timing, and every layer's output for some images.

Both attach with ``attach(model)`` and detach with ``detach()``; the model itself keeps no timing or activation
state, so a model nobody observes pays for neither.
"""


class _Observer:
    """An observer holds the handle of the hook it registered, so that it can detach itself."""

    _handle = None

    def detach(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class LayerTimer(_Observer):
    """Seconds per layer of the last forward and backward pass: ``forward[i]``, ``backward[i]``.

    A fused step's time is counted on its first layer and the layers it absorbed show 0
    (``model.fused_into`` names the first).
    """

    def __init__(self):
        self.forward, self.backward = [], []

    def attach(self, model):
        self.forward = [0.0] * len(model.layers)
        self.backward = [0.0] * len(model.layers)
        self._handle = model.register_step_hook(self._record)
        return self

    def _record(self, direction, first, count, seconds):
        times = self.forward if direction == "forward" else self.backward
        times[first] = seconds
        for i in range(first + 1, first + count):
            times[i] = 0.0


class ActivationRecorder(_Observer):
    """While ``armed``, the next forward pass also records every layer's output for its first ``images`` images
    (``outputs``: one array per layer), in an extra layer-by-layer pass in eval mode (``Sequential.layer_outputs``),
    so the pass it observes computes exactly what it would have unobserved. It disarms itself after one pass."""

    def __init__(self, images=None):
        self.images = images
        self.armed = False
        self.outputs = None

    def attach(self, model):
        self._handle = model.register_forward_pre_hook(self._record)
        return self

    def _record(self, model, x):
        if not self.armed:
            return
        self.armed = False
        self.outputs = model.layer_outputs(x if self.images is None else x[:self.images])
