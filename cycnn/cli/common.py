"""What the commands share: flag parsing helpers, the thread setup, and loading the data and the model."""
import re

from cycnn.data.datasets import load_data
from cycnn.data.preparation import for_model
from cycnn.errors import ConfigError
from cycnn.io.model_file import load_model
from cycnn.nn.runtime import default_threads, keep_large_allocations_in_heap, set_threads

EXIT_USAGE = 2

DATA_DIR_HELP = "IDX or image-folder dataset directory (default: the bundled MNIST)."
DATASET_HELP = "A named dataset: mnist or fashion-mnist."
THREADS_HELP = "Threads for the kernels and BLAS (default: all cores)."


INTEGER = re.compile(r"-?[0-9]{1,9}")  # ASCII digits only: int() would also take "３２" or "1_000"
NUMBER = re.compile(r"-?[0-9]*\.?[0-9]+(e[-+]?[0-9]+)?", re.IGNORECASE)


def _items(text, name, pattern, convert, kind):
    """"32,64" -> [32, 64]; an empty string is an empty list, an empty item ("32,,64") an error."""
    if not text:
        return []
    items = [item.strip() for item in text.split(",")]
    if not all(pattern.fullmatch(item) for item in items):
        raise ConfigError(f"--{name} takes comma-separated {kind}, received {text!r}")
    return [convert(item) for item in items]


def int_list(text, name):
    return _items(text, name, INTEGER, int, "whole numbers (at most 9 digits each)")


def float_list(text, name):
    return _items(text, name, NUMBER, float, "numbers")


def setup_threads(threads):
    keep_large_allocations_in_heap()
    set_threads(default_threads() if threads is None else threads)


def test_set(data_dir, dataset, model=None):
    """The test images and labels of the dataset the user named (default: the bundled MNIST); an image folder's
    pictures are prepared as ``model``'s training images were."""
    data = load_data(data_dir, dataset, preparation=for_model(model) if model is not None else None)
    return data, data.x_test, data.y_test


__all__ = ["EXIT_USAGE", "float_list", "int_list", "load_model", "setup_threads", "test_set"]
