"""Callbacks: what the trainer calls around every step and epoch (Keras's idea), and the ones cycnn ships.

A callback overrides the methods it needs; each gets the trainer (``model``, ``optimizer``, ``settings``,
``state``, ``timer``, ``activations``) and, for steps and epochs, a dict of what just happened. Setting
``trainer.stop_requested`` ends the run after the current step. The command line builds its run from these same
classes, so anything ``cycnn train`` does, a script can do.
"""
import math

from cycnn.errors import TrainingDiverged
from cycnn.train.checkpoint import save_checkpoint


class Callback:
    """Hooks the trainer calls; override what you need."""

    def on_train_begin(self, trainer):
        pass

    def on_step_begin(self, trainer, info):
        """Before step ``info["step"]`` of ``info["epoch"]`` (of ``info["steps"]``); call
        ``trainer.observe_next_step()`` to find every layer's output for the first images of this step's batch in
        ``trainer.activations.outputs`` at ``on_step_end``."""

    def on_step_end(self, trainer, info):
        """After a step: ``info`` has its loss, accuracy, batch_size, seconds and lr."""

    def on_epoch_end(self, trainer, record):
        """After an epoch: ``record`` is its line of the history (losses, accuracies, times)."""

    def on_train_end(self, trainer):
        pass

    def on_change(self, trainer, event):
        """A setting changed from the coming step on (``cycnn.train.controls``): ``event`` has the ``step`` (steps
        done so far), ``epoch``, ``change`` ("lr", "dropout", "delay", "paused", "resumed"), ``from`` and ``to``."""


class ProgressBar(Callback):
    """A progress bar per epoch on stderr (loss, accuracy, images/s) while it is a terminal, and a summary line
    per epoch through ``echo`` (stdout by default). ``quiet`` prints neither."""

    def __init__(self, quiet=False, echo=print):
        self.quiet, self.echo = quiet, echo
        self.bar = None
        self._images = self._seconds = 0.0
        self._loss = self._acc = None

    def on_step_end(self, trainer, info):
        if self.quiet:
            return
        if self.bar is None and not self._start(trainer, info):
            return
        smooth = 0.9 if self._loss is not None else 0.0
        self._loss = smooth * (self._loss or 0) + (1 - smooth) * info["loss"]
        self._acc = smooth * (self._acc or 0) + (1 - smooth) * info["accuracy"]
        self._images += info["batch_size"]
        self._seconds += info["seconds"]
        stats = f"loss {self._loss:.4f}  acc {self._acc:6.2%}  {self._images / self._seconds:,.0f} img/s"
        self.bar.update(self.task, completed=info["step"] + 1, stats=stats)

    def _start(self, trainer, info):
        """Start the epoch's bar; False when stderr is not a terminal (a bar there would leave blank lines).
        rich is imported here, by the one callback that draws, so that importing cycnn does not load it."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        console = Console(stderr=True)
        if not console.is_terminal:
            return False
        self.bar = Progress(TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                            console=console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task("train", total=info["steps"], completed=info["step"],
                                      epoch=info["epoch"] + 1, epochs=trainer.settings.epochs, stats="")
        return True

    def on_epoch_end(self, trainer, record):
        self.close()
        line = (f"epoch {record['epoch']}/{trainer.settings.epochs}: loss {record['train_loss']:.4f}, "
                f"accuracy {record['train_accuracy']:.2%}")
        if "val_accuracy" in record:
            line += f", val loss {record['val_loss']:.4f}, val accuracy {record['val_accuracy']:.2%}"
        if "test_accuracy" in record:
            line += f", test accuracy {record['test_accuracy']:.2%}"
        line += f", {record['wall_s']:.1f} s"
        if not self.quiet:
            self.echo(line)
        self._images = self._seconds = 0.0

    def on_train_end(self, trainer):
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class Checkpointer(Callback):
    """Writes a checkpoint to ``path`` every ``every`` steps (0: never mid-epoch) and at each epoch's end;
    ``written`` says whether a good one exists (a resumed run starts from one)."""

    def __init__(self, path, every=0, resumed=False):
        self.path, self.every = path, every
        self.written = resumed

    def on_step_end(self, trainer, info):
        if self.every and trainer.state.global_step % self.every == 0:
            self.save(trainer)

    def on_epoch_end(self, trainer, record):
        self.save(trainer)

    def save(self, trainer):
        save_checkpoint(self.path, trainer.model, trainer.optimizer, trainer.state, trainer.settings)
        self.written = True


class TargetAccuracy(Callback):
    """Time to accuracy, as in DAWNBench: after each epoch, test accuracy; stop once it reaches ``target``.

    The evaluation is not counted in the training time the run reports; ``reached`` holds the figures once met.
    """

    def __init__(self, x_test, y_test, target):
        self.x_test, self.y_test, self.target = x_test, y_test, target
        self.reached = None

    def on_epoch_end(self, trainer, record):
        record["test_loss"], record["test_accuracy"] = trainer.evaluate(self.x_test, self.y_test)
        trainer.model.train()
        if self.reached is None and record["test_accuracy"] >= self.target:
            self.reached = {"time_to_target_s": trainer.state.train_seconds, "target_epoch": record["epoch"],
                            "target_accuracy": self.target}
            trainer.stop_requested = True


class DivergenceStop(Callback):
    """Stops a run whose loss explodes, as a NaN does: its running mean (over about ten steps) ``factor`` times
    above the loss of the first step (at least ln 2), or rising for ``patience`` steps in a row. A learning rate
    too high for the network (``--lr 10``) ends here with the hint to lower it, instead of training to chance and
    saving that model."""

    def __init__(self, factor=10.0, patience=200):
        self.factor, self.patience = factor, patience
        self._start, self._smoothed, self._rising = None, None, 0

    def on_step_end(self, trainer, info):
        loss = info["loss"]
        if self._start is None:
            self._start = self._smoothed = loss
            return
        previous = self._smoothed
        self._smoothed = 0.9 * previous + 0.1 * loss
        self._rising = self._rising + 1 if self._smoothed > previous else 0
        if self._smoothed > self.factor * max(self._start, math.log(2)) or self._rising >= self.patience:
            raise TrainingDiverged(f"the loss exploded to {self._smoothed:.4g} (it started at {self._start:.4g}) at "
                                   f"epoch {info['epoch'] + 1}, step {info['step'] + 1}; try a lower learning rate")


class LayerTimes(Callback):
    """Sums every layer's forward and backward time over an epoch and prints the table through ``echo`` at the
    epoch's end. Steps that also recorded every layer's output for the log (an extra pass) are left out."""

    def __init__(self, echo=print):
        self.echo = echo

    def on_train_begin(self, trainer):
        self._reset(len(trainer.model.layers))

    def on_step_end(self, trainer, info):
        if trainer.step_observed:
            return  # a step that also ran layer by layer for a log record: not typical
        for i, (f, b) in enumerate(zip(trainer.timer.forward, trainer.timer.backward)):
            self.forward[i] += f
            self.backward[i] += b
        self.steps += 1

    def on_epoch_end(self, trainer, record):
        if self.steps:
            ms = 1000.0 / self.steps
            self.echo(timing_table(timing_names(trainer.model), [f * ms for f in self.forward],
                                   [b * ms for b in self.backward], self.steps))
        self._reset(len(trainer.model.layers))

    def _reset(self, n_layers):
        self.forward, self.backward, self.steps = [0.0] * n_layers, [0.0] * n_layers, 0


def timing_names(model):
    """Layer names for timing tables: a layer fused into the one before it (its time counted there) says so."""
    return [f"{name} (timed with {model.fused_into[i]})" if i in model.fused_into else name
            for i, name in enumerate(model.layer_names())]


def timing_table(names, forward_ms, backward_ms, steps):
    """Per-layer mean forward and backward ms per step, with each layer's share of the total."""
    total = sum(forward_ms) + sum(backward_ms)
    width = max(len("total"), *(len(n) for n in names))
    lines = [f"mean time per step over {steps} steps (ms)",
             f"{'layer':<{width}}  {'forward':>8}  {'backward':>8}  {'total':>8}  {'share':>6}"]
    for name, f, b in zip(names, forward_ms, backward_ms):
        share = (f + b) / total if total > 0 else 0.0
        lines.append(f"{name:<{width}}  {f:8.2f}  {b:8.2f}  {f + b:8.2f}  {share:6.1%}")
    lines.append(f"{'total':<{width}}  {sum(forward_ms):8.2f}  {sum(backward_ms):8.2f}  {total:8.2f}  "
                 f"{1 if total > 0 else 0:6.1%}")
    return "\n".join(lines)
