"""What the live page shows of a network's inner state as it trains, measured on one step per snapshot.

- The distributions of every weight tensor and of its gradient (TensorBoard's "distributions"): percentiles per
  measured step (of at most ``SAMPLE`` evenly spaced numbers of a tensor), drawn as bands over time.
- The update-to-weight ratio ||W after - W before|| / ||W before|| of the measured step (about 1e-3 is healthy;
  far above, the rate is too high; far below, too low) and the fraction of each ReLU layer's outputs that are zero
  (dead units), from the latest step whose activations were recorded (the training log asks for one every 50
  steps; without a log the live view asks itself, every ``OBSERVE_EVERY`` steps at most: the recording pass is
  the dearest part of a snapshot).
- The probe image's gradients: of its loss with respect to every layer's output (activation gradients, as maps)
  and to the first convolution's kernels (what this image alone would change), through ``Sequential.trace``.
"""
import numpy as np

from cycnn.nn.layers import Conv2D, ReLU
from cycnn.nn.losses import softmax
from cycnn.viz.explore.analysis import b64, rounded

PERCENTILES = (0, 10, 25, 50, 75, 90, 100)
MAX_POINTS = 120  # measured steps kept; beyond, every other one is dropped (the span stays whole)
SAMPLE = 16384  # a larger tensor's percentiles are those of every k-th number: the same bands, a fraction of the cost
MAX_MAPS = 64
OBSERVE_EVERY = 200  # steps: how recent the dead-ReLU figures must be before a measurement records its own


def _percentiles(array):
    flat = np.asarray(array).ravel()
    step = -(-flat.size // SAMPLE)
    return rounded(np.percentile(flat[::step], PERCENTILES), 4)


def relu_outputs(model):
    """Indexes of the layers whose output is a ReLU's: a Conv2D or Dense with relu, or a ReLU layer."""
    return [i for i, layer in enumerate(model.layers)
            if isinstance(layer, ReLU) or getattr(layer, "activation", None) == "relu"]


class Vitals:
    """The measured steps' records, oldest first: ``step``, ``weights`` and ``grads`` (percentiles per weight
    tensor, keyed "layer.W"), ``update_ratio`` (per weight tensor) and ``dead`` (per ReLU layer, the latest
    recorded)."""

    def __init__(self):
        self.history = []
        self._before = None
        self.dead, self.dead_step = {}, None

    def needs_activations(self, step):
        """Whether the coming measured step should record every layer's output (none recent enough)."""
        return self.dead_step is None or step - self.dead_step > OBSERVE_EVERY

    def observe(self, trainer):
        """After any step: keep the dead-ReLU fractions of a step whose activations were recorded."""
        if trainer.step_observed and trainer.activations.outputs:
            outputs, model = trainer.activations.outputs, trainer.model
            self.dead = {model.layer_names()[i]: round(1.0 - np.count_nonzero(outputs[i]) / outputs[i].size, 4)
                         for i in relu_outputs(model)}
            self.dead_step = trainer.state.global_step

    def before_step(self, model):
        self._before = {key: np.array(param) for key, param, _ in model.parameters() if key.endswith(".W")}

    def after_step(self, trainer):
        model, before = trainer.model, self._before
        self._before = None
        record = {"step": trainer.state.global_step, "weights": {}, "grads": {}, "update_ratio": {}, "dead": {}}
        for key, param, grad in model.parameters():
            if key not in (before or {}):
                continue
            record["weights"][key] = _percentiles(param)
            if grad is not None:
                record["grads"][key] = _percentiles(grad)
            norm = float(np.linalg.norm(before[key]))
            if norm > 0:
                record["update_ratio"][key] = float(f"{np.linalg.norm(param - before[key]) / norm:.4g}")
        record["dead"] = dict(self.dead)
        self.history.append(record)
        if len(self.history) > MAX_POINTS:
            self.history = self.history[-1::-2][::-1]  # every other one, keeping the newest
        return record


def probe_gradients(model, outputs, caches, label):
    """The gradients of the probe's cross-entropy loss, from its traced pass (``model.trace`` of the one image:
    ``outputs`` and ``caches``): with respect to each map layer's output (the first ``MAX_MAPS`` channels,
    quantized and signed) and to the first convolution's kernels (summed over the input channels)."""
    dlogits = softmax(np.asarray(outputs[-1], dtype=np.float64))
    dlogits[0, label] -= 1.0
    with np.errstate(all="ignore"):
        _, output_gradients, parameter_gradients = model.trace_backward(dlogits.astype(model.dtype), caches)
    maps = []
    for i, (grad, output) in enumerate(zip(output_gradients, outputs)):
        if output.ndim == 4 and np.isfinite(grad).all():
            shown = np.asarray(grad[0, :MAX_MAPS], dtype=np.float64)
            limit = max(float(np.abs(shown).max()), 1e-30)  # always signed: -limit..limit onto 0..255
            maps.append({"layer": model.layer_names()[i], "shown": int(shown.shape[0]), "h": int(shown.shape[1]),
                         "w": int(shown.shape[2]), "limit": float(f"{limit:.4g}"),
                         "data": b64(np.round((shown / limit + 1) * 127.5))})
    first = next((i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D)), None)
    kernels = None
    if first is not None and np.isfinite(parameter_gradients[first]["W"]).all():
        dW = np.asarray(parameter_gradients[first]["W"], dtype=np.float64).sum(axis=1)
        kernels = {"count": int(dW.shape[0]), "h": int(dW.shape[1]), "w": int(dW.shape[2]),
                   "values": rounded(dW, 4)}
    return {"label": int(label), "maps": maps, "kernels": kernels}
