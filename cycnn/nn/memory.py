"""How much memory a network needs to train, estimated from its shapes before any array is allocated.

A training step holds, per layer: its weights with their gradients, the optimizer's slots (Adam: two) and one
more copy (a dense layer's transposed weights in the backward pass; the float64 draw when the weights are first
initialized), its output and the output's gradient for the batch, and for a convolution its im2col buffer (every
input patch of the batch: OH*OW*C*kh*kw numbers per image) and the product's rows. The check refuses a network
whose estimate exceeds half the memory available (``BUDGET_FRACTION``), the other half left for what the
estimate does not count (numpy's temporaries, the data set, the rest of the machine): better a clear refusal
before anything is built than the operating system killing the process, or swapping for hours, halfway through.
"""
import math

from cycnn.errors import ConfigError
from cycnn.nn.layers import Conv2D

BUDGET_FRACTION = 0.5


def layer_bytes(model, batch_size, optimizer_slots=2):
    """[(layer index, bytes, what dominates)] for one training step of ``model`` on ``batch_size`` images."""
    item = model.dtype.itemsize
    estimates = []
    for i, (layer, shape) in enumerate(zip(model.layers, model.output_shapes)):
        weights = layer.parameter_count * (3 + optimizer_slots) * item
        activations = 2 * batch_size * math.prod(shape) * item
        parts = {"weights": weights, "outputs": activations}
        if isinstance(layer, Conv2D):
            kh, kw = layer.kernel_size
            pixels = batch_size * shape[1] * shape[2]
            parts["im2col buffer"] = pixels * (layer.in_channels * kh * kw + layer.out_channels) * item
        estimates.append((i, sum(parts.values()), max(parts, key=parts.get)))
    return estimates


def check_fits_in_memory(model, batch_size, available):
    """Refuse (ConfigError, one line naming the largest layer) a network whose training step needs more than
    ``BUDGET_FRACTION`` of ``available`` bytes; ``available`` None (not known) skips the check."""
    if available is None:
        return
    budget = BUDGET_FRACTION * available
    estimates = layer_bytes(model, batch_size)
    total = sum(b for _, b, _ in estimates)
    if total <= budget:
        return
    index, largest, what = max(estimates, key=lambda e: e[1])
    raise ConfigError(f"training this network on batches of {batch_size} needs about {_gb(total)}, more than half "
                      f"of the {_gb(available)} of memory available; layer {model.layer_names()[index]} alone needs "
                      f"{_gb(largest)} (its {what}): use a smaller --batch-size or a smaller layer")


def _gb(n):
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"
