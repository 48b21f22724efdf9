"""What a training run takes from a dataset: a limit on the training images, a seeded validation hold-out, a
fingerprint that lets a resumed run check it sees the same images, and a check that the labels can be learnt."""
import hashlib
from typing import NamedTuple, Optional

import numpy as np

from cycnn.data.preparation import DIGIT, Preparation
from cycnn.errors import ConfigError, DataError

# The validation hold-out's generator is seeded by (seed, this): independent of every stream the trainer draws.
HOLD_OUT_STREAM = 7


class TrainingData(NamedTuple):
    """The images a run trains, validates and tests on (uint8 (N, H, W), integer labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: Optional[np.ndarray]
    y_val: Optional[np.ndarray]
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: Optional[list]
    num_classes: int
    fingerprint: str
    preparation: Preparation = DIGIT  # how an image file becomes one of these images


def fingerprint(images, labels):
    """SHA-256 of the training images and labels, so that a resumed run can check it sees the same data."""
    digest = hashlib.sha256(f"{images.shape}{images.dtype}{labels.dtype}".encode())
    digest.update(np.ascontiguousarray(images))
    digest.update(np.ascontiguousarray(labels))
    return digest.hexdigest()


def training_data(dataset, limit=None, val_split=0.0, seed=0):
    """Split a ``cycnn.data.datasets.Dataset`` for a run: the first ``limit`` training images, of which a seeded
    random ``val_split`` fraction is held out for validation. The fingerprint covers the images trained on."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit_train must be a positive integer, received limit_train={limit!r}")
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)) or not 0 <= val_split < 1:
        raise ConfigError(f"val_split must be in [0, 1), received val_split={val_split!r}")
    x_train, y_train = dataset.x_train, dataset.y_train
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    _check_labels(dataset, y_train)
    n_val = int(len(x_train) * val_split)
    x_val = y_val = None
    if n_val:
        order = np.random.default_rng([seed, HOLD_OUT_STREAM]).permutation(len(x_train))
        x_val, y_val = x_train[order[:n_val]], y_train[order[:n_val]]
        x_train, y_train = x_train[order[n_val:]], y_train[order[n_val:]]
    num_classes = (len(dataset.class_names) if dataset.class_names is not None
                   else int(max(y_train.max(), dataset.y_test.max())) + 1)
    return TrainingData(x_train, y_train, x_val, y_val, dataset.x_test, dataset.y_test, dataset.class_names,
                        num_classes, fingerprint(x_train, y_train), getattr(dataset, "preparation", DIGIT))


def _check_labels(dataset, y_train):
    """Refuse labels a classifier cannot learn from: a single class in ``y_train`` (training reaches 100% and a
    zero loss while learning nothing), labels beyond the class names, or, where the largest label sets the class
    count, classes without a training image (one damaged label would give the model thousands of outputs)."""
    largest = int(max(dataset.y_train.max(), dataset.y_test.max()))
    if dataset.class_names is not None and largest >= len(dataset.class_names):
        raise DataError(f"a label is {largest} but the dataset names only {len(dataset.class_names)} classes; "
                        "is a label damaged?")
    present = np.unique(y_train)
    if len(present) == 1:
        label = int(present[0])
        named = "" if dataset.class_names is None else f" ({dataset.class_names[label]})"
        raise DataError(f"all {len(y_train):,} training labels are {label}{named}: there is nothing to learn")
    if dataset.class_names is None:
        missing = np.setdiff1d(np.arange(largest + 1), dataset.y_train)
        if len(missing):
            verb = "has" if len(missing) == 1 else "have"
            raise DataError(f"{_class_ranges(missing)} {verb} no training images; is a label damaged?")


def _class_ranges(numbers, shown=4):
    """Sorted class numbers, compactly: "class 7", "classes 3, 10-29999" (the first few runs, then the count)."""
    runs = np.split(numbers, np.flatnonzero(np.diff(numbers) != 1) + 1)
    text = ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs[:shown])
    if len(runs) > shown:
        text += f", ... ({len(numbers):,} in all)"
    return f"class {text}" if len(numbers) == 1 else f"classes {text}"
