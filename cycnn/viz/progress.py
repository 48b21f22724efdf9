"""Change, not just state: one fixed test image (the log's probe) epoch by epoch, its class probabilities and the
first conv block's feature maps, so that what training did to the network's answer and to what its first layer
sees can be read down the rows.

It reads only the probe records of the training log's epoch records (``cycnn.train.log``), which hold the
probabilities and the first channels' maps quantized to uint8 with their scale.
"""
import numpy as np
from matplotlib.figure import Figure

from cycnn.train.log import decode_maps, latest
from cycnn.viz.drawing import MAPS, RIGHT, WEIGHTS, WRONG, hide_axes, mosaic, percent, show_input, with_gaps

MAX_ROWS = 12  # epochs shown; a longer run shows this many, evenly chosen, always its first and last
FLOOR = 1e-4  # the bars' log scale starts here: 0.01%, below which a probability is drawn as none


def probe_epochs(records):
    """The epoch records that hold a probe, at most ``MAX_ROWS`` of them, evenly chosen."""
    epochs = [r for r in latest(records, "epoch") if "probe" in r]
    if len(epochs) <= MAX_ROWS:
        return epochs
    return [epochs[k] for k in np.unique(np.round(np.linspace(0, len(epochs) - 1, MAX_ROWS)).astype(int))]


def _names(class_names, count):
    """The classes' names, or their numbers when the model's names do not fit the log."""
    if class_names is not None and len(class_names) == count:
        return list(class_names)
    return [str(c) for c in range(count)]


def _bars(ax, probe, names):
    """The probabilities as bars on a log scale (so that the other classes' small probabilities show their change
    too): the true class green, a wrong prediction red; the prediction and the runner-up named beside them."""
    probs = np.asarray(probe["probabilities"])
    label = probe["label"]
    predicted, runner_up = np.argsort(-probs, kind="stable")[:2]
    colours = ["#8c959f"] * len(probs)
    colours[label] = RIGHT
    if predicted != label:
        colours[predicted] = WRONG
    ax.bar(range(len(probs)), np.maximum(probs, FLOOR) - FLOOR, bottom=FLOOR, color=colours, width=0.8)
    ax.set_yscale("log")
    ax.set_ylim(FLOOR, 1)
    ax.set_xlim(-0.6, len(probs) - 0.4)
    ticks = names if max(len(n) for n in names) <= 2 else [str(c) for c in range(len(probs))]
    ax.set_xticks(range(len(probs)), ticks, fontsize=7)
    ax.set_yticks([FLOOR, 1e-2, 1], ["0.01%", "1%", "100%"], fontsize=7)
    ax.minorticks_off()
    ax.tick_params(length=2, pad=1)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.text(1.03, 0.62, f"→ {names[predicted]} {percent(probs[predicted])}", transform=ax.transAxes, ha="left",
            va="center", fontsize=9, color=RIGHT if predicted == label else WRONG, fontweight="bold")
    ax.text(1.03, 0.3, f"next: {names[runner_up]} {percent(probs[runner_up])}", transform=ax.transAxes,
            ha="left", va="center", fontsize=8, color="#57606a")


def _strip(ax, maps):
    """The stored feature maps side by side on the row's own colour scale, the scale written beside them."""
    values = decode_maps(maps)
    image, _ = mosaic(values, len(values), min_size=10)
    scale = maps["scale"]
    if maps["signed"]:
        ax.imshow(image, cmap=with_gaps(WEIGHTS, "white"), vmin=-scale, vmax=scale, interpolation="nearest")
        span = f"±{scale:.3g}\n(blue to red)"
    else:
        ax.imshow(image, cmap=with_gaps(MAPS, "white"), vmin=0, vmax=scale, interpolation="nearest")
        span = f"max {scale:.3g}"
    hide_axes(ax)
    ax.set_anchor("W")  # beside the bars, however few the tiles
    ax.text(1.01, 0.5, span, transform=ax.transAxes, ha="left", va="center", fontsize=8)


def _epoch_label(ax, record):
    """The epoch number and its accuracy, in the left column."""
    hide_axes(ax)
    accuracy = (f"val {record['val_accuracy']:.1%}" if "val_accuracy" in record
                else f"train {record['train_accuracy']:.1%}")
    ax.text(0.5, 0.5, f"epoch {record['epoch']}\n{accuracy}", ha="center", va="center", fontsize=10,
            transform=ax.transAxes)


def progress_figure(records, class_names=None, image=None):
    """One row per probe epoch (``probe_epochs``): the epoch, the probe's class probabilities and its stored
    feature maps; ``image`` (the probe as a model input (C, H, W)) is drawn above the epoch column."""
    epochs = probe_epochs(records)
    probe = epochs[-1]["probe"]
    names = _names(class_names, len(probe["probabilities"]))
    maps = probe.get("maps")
    has_maps = all("maps" in r["probe"] for r in epochs)
    figure = Figure(figsize=(15 if has_maps else 6, 1.8 + 0.8 * len(epochs)), layout="constrained")
    grid = figure.add_gridspec(len(epochs) + 1, 3 if has_maps else 2, height_ratios=[1.6] + [1] * len(epochs),
                               width_ratios=[1, 3.4] + ([9.5] if has_maps else []))
    header = figure.add_subplot(grid[0, 0])
    if image is not None:
        show_input(header, image)
        header.set_title(f"test image #{probe['index']}", fontsize=9)
    else:
        hide_axes(header)
    header.set_xlabel(f"true: {names[probe['label']]}", fontsize=9)
    for column, text in enumerate(["class probabilities, log scale\n(green: the true class; red: a wrong answer)"] +
                                  ([f"the first {maps['shape'][0]} of {maps['channels']} feature maps of layer "
                                    f"{maps['layer']}\n(each row on its own colour scale: black at 0, yellow at the row's largest value, "
                                    "written at its end)"] if has_maps else []), 1):
        ax = figure.add_subplot(grid[0, column])
        hide_axes(ax)
        ax.text(0.5, 0.1, text, ha="center", va="bottom", fontsize=10, transform=ax.transAxes)
    for row, record in enumerate(epochs, 1):
        _epoch_label(figure.add_subplot(grid[row, 0]), record)
        _bars(figure.add_subplot(grid[row, 1]), record["probe"], names)
        if has_maps:
            _strip(figure.add_subplot(grid[row, 2]), record["probe"]["maps"])
    figure.suptitle(f"How training changed the network's answer and its first feature maps for one test image, "
                    f"epoch by epoch (a {names[probe['label']]})", fontsize=12)
    return figure
