"""``cycnn evaluate``, ``predict``, ``summary`` and ``export``: what a saved model answers and how it looks."""
import io
import json
import re
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from PIL import Image

from cycnn.cli.common import DATA_DIR_HELP, DATASET_HELP, THREADS_HELP, load_model, setup_threads, test_set
from cycnn.data.datasets import check_model_fits
from cycnn.data.preparation import for_model
from cycnn.errors import ConfigError, OutputError
from cycnn.io import architecture, onnx_export
from cycnn.io.atomic import write_atomic
from cycnn.train.evaluation import confusion_matrix, per_class_scores, predict_images, scores

# Beyond this many classes the confusion matrix does not fit a terminal; --json still has it.
MAX_TABLE_CLASSES = 30


def evaluate(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model (or checkpoint) file."),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_DIR_HELP),
    dataset: Optional[str] = typer.Option(None, help=DATASET_HELP),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Accuracy, loss, confusion matrix and per-class precision/recall/F1 on the test set."""
    model = load_model(model_path)
    setup_threads(threads)
    data, x_test, y_test = test_set(data_dir, dataset, model)
    check_model_fits(model, x_test, y_test, f"{model_path}: the test set")
    if data.class_names is not None and model.class_names != list(data.class_names):
        raise ConfigError(f"{model_path}: the model's classes ({_names(model.class_names)}) are not the "
                          f"dataset's ({_names(data.class_names)})")
    probs = predict_images(model, x_test)
    predicted = probs.argmax(axis=1)
    loss, accuracy = scores(probs, y_test)
    confusion = confusion_matrix(y_test, predicted, model.num_classes)
    per_class = per_class_scores(confusion, model.class_names)
    if json_output:
        typer.echo(json.dumps({"accuracy": accuracy, "loss": loss, "confusion_matrix": confusion.tolist(),
                               "per_class": per_class, "images": int(len(y_test))}))
        return
    typer.echo(f"{model_path}: accuracy {accuracy:.2%}, loss {loss:.4f} on {len(y_test):,} test images\n")
    if model.num_classes > MAX_TABLE_CLASSES:
        typer.echo(f"({model.num_classes} classes: the confusion matrix and per-class table are in --json)")
        return
    width = max(5, max(len(c) for c in model.class_names))
    typer.echo("confusion matrix (rows: true class, columns: predicted)")
    typer.echo(" " * (width + 1) + " ".join(f"{c:>{width}}" for c in model.class_names))
    for name, row in zip(model.class_names, confusion):
        typer.echo(f"{name:>{width}} " + " ".join(f"{v:>{width}}" for v in row))
    typer.echo(f"\n{'class':>{width}}  precision  recall     f1  support")
    for s in per_class:
        typer.echo(f"{s['class']:>{width}}  {s['precision']:9.4f}  {s['recall']:6.4f}  {s['f1']:.4f}  "
                   f"{s['support']:7d}")


def _names(names, most=12):
    shown = ", ".join(names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")


def predict(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model (or checkpoint) file."),
    images: List[Path] = typer.Argument(..., metavar="IMAGE...", help="PNG or JPEG files of single digits."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON list."),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
    save_input: Optional[Path] = typer.Option(
        None, metavar="DIR", help="Write, for each image, the input the network saw as DIR/<name>-HxW.png (a digit: "
                                  "white ink on black, as the network sees it) (created if missing)."),
):
    """The digit in each image, with the class probabilities (images are preprocessed the MNIST way)."""
    model = load_model(model_path)
    setup_threads(threads)
    if save_input is not None:
        _make_directory(save_input)
    preparation = for_model(model)
    batch = np.stack([preparation.prepare(path) for path in images])
    probs = model.predict_proba(batch)
    results = [{"file": str(path), "label": model.class_names[int(p.argmax())],
                "probabilities": {name: float(v) for name, v in zip(model.class_names, p)}}
               for path, p in zip(images, probs)]
    if save_input is not None:
        for result, name, image in zip(results, _input_names(images, batch.shape[2:]), batch):
            result["saved_input"] = str(save_input / name)
            write_atomic(save_input / name, lambda fh, image=image: fh.write(_png(image)))
    if json_output:
        typer.echo(json.dumps(results))
        return
    for r, p in zip(results, probs):
        top = np.argsort(p)[::-1][:3]
        others = ", ".join(f"{model.class_names[i]} {p[i]:.1%}" for i in top[1:])
        typer.echo(f"{r['file']}: {r['label']} ({p.max():.1%}; then {others})")


def _make_directory(directory):
    """``directory``, created if missing; a file in its place is an error before any work."""
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory}: not a directory (--save-input takes a directory)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{directory}: cannot create the directory ({exc.strerror or exc})") from None


def _input_names(images, size):
    """One file name per input, from its own name reduced to safe characters (never a path, never hidden) and
    numbered where two would be the same ("3.png" and "3.jpg"), so that no input overwrites another's."""
    names, used = [], set()
    for path in images:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem).lstrip(".")[:100] or "image"
        name, number = f"{stem}-{size[0]}x{size[1]}.png", 1
        while name.lower() in used:
            number += 1
            name = f"{stem}-{number}-{size[0]}x{size[1]}.png"
        used.add(name.lower())
        names.append(name)
    return names


def _png(image):
    """A (C, H, W) input in [0, 1] as PNG bytes: gray (0 black, 1 white) or RGB."""
    buffer = io.BytesIO()
    pixels = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def summary(target: Path = typer.Argument(..., metavar="MODEL_OR_ARCH",
                                          help="A model file, or an architecture file (.json/.toml).")):
    """Print the layer table (output shapes and parameter counts) of a model or an architecture file."""
    if target.suffix in (".json", ".toml"):
        model = architecture.build(architecture.load_file(target), initialize=False)
    else:
        model = load_model(target)
    typer.echo(model.summary())


def export(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model (or checkpoint) file."),
    out: Path = typer.Argument(..., metavar="OUT.onnx", help="Where to write the ONNX model."),
    opset: int = typer.Option(13, help="ONNX opset version (13 or later)."),
):
    """Write the model as an ONNX file (input "image" (N, C, H, W) in [0, 1], output "probabilities")."""
    onnx_export.require_onnx()
    model = load_model(model_path)
    onnx_export.export(model, out, opset)
    c, h, w = model.input_shape
    typer.echo(f"wrote {out}: ONNX opset {opset}, input {onnx_export.INPUT_NAME!r} (N, {c}, {h}, {w}), "
               f"output {onnx_export.OUTPUT_NAME!r} (N, {model.num_classes})")
