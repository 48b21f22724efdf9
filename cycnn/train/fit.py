"""Keras-style entry points for people who import cycnn: ``fit`` trains a model in one call and returns its
history; ``evaluate`` and ``predict`` answer on images.

They are the trainer and callbacks the command line uses, with the file-writing parts left to the caller::

    history = cycnn.fit(model, x_train, y_train, epochs=2, validation_split=0.1)
    print(history.history["val_accuracy"])
"""
from dataclasses import dataclass, field

import numpy as np

from cycnn.errors import ConfigError
from cycnn.nn.optim import make_optimizer
from cycnn.train.callbacks import DivergenceStop, ProgressBar
from cycnn.train.evaluation import evaluate as _loss_and_accuracy
from cycnn.train.evaluation import predict_images
from cycnn.train.settings import RunSettings
from cycnn.train.trainer import Trainer


@dataclass
class History:
    """What ``fit`` returns: ``epochs`` (one record per epoch, as the training log writes them) and ``history``
    (Keras's form: each figure's list over the epochs, e.g. ``history["train_loss"]``)."""

    epochs: list = field(default_factory=list)

    @property
    def history(self):
        keys = dict.fromkeys(key for record in self.epochs for key in record)
        return {key: [record.get(key) for record in self.epochs] for key in keys}


def fit(model, x, y, epochs=1, batch_size=64, optimizer="adam", lr=0.001, lr_schedule="constant",
        validation_data=None, validation_split=0.0, augment=False, seed=0, callbacks=(), verbose=False):
    """Train ``model`` on uint8 images ``x`` (N, H, W) with integer labels ``y``; returns a ``History``.

    ``validation_data`` is an (images, labels) pair; without it, ``validation_split`` holds out that fraction
    of x (the last images, as Keras does). ``optimizer`` is "adam", "sgd" or an optimizer object. ``callbacks``
    are ``cycnn.train.callbacks.Callback`` objects (``verbose`` adds the progress bar and epoch lines).
    A loss that explodes or becomes NaN raises TrainingDiverged. The model is left in eval mode.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ConfigError(f"{len(x)} images and {len(y)} labels")
    settings = RunSettings(epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, seed=seed,
                           augment=augment, val_split=validation_split,
                           optimizer=optimizer if isinstance(optimizer, str) else optimizer.name)
    if validation_data is None and validation_split:
        cut = len(x) - int(len(x) * validation_split)
        x, y, validation_data = x[:cut], y[:cut], (x[cut:], y[cut:])
    x_val, y_val = validation_data if validation_data is not None else (None, None)
    opt = make_optimizer(optimizer, lr) if isinstance(optimizer, str) else optimizer
    every = [DivergenceStop(), *([ProgressBar()] if verbose else []), *callbacks]
    state = Trainer(model, opt, settings, every).fit(x, y, x_val, y_val)
    return History(state.history)


def evaluate(model, x, y, batch_size=1000):
    """{"loss": mean cross-entropy, "accuracy": fraction right} of ``model`` on images x and labels y."""
    loss, accuracy = _loss_and_accuracy(model, x, y, batch_size)
    return {"loss": loss, "accuracy": accuracy}


def predict(model, x, batch_size=1000):
    """Class probabilities (N, classes) for uint8 images (N, H, W) or float inputs (N, C, H, W)."""
    return predict_images(model, x, batch_size)
