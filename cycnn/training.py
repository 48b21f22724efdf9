"""The training loop: mini-batches in a seeded per-epoch order, augmentation, evaluation, callbacks.

Every random choice of step s in epoch e is drawn from generators seeded by (seed, e, s): the epoch's order, the
augmentation and the dropout masks. A run resumed from a checkpoint at (e, s) therefore continues exactly as the
uninterrupted run would have, with nothing but the weights, the optimizer state and (e, s) to save.
"""
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from cycnn.augment import random_affine
from cycnn.datasets import to_input
from cycnn.errors import ConfigError, TrainingDiverged
from cycnn.layers import Dropout
from cycnn.losses import SoftmaxCrossEntropy


# An observed step records every layer's output for this many images of its batch: the log keeps means and
# fractions of zeros, which a quarter of a batch of 64 estimates well, and the extra layer-by-layer pass that
# records them costs in proportion (the whole batch made logging at the default interval cost about 5% of the
# training time once the fused kernels got fast).
OBSERVED_IMAGES = 16


@dataclass
class TrainConfig:
    """How to train; stored in checkpoints and logs. ``lr_schedule`` is "constant" or "cosine" (to 0 at the end)."""

    epochs: int = 1
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 0.001
    lr_schedule: str = "constant"
    seed: int = 0
    augment: bool = False
    max_degrees: float = 10.0
    max_shift: float = 2.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, received {name}={value!r}")
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"learning rate must be a positive number, received lr={self.lr!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', received {self.lr_schedule!r}")

    def to_dict(self):
        return asdict(self)


class Callback:
    """Hooks the trainer calls; override what you need. ``trainer`` exposes the model, optimizer and state."""

    def on_train_begin(self, trainer):
        pass

    def on_step_begin(self, trainer, info):
        """Before step ``info["step"]`` of ``info["epoch"]``; set ``trainer.keep_activations = True`` to find every
        layer's output for the first ``OBSERVED_IMAGES`` images of this step's batch in
        ``trainer.model.activations`` at ``on_step_end``."""
        pass

    def on_step_end(self, trainer, info):
        pass

    def on_epoch_end(self, trainer, info):
        pass

    def on_train_end(self, trainer):
        pass


@dataclass
class TrainState:
    """Where a run is: the next step to take is ``step`` of ``epoch``; ``global_step`` counts all steps taken."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    train_seconds: float = 0.0
    history: list = field(default_factory=list)
    # The current epoch's running figures, kept here so that an epoch resumed from a checkpoint reports all its steps.
    epoch_seen: int = 0
    epoch_correct: int = 0
    epoch_loss_sum: float = 0.0


class Trainer:
    """Runs ``config`` on ``model`` with ``optimizer`` over uint8 images (N, H, W) and integer labels."""

    def __init__(self, model, optimizer, config, callbacks=(), state=None):
        self.model = model
        self.optimizer = optimizer
        self.config = config
        self.callbacks = list(callbacks)
        self.state = state or TrainState()
        self.loss_fn = SoftmaxCrossEntropy()
        self.stop_requested = False
        self.keep_activations = False  # set by a callback for one step; reset after it
        self.base_lr = config.lr

    def steps_per_epoch(self, n):
        return math.ceil(n / self.config.batch_size)

    def batch_indices(self, epoch, n):
        """The epoch's order, from its own generator (so any epoch's order can be recomputed on resume)."""
        return np.random.default_rng([self.config.seed, epoch]).permutation(n)

    def learning_rate(self, epoch, step, steps):
        if self.config.lr_schedule == "constant":
            return self.base_lr
        progress = (epoch * steps + step) / (self.config.epochs * steps)
        return self.base_lr * 0.5 * (1 + math.cos(math.pi * progress))

    def train_step(self, xb, yb, epoch, step):
        """One forward, backward and update; returns (loss, number correct)."""
        cfg = self.config
        if cfg.augment:
            xb = random_affine(xb, np.random.default_rng([cfg.seed, epoch, step, 1]), cfg.max_degrees, cfg.max_shift)
        for i, layer in enumerate(self.model.layers):
            if isinstance(layer, Dropout):
                layer.rng = np.random.default_rng([cfg.seed, epoch, step, 2, i])
        logits = self.model.forward(xb, keep_activations=OBSERVED_IMAGES if self.keep_activations else False)
        loss = self.loss_fn(logits, yb)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the loss became {loss} at epoch {epoch + 1}, step {step + 1}; "
                                   "try a lower learning rate")
        self.model.backward(self.loss_fn.backward())
        self.optimizer.step(self.model.parameters())
        return loss, int((logits.argmax(axis=1) == yb).sum())

    def fit(self, x_train, y_train, x_val=None, y_val=None):
        """Train until ``config.epochs`` are done or ``stop_requested`` is set; returns the state."""
        cfg, state = self.config, self.state
        n = len(x_train)
        steps = self.steps_per_epoch(n)
        self.model.train()
        for cb in self.callbacks:
            cb.on_train_begin(self)
        while state.epoch < cfg.epochs and not self.stop_requested:
            epoch = state.epoch
            order = self.batch_indices(epoch, n)
            epoch_start = time.perf_counter()
            while state.step < steps and not self.stop_requested:
                step = state.step
                idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                self.optimizer.lr = self.learning_rate(epoch, step, steps)
                self.keep_activations = False
                for cb in self.callbacks:
                    cb.on_step_begin(self, {"epoch": epoch, "step": step, "steps": steps})
                start = time.perf_counter()
                loss, right = self.train_step(to_input(x_train[idx]), y_train[idx], epoch, step)
                elapsed = time.perf_counter() - start
                state.train_seconds += elapsed
                state.step += 1
                state.global_step += 1
                state.epoch_seen += len(idx)
                state.epoch_correct += right
                state.epoch_loss_sum += loss * len(idx)
                info = {"epoch": epoch, "step": step, "steps": steps, "loss": loss, "accuracy": right / len(idx),
                        "batch_size": len(idx), "seconds": elapsed, "lr": self.optimizer.lr}
                for cb in self.callbacks:
                    cb.on_step_end(self, info)
            if state.step < steps:
                break  # stopped mid-epoch
            seen = max(state.epoch_seen, 1)
            record = {"epoch": epoch + 1, "train_loss": state.epoch_loss_sum / seen,
                      "train_accuracy": state.epoch_correct / seen, "wall_s": time.perf_counter() - epoch_start,
                      "train_seconds": state.train_seconds}
            if x_val is not None and len(x_val):
                record["val_loss"], record["val_accuracy"] = evaluate(self.model, x_val, y_val)
                self.model.train()
            state.history.append(record)
            state.epoch += 1
            state.step = state.epoch_seen = state.epoch_correct = 0
            state.epoch_loss_sum = 0.0
            for cb in self.callbacks:
                cb.on_epoch_end(self, record)
        for cb in self.callbacks:
            cb.on_train_end(self)
        self.model.eval()
        return state


def evaluate(model, images, labels, batch_size=1000):
    """(mean cross-entropy, accuracy) of ``model`` on uint8 images (N, H, W) or float inputs."""
    probs = predict_images(model, images, batch_size)
    labels = np.asarray(labels)
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)
    return float(-np.mean(np.log(picked))), float(np.mean(probs.argmax(axis=1) == labels))


def predict_images(model, images, batch_size=1000):
    """Class probabilities for uint8 images (converted batch by batch) or for float inputs."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        return model.predict_proba(images)
    out = np.empty((len(images), model.num_classes))
    for start in range(0, len(images), batch_size):
        out[start:start + batch_size] = model.predict_proba(to_input(images[start:start + batch_size]))
    return out
