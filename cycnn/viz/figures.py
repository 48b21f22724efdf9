"""Pictures of a model and its training: kernels, the convolution at work, feature maps, activations, predictions,
the confusion matrix and the training curves.

Each ``*_figure`` function draws one picture and returns a matplotlib ``Figure``, built without pyplot (so nothing
needs a display and no global state is touched); ``png_bytes`` renders one to PNG. ``pictures`` lists every picture
that fits a model, its test results and its training log, which is what ``cycnn visualize`` writes and ``cycnn
report`` embeds. Any architecture works: the functions find the conv, pooling and dense layers themselves.
"""
import io
import math
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from cycnn.nn.layers import Conv2D, Dense, MaxPool2D, ReLU
from cycnn.nn.losses import softmax
from cycnn.train.evaluation import confusion_matrix
from cycnn.train.log import latest

DPI = 100
WEIGHTS = "RdBu_r"  # diverging: positive weights red, negative blue, zero white
MAPS = "magma"  # non-negative activations: black (0) to pale yellow (largest)
INK = "gray_r"  # input digits: dark ink on white paper
RIGHT, WRONG = "#1a7f37", "#cf222e"


@dataclass
class Picture:
    """One figure to write: ``name`` is its file stem; ``title`` and ``caption`` describe it on a page."""

    name: str
    title: str
    caption: str
    figure: Figure


def png_bytes(figure):
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


# --- helpers ------------------------------------------------------------------------------------------------
def _cmap(name, gaps="#d0d7de"):
    """A colormap whose NaN cells (the gaps between tiles) are drawn in ``gaps`` (light grey by default)."""
    return colormaps[name].with_extremes(bad=gaps)


def _grid_columns(n, tile_h, tile_w, aspect=1.6):
    """Columns for n tiles so that the mosaic is about ``aspect`` times as wide as it is high."""
    return max(1, min(n, round(math.sqrt(n * aspect * tile_h / tile_w))))


def _mosaic(tiles, columns, gap=1, min_size=1):
    """Tiles (n, h, w) laid out in rows of ``columns``, separated by NaN gaps; returns (image, positions).

    Tiles smaller than ``min_size`` pixels are enlarged by a whole factor so that the gaps stay thin beside them.
    """
    factor = max(1, math.ceil(min_size / max(tiles.shape[1:])))
    tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    n, h, w = tiles.shape
    rows = math.ceil(n / columns)
    image = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan)
    positions = []
    for k in range(n):
        r, c = divmod(k, columns)
        top, left = r * (h + gap), c * (w + gap)
        image[top:top + h, left:left + w] = tiles[k]
        positions.append((top, left))
    return image, positions


def _symmetric(values):
    limit = float(np.nanmax(np.abs(values))) if np.size(values) else 1.0
    return limit if limit > 0 else 1.0


def _display(image):
    """A model input (C, H, W) as something imshow draws: the single channel, or an RGB image."""
    image = np.asarray(image, dtype=np.float64)
    if image.shape[0] == 1:
        return image[0]
    if image.shape[0] == 3:
        return np.clip(image.transpose(1, 2, 0), 0, 1)
    return image.mean(axis=0)


def _show_input(ax, image, title=None):
    ax.imshow(_display(image), cmap=INK, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def _hide_axes(ax):
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _activations(model, image):
    """Every layer's output for one input image (C, H, W), in eval mode."""
    return [a[0] for a in model.layer_outputs(np.asarray(image, dtype=model.dtype)[None])]


def layer_label(model, index):
    return f"layer {model.layer_names()[index]}"


def conv_layers(model):
    return [i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D)]


def map_layers(model):
    """Layers whose output is a stack of 2-D maps: the conv and pooling layers."""
    return [i for i, layer in enumerate(model.layers) if isinstance(layer, (Conv2D, MaxPool2D))]


def dense_layers(model):
    return [i for i, layer in enumerate(model.layers) if isinstance(layer, Dense)]


# --- the model's weights ------------------------------------------------------------------------------------
def kernel_figure(model, index):
    """The kernels of conv layer ``index``: the first conv layer as one small image per output channel (summed
    over the input channels if there are several), deeper layers as a grid with one row per input channel and one
    column per output channel."""
    layer = model.layers[index]
    weights = np.asarray(layer.params["W"], dtype=np.float64)
    out_channels, in_channels, kh, kw = weights.shape
    limit = _symmetric(weights)
    first = index == conv_layers(model)[0]
    if first:
        tiles = weights.sum(axis=1)
        columns = min(out_channels, 8 if out_channels <= 32 else 16)
        rows = math.ceil(out_channels / columns)
        figure = Figure(figsize=(1.2 * columns + 1.4, 1.3 * rows + 1.0), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False)
        for k, ax in enumerate(axes.flat):
            if k >= out_channels:
                ax.set_visible(False)
                continue
            shown = ax.imshow(tiles[k], cmap=WEIGHTS, vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"channel {k}", fontsize=8)
        summed = f", summed over its {in_channels} input channels" if in_channels > 1 else ""
        figure.suptitle(f"The kernels of {layer_label(model, index)}: {out_channels} kernels of {kh}×{kw}{summed}"
                        "\n(red: the output rises with the pixel's brightness, blue: it falls)", fontsize=11)
        figure.colorbar(shown, ax=axes, shrink=0.8, label="weight")
        return figure
    tiles = weights.transpose(1, 0, 2, 3).reshape(-1, kh, kw)
    image, _ = _mosaic(tiles, out_channels, min_size=8)
    cell_h, cell_w = (image.shape[0] + 1) // in_channels, (image.shape[1] + 1) // out_channels
    height, width = image.shape
    scale = min(13 / width, 9 / height)
    figure = Figure(figsize=(max(width * scale, 5) + 1.6, max(height * scale, 3) + 1.2), layout="constrained")
    ax = figure.add_subplot()
    shown = ax.imshow(image, cmap=_cmap(WEIGHTS, "#afb8c1"), vmin=-limit, vmax=limit, interpolation="nearest")
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
def convolution_figure(model, image, caption, kernels=4):
    """The first conv layer at work on one image: for its ``kernels`` most active channels, the image, the kernel,
    the feature map it makes (image ∗ kernel + bias), the map after ReLU and after the max-pooling that follows."""
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
    after = np.maximum(before, 0) if relu else before
    pool_at = index + 2 if relu_layer else index + 1
    pool_layer = model.layers[pool_at] if pool_at < len(model.layers) else None
    pooled = outputs[pool_at] if isinstance(pool_layer, MaxPool2D) else None
    # the channels whose maps vary most, among those with something left after the ReLU
    spread = before.reshape(len(before), -1).std(axis=1)
    peaks = after.reshape(len(after), -1).max(axis=1)
    spread[peaks < 0.25 * peaks.max()] -= spread.max() + 1
    chosen = np.argsort(-spread, kind="stable")[:min(kernels, len(before))]

    columns = ["input", "kernel", "feature map", "after ReLU", "after max-pool"]
    if not relu:
        columns.remove("after ReLU")
    if pooled is None:
        columns.remove("after max-pool")
    figure = Figure(figsize=(2.6 * len(columns) + 0.8, 2.5 * len(chosen) + 1.0), layout="constrained")
    axes = figure.subplots(len(chosen), len(columns), squeeze=False)
    kernel_limit = _symmetric(layer.params["W"][chosen])
    map_limit = _symmetric(before[chosen])
    positive_max = max(float(after[chosen].max()), 1e-12)
    channel_note = f" (channel 0 of {layer.in_channels})" if layer.in_channels > 1 else ""
    for row, k in enumerate(chosen):
        cells = dict(zip(columns, axes[row]))
        if index == 0:
            _show_input(cells["input"], layer_input)
        else:
            cells["input"].imshow(layer_input[0], cmap=MAPS, interpolation="nearest")
            _hide_axes(cells["input"])
        kernel = np.asarray(layer.params["W"][k, 0], dtype=np.float64)
        ax = cells["kernel"]
        ax.imshow(kernel, cmap=WEIGHTS, vmin=-kernel_limit, vmax=kernel_limit, interpolation="nearest")
        if kernel.size <= 25:
            for (r, c), v in np.ndenumerate(kernel):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if abs(v) > 0.6 * kernel_limit else "black")
        _hide_axes(ax)
        ax.set_ylabel(f"channel {k}", fontsize=10)
        ax.yaxis.label.set_visible(True)
        shown = cells["feature map"].imshow(before[k], cmap=WEIGHTS, vmin=-map_limit, vmax=map_limit,
                                            interpolation="nearest")
        _hide_axes(cells["feature map"])
        if "after ReLU" in cells:
            cells["after ReLU"].imshow(after[k], cmap=MAPS, vmin=0, vmax=positive_max, interpolation="nearest")
            _hide_axes(cells["after ReLU"])
        if "after max-pool" in cells:
            cells["after max-pool"].imshow(pooled[k], cmap=MAPS, vmin=0, vmax=positive_max,
                                           interpolation="nearest")
            _hide_axes(cells["after max-pool"])
        if row == 0:
            titles = {"input": f"input {layer_input.shape[-2]}×{layer_input.shape[-1]}",
                      "kernel": f"∗ kernel {kernel.shape[0]}×{kernel.shape[1]}{channel_note}",
                      "feature map": f"+ bias = map {before.shape[1]}×{before.shape[2]}",
                      "after ReLU": "→ ReLU: max(0, x)",
                      "after max-pool": (f"→ max-pool {pool_layer.pool_size[0]}×{pool_layer.pool_size[1]}: "
                                         f"{pooled.shape[1]}×{pooled.shape[2]}" if pooled is not None else "")}
            for name, ax in cells.items():
                ax.set_title(titles[name], fontsize=10)
    figure.colorbar(shown, ax=axes[:, columns.index("feature map")], shrink=0.6, location="bottom",
                    label="map value (red +, blue −)")
    figure.suptitle(f"The convolution of {layer_label(model, index)} on {caption}: the {len(chosen)} channels "
                    "whose maps vary most", fontsize=12)
    return figure


def feature_map_figure(model, image, index, caption):
    """Every channel of conv or pooling layer ``index``'s output for one image, on one colour scale per layer
    (so a channel that stays dark is one this image does not excite)."""
    maps = _activations(model, image)[index]
    channels, h, w = maps.shape
    columns = _grid_columns(channels, h, w)
    mosaic, positions = _mosaic(np.asarray(maps, dtype=np.float64), columns, min_size=24)
    height, width = mosaic.shape
    scale = min(11 / width, 7 / height)
    figure = Figure(figsize=(max(width * scale, 4) + 3.2, max(height * scale, 2.2) + 1.2), layout="constrained")
    input_ax, map_ax = figure.subplots(1, 2, width_ratios=[1, 4.5])
    _show_input(input_ax, image, caption)
    if maps.min() < 0:
        shown = map_ax.imshow(mosaic, cmap=_cmap(WEIGHTS), vmin=-_symmetric(maps), vmax=_symmetric(maps),
                              interpolation="nearest")
    else:
        shown = map_ax.imshow(mosaic, cmap=_cmap(MAPS, "white"), vmin=0, vmax=max(float(maps.max()), 1e-12),
                              interpolation="nearest")
    if channels <= 64:
        for k, (top, left) in enumerate(positions):
            map_ax.text(left + 0.5, top + 0.5, str(k), color="white", fontsize=7, va="top", ha="left")
    _hide_axes(map_ax)
    active = float(np.mean(maps > 0))
    map_ax.set_title(f"{layer_label(model, index)}: {channels} feature maps of {h}×{w} "
                     f"({active:.0%} of the values are above 0)", fontsize=11)
    figure.colorbar(shown, ax=map_ax, shrink=0.8, label="activation")
    return figure


def dense_figure(model, image, caption):
    """The output of every hidden dense layer for one image (after its ReLU) and, last, the class probabilities
    (the softmax of the network's output)."""
    outputs = _activations(model, image)
    last = len(model.layers) - 1
    indices = [i for i in dense_layers(model) if i != last] + [last]
    figure = Figure(figsize=(12, 1.4 + 2.3 * len(indices)), layout="constrained")
    grid = figure.add_gridspec(len(indices), 2, width_ratios=[1, 5])
    _show_input(figure.add_subplot(grid[:, 0]), image, caption)
    for row, i in enumerate(indices):
        ax = figure.add_subplot(grid[row, 1])
        values = np.asarray(outputs[i], dtype=np.float64)
        if i == last:
            probs = softmax(values[None])[0]
            best = int(probs.argmax())
            colors = [RIGHT if k == best else "#8c959f" for k in range(len(probs))]
            ax.bar(range(len(probs)), probs, color=colors)
            ax.set_xticks(range(len(probs)), model.class_names)
            ax.set_ylim(0, 1.08)
            for k, p in enumerate(probs):
                if p >= 0.01:
                    ax.text(k, p + 0.02, f"{p:.0%}", ha="center", fontsize=8)
            ax.set_xlabel("class")
            ax.set_ylabel("probability")
            ax.set_title(f"{layer_label(model, i)} → softmax: predicted {model.class_names[best]} "
                         f"({probs[best]:.1%})", fontsize=11)
        else:
            ax.bar(range(len(values)), values, width=1.0, color="#0969da")
            ax.set_xlim(-0.5, len(values) - 0.5)
            ax.set_xlabel("unit")
            ax.set_ylabel("activation")
            ax.set_title(f"{layer_label(model, i)}: {len(values)} units, {np.mean(values > 0):.0%} active",
                         fontsize=11)
    return figure


# --- the test set -------------------------------------------------------------------------------------------
def _image_tiles(figure, images, titles, colors, columns):
    rows = math.ceil(len(images) / columns)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(images):]:
        ax.set_visible(False)
    for ax, image, title, color in zip(axes.flat, images, titles, colors):
        _show_input(ax, image)
        ax.set_title(title, fontsize=9, color=color)
        for spine in ax.spines.values():
            spine.set_color(color)
            spine.set_linewidth(3 if color == WRONG else 1)


def predictions_figure(images, labels, probs, class_names, count=24, first_index=0):
    """The first ``count`` images with their true label, the prediction and its confidence; the wrong ones red."""
    count = min(count, len(images))
    predicted = probs[:count].argmax(axis=1)
    titles = [f"#{first_index + k}: true {class_names[labels[k]]}\npredicted {class_names[p]} {probs[k, p]:.0%}"
              for k, p in enumerate(predicted)]
    wrong = int(np.sum(predicted != labels[:count]))
    colors = [WRONG if p != labels[k] else RIGHT for k, p in enumerate(predicted)]
    columns = min(count, 8)
    figure = Figure(figsize=(1.6 * columns + 0.4, 2.0 * math.ceil(count / columns) + 0.8), layout="constrained")
    _image_tiles(figure, [images[k] for k in range(count)], titles, colors, columns)
    figure.suptitle(f"Predictions on the first {count} test images: {count - wrong} right, {wrong} wrong (in red)",
                    fontsize=12)
    return figure


def most_confused_figure(images, labels, probs, class_names, count=24):
    """The misclassified test images the model was surest about, most confident mistake first."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:count]
    columns = max(1, min(len(order), 8))
    size = (1.6 * columns + 0.4, 2.0 * math.ceil(len(order) / columns) + 0.8) if len(order) else (9, 2.5)
    figure = Figure(figsize=size, layout="constrained")
    if not len(order):
        ax = figure.add_subplot()
        ax.text(0.5, 0.5, f"no misclassified images among the {len(labels):,} test images", ha="center",
                va="center", fontsize=12)
        _hide_axes(ax)
    else:
        titles = [f"#{k}: true {class_names[labels[k]]}\n→ {class_names[predicted[k]]} {probs[k, predicted[k]]:.0%}"
                  f" ({class_names[labels[k]]}: {probs[k, labels[k]]:.0%})" for k in order]
        _image_tiles(figure, [images[k] for k in order], titles, [WRONG] * len(order), columns)
    figure.suptitle(f"The {len(order)} most confident mistakes out of {len(wrong):,} on {len(labels):,} test images "
                    "(true label, prediction and its probability, the true class's probability)", fontsize=11)
    return figure


def confusion_figure(labels, predicted, class_names):
    """Counts of (true class, predicted class) on a contracted colour scale so that small error counts show."""
    n = len(class_names)
    counts = confusion_matrix(labels, predicted, n)
    size = min(max(5.0, 0.55 * n + 2.5), 14)
    figure = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = figure.add_subplot()
    norm = PowerNorm(gamma=0.35, vmin=0, vmax=max(int(counts.max()), 1))
    shown = ax.imshow(counts, cmap="Blues", norm=norm)
    if n <= 20:
        for (r, c), v in np.ndenumerate(counts):
            if v:
                ax.text(c, r, str(v), ha="center", va="center", fontsize=9 if n <= 12 else 7,
                        color="white" if norm(v) > 0.6 else ("#cf222e" if r != c else "black"))
    ax.set_xticks(range(n), class_names)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"Confusion matrix on {counts.sum():,} test images: accuracy {accuracy:.2%}\n"
                 "off-diagonal cells (red numbers) are mistakes", fontsize=11)
    figure.colorbar(shown, ax=ax, shrink=0.8, label="images")
    return figure


# --- the training log ---------------------------------------------------------------------------------------
def _marker(points):
    return "o" if len(points) < 25 else None


def training_curves_figure(records):
    """Loss and accuracy (training mean between logged steps, validation at epoch ends), and per layer the
    gradient norm, the update-to-weight ratio, the fraction of zero activations and the learning rate."""
    steps, epochs = latest(records, "step"), latest(records, "epoch")
    run = records[0]
    figure = Figure(figsize=(15, 8.5), layout="constrained")
    axes = figure.subplots(2, 3)
    x = [r["step"] for r in steps]
    mark = _marker(steps)
    val_x = [r["step"] for r in epochs if "val_loss" in r]

    ax = axes[0, 0]
    ax.plot(x, [r["interval_loss"] for r in steps], marker=mark, label="training (mean since last point)")
    ax.plot([r["step"] for r in epochs], [r["train_loss"] for r in epochs], "s", color="C0", mfc="none",
            label="training (epoch mean)")
    if val_x:
        ax.plot(val_x, [r["val_loss"] for r in epochs if "val_loss" in r], "o-", color="C3", label="validation")
    ax.set_title("Loss (cross-entropy)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    ax.plot(x, [r["interval_accuracy"] for r in steps], marker=mark, label="training (mean since last point)")
    ax.plot([r["step"] for r in epochs], [r["train_accuracy"] for r in epochs], "s", color="C0", mfc="none",
            label="training (epoch mean)")
    if val_x:
        ax.plot(val_x, [r["val_accuracy"] for r in epochs if "val_accuracy" in r], "o-", color="C3",
                label="validation")
    ax.set_title("Accuracy")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.legend(fontsize=8, loc="lower right")

    names = run.get("layer_names") or []
    weight_keys = [key for key in (steps[0]["params"] if steps else {}) if key.endswith(".W")]

    def layer_of(key):
        i = int(key.split(".")[0])
        return names[i] if i < len(names) else f"layer {i}"

    for ax, field, title in ((axes[0, 2], "grad_norm", "Gradient norm of each weight tensor"),
                             (axes[1, 0], "update_ratio", "Update / weight norm per step")):
        for key in weight_keys:
            values = [r["params"][key][field] for r in steps if r["params"].get(key, {}).get(field) is not None]
            xs = [r["step"] for r in steps if r["params"].get(key, {}).get(field) is not None]
            ax.plot(xs, values, marker=mark, label=layer_of(key))
        ax.set_yscale("log")
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[1, 0].axhline(1e-3, color="grey", linestyle="--", linewidth=1)
    axes[1, 0].text(0.01, 1e-3, " 1e-3, a healthy rule of thumb", color="grey", fontsize=8, va="bottom",
                    transform=axes[1, 0].get_yaxis_transform())

    ax = axes[1, 1]
    relu_layers = [k for k, name in enumerate(names) if "relu" in name.lower()]
    for k in relu_layers:
        points = [(r["step"], r["layers"][k]["activation_zeros"]) for r in steps
                  if k < len(r["layers"]) and "activation_zeros" in r["layers"][k]]
        if points:
            ax.plot(*zip(*points), marker=mark, label=names[k])
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set_title("Zero outputs of each ReLU layer (inactive units)")
    if relu_layers:
        ax.legend(fontsize=8)

    ax = axes[1, 2]
    ax.plot(x, [r["lr"] for r in steps], marker=mark, color="C2")
    ax.ticklabel_format(axis="y", useOffset=False, style="sci", scilimits=(-3, 3))
    ax.set_title("Learning rate")
    for ax in axes.flat:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        for r in epochs:
            ax.axvline(r["step"], color="grey", alpha=0.25, linewidth=1)
    train = run.get("train", {})
    last = max(x + [r["step"] for r in epochs])
    figure.suptitle(f"Training: {train.get('optimizer', '?')}, lr {train.get('lr', '?')} "
                    f"({train.get('lr_schedule', '?')}), batch {train.get('batch_size', '?')}: {len(epochs)} epoch(s), "
                    f"{last:,} steps; grey lines mark the epochs' ends", fontsize=12)
    return figure


def layer_times_figure(records):
    """Mean forward and backward time per step of each layer, over all the logged intervals."""
    steps = latest(records, "step")
    steps = [r for r in steps if r.get("timed_steps")] or steps  # leave out the logged steps' times
    names = [entry["layer"] + (f" (timed with {entry['timed_with']})" if "timed_with" in entry else "")
             for entry in steps[0]["layers"]]
    forward = np.mean([[e["forward_ms"] for e in r["layers"]] for r in steps], axis=0)
    backward = np.mean([[e["backward_ms"] for e in r["layers"]] for r in steps], axis=0)
    figure = Figure(figsize=(11, 0.45 * len(names) + 1.8), layout="constrained")
    ax = figure.add_subplot()
    rows = np.arange(len(names))[::-1]
    ax.barh(rows, forward, color="#0969da", label="forward")
    ax.barh(rows, backward, left=forward, color="#bf8700", label="backward")
    total = forward + backward
    for row, t in zip(rows, total):
        ax.text(t, row, f" {t:.2f} ms ({t / max(total.sum(), 1e-12):.0%})", va="center", fontsize=9)
    ax.set_yticks(rows, names)
    ax.set_xlim(0, total.max() * 1.25 if total.max() > 0 else 1)
    ax.set_xlabel("ms per training step")
    ax.legend(loc="lower right")
    ax.set_title(f"Where a training step spends its time: {total.sum():.1f} ms per step in the layers "
                 f"(mean of {len(steps)} logged interval{'s' if len(steps) > 1 else ''})", fontsize=11)
    return figure


# --- everything at once -------------------------------------------------------------------------------------
def pictures(model, test_images, test_labels, probs, chosen, records=None, count=24):
    """Every picture for ``model``, one at a time (a generator, so each can be written and dropped).

    ``test_images`` are model inputs (N, C, H, W) in [0, 1] with ``probs`` the model's class probabilities for
    them; ``chosen`` is a list of (slug, caption, image) for the per-image pictures; ``records`` a training log.
    """
    convs = conv_layers(model)
    for i in convs:
        yield Picture(f"kernels_layer{i}", f"The kernels of {layer_label(model, i)}",
                      "Each kernel is a small pattern of weights that the layer slides over its input; where the "
                      "input looks like the red part and unlike the blue part, the output is large.",
                      kernel_figure(model, i))
    for slug, caption, image in chosen:
        if convs:
            yield Picture(f"convolution_{slug}", f"The convolution of {layer_label(model, convs[0])} on {caption}",
                          "Multiply the kernel with every patch of its size in the image and add the bias: that is the "
                          "feature map. ReLU keeps its positive part and max-pooling keeps the largest value of "
                          "each window, halving the size.", convolution_figure(model, image, caption))
        for i in map_layers(model):
            yield Picture(f"feature_maps_{slug}_layer{i}", f"Feature maps of {layer_label(model, i)} for {caption}",
                          "Every channel of the layer's output for this image, all on one colour scale: bright "
                          "where the channel's pattern was found, black where it was not.",
                          feature_map_figure(model, image, i, caption))
        yield Picture(f"dense_{slug}", f"Dense-layer activations and class probabilities for {caption}",
                      "The hidden units that fire for this image, and the probability the network gives each class.",
                      dense_figure(model, image, caption))
    predicted = probs.argmax(axis=1)
    yield Picture("predictions", "Predictions on test images",
                  "Green: right; red, with a thick frame: wrong. The percentage is the predicted class's probability.",
                  predictions_figure(test_images, test_labels, probs, model.class_names, count))
    yield Picture("most_confused", "The most confident mistakes",
                  "The wrong predictions the network was surest about; many are digits a person would hesitate on.",
                  most_confused_figure(test_images, test_labels, probs, model.class_names, count))
    yield Picture("confusion_matrix", "Confusion matrix",
                  "How often each true class (row) was predicted as each class (column).",
                  confusion_figure(test_labels, predicted, model.class_names))
    if records is not None and latest(records, "step"):
        yield Picture("training_curves", "Training curves",
                      "From the training log: loss and accuracy, and per layer how large the gradients and the "
                      "updates were and how many units output zero.", training_curves_figure(records))
        yield Picture("layer_times", "Time per layer",
                      "From the training log: the mean time of each layer's forward and backward pass per step.",
                      layer_times_figure(records))
