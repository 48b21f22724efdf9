"""``cycnn compare``: several trained models side by side (their layers, size, test scores and training time, from
their files' metadata) and, with ``--plot``, their training curves overlaid in one figure."""
import json
import math
from pathlib import Path
from typing import List, Optional

import typer
from matplotlib.figure import Figure

from cycnn.cli.common import load_model
from cycnn.errors import ConfigError
from cycnn.io.atomic import write_atomic
from cycnn.nn.layers import Conv2D, Dense, Dropout, MaxPool2D
from cycnn.train.log import latest, read_log
from cycnn.viz.figures import png_bytes


def _number(value):
    """A finite number from a file's metadata, or None (a hand-edited or older file may hold anything)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _layer(layer):
    """One layer in a few characters: conv8@3x3, pool2, flat, dense32, drop0.2."""
    relu = "+relu" if getattr(layer, "activation", None) == "relu" else ""
    if isinstance(layer, Conv2D):
        return f"conv{layer.out_channels}@{'x'.join(map(str, layer.kernel_size))}{relu}"
    if isinstance(layer, MaxPool2D):
        return "pool" + "x".join(map(str, sorted(set(layer.pool_size))))
    if isinstance(layer, Dense):
        return f"dense{layer.out_features}{relu}"
    if isinstance(layer, Dropout):
        return f"drop{layer.p:g}"
    return {"Flatten": "flat", "ReLU": "relu"}.get(type(layer).__name__, type(layer).__name__)


def _row(path):
    """What the table shows of one model, with its epoch history and its log's step records (or None)."""
    model = load_model(path)
    meta = model.metadata
    history = meta.get("history") if isinstance(meta.get("history"), list) else []
    history = [r for r in history if isinstance(r, dict)]
    times = [t for t in (_number(r.get("wall_s")) for r in history) if t is not None]
    log = path.with_name(path.stem + ".log.jsonl")  # beside the model, never where the file's metadata says
    steps = latest(read_log(log), "step") if log.is_file() else []
    return {"model": str(path), "architecture": " ".join(_layer(layer) for layer in model.layers),
            "parameters": model.parameter_count, "test_accuracy": _number(meta.get("test_accuracy")),
            "test_loss": _number(meta.get("test_loss")), "epochs": len(history),
            "seconds_per_epoch": sum(times) / len(times) if times else None,
            "log": str(log) if log.is_file() else None}, history, steps


def _table(rows):
    def shown(value, form):
        return "-" if value is None else format(value, form)
    header = ["model", "architecture", "parameters", "test acc", "test loss", "epochs", "s/epoch"]
    cells = [[r["model"], r["architecture"], f"{r['parameters']:,}", shown(r["test_accuracy"], ".2%"),
              shown(r["test_loss"], ".4f"), str(r["epochs"]), shown(r["seconds_per_epoch"], ".2f")] for r in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in [header, *cells])


def _points(records, keys):
    """The records' values of ``keys`` as tuples, leaving out the records where one is not a finite number."""
    values = [tuple(_number(r.get(key)) for key in keys) for r in records]
    return [v for v in values if None not in v]


def curves_figure(runs):
    """Loss and accuracy by epoch of each run, one colour each: training solid, validation dashed (from the
    epoch history), and the training log's step records, where there is a log, as a thin line."""
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    axes = figure.subplots(1, 2)
    for k, (row, history, steps) in enumerate(runs):
        colour, name = f"C{k % 10}", Path(row["model"]).name
        for ax, metric in zip(axes, ("loss", "accuracy")):
            for kind, style, label in (("train", "o-", "training"), ("val", "s--", "validation")):
                points = _points(history, ("epoch", f"{kind}_{metric}"))
                if points:
                    ax.plot(*zip(*points), style, color=colour, label=f"{name} ({label})")
            logged = [((epoch - 1) + step / per_epoch, value) for epoch, step, per_epoch, value
                      in _points(steps, ("epoch", "epoch_step", "steps_per_epoch", f"interval_{metric}"))
                      if per_epoch > 0]
            if logged:
                ax.plot(*zip(*logged), "-", color=colour, alpha=0.35, linewidth=1)
    for ax, title in zip(axes, ("Loss (cross-entropy)", "Accuracy")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    figure.suptitle("Training curves: solid training, dashed validation (per epoch); thin lines: the logged steps")
    return figure


def compare(
    models: List[Path] = typer.Argument(..., metavar="MODEL...", help="Model files (with their <name>.log.jsonl "
                                                                     "beside them, if any)."),
    plot: Optional[Path] = typer.Option(None, metavar="OUT.png", help="Also draw their training curves in one "
                                                                      "figure."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Models side by side: layers, parameters, test accuracy and loss, epochs and time per epoch."""
    runs = [_row(path) for path in models]
    if plot is not None:
        if not any(history or steps for _, history, steps in runs):
            raise ConfigError("--plot: none of these models has a training history or a log to draw")
        write_atomic(plot, lambda fh: fh.write(png_bytes(curves_figure(runs))))
    rows = [row for row, _, _ in runs]
    if json_output:
        typer.echo(json.dumps({"models": rows, "plot": None if plot is None else str(plot)}))
        return
    typer.echo(_table(rows))
    if plot is not None:
        typer.echo(f"\nwrote {plot}")
