"""``cycnn visualize`` and ``cycnn report``: the pictures of a model, as PNG files or as one HTML page."""
import re
import time
from pathlib import Path
from typing import List, Optional

import typer

from cycnn.cli.common import DATA_DIR_HELP, DATASET_HELP, THREADS_HELP, load_model, setup_threads, test_set
from cycnn.data.datasets import check_model_fits, to_input
from cycnn.data.preparation import for_model
from cycnn.errors import ConfigError
from cycnn.io.atomic import write_atomic
from cycnn.io.paths import check_output_directory
from cycnn.train.evaluation import predict_images, scores
from cycnn.train.log import read_log
from cycnn.version import __version__
from cycnn.viz import report as html_report
from cycnn.viz.figures import pictures, png_bytes

INDEX_HELP = "A test image to follow through the network (repeatable) (default: 0)."
MAX_COUNT = 400  # a 20x20 grid: more tiles than a figure can show legibly
COUNT_HELP = f"Images in the predictions and most-confused grids (1 to {MAX_COUNT})."


def _count(value):
    """A count from a log as text ("?" when the log does not have it)."""
    return f"{value:,}" if isinstance(value, int) else "?"


def _pictures_for(model_path, log, index, image, count, data_dir, dataset, threads):
    """What ``visualize`` and ``report`` draw: returns (model, log path or None, test labels, test probabilities,
    the pictures as a generator)."""
    if not 1 <= count <= MAX_COUNT:
        raise ConfigError(f"--count must be from 1 to {MAX_COUNT}, received {count}")
    model = load_model(model_path)
    if log is None:
        beside = model_path.with_name(model_path.stem + ".log.jsonl")
        log = beside if beside.is_file() else None
    records = read_log(log) if log is not None else None
    setup_threads(threads)
    _, x_test, y_test = test_set(data_dir, dataset)
    check_model_fits(model, x_test, y_test, f"{model_path}: the test set")
    chosen = []
    for i in dict.fromkeys([0, *index]):  # test image 0 always, as a real digit to set the user's beside
        if not 0 <= i < len(x_test):
            raise ConfigError(f"--index must be a test image number from 0 to {len(x_test) - 1}, received {i}")
        chosen.append((f"test{i}", f"test image #{i} (label {model.class_names[y_test[i]]})",
                       to_input(x_test[i:i + 1])[0]))
    for path in image:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem)
        chosen.append((f"image_{slug}", path.name, for_model(model).prepare(path)))
    probs = predict_images(model, x_test)
    return model, log, y_test, probs, pictures(model, to_input(x_test), y_test, probs, chosen, records, count)


def visualize(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model (or checkpoint) file."),
    out: Path = typer.Option(..., "--out", help="Directory for the PNG files (created if missing)."),
    log: Optional[Path] = typer.Option(None, help="The training log, for the training curves (default: the "
                                                  "model's <name>.log.jsonl if it exists)."),
    index: List[int] = typer.Option([], "--index", help=INDEX_HELP),
    image: List[Path] = typer.Option([], "--image", help="An image file of a digit to follow through the "
                                                         "network (repeatable)."),
    count: int = typer.Option(24, help=COUNT_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_DIR_HELP),
    dataset: Optional[str] = typer.Option(None, help=DATASET_HELP),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
):
    """Write PNG pictures of a model: kernels, the convolution at work, feature maps, dense activations,
    predictions, mistakes, the confusion matrix and, from the log, the training curves."""
    check_output_directory(out, "--out")
    _, log, _, _, drawn = _pictures_for(model_path, log, index, image, count, data_dir, dataset, threads)
    written = 0
    for picture in drawn:
        path = out / f"{picture.name}.png"
        png = png_bytes(picture.figure)
        write_atomic(path, lambda fh: fh.write(png))
        typer.echo(f"{path}: {picture.title}")
        written += 1
    if log is None:
        typer.echo("no training log (give one with --log): no training curves", err=True)
    typer.echo(f"wrote {written} pictures to {out}")


def report(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model (or checkpoint) file."),
    out: Path = typer.Option(..., "--out", help="The HTML file to write."),
    log: Optional[Path] = typer.Option(None, help="The training log (default: the model's <name>.log.jsonl if it "
                                                  "exists)."),
    index: List[int] = typer.Option([], "--index", help=INDEX_HELP),
    image: List[Path] = typer.Option([], "--image", help="An image file of a digit to follow (repeatable)."),
    count: int = typer.Option(24, help=COUNT_HELP),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_DIR_HELP),
    dataset: Optional[str] = typer.Option(None, help=DATASET_HELP),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
):
    """Write one self-contained HTML page (opens offline) with every picture of ``visualize``."""
    model, log, labels, probs, drawn = _pictures_for(model_path, log, index, image, count, data_dir, dataset, threads)
    figures = [(p.name, p.title, p.caption, png_bytes(p.figure)) for p in drawn]
    loss, accuracy = scores(probs, labels)
    facts = [("model", str(model_path)), ("parameters", f"{model.parameter_count:,}"),
             ("test accuracy", f"{accuracy:.2%} on {len(labels):,} images (loss {loss:.4f})")]
    if log is not None:
        run = read_log(log)[0]
        train = run.get("train", {})
        facts += [("training", f"{train.get('epochs')} epoch(s) of batch {train.get('batch_size')} on "
                               f"{_count(run.get('train_images'))} images, {train.get('optimizer')} lr "
                               f"{train.get('lr')} ({train.get('lr_schedule')}), seed {train.get('seed')}"),
                  ("training log", str(log))]
    facts.append(("written by", f"cycnn {__version__}, {time.strftime('%Y-%m-%d %H:%M')}"))
    html_report.write(out, html_report.render(f"cycnn report: {model_path.name}", facts, model.summary(), figures))
    typer.echo(f"wrote {out}: {len(figures)} pictures in one page")
