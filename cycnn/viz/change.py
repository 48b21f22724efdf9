"""What training changed: the first conv layer's kernels as they started, as they are, and the difference.

Trained kernels often look much like their random start (same-seed kernels after a few steps and after several
epochs correlate above 0.9), so a picture of the kernels alone hides what was learned. The start can be rebuilt
exactly: the training log's run record holds the architecture and the seed that ``cycnn train`` built the model
with (``cycnn.io.architecture.build``), and building it again draws the same weights.
"""
import numpy as np
from matplotlib.figure import Figure

from cycnn.errors import CycnnError
from cycnn.io.architecture import build
from cycnn.viz.drawing import WEIGHTS, hide_axes, mosaic, symmetric_limit, with_gaps

CHANGE = "PuOr_r"  # diverging, and unlike the weights' red and blue: orange where a weight rose, purple where it fell


def initial_model(model, records):
    """The model as its training run began, rebuilt from the log's first run record; None when the log has no
    seed or describes another network than ``model``."""
    run = next((r for r in records if r.get("type") == "run"), None)
    if run is None or not isinstance(run.get("seed"), int) or not isinstance(run.get("architecture"), dict):
        return None
    try:
        start = build(run["architecture"], seed=run["seed"])
    except CycnnError:
        return None
    shapes = [[np.shape(p) for p in layer.params.values()] for layer in model.layers]
    if shapes != [[np.shape(p) for p in layer.params.values()] for layer in start.layers]:
        return None
    return start


def _kernel_panel(figure, ax, kernels, cmap, limit, title, label):
    """The kernels (n, kh, kw) as one mosaic, eight a row, with a colour bar."""
    image, _ = mosaic(kernels, min(len(kernels), 8), min_size=8)
    shown = ax.imshow(image, cmap=with_gaps(cmap, "white"), vmin=-limit, vmax=limit, interpolation="nearest")
    hide_axes(ax)
    ax.set_title(title, fontsize=10)
    figure.colorbar(shown, ax=ax, location="bottom", shrink=0.8, label=label)


def kernel_change_figure(model, start, index):
    """Conv layer ``index``'s kernels (summed over input channels) in ``start`` and in ``model``, on one scale,
    and their difference on a diverging scale of its own."""
    before, now = (np.asarray(m.layers[index].params["W"], dtype=np.float64).sum(axis=1) for m in (start, model))
    change = now - before
    relative = np.linalg.norm(change) / max(np.linalg.norm(before), 1e-12)
    correlation = np.corrcoef(before.ravel(), now.ravel())[0, 1] if before.std() and now.std() else float("nan")
    columns = min(len(now), 8)
    figure = Figure(figsize=(13, 2.1 + 4 * np.ceil(len(now) / columns) / columns), layout="constrained")
    axes = figure.subplots(1, 3)
    limit = symmetric_limit(np.concatenate([before, now]))
    _kernel_panel(figure, axes[0], before, WEIGHTS, limit, "at initialization (rebuilt from the log's seed)",
                  "weight")
    _kernel_panel(figure, axes[1], now, WEIGHTS, limit, "now, after training (same scale)", "weight")
    _kernel_panel(figure, axes[2], change, CHANGE, symmetric_limit(change),
                  "now − initialization (own scale)", "change (orange: rose, purple: fell)")
    figure.suptitle(f"How training changed the kernels of layer {model.layer_names()[index]}: "
                    f"they moved by {relative:.1%} of their initial size (‖now − init‖ / ‖init‖) and correlate "
                    f"{correlation:.3f} with where they started\n(each tile one kernel, channels 0 to "
                    f"{len(now) - 1} row by row as in the kernels picture)", fontsize=11)
    return figure
