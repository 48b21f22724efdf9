"""Pictures of the network itself: its kernels, the first convolution at work on one image, the feature maps and
the dense layers' activations for that image.

Any architecture works: the functions find the conv, pooling and dense layers themselves (``conv_layers``,
``map_layers``, ``dense_layers``), so a model without pooling, without dense layers or with a separate ReLU layer
is drawn as faithfully as the default stack.
"""
import math
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from cycnn.nn.layers import Conv2D, Dense, MaxPool2D, Normalize, ReLU
from cycnn.nn.losses import softmax
from cycnn.viz.drawing import (MAPS, RIGHT, WEIGHTS, grid_columns, hide_axes, mosaic, percent, show_input,
                               symmetric_limit, top_classes, with_gaps)


def layer_label(model, index):
    return f"layer {model.layer_names()[index]}"


def conv_layers(model):
    return [i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D)]


def map_layers(model):
    """Layers whose output is a stack of 2-D maps: the conv and pooling layers."""
    return [i for i, layer in enumerate(model.layers) if isinstance(layer, (Conv2D, MaxPool2D))]


def dense_layers(model):
    return [i for i, layer in enumerate(model.layers) if isinstance(layer, Dense)]


def _activations(model, image):
    """Every layer's output for one input image (C, H, W), in eval mode."""
    return [a[0] for a in model.layer_outputs(np.asarray(image, dtype=model.dtype)[None])]


# --- the model's weights ------------------------------------------------------------------------------------
def kernel_figure(model, index, grid=False):
    """The kernels of conv layer ``index``: the first conv layer as one small image per output channel (in colour
    for a colour input; summed over the input channels for any other number), deeper layers (or any with
    ``grid``) as a grid with one row per input channel and one column per output channel."""
    if index == conv_layers(model)[0] and not grid:
        return _first_kernels_figure(model, index)
    return _deeper_kernels_figure(model, index)


def _first_kernels_figure(model, index):
    """The first conv layer's kernels: they look at the image itself, so each one is drawn as a little image."""
    layer = model.layers[index]
    weights = np.asarray(layer.params["W"], dtype=np.float64)
    out_channels, in_channels, kh, kw = weights.shape
    limit = symmetric_limit(weights)
    colour = in_channels == 3  # a colour kernel as a colour picture: mid-gray is 0, a colour its weights' signs
    tiles = (weights / limit + 1).transpose(0, 2, 3, 1) / 2 if colour else weights.sum(axis=1)
    columns = min(out_channels, 8 if out_channels <= 32 else 16)
    rows = math.ceil(out_channels / columns)
    figure = Figure(figsize=(1.2 * columns + 1.4, 1.3 * rows + 1.0), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= out_channels:
            ax.set_visible(False)
            continue
        shown = ax.imshow(np.clip(tiles[k], 0, 1) if colour else tiles[k], cmap=None if colour else WEIGHTS,
                          vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"channel {k}", fontsize=8)
    if colour:
        figure.suptitle(f"The kernels of {layer_label(model, index)}: {out_channels} colour kernels of {kh}×{kw}\n"
                        "(each drawn in the colour it responds to: mid-gray is a weight of 0 in every channel, a "
                        "bright red pixel a positive red weight, a dark one a negative)", fontsize=11)
        return figure
    summed = f", summed over its {in_channels} input channels" if in_channels > 1 else ""
    figure.suptitle(f"The kernels of {layer_label(model, index)}: {out_channels} kernels of {kh}×{kw}{summed}"
                    "\n(red: the output rises with the pixel's brightness, blue: it falls)", fontsize=11)
    figure.colorbar(shown, ax=axes, shrink=0.8, label="weight")
    return figure


def _deeper_kernels_figure(model, index):
    """A deeper conv layer's kernels as one mosaic: a cell per (input channel, output channel) pair."""
    layer = model.layers[index]
    weights = np.asarray(layer.params["W"], dtype=np.float64)
    out_channels, in_channels, kh, kw = weights.shape
    limit = symmetric_limit(weights)
    tiles = weights.transpose(1, 0, 2, 3).reshape(-1, kh, kw)
    image, _ = mosaic(tiles, out_channels, min_size=8)
    cell_h, cell_w = (image.shape[0] + 1) // in_channels, (image.shape[1] + 1) // out_channels
    height, width = image.shape
    scale = min(13 / width, 9 / height)
    figure = Figure(figsize=(max(width * scale, 5) + 1.6, max(height * scale, 3) + 1.2), layout="constrained")
    ax = figure.add_subplot()
    shown = ax.imshow(image, cmap=with_gaps(WEIGHTS, "#afb8c1"), vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(f"The kernels of {layer_label(model, index)}: {out_channels} kernels of {in_channels}×{kh}×{kw}\n"
                 f"column = output channel, row = input channel, each cell one {kh}×{kw} slice", fontsize=11)
    step = max(1, 2 ** math.ceil(math.log2(max(out_channels, in_channels) / 16)))
    ax.set_xticks([c * cell_w + (cell_w - 2) / 2 for c in range(0, out_channels, step)],
                  [str(c) for c in range(0, out_channels, step)], fontsize=8)
    ax.set_yticks([r * cell_h + (cell_h - 2) / 2 for r in range(0, in_channels, step)],
                  [str(r) for r in range(0, in_channels, step)], fontsize=8)
    ax.set_xlabel("output channel")
    ax.set_ylabel("input channel")
    ax.tick_params(length=0)
    figure.colorbar(shown, ax=ax, shrink=0.8, label="weight")
    return figure


# --- one image going through the network --------------------------------------------------------------------
@dataclass
class _ConvolutionSteps:
    """What the first conv layer does to one image, step by step."""

    index: int  # the conv layer's position in the model
    layer: Conv2D
    layer_input: np.ndarray  # (C, H, W): the image, or the output of the layers before the conv layer
    before: np.ndarray  # the linear maps: input ∗ kernel + bias
    after: np.ndarray  # the maps after the ReLU (``before`` if there is none)
    relu: bool
    pool: MaxPool2D | None  # the max-pooling layer that follows, if one does
    pooled: np.ndarray | None  # its output
    picture: np.ndarray | None  # the image itself when the conv sees it (perhaps normalized): drawn as it is


def _convolution_steps(model, image):
    """The first conv layer's work on ``image``, its linear part computed again in float64 (the layer may apply
    its ReLU itself, or a ReLU layer may follow it)."""
    index = conv_layers(model)[0]
    layer = model.layers[index]
    outputs = _activations(model, image)
    layer_input = np.asarray(image) if index == 0 else outputs[index - 1]
    linear = Conv2D(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                    activation=None, dtype=np.float64)
    linear.params = {k: np.asarray(v, dtype=np.float64) for k, v in layer.params.items()}
    before = linear(np.asarray(layer_input, dtype=np.float64)[None])[0]
    relu_layer = index + 1 < len(model.layers) and isinstance(model.layers[index + 1], ReLU)
    relu = layer.activation == "relu" or relu_layer
    pool_at = index + 2 if relu_layer else index + 1
    pool = model.layers[pool_at] if pool_at < len(model.layers) else None
    if not isinstance(pool, MaxPool2D):
        pool = None
    sees_picture = all(isinstance(earlier, Normalize) for earlier in model.layers[:index])
    return _ConvolutionSteps(index, layer, layer_input, before, np.maximum(before, 0) if relu else before, relu,
                             pool, outputs[pool_at] if pool is not None else None,
                             np.asarray(image) if sees_picture else None)


def _most_varied_channels(steps, count):
    """The ``count`` channels whose maps vary most, among those with something left after the ReLU."""
    spread = steps.before.reshape(len(steps.before), -1).std(axis=1)
    peaks = steps.after.reshape(len(steps.after), -1).max(axis=1)
    spread[peaks < 0.25 * peaks.max()] -= spread.max() + 1
    return np.argsort(-spread, kind="stable")[:min(count, len(steps.before))]


def _convolution_titles(steps):
    """Each column's title: the step it shows and the size it makes."""
    layer_input, before, pool, pooled = steps.layer_input, steps.before, steps.pool, steps.pooled
    kh, kw = steps.layer.params["W"].shape[2:]
    channel_note = f" (channel 0 of {steps.layer.in_channels})" if steps.layer.in_channels > 1 else ""
    return {"input": f"input {layer_input.shape[-2]}×{layer_input.shape[-1]}",
            "kernel": f"∗ kernel {kh}×{kw}{channel_note}",
            "feature map": f"+ bias = map {before.shape[1]}×{before.shape[2]}",
            "after ReLU": "→ ReLU: max(0, x)",
            "after max-pool": (f"→ max-pool {pool.pool_size[0]}×{pool.pool_size[1]}: "
                               f"{pooled.shape[1]}×{pooled.shape[2]}" if pooled is not None else "")}


def _draw_kernel(ax, kernel, limit, channel):
    """One kernel (of its first input channel), with its weights written in when it is small enough to read."""
    ax.imshow(kernel, cmap=WEIGHTS, vmin=-limit, vmax=limit, interpolation="nearest")
    if kernel.size <= 25:
        for (r, c), v in np.ndenumerate(kernel):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(v) > 0.6 * limit else "black")
    hide_axes(ax)
    ax.set_ylabel(f"channel {channel}", fontsize=10)
    ax.yaxis.label.set_visible(True)


def _draw_convolution_row(cells, steps, k, kernel_limit, map_limit, positive_max):
    """Channel ``k``'s row, one cell per step; returns the images of the feature map and of the last non-negative
    step (None without one), for the colour bars."""
    if steps.picture is not None:
        show_input(cells["input"], steps.picture)
    else:
        cells["input"].imshow(steps.layer_input[0], cmap=MAPS, interpolation="nearest")
        hide_axes(cells["input"])
    _draw_kernel(cells["kernel"], np.asarray(steps.layer.params["W"][k, 0], dtype=np.float64), kernel_limit, k)
    shown = cells["feature map"].imshow(steps.before[k], cmap=WEIGHTS, vmin=-map_limit, vmax=map_limit,
                                        interpolation="nearest")
    hide_axes(cells["feature map"])
    positive = None
    for name, maps in (("after ReLU", steps.after), ("after max-pool", steps.pooled)):
        if name in cells:
            positive = cells[name].imshow(maps[k], cmap=MAPS, vmin=0, vmax=positive_max, interpolation="nearest")
            hide_axes(cells[name])
    return shown, positive


def convolution_figure(model, image, caption, kernels=4):
    """The first conv layer at work on one image: for its ``kernels`` most active channels, the image, the kernel,
    the feature map it makes (image ∗ kernel + bias), the map after ReLU and after the max-pooling that follows."""
    steps = _convolution_steps(model, image)
    chosen = _most_varied_channels(steps, kernels)
    columns = ["input", "kernel", "feature map"] + (["after ReLU"] if steps.relu else []) + (
        ["after max-pool"] if steps.pooled is not None else [])
    figure = Figure(figsize=(2.6 * len(columns) + 0.8, 2.5 * len(chosen) + 1.0), layout="constrained")
    axes = figure.subplots(len(chosen), len(columns), squeeze=False)
    limits = {"kernel_limit": symmetric_limit(steps.layer.params["W"][chosen]),
              "map_limit": symmetric_limit(steps.before[chosen]),
              "positive_max": max(float(steps.after[chosen].max()), 1e-12)}
    for row, k in enumerate(chosen):
        shown, positive = _draw_convolution_row(dict(zip(columns, axes[row])), steps, k, **limits)
    titles = _convolution_titles(steps)
    for name, ax in zip(columns, axes[0]):
        ax.set_title(titles[name], fontsize=10)
    figure.colorbar(shown, ax=axes[:, columns.index("feature map")], shrink=0.6, location="bottom",
                    label="map value (red +, blue −)")
    if positive is not None:
        later = [columns.index(name) for name in ("after ReLU", "after max-pool") if name in columns]
        figure.colorbar(positive, ax=axes[:, later[0]:later[-1] + 1], shrink=0.6, location="bottom",
                        label="value after " + " and ".join(columns[c][6:] for c in later) + " (black: 0)")
    figure.suptitle(f"The convolution of {layer_label(model, steps.index)} on {caption}: the {len(chosen)} "
                    "channels whose maps vary most", fontsize=12)
    return figure


def feature_map_figure(model, image, index, caption):
    """Every channel of conv or pooling layer ``index``'s output for one image, on one colour scale per layer
    (so a channel that stays dark is one this image does not excite)."""
    maps = _activations(model, image)[index]
    channels, h, w = maps.shape
    columns = grid_columns(channels, h, w)
    tiled, positions = mosaic(np.asarray(maps, dtype=np.float64), columns, min_size=24)
    height, width = tiled.shape
    scale = min(11 / width, 7 / height)
    figure = Figure(figsize=(max(width * scale, 4) + 3.2, max(height * scale, 2.2) + 1.2), layout="constrained")
    input_ax, map_ax = figure.subplots(1, 2, width_ratios=[1, 4.5])
    show_input(input_ax, image, caption)
    if maps.min() < 0:
        shown = map_ax.imshow(tiled, cmap=with_gaps(WEIGHTS), vmin=-symmetric_limit(maps),
                              vmax=symmetric_limit(maps), interpolation="nearest")
    else:
        shown = map_ax.imshow(tiled, cmap=with_gaps(MAPS, "white"), vmin=0, vmax=max(float(maps.max()), 1e-12),
                              interpolation="nearest")
    if channels <= 64:
        for k, (top, left) in enumerate(positions):
            map_ax.text(left + 0.5, top + 0.5, str(k), color="white", fontsize=7, va="top", ha="left",
                        bbox={"boxstyle": "square,pad=0.15", "facecolor": "black", "alpha": 0.55, "linewidth": 0})
    hide_axes(map_ax)
    active = float(np.mean(maps > 0))
    map_ax.set_title(f"{layer_label(model, index)}: {channels} feature maps of {h}×{w} "
                     f"({active:.0%} of the values are above 0)", fontsize=11)
    figure.colorbar(shown, ax=map_ax, shrink=0.8, label="activation")
    return figure


def _draw_probabilities(ax, model, index, logits):
    """The network's output as class probabilities (its softmax), the predicted class in green."""
    probs = softmax(logits[None])[0]
    best = int(probs.argmax())
    colors = [RIGHT if k == best else "#8c959f" for k in range(len(probs))]
    ax.bar(range(len(probs)), probs, color=colors)
    ax.set_xticks(range(len(probs)), model.class_names)
    ax.set_ylim(0, 1.08)
    for k, p in enumerate(probs):
        if p >= (1e-4 if len(probs) <= 12 else 0.01):
            ax.text(k, p + 0.02, percent(p), ha="center", fontsize=8)
    ax.set_xlabel("class")
    ax.set_ylabel("probability")
    first, *runners_up = top_classes(probs, model.class_names)
    ax.set_title(f"{layer_label(model, index)} → softmax: predicted {first}"
                 + (f"; runners-up {', '.join(runners_up)}" if runners_up else ""), fontsize=11)


def dense_figure(model, image, caption):
    """The output of every hidden dense layer for one image (after its ReLU) and, last, the class probabilities
    (the softmax of the network's output)."""
    outputs = _activations(model, image)
    last = len(model.layers) - 1
    indices = [i for i in dense_layers(model) if i != last] + [last]
    figure = Figure(figsize=(12, 1.4 + 2.3 * len(indices)), layout="constrained")
    grid = figure.add_gridspec(len(indices), 2, width_ratios=[1, 5])
    show_input(figure.add_subplot(grid[:, 0]), image, caption)
    for row, i in enumerate(indices):
        ax = figure.add_subplot(grid[row, 1])
        values = np.asarray(outputs[i], dtype=np.float64)
        if i == last:
            _draw_probabilities(ax, model, i, values)
            continue
        ax.bar(range(len(values)), values, width=1.0, color="#0969da")
        ax.set_xlim(-0.5, len(values) - 0.5)
        ax.set_xlabel("unit")
        ax.set_ylabel("activation")
        ax.set_title(f"{layer_label(model, i)}: {len(values)} units, {np.mean(values > 0):.0%} active", fontsize=11)
    return figure
