"""What the commands share: flag parsing helpers, the thread setup, and loading the data and the model."""
from cycnn.data.datasets import load_data
from cycnn.errors import ConfigError
from cycnn.io.model_file import load_model
from cycnn.nn.runtime import default_threads, keep_large_allocations_in_heap, set_threads

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DATA_DIR_HELP = "IDX or image-folder dataset directory (default: the bundled MNIST)."
DATASET_HELP = "A named dataset: mnist or fashion-mnist."
THREADS_HELP = "Threads for the kernels and BLAS (default: all cores)."


def int_list(text, name):
    """"32,64" -> [32, 64]; an empty string is an empty list."""
    try:
        return [int(v) for v in text.split(",") if v.strip()] if text else []
    except ValueError:
        raise ConfigError(f"--{name} takes comma-separated integers, received {text!r}") from None


def float_list(text, name):
    try:
        return [float(v) for v in text.split(",") if v.strip()] if text else []
    except ValueError:
        raise ConfigError(f"--{name} takes comma-separated numbers, received {text!r}") from None


def setup_threads(threads):
    keep_large_allocations_in_heap()
    set_threads(default_threads() if threads is None else threads)


def test_set(data_dir, dataset):
    """The test images and labels of the dataset the user named (default: the bundled MNIST)."""
    data = load_data(data_dir, dataset)
    return data, data.x_test, data.y_test


__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "float_list", "int_list", "load_model", "setup_threads", "test_set"]
