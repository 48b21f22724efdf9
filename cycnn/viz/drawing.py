"""What the pictures are drawn with: their colours, mosaics of small images and the helpers for bare axes.

The figure modules share these so that the same thing looks the same in every picture: weights are red and blue
around a white zero, activations run from black to pale yellow, digits are dark ink on white paper, and a right
prediction is green where a wrong one is red.
"""
import math

import numpy as np
from matplotlib import colormaps

WEIGHTS = "RdBu_r"  # diverging: positive weights red, negative blue, zero white
MAPS = "magma"  # non-negative activations: black (0) to pale yellow (largest)
INK = "gray_r"  # input digits: dark ink on white paper
RIGHT, WRONG = "#1a7f37", "#cf222e"


def with_gaps(name, gaps="#d0d7de"):
    """The colormap ``name`` with its NaN cells (the gaps between tiles) drawn in ``gaps`` (light grey by default)."""
    return colormaps[name].with_extremes(bad=gaps)


def grid_columns(n, tile_h, tile_w, aspect=1.6):
    """Columns for n tiles so that the mosaic is about ``aspect`` times as wide as it is high."""
    return max(1, min(n, round(math.sqrt(n * aspect * tile_h / tile_w))))


def mosaic(tiles, columns, gap=1, min_size=1):
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


def percent(p):
    """A probability as a percentage that keeps a small runner-up readable: 99.2%, 0.6%, 0.03%, <0.01%."""
    if p >= 0.1:
        return f"{p:.1%}"
    return f"{100 * p:.2g}%" if p >= 1e-4 else "<0.01%"


def top_classes(probs, class_names, k=3):
    """The ``k`` most probable classes, most probable first, as "7 99.2%" texts: a runner-up at 0.6% tells more
    than "100.0%" alone."""
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    return [f"{class_names[c]} {percent(probs[c])}" for c in order]


def symmetric_limit(values):
    """The largest absolute value (1 if there is none), for a colour scale centred on zero."""
    limit = float(np.nanmax(np.abs(values))) if np.size(values) else 1.0
    return limit if limit > 0 else 1.0


def _displayable(image):
    """A model input (C, H, W) as something imshow draws: the single channel, or an RGB image."""
    image = np.asarray(image, dtype=np.float64)
    if image.shape[0] == 1:
        return image[0]
    if image.shape[0] == 3:
        return np.clip(image.transpose(1, 2, 0), 0, 1)
    return image.mean(axis=0)


def show_input(ax, image, title=None):
    """A model input (C, H, W) in [0, 1] as ink on paper, without ticks."""
    ax.imshow(_displayable(image), cmap=INK, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def hide_axes(ax):
    """No ticks and no frame: for images whose pixels are the whole content."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
