"""Pictures of the training log: the training curves (loss, accuracy and per layer the gradients, the updates and
the inactive units) and where a training step spends its time.

They read only the log's records (``cycnn.train.log``), so they can be drawn for any run that was logged, long
after it ended.
"""
import numpy as np
from matplotlib.figure import Figure

from cycnn.train.log import latest


def _marker(points):
    """Dots on the curves while there are few enough points to tell apart."""
    return "o" if len(points) < 25 else None


def _percent(value, _position):
    return f"{value:.0%}"


def _score_panel(ax, steps, epochs, mark, metric):
    """``metric`` ("loss" or "accuracy") by step: in training, between logged steps and per epoch, and in
    validation at the epochs' ends."""
    ax.plot([r["step"] for r in steps], [r[f"interval_{metric}"] for r in steps], marker=mark,
            label="training (mean since last point)")
    ax.plot([r["step"] for r in epochs], [r[f"train_{metric}"] for r in epochs], "s", color="C0", mfc="none",
            label="training (epoch mean)")
    validated = [r for r in epochs if f"val_{metric}" in r]
    if validated:
        ax.plot([r["step"] for r in validated], [r[f"val_{metric}"] for r in validated], "o-", color="C3",
                label="validation")


def _layer_name(key, names):
    """The layer a parameter key ("3.W") belongs to, by its name in the log."""
    i = int(key.split(".")[0])
    return names[i] if i < len(names) else f"layer {i}"


def _weight_panels(grad_ax, update_ax, steps, names, mark):
    """Per weight tensor, the gradient norm and the size of the update relative to the weights, by step."""
    weight_keys = [key for key in (steps[0]["params"] if steps else {}) if key.endswith(".W")]
    update_ax.axhline(1e-3, color="grey", linestyle="--", linewidth=1, label="1e-3, a healthy rule of thumb")
    for ax, field, title in ((grad_ax, "grad_norm", "Gradient norm of each weight tensor"),
                             (update_ax, "update_ratio", "Update / weight norm per step")):
        for key in weight_keys:
            logged = [r for r in steps if r["params"].get(key, {}).get(field) is not None]
            ax.plot([r["step"] for r in logged], [r["params"][key][field] for r in logged], marker=mark,
                    label=_layer_name(key, names))
        ax.set_yscale("log")
        ax.set_title(title)
        ax.legend(fontsize=8)  # the rule of thumb's label too: in the legend, off the curves


def _relu_zeros_panel(ax, steps, names, mark):
    """The fraction of zero outputs of each ReLU layer (the units that are inactive), by step."""
    relu_layers = [k for k, name in enumerate(names) if "relu" in name.lower()]
    for k in relu_layers:
        points = [(r["step"], r["layers"][k]["activation_zeros"]) for r in steps
                  if k < len(r["layers"]) and "activation_zeros" in r["layers"][k]]
        if points:
            ax.plot(*zip(*points), marker=mark, label=names[k])
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(_percent)
    ax.set_title("Zero outputs of each ReLU layer (inactive units)")
    if relu_layers:
        ax.legend(fontsize=8)


def training_curves_figure(records):
    """Loss and accuracy (training mean between logged steps, validation at epoch ends), and per layer the
    gradient norm, the update-to-weight ratio, the fraction of zero activations and the learning rate."""
    steps, epochs = latest(records, "step"), latest(records, "epoch")
    run = records[0]
    names = run.get("layer_names") or []
    x = [r["step"] for r in steps]
    mark = _marker(steps)
    figure = Figure(figsize=(15, 8.5), layout="constrained")
    axes = figure.subplots(2, 3)
    _score_panel(axes[0, 0], steps, epochs, mark, "loss")
    axes[0, 0].set_title("Loss (cross-entropy)")
    axes[0, 0].set_yscale("log")
    axes[0, 0].legend(fontsize=8)
    _score_panel(axes[0, 1], steps, epochs, mark, "accuracy")
    axes[0, 1].set_title("Accuracy")
    axes[0, 1].yaxis.set_major_formatter(_percent)
    axes[0, 1].legend(fontsize=8, loc="lower right")
    _weight_panels(axes[0, 2], axes[1, 0], steps, names, mark)
    _relu_zeros_panel(axes[1, 1], steps, names, mark)
    axes[1, 2].plot(x, [r["lr"] for r in steps], marker=mark, color="C2")
    axes[1, 2].ticklabel_format(axis="y", useOffset=False, style="sci", scilimits=(-3, 3))
    axes[1, 2].set_title("Learning rate")
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
