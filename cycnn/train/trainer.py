"""The training loop: mini-batches in a seeded per-epoch order, augmentation, evaluation, callbacks.

Every random choice of step s in epoch e is drawn from generators seeded by (seed, e, s): the epoch's order, the
augmentation and the dropout masks. A run resumed from a checkpoint at (e, s) therefore continues exactly as the
uninterrupted run would have, with nothing but the weights, the optimizer state and (e, s) to save.
"""
import math
import time

import numpy as np

from cycnn.data.augment import random_affine
from cycnn.data.datasets import to_input
from cycnn.errors import TrainingDiverged
from cycnn.nn.hooks import ActivationRecorder, LayerTimer
from cycnn.nn.losses import SoftmaxCrossEntropy
from cycnn.train.evaluation import evaluate
from cycnn.train.state import TrainState

# An observed step records every layer's output for this many images of its batch: the log keeps means and
# fractions of zeros, which a quarter of a batch of 64 estimates well, and the extra layer-by-layer pass that
# records them costs in proportion (the whole batch made logging at the default interval cost about 5% of the
# training time once the fused kernels got fast).
OBSERVED_IMAGES = 16
# The streams of (seed, epoch, step, stream) generators.
AUGMENT_STREAM, DROPOUT_STREAM = 1, 2


class Trainer:
    """Runs ``settings`` (a ``RunSettings``) on ``model`` with ``optimizer`` over uint8 images (N, H, W) and
    integer labels, calling ``callbacks`` (``cycnn.train.callbacks``) around every step and epoch.

    While it trains, ``timer`` (a ``LayerTimer``) holds the last step's per-layer times and, after a step that a
    callback asked to observe (``observe_next_step()``, from ``on_step_begin``), ``activations.outputs`` holds every
    layer's output for the first ``OBSERVED_IMAGES`` images of its batch and ``step_observed`` is true.
    """

    def __init__(self, model, optimizer, settings, callbacks=(), state=None):
        self.model = model
        self.optimizer = optimizer
        self.settings = settings
        self.callbacks = list(callbacks)
        self.state = state or TrainState()
        self.loss_fn = SoftmaxCrossEntropy()
        self.stop_requested = False
        self.timer = LayerTimer()
        self.activations = ActivationRecorder(OBSERVED_IMAGES)
        self.step_observed = False
        self.base_lr = settings.lr

    def observe_next_step(self):
        self.activations.armed = True

    def steps_per_epoch(self, n):
        return math.ceil(n / self.settings.batch_size)

    def batch_indices(self, epoch, n):
        """The epoch's order, from its own generator (so any epoch's order can be recomputed on resume)."""
        return np.random.default_rng([self.settings.seed, epoch]).permutation(n)

    def learning_rate(self, epoch, step, steps):
        return self.base_lr * self._schedule(epoch, step, steps)

    def _schedule(self, epoch, step, steps):
        """The schedule's factor on the peak rate at this step: 1, or the cosine's decay from 1 to 0."""
        if self.settings.lr_schedule == "constant":
            return 1.0
        progress = (epoch * steps + step) / (self.settings.epochs * steps)
        return 0.5 * (1 + math.cos(math.pi * progress))

    def set_learning_rate(self, lr, epoch, step, steps):
        """From this step on the rate is ``lr``: the new constant rate, or the cosine schedule scaled so that it
        passes through ``lr`` here and goes on decaying to 0 at the run's end. The settings (and so a checkpoint,
        and a resume from it) keep the schedule's new peak."""
        factor = max(self._schedule(epoch, step, steps), 1e-12)
        self.base_lr = self.settings.lr = lr / factor
        self.optimizer.lr = self.learning_rate(epoch, step, steps)

    def notify_change(self, change, before, after):
        """Tell the callbacks (``on_change``) that a setting of the run changed at the coming step."""
        self._call("on_change", {"step": self.state.global_step, "epoch": self.state.epoch + 1, "change": change,
                                 "from": before, "to": after})

    def train_step(self, xb, yb, epoch, step):
        """One forward, backward and update; returns (loss, number correct). A non-finite loss stops the run
        before it can reach the weights."""
        logits, loss = self.forward_step(xb, yb, epoch, step)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the loss became {loss} at epoch {epoch + 1}, step {step + 1}; "
                                   "try a lower learning rate")
        self.model.backward(self.loss_fn.backward())
        self.optimizer.step(self.model.parameters())
        return loss, int((logits.argmax(axis=1) == yb).sum())

    def forward_step(self, xb, yb, epoch, step):
        """The step's augmentation and dropout masks (drawn from ``generator`` and ``seed_dropout``), forward pass
        and loss: (logits, loss)."""
        s = self.settings
        if s.augment:
            xb = random_affine(xb, self.generator(epoch, step, AUGMENT_STREAM), s.max_degrees,
                               s.max_shift, s.flip)
        self.seed_dropout(epoch, step)
        logits = self.model.forward(xb)
        return logits, self.loss_fn(logits, yb)

    def generator(self, epoch, step, stream):
        """The generator of one stream of step ``step`` of ``epoch``: seeded by (seed, epoch, step, stream)."""
        return np.random.default_rng([self.settings.seed, epoch, step, stream])

    def seed_dropout(self, epoch, step):
        """Seed the dropout masks of step ``step`` of ``epoch`` from (seed, epoch, step)."""
        self.model.seed_dropout([self.settings.seed, epoch, step, DROPOUT_STREAM])

    def batch(self, x_train, y_train, idx):
        """The images (as network input) and labels this process trains on for the batch ``idx``."""
        return to_input(x_train[idx]), y_train[idx]

    def evaluate(self, images, labels):
        """(mean cross-entropy, accuracy) of the model on ``images`` (validation, a target's test)."""
        return evaluate(self.model, images, labels)

    def fit(self, x_train, y_train, x_val=None, y_val=None):
        """Train until the settings' epochs are done or ``stop_requested`` is set; returns the state."""
        self.model.train()
        self.timer.attach(self.model)
        self.activations.attach(self.model)
        try:
            self._call("on_train_begin")
            while self.state.epoch < self.settings.epochs and not self.stop_requested:
                if not self._epoch(x_train, y_train, x_val, y_val):
                    break  # stopped mid-epoch
            self._call("on_train_end")
        finally:
            self.timer.detach()
            self.activations.detach()
            self.model.eval()
        return self.state

    def _epoch(self, x_train, y_train, x_val, y_val):
        """Run the rest of the current epoch; False if it was stopped before its end."""
        state, n = self.state, len(x_train)
        epoch, steps = state.epoch, self.steps_per_epoch(n)
        order = self.batch_indices(epoch, n)
        epoch_start = time.perf_counter()
        while state.step < steps and not self.stop_requested:
            self._step(x_train, y_train, order, epoch, state.step, steps)
        if state.step < steps:
            return False
        seen = max(state.epoch_seen, 1)
        record = {"epoch": epoch + 1, "train_loss": state.epoch_loss_sum / seen,
                  "train_accuracy": state.epoch_correct / seen, "wall_s": time.perf_counter() - epoch_start,
                  "train_seconds": state.train_seconds}
        if x_val is not None and len(x_val):
            record["val_loss"], record["val_accuracy"] = self.evaluate(x_val, y_val)
            self.model.train()
        state.history.append(record)
        state.epoch += 1
        state.step = state.epoch_seen = state.epoch_correct = 0
        state.epoch_loss_sum = 0.0
        self._call("on_epoch_end", record)
        return True

    def _step(self, x_train, y_train, order, epoch, step, steps):
        state, batch = self.state, self.settings.batch_size
        idx = order[step * batch:(step + 1) * batch]
        self.optimizer.lr = self.learning_rate(epoch, step, steps)
        self.activations.armed = False
        self._call("on_step_begin", {"epoch": epoch, "step": step, "steps": steps})
        if self.stop_requested:  # asked for while a callback held the step (a paused run): it does not run
            return
        self.step_observed = self.activations.armed
        start = time.perf_counter()
        loss, right = self.train_step(*self.batch(x_train, y_train, idx), epoch, step)
        elapsed = time.perf_counter() - start
        state.train_seconds += elapsed
        state.step += 1
        state.global_step += 1
        state.epoch_seen += len(idx)
        state.epoch_correct += right
        state.epoch_loss_sum += loss * len(idx)
        self._call("on_step_end", {"epoch": epoch, "step": step, "steps": steps, "loss": loss,
                                   "accuracy": right / len(idx), "batch_size": len(idx), "seconds": elapsed,
                                   "lr": self.optimizer.lr})

    def _call(self, event, *args):
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)
