"""Pictures of a model's results on the test set: its predictions, its most confident mistakes and the confusion
matrix.

They need only the images, the labels and the predicted probabilities, not the model, so they draw the same way
whatever the architecture.
"""
import math

import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from cycnn.train.evaluation import confusion_matrix
from cycnn.viz.drawing import RIGHT, WRONG, hide_axes, percent, show_input, top_classes


def _image_tiles(figure, images, titles, colors, columns):
    """The images in a grid, each framed and titled in its colour (a thick frame for a wrong one)."""
    rows = math.ceil(len(images) / columns)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(images):]:
        ax.set_visible(False)
    for ax, image, title, color in zip(axes.flat, images, titles, colors):
        show_input(ax, image)
        ax.set_title(title, fontsize=9, color=color)
        for spine in ax.spines.values():
            spine.set_color(color)
            spine.set_linewidth(3 if color == WRONG else 1)


def predictions_figure(images, labels, probs, class_names, count=24, first_index=0):
    """The first ``count`` images with their true label, the prediction and its confidence; the wrong ones red."""
    count = min(count, len(images))
    predicted = probs[:count].argmax(axis=1)
    titles = []
    for k in range(count):
        first, *runners_up = top_classes(probs[k], class_names)
        titles.append(f"#{first_index + k}: true {class_names[labels[k]]}\npredicted {first}"
                      + (f"\nthen {', '.join(runners_up)}" if runners_up else ""))
    wrong = int(np.sum(predicted != labels[:count]))
    colors = [WRONG if p != labels[k] else RIGHT for k, p in enumerate(predicted)]
    columns = min(count, 8)
    figure = Figure(figsize=(1.75 * columns + 0.4, 2.2 * math.ceil(count / columns) + 0.8), layout="constrained")
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
        hide_axes(ax)
    else:
        titles = [f"#{k}: true {class_names[labels[k]]}\n→ {class_names[predicted[k]]} "
                  f"{percent(probs[k, predicted[k]])} ({class_names[labels[k]]}: {percent(probs[k, labels[k]])})"
                  for k in order]
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
                        color="white" if norm(v) > 0.6 else (WRONG if r != c else "black"))
    ax.set_xticks(range(n), class_names)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"Confusion matrix on {counts.sum():,} test images: accuracy {accuracy:.2%}\n"
                 "off-diagonal cells (red numbers) are mistakes", fontsize=11)
    figure.colorbar(shown, ax=ax, shrink=0.8, label="images")
    return figure
