"""Data-parallel training over MPI: every rank holds the whole model and takes its contiguous share of each global
batch (``--batch-size``); one in-place allreduce of one buffer holding every gradient sums the shares' gradients,
each weighted by its share of the batch, so the sum is the gradient of the loss's mean over the global batch; then
every rank takes the same optimizer step.

N ranks compute what one process computes for the same seed: the order of the data, the augmentation and the
dropout masks come from the generators one process seeds per step by (seed, epoch, step), drawn for the whole
global batch on every rank, of which each rank keeps its rows (``ShareDraws``). What differs is only the order of
float32 sums: the allreduce's, and those inside the products over a share instead of the whole batch.

The allreduce also carries each rank's loss, number of correct answers and wish to stop, so every rank sees the
same loss (a NaN on any rank stops every rank at the same step) and stops after the same step (Ctrl-C, a target
reached). At each epoch's end the ranks compare a digest of their weights and optimizer state.
"""
import hashlib
import math
import time

import numpy as np

from cycnn.data.datasets import to_input
from cycnn.errors import CycnnError, TrainingDiverged
from cycnn.train.callbacks import DivergenceStop, TargetAccuracy
from cycnn.train.evaluation import predict_images, scores
from cycnn.train.trainer import Trainer
from cycnn.train.world import share_bounds

# The slots after the gradients in the allreduced buffer: the share's weighted loss, its correct answers, its stop.
LOSS, CORRECT, STOP = range(3)
EXTRAS = 3
# Callbacks that every rank runs on the same figures, so an error they raise is raised by every rank at once.
SHARED_CALLBACKS = (DivergenceStop, TargetAccuracy)


class RanksDiverged(CycnnError):
    """The ranks' weights differ (the MPI library's sums were not the same on every rank)."""


class ShareDraws:
    """A generator's draws for a whole global batch of ``total`` images, of which a rank keeps its rows [lo, hi):
    the per-image random numbers one process would have drawn for these images. Every draw must have one row per
    image of the share (what augmentation and dropout draw)."""

    def __init__(self, rng, total, lo, hi):
        self.rng, self.total, self.lo, self.hi = rng, total, lo, hi

    def _rows(self, draw, size):
        shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size or ())
        if not shape or shape[0] != self.hi - self.lo:
            raise ValueError(f"a per-image draw of shape {shape} for a share of {self.hi - self.lo} images")
        return draw((self.total, *shape[1:]))[self.lo:self.hi]

    def random(self, size=None, dtype=np.float64):
        return self._rows(lambda shape: self.rng.random(shape, dtype=dtype), size)

    def uniform(self, low=0.0, high=1.0, size=None):
        return self._rows(lambda shape: self.rng.uniform(low, high, shape), size)

    def __getattr__(self, name):
        raise AttributeError(f"ShareDraws draws per image with random() and uniform() only, not {name}()")


class GradientBuffer:
    """One contiguous array holding every parameter's gradient, then the ``EXTRAS`` slots: what one allreduce sums.
    After the sum the layers' gradients are views of it (the optimizer reads them there, with no copy back)."""

    def __init__(self, model):
        params = model.parameters()
        dtype = params[0][1].dtype if params else np.float32
        self.slots, offset = [], 0
        for key, param, _ in params:
            index, name = key.split(".", 1)
            self.slots.append((int(index), name, offset, param.shape))
            offset += param.size
        self.array = np.zeros(offset + EXTRAS, dtype=dtype)
        self.extras = self.array[offset:]
        self.views = [self.array[o:o + math.prod(shape)].reshape(shape) for _, _, o, shape in self.slots]

    def pack(self, model):
        for (index, name, _, _), view in zip(self.slots, self.views):
            view[...] = model.layers[index].grads[name]

    def clear(self):
        self.array[...] = 0

    def unpack(self, model):
        for (index, name, _, _), view in zip(self.slots, self.views):
            model.layers[index].grads[name] = view


def weights_digest(model, optimizer):
    """A digest of the weights and the optimizer's state, to compare across ranks."""
    digest = hashlib.blake2b(digest_size=16)
    for _, param, _ in model.parameters():
        digest.update(np.ascontiguousarray(param))
    state = optimizer.state_dict()
    digest.update(str(state["t"]).encode())
    for key in sorted(state["arrays"]):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(state["arrays"][key]))
    return digest.digest()


class DistributedTrainer(Trainer):
    """The trainer of one rank of an MPI run (``world``, a ``cycnn.train.world.World``): the ``Trainer``'s loop,
    with each step on this rank's share of the global batch and the gradients summed across the ranks.

    ``stop_requested`` takes effect when every rank knows it: a request (a signal, a callback) travels with the
    next allreduce, or the epoch's closing exchange, and every rank stops after the same step. ``evaluate`` splits
    the images across the ranks. On rank 0, ``checkpointer`` saves a checkpoint when the job loses a rank;
    ``resume_hint()`` gives the command that resumes it.
    """

    _stop_local = _stop_agreed = False

    def __init__(self, world, model, optimizer, settings, callbacks=(), state=None, checkpointer=None,
                 resume_hint=None):
        super().__init__(model, optimizer, settings, callbacks, state)
        self.world, self.checkpointer, self.resume_hint = world, checkpointer, resume_hint
        self.gradients = GradientBuffer(model)
        self.allreduce_seconds, self.allreduce_steps = 0.0, 0
        self.steps_taken = 0  # by this process (a resumed run starts again from 0)
        self._share = (0, 0, 0)
        world.on_lost = self._save_when_lost

    @property
    def stop_requested(self):
        return self._stop_agreed

    @stop_requested.setter
    def stop_requested(self, value):
        self._stop_local = bool(value)

    # --- one step -------------------------------------------------------------------------------------------
    def batch(self, x_train, y_train, idx):
        lo, hi = share_bounds(len(idx), self.world.rank, self.world.size)
        self._share = (lo, hi, len(idx))
        return to_input(x_train[idx[lo:hi]]), y_train[idx[lo:hi]]

    def generator(self, epoch, step, stream):
        lo, hi, total = self._share
        return ShareDraws(super().generator(epoch, step, stream), total, lo, hi)

    def seed_dropout(self, epoch, step):
        super().seed_dropout(epoch, step)
        lo, hi, total = self._share
        for layer in self.model.layers:
            if isinstance(getattr(layer, "rng", None), np.random.Generator):
                layer.rng = ShareDraws(layer.rng, total, lo, hi)

    def train_step(self, xb, yb, epoch, step):
        """This share's forward and backward pass, the allreduce, and the update every rank takes; returns the
        global batch's (loss, number correct)."""
        lo, hi, total = self._share
        buffer, loss, right = self.gradients, 0.0, 0
        if hi > lo:
            logits, loss = self.forward_step(xb, yb, epoch, step)
            right = int((logits.argmax(axis=1) == yb).sum())
        if hi > lo and math.isfinite(loss):
            self.model.backward(self.loss_fn.backward() * ((hi - lo) / total))
            buffer.pack(self.model)
        else:
            buffer.clear()
        buffer.extras[LOSS], buffer.extras[CORRECT], buffer.extras[STOP] = loss * (hi - lo) / total, right, \
            self._stop_local
        started = time.perf_counter()
        self.world.allreduce(buffer.array, f"step {step + 1} of epoch {epoch + 1}")
        self.allreduce_seconds += time.perf_counter() - started
        self.allreduce_steps += 1
        buffer.unpack(self.model)
        loss, right = float(buffer.extras[LOSS]), int(round(float(buffer.extras[CORRECT])))
        self._stop_agreed = self._stop_agreed or bool(buffer.extras[STOP] > 0)
        if not math.isfinite(loss):
            self.world.agreed = True
            raise TrainingDiverged(f"the loss became {loss} at epoch {epoch + 1}, step {step + 1}; "
                                   "try a lower learning rate")
        self.optimizer.step(self.model.parameters())
        self.steps_taken += 1
        return loss, right

    # --- epochs, evaluation, callbacks ------------------------------------------------------------------------
    def _epoch(self, x_train, y_train, x_val, y_val):
        finished = super()._epoch(x_train, y_train, x_val, y_val)
        if finished:
            self._close_epoch()
        return finished

    def _close_epoch(self):
        """The epoch's closing exchange: every rank's weights digest and wish to stop."""
        mine = weights_digest(self.model, self.optimizer) + bytes([self._stop_local])
        everyone = self.world.allgather_bytes(mine, f"the end of epoch {self.state.epoch}")
        self._stop_agreed = self._stop_agreed or any(b[-1] for b in everyone)
        differing = [rank for rank, b in enumerate(everyone) if b[:-1] != everyone[0][:-1]]
        if differing:
            self.world.agreed = True
            raise RanksDiverged(f"after epoch {self.state.epoch} the weights of rank(s) "
                                f"{', '.join(map(str, differing))} differ from rank 0's: this MPI library's sums "
                                "are not the same on every rank")

    def evaluate(self, images, labels):
        """(mean cross-entropy, accuracy) over all ``images``, each rank predicting its contiguous share."""
        lo, hi = share_bounds(len(images), self.world.rank, self.world.size)
        totals = np.zeros(2)
        if hi > lo:
            loss, accuracy = scores(predict_images(self.model, images[lo:hi]), np.asarray(labels)[lo:hi])
            totals[:] = loss * (hi - lo), accuracy * (hi - lo)
        self.world.allreduce(totals, "an evaluation")
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(totals[0] / np.float64(len(images))), float(totals[1] / np.float64(len(images)))

    def _call(self, event, *args):
        for callback in self.callbacks:
            try:
                getattr(callback, event)(self, *args)
            except CycnnError:
                if isinstance(callback, SHARED_CALLBACKS):  # every rank raised it, on the same figures
                    self.world.agreed = True
                raise

    def figures(self):
        """What ``--json`` adds for a run on several ranks."""
        steps = max(self.allreduce_steps, 1)
        return {"ranks": self.world.size, "allreduce_s": self.allreduce_seconds,
                "allreduce_ms_per_step": 1000.0 * self.allreduce_seconds / steps}

    def _save_when_lost(self):
        """Rank 0, when the job loses a rank: a checkpoint of the last step every rank finished (if this process
        took one), the command that resumes, and the output's lock released (the process ends without cleanup)."""
        try:
            if self.checkpointer is None:
                return ""
            if self.steps_taken:
                self.checkpointer.save(self)
                note = f"; saved a checkpoint at epoch {self.state.epoch + 1}, step {self.state.step} to "
            elif self.checkpointer.written:
                note = "; the last checkpoint is "
            else:
                return "; no checkpoint was written"
            hint = f"; resume with: {self.resume_hint()}" if self.resume_hint else ""
            return f"{note}{self.checkpointer.path}{hint}"
        finally:
            if getattr(self, "output_lock", None) is not None:
                self.output_lock.__exit__(None, None, None)
