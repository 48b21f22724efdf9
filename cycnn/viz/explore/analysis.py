"""What the explorer computes for one image: every layer's response, why the answer (saliency, Grad-CAM,
occlusion) and one unit's arithmetic with the model's real numbers.

Everything goes through ``Sequential.trace`` and ``trace_backward``, the layers' pure functions: nothing is stored
on the model, so any number of requests may run at once against one model, and none sees another's activations.
One traced pass serves the layers' outputs, the saliency map and Grad-CAM (one backward pass gives the gradient at
the input and at every layer's output).
"""
import base64

import numpy as np

from cycnn.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from cycnn.nn.losses import softmax
from cycnn.train.log import quantize_maps

MAX_CONTRIBUTIONS = 12  # a dense unit's largest inputs shown
OCCLUSION_FILL = 0.0  # an occluding patch is background (no ink)


def b64(levels):
    return base64.b64encode(np.ascontiguousarray(levels, dtype=np.uint8).tobytes()).decode("ascii")


def rounded(values, digits=5):
    """A float array as a flat list of numbers with ``digits`` significant digits (JSON-sized)."""
    return [float(f"{v:.{digits}g}") for v in np.asarray(values, dtype=np.float64).ravel()]


def encode_maps(maps):
    """Float maps (any shape) -> {"shape", "signed", "limit", "data"}: uint8 levels, base64 (see ``quantize_maps``)."""
    levels, signed, limit = quantize_maps(maps)
    return {"shape": list(maps.shape), "signed": signed, "limit": float(f"{limit:.5g}"), "data": b64(levels)}


def layer_kind(layer):
    """How the page shows a layer's output: as maps, as a vector, or as the same numbers as the layer before."""
    if isinstance(layer, (Flatten, Dropout)):
        return "same"  # a reshape, and (in eval mode) the identity: the previous layer's numbers
    return "vector" if isinstance(layer, Dense) else "maps"


def describe(model):
    """The layers as the page lists them: name, type, output shape and what a detail view needs."""
    described = []
    for i, (layer, shape) in enumerate(zip(model.layers, model.output_shapes)):
        entry = {"index": i, "name": model.layer_names()[i], "type": type(layer).__name__, "shape": list(shape),
                 "kind": layer_kind(layer), "detail": isinstance(layer, (Conv2D, MaxPool2D, Dense))}
        entry.update({k: v for k, v in layer.get_config().items() if k in ("kernel_size", "stride", "padding",
                                                                           "pool_size", "activation")})
        described.append(entry)
    return described


def respond(model, x, target=None, explain=False):
    """The answer for one input x (C, H, W): probabilities, every layer's output, and with ``explain`` the saliency
    map and Grad-CAM for class ``target`` (default: the predicted class)."""
    outputs, caches = model.trace(x[None].astype(model.dtype, copy=False))
    probabilities = softmax(np.asarray(outputs[-1], dtype=np.float64))[0]
    predicted = int(probabilities.argmax())
    layers = []
    for i, (layer, output) in enumerate(zip(model.layers, outputs)):
        entry = {"index": i, "name": model.layer_names()[i], "shape": list(output.shape[1:]), "kind": layer_kind(layer)}
        if entry["kind"] == "vector":
            entry["values"] = rounded(output[0], 4)
        elif entry["kind"] == "maps":
            entry.update(encode_maps(output[0]))
        layers.append(entry)
    result = {"class_index": predicted, "label": model.class_names[predicted],
              "probabilities": {name: float(p) for name, p in zip(model.class_names, probabilities)},
              "probability_list": [float(p) for p in probabilities], "layers": layers}
    if explain:
        target = predicted if target is None else target
        result.update(explanations(model, outputs, caches, target), target=target)
    return result, outputs


def explanations(model, outputs, caches, target):
    """Saliency (|d score / d input|, the largest over channels) and Grad-CAM on the last convolution."""
    dlogits = np.zeros_like(outputs[-1])
    dlogits[0, target] = 1.0  # the class's score (its logit): softmax would mix in every other class
    input_gradient, output_gradients, _ = model.trace_backward(dlogits, caches)
    saliency = np.abs(np.asarray(input_gradient[0], dtype=np.float64)).max(axis=0)
    result = {"saliency": encode_maps(saliency)}
    conv = last_convolution(model)
    if conv is None:
        result["gradcam"] = None
        return result
    maps = np.asarray(outputs[conv][0], dtype=np.float64)
    weights = np.asarray(output_gradients[conv][0], dtype=np.float64).mean(axis=(1, 2))
    cam = np.maximum(np.tensordot(weights, maps, axes=1), 0)
    result["gradcam"] = {"layer": conv, "name": model.layer_names()[conv], **encode_maps(cam)}
    return result


def last_convolution(model):
    """The index of the last convolution's activated output (the Conv2D, or the ReLU layer right after it), or
    None: the maps Grad-CAM weighs."""
    for i in range(len(model.layers) - 1, -1, -1):
        if isinstance(model.layers[i], Conv2D):
            follows = i + 1 < len(model.layers) and isinstance(model.layers[i + 1], ReLU)
            return i + 1 if follows else i
    return None


def occlusion(shared, x, target, patch=None, stride=2):
    """How the probability of ``target`` falls when a square patch of the input is hidden, averaged per pixel over
    the patches that cover it: (H, W), positive where hiding the pixel costs the answer. ``shared`` is the
    ``SharedModel`` whose fused path runs the masked copies as one batch."""
    c, h, w = x.shape
    patch = patch or max(3, round(min(h, w) / 5))
    corners = [(t, left) for t in range(0, h - patch + 1, stride) for left in range(0, w - patch + 1, stride)]
    batch = np.repeat(x[None], len(corners) + 1, axis=0).astype(shared.model.dtype)
    for k, (t, left) in enumerate(corners, start=1):  # batch[0] stays whole: the probability to fall from
        batch[k, :, t:t + patch, left:left + patch] = OCCLUSION_FILL
    probs = shared.probabilities(batch)[:, target]
    drop, count = np.zeros((h, w)), np.zeros((h, w))
    for (t, left), p in zip(corners, probs[1:]):
        drop[t:t + patch, left:left + patch] += probs[0] - p
        count[t:t + patch, left:left + patch] += 1
    drop = np.divide(drop, count, out=np.zeros_like(drop), where=count > 0)
    return {"patch": patch, "stride": stride, "base": float(probs[0]), "target": int(target), **encode_maps(drop)}


def detail(model, x, outputs, index, unit):
    """One unit's arithmetic at layer ``index``: for a convolution, its input, kernel, bias and output map (the
    page forms the products and the sum for any position from these real numbers); for a pooling layer, the
    channel's input and output; for a dense unit, its largest contributions."""
    layer = model.layers[index]
    source = x if index == 0 else np.asarray(outputs[index - 1][0])
    if isinstance(layer, Conv2D):
        kernel = np.asarray(layer.params["W"][unit])
        return {"type": "conv", "layer": index, "unit": unit, "stride": layer.stride, "padding": layer.padding,
                "relu": layer.activation == "relu", "bias": float(layer.params["b"][unit]),
                "input": {"shape": list(source.shape), "values": rounded(source)},
                "kernel": {"shape": list(kernel.shape), "values": rounded(kernel)},
                "output": {"shape": list(outputs[index].shape[2:]), "values": rounded(outputs[index][0, unit])}}
    if isinstance(layer, MaxPool2D):
        return {"type": "pool", "layer": index, "unit": unit, "pool_size": list(layer.pool_size),
                "stride": list(layer.stride),
                "input": {"shape": list(source.shape[1:]), "values": rounded(source[unit])},
                "output": {"shape": list(outputs[index].shape[2:]), "values": rounded(outputs[index][0, unit])}}
    return dense_detail(model, source, outputs, index, unit)


def dense_detail(model, source, outputs, index, unit):
    """A dense unit: bias + sum of input x weight, its largest terms by size, and where each input came from."""
    layer = model.layers[index]
    inputs = np.asarray(source, dtype=np.float64).ravel()
    weights = np.asarray(layer.params["W"][:, unit], dtype=np.float64)
    products = inputs * weights
    top = np.argsort(-np.abs(products), kind="stable")[:MAX_CONTRIBUTIONS]
    origin = _flattened_from(model, index)
    contributions = [{"input": int(i), "value": float(f"{inputs[i]:.5g}"), "weight": float(f"{weights[i]:.5g}"),
                      "product": float(f"{products[i]:.5g}"),
                      "position": [int(v) for v in np.unravel_index(i, origin)] if origin else None} for i in top]
    pre = float(products.sum() + layer.params["b"][unit])
    return {"type": "dense", "layer": index, "unit": unit, "bias": float(layer.params["b"][unit]),
            "inputs": int(inputs.size), "sum_positive": float(products[products > 0].sum()),
            "sum_negative": float(products[products < 0].sum()), "pre_activation": pre,
            "relu": layer.activation == "relu", "output": float(outputs[index][0, unit]),
            "contributions": contributions}


def _flattened_from(model, index):
    """The (C, H, W) shape a dense layer's inputs were flattened from, or None when they were a vector already."""
    shape = model.input_shape if index == 0 else model.output_shapes[index - 1]
    for i in range(index - 1, -1, -1):
        if isinstance(model.layers[i], Flatten):
            return model.input_shape if i == 0 else model.output_shapes[i - 1]
        if not isinstance(model.layers[i], Dropout):
            break
    return None if len(shape) == 1 else shape
