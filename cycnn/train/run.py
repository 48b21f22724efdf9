"""A whole training run as the command line does it, as a library object: a new run or a resumed one, its
callbacks, stopping cleanly on Ctrl-C or SIGTERM, the final test and the saved model.

``cycnn train`` parses its flags into a ``RunSettings``, builds a ``TrainingRun`` with ``TrainingRun.start`` or
``TrainingRun.resume`` and calls ``execute()``; a script can do the same.
"""
import contextlib
import shlex
import signal
import time
from pathlib import Path

import numpy as np

from cycnn.data.datasets import check_model_fits, load_data, to_input
from cycnn.data.splits import training_data
from cycnn.errors import ConfigError, Interrupted, OutputError, TrainingDiverged, TrainingInterrupted
from cycnn.io.architecture import build
from cycnn.io.model_file import save_model
from cycnn.io.paths import OutputLock, check_writable
from cycnn.nn.memory import check_fits_in_memory
from cycnn.nn.optim import make_optimizer
from cycnn.nn.runtime import available_memory
from cycnn.train.callbacks import Checkpointer, DivergenceStop, LayerTimes, ProgressBar, TargetAccuracy
from cycnn.train.checkpoint import load_checkpoint
from cycnn.train.distributed import DistributedTrainer
from cycnn.train.log import RunLog
from cycnn.train.trainer import Trainer


def default_checkpoint(out):
    """Where a run's checkpoint goes unless told: beside the model, ``NAME.ckpt.npz``."""
    out = Path(out)
    return str(out.with_name(out.stem + ".ckpt.npz"))


def default_log(out):
    """Where a run's training log goes unless told: beside the model, ``NAME.log.jsonl``."""
    out = Path(out)
    return str(out.with_name(out.stem + ".log.jsonl"))


class TrainingRun:
    """One run: the model, its optimizer, the data split, the callbacks and where everything is written.

    With ``world`` (a ``cycnn.train.world.World``) it is one rank of a data-parallel MPI run: rank 0 alone checks
    and writes the outputs (model, checkpoints, log) and prints; the other ranks run only the callbacks that decide
    the run's course (the target, the divergence check) and those given in ``callbacks``.
    """

    def __init__(self, model, optimizer, settings, data, state=None, quiet=False, verbose=False,
                 target_accuracy=None, callbacks=(), echo=print, world=None):
        check_model_fits(model, data.x_train, data.y_train, "the training data")
        self.model, self.optimizer, self.data, self.echo = model, optimizer, data, echo
        self.resumed = state is not None
        self.world, self.primary = world, world is None or world.rank == 0
        if self.primary:  # (only rank 0 of an MPI run writes)
            check_writable(settings.out, "--out")
        settings.checkpoint = settings.checkpoint or default_checkpoint(settings.out)
        settings.log = settings.log or default_log(settings.out)
        self.settings = settings
        if self.primary:
            check_writable(settings.checkpoint, "--checkpoint")
            check_writable(settings.log, "--log")
        self.progress = ProgressBar(quiet, echo)
        self.checkpointer = Checkpointer(settings.checkpoint, settings.checkpoint_every, resumed=self.resumed)
        info = {"data_dir": settings.data_dir, "dataset": settings.dataset, "limit_train": settings.limit_train,
                "val_split": settings.val_split, "out": settings.out, "train_images": len(data.x_train),
                "val_images": 0 if data.x_val is None else len(data.x_val)}
        if world is not None:
            info["ranks"] = world.size
        self.target = None if target_accuracy is None else TargetAccuracy(data.x_test, data.y_test, target_accuracy)
        every = [self.target] if self.target else []
        probe = (0, to_input(data.x_test[:1])[0], int(data.y_test[0])) if len(data.x_test) else None
        log = RunLog(settings.log, settings.log_every, info, self.resumed, probe=probe)
        every += [self.progress, self.checkpointer, log,
                  DivergenceStop(), *([LayerTimes(echo)] if verbose else []), *callbacks]
        if world is None:
            self.trainer = Trainer(model, optimizer, settings, every, state)
            return
        if not self.primary:
            every = [c for c in every if c is self.target or isinstance(c, DivergenceStop)] + list(callbacks)
        self.trainer = DistributedTrainer(world, model, optimizer, settings, every, state,
                                          self.checkpointer if self.primary else None,
                                          lambda: resume_command(self.settings))

    @classmethod
    def start(cls, settings, architecture, **options):
        """A new run of ``settings`` on the network that ``architecture`` describes (a function of the data split
        that returns an architecture description, so that it can be fitted to the data's image size and classes).

        The network is first built without weights (placeholders that take no memory) to check that it fits the
        data and the machine's memory; only then are its weights drawn.
        """
        if options.get("target_accuracy") is not None and not 0 < options["target_accuracy"] <= 1:
            raise ConfigError(f"--target-accuracy must be in (0, 1], received {options['target_accuracy']}")
        data = _split(settings)
        settings.data_sha256 = data.fingerprint
        spec = architecture(data)
        shape_only = build(spec, initialize=False)
        check_model_fits(shape_only, data.x_train, data.y_train, "the training data")
        check_fits_in_memory(shape_only, settings.batch_size, available_memory())
        model = build(spec, seed=settings.seed)
        return cls(model, make_optimizer(settings.optimizer, settings.lr), settings, data, **options)

    @classmethod
    def resume(cls, checkpoint, overrides=None, **options):
        """The run saved in ``checkpoint``, continued on the same data (checked by its fingerprint).

        A checkpoint is a file someone may have sent you, so nothing in it decides where cycnn reads or writes:
        the outputs go where ``overrides`` says ("out", "log") or beside the checkpoint (``resumed_model_path``),
        and the data is what ``overrides`` names ("data_dir" or "dataset", the bundled MNIST by default), which
        must be the data the run started on. The paths stored in the checkpoint are ignored.
        """
        overrides = dict(overrides or {})
        model, optimizer, state, settings = load_checkpoint(checkpoint)
        _check_resumed_data(checkpoint, settings, overrides.get("data_dir"), overrides.get("dataset"))
        settings.data_dir, settings.dataset = overrides.get("data_dir"), overrides.get("dataset")
        settings.checkpoint = str(checkpoint)
        settings.out = overrides.get("out") or resumed_model_path(checkpoint)
        settings.log = overrides.get("log") or default_log(settings.out)
        settings.__post_init__()
        try:
            data = _split(settings)
        except (KeyboardInterrupt, Interrupted):
            raise TrainingInterrupted(f"interrupted while loading the data; resume with: "
                                      f"{resume_command(settings)}") from None
        if settings.data_sha256 not in (None, data.fingerprint):
            raise ConfigError(f"{checkpoint}: the training data differs from the data this run started with; a "
                              "resumed run must see the same images to continue exactly")
        return cls(model, optimizer, settings, data, state=state, **options)

    def execute(self):
        """Train, then test and save the model; returns the run's figures (what ``--json`` prints).

        Ctrl-C or SIGTERM finish the current step, write a checkpoint and raise TrainingInterrupted with the
        command that resumes; a divergence raises TrainingDiverged naming the last good checkpoint.
        """
        started = time.perf_counter()
        with OutputLock(self.settings.out) if self.primary else contextlib.nullcontext() as lock:
            self.trainer.output_lock = lock  # (released by a distributed run that ends the job for a lost rank)
            try:
                self._train()
                return self._finish(started)
            except (KeyboardInterrupt, Interrupted):  # a second Ctrl-C mid-step, or one during the test and save
                if not self.checkpointer.written:
                    raise
                raise TrainingInterrupted(f"interrupted; resume with: {resume_command(self.settings)}") from None

    def _finish(self, started):
        """After training: the checkpoint of an interrupted run, or the test figures and the saved model."""
        trainer, data = self.trainer, self.data
        reached = self.target.reached if self.target is not None else None
        if trainer.stop_requested and trainer.state.epoch < self.settings.epochs and reached is None:
            if self.primary:
                self.checkpointer.save(trainer)
            raise TrainingInterrupted(f"interrupted at epoch {trainer.state.epoch + 1}, step {trainer.state.step}; "
                                      f"resume with: {resume_command(self.settings)}")
        test_loss, test_acc = trainer.evaluate(data.x_test, data.y_test)
        state = trainer.state
        summary = {"test_accuracy": test_acc, "test_loss": test_loss, "epochs": state.epoch,
                   "wall_s": time.perf_counter() - started, "train_seconds": state.train_seconds,
                   "train_images_per_s": len(data.x_train) * len(state.history) / max(state.train_seconds, 1e-9),
                   "model": self.settings.out, "history": state.history}
        if self.target is not None:
            summary.update(reached or {"time_to_target_s": None, "target_accuracy": self.target.target})
        if self.world is not None:
            summary.update(trainer.figures())
        if not self.primary:
            return summary
        save_model(self.model, self.settings.out, metadata={
            "test_accuracy": test_acc, "test_loss": test_loss, "train": self.settings.to_dict(),
            "history": state.history, "preparation": data.preparation.to_dict()})
        return summary

    def _train(self):
        trainer = self.trainer

        def request_stop(signum, frame):
            """Ctrl-C or SIGTERM: finish the current step, then checkpoint and exit. A second Ctrl-C aborts."""
            trainer.stop_requested = True
            signal.signal(signal.SIGINT, after if callable(after) else signal.default_int_handler)

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        after = previous[signal.SIGINT]  # what a second Ctrl-C does: the caller's handler (the CLI's: stop now)
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a divergence is reported instead
                trainer.fit(self.data.x_train, self.data.y_train, self.data.x_val, self.data.y_val)
        except (TrainingDiverged, OutputError) as exc:
            kept = (f"the last good checkpoint is {self.settings.checkpoint}" if self.checkpointer.written
                    else "no checkpoint was written before it")
            raise type(exc)(f"{exc}; {kept}") from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.progress.close()


def resume_command(s):
    """The command that continues the run of settings ``s`` from its checkpoint, naming again what the checkpoint
    does not decide (the data, and outputs that are not the ones beside the checkpoint)."""
    words = ["cycnn", "train", "--resume", s.checkpoint]
    if s.data_dir is not None:
        words += ["--data-dir", s.data_dir]
    elif s.dataset is not None:
        words += ["--dataset", s.dataset]
    if s.out != resumed_model_path(s.checkpoint):
        words += ["--out", s.out]
    if s.log != default_log(s.out):
        words += ["--log", s.log]
    return " ".join(shlex.quote(w) for w in words)


def resumed_model_path(checkpoint):
    """Where a resumed run saves its model unless told: beside the checkpoint, NAME.npz for NAME.ckpt.npz (the
    default names of a run) and NAME.model.npz for any other checkpoint name."""
    checkpoint = Path(checkpoint)
    name = checkpoint.name
    stem = name[:-len(".ckpt.npz")] if name.endswith(".ckpt.npz") else checkpoint.stem + ".model"
    return str(checkpoint.with_name(stem + ".npz"))


def _check_resumed_data(checkpoint, settings, data_dir, dataset):
    """The user names the data of a resumed run; a run that trained on a directory or a named dataset needs it
    named again (the checkpoint's record of it is only used to say so)."""
    if settings.data_dir is not None and data_dir is None:
        raise ConfigError(f"{checkpoint}: this run trained on the images in {settings.data_dir!r}; give them again "
                          "with --data-dir DIR to resume it")
    if settings.dataset is not None and dataset is None and data_dir is None:
        raise ConfigError(f"{checkpoint}: this run trained on the {settings.dataset!r} dataset; give it again with "
                          f"--dataset {settings.dataset} to resume it")


def _split(settings):
    size = tuple(settings.image_size) if settings.image_size else None
    dataset = load_data(settings.data_dir, settings.dataset, settings.prepare, size, settings.grayscale)
    return training_data(dataset, settings.limit_train, settings.val_split, settings.seed)
