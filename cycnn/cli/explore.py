"""``cycnn explore``: serve the explorer page for a saved model until Ctrl+C."""
import time
import webbrowser
from pathlib import Path
from typing import Optional

import typer

from cycnn.cli.common import DATA_DIR_HELP, DATASET_HELP, THREADS_HELP, load_model, setup_threads, test_set
from cycnn.data.datasets import input_shape_of
from cycnn.errors import CycnnError, DataError, Interrupted
from cycnn.viz.explore.api import Explorer
from cycnn.viz.explore.shared import SharedModel
from cycnn.viz.explore.testset import TestSet
from cycnn.viz.server import LOOPBACK, JsonServer, check_port

DEFAULT_PORT = 8766


def explore(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model (or checkpoint) file."),
    port: int = typer.Option(DEFAULT_PORT, help="Port to serve on (0 picks a free one)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; any other than 127.0.0.1 needs the printed "
                                                "token (in the URL)."),
    data_dir: Optional[Path] = typer.Option(None, help=DATA_DIR_HELP + " Its test set feeds the test-image "
                                                                       "picker, the confusion matrix, the "
                                                                       "robustness curves and the PCA map."),
    dataset: Optional[str] = typer.Option(None, help=DATASET_HELP),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in a web browser."),
):
    """Draw a digit (or upload one, or pick a test image) and watch every layer of MODEL respond."""
    check_port(port)  # before the model and the test set take their seconds to load
    model = load_model(model_path)
    setup_threads(threads)
    shared = SharedModel(model)
    tests, note = _tests(shared, data_dir, dataset)
    explorer = Explorer(shared, tests, title=model_path.name)
    server = JsonServer(explorer.routes(), port, host, what="the explorer")
    typer.echo(f"exploring {model_path} at {server.url}" + (f" ({note})" if note else ""))
    if host not in LOOPBACK:
        typer.echo("the server is reachable from other machines; requests need the token in that URL", err=True)
    typer.echo("press Ctrl+C to stop", err=True)
    if open_browser and not webbrowser.open(server.url):
        typer.echo("cycnn: warning: no web browser found; open the address above", err=True)
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, Interrupted):
        typer.echo("explorer stopped", err=True)
    finally:
        server.stop()


def _tests(shared, data_dir, dataset):
    """The test set for the explorer's test-set panels, or (None, why not) when it does not fit the model; a
    dataset the user named that cannot be read is an error."""
    model = shared.model
    try:
        data, images, labels = test_set(data_dir, dataset, model)
    except DataError:
        if data_dir is None and dataset is None:
            return None, "no test set: the bundled MNIST is missing"
        raise
    if input_shape_of(images) != tuple(model.input_shape) or (len(labels) and int(labels.max()) >= model.num_classes):
        if data_dir is None and dataset is None:
            return None, "no test set: the model does not take MNIST's images"
        raise CycnnError(f"the test set ({input_shape_of(images)} images) does not fit the model "
                         f"({tuple(model.input_shape)} inputs, {model.num_classes} classes)")
    if data.class_names is not None and list(data.class_names) != model.class_names:
        raise CycnnError("the dataset's classes are not the model's")
    return TestSet(shared, images, labels, source=str(data_dir or dataset or "MNIST")), None
