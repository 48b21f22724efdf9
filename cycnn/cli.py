"""The ``cycnn`` command line: train, evaluate, predict, summary, export.

Every problem the user can fix (a missing file, a bad flag value, a kernel larger than its input) ends the command
with one line on stderr, ``cycnn: error: ...``, and exit code 2; ``main()`` is what turns exceptions into that.
"""
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

try:  # typer >= 0.20 carries its own click; older releases use click's exceptions
    from typer import TyperException as UsageProblem
except ImportError:  # pragma: no cover
    from click import ClickException as UsageProblem

from cycnn import __version__
from cycnn.errors import ConfigError, CycnnError, TrainingDiverged
from cycnn.training import Callback

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="cycnn: a from-scratch CNN with Cython kernels that learns to read handwritten digits.")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _int_list(text, name):
    """"32,64" -> [32, 64]; an empty string is an empty list."""
    try:
        return [int(v) for v in text.split(",") if v.strip()] if text else []
    except ValueError:
        raise ConfigError(f"--{name} takes comma-separated integers, received {text!r}") from None


def _float_list(text, name):
    try:
        return [float(v) for v in text.split(",") if v.strip()] if text else []
    except ValueError:
        raise ConfigError(f"--{name} takes comma-separated numbers, received {text!r}") from None


def _setup_threads(threads):
    from cycnn.runtime import default_threads, keep_large_allocations_in_heap, set_threads
    keep_large_allocations_in_heap()
    set_threads(default_threads() if threads is None else threads)


def _load_data(data_dir, dataset=None):
    """A ``cycnn.datasets.Dataset``: the named dataset, the one in ``data_dir`` (IDX files or an image folder),
    or the bundled MNIST."""
    from cycnn.datasets import load_data
    return load_data(data_dir, dataset)


def _architecture(arch, layer_flags, data, num_classes):
    """The description to train: the --arch file, the layer flags (unset ones take ``architecture.stack``'s
    defaults, the reference network's values), or with neither the reference network's file fitted to the data's
    image size and classes."""
    from cycnn import architecture
    input_shape = (1, *data.x_train.shape[1:])
    given = {name: value for name, value in layer_flags.items() if value is not None}
    if arch is not None:
        if given:
            raise ConfigError(f"--arch describes the layers; drop --{', --'.join(given)} or the --arch file")
        spec = architecture.load_file(arch)
    elif given:
        parse = {"conv": ("conv_channels", _int_list), "kernel": ("kernel_sizes", _int_list),
                 "dense": ("dense_units", _int_list), "dropout": ("dropouts", _float_list),
                 "pool": ("pool_size", None), "padding": ("padding", None)}
        kwargs = {parse[flag][0]: parse[flag][1](value, flag) if parse[flag][1] else value
                  for flag, value in given.items()}
        spec = architecture.stack(**kwargs, input_shape=input_shape, num_classes=num_classes)
    else:
        spec = architecture.fit_to_data(architecture.reference(), input_shape, num_classes)
    if data.class_names is not None:
        outputs = architecture.build(spec).num_classes
        if outputs != len(data.class_names):
            raise ConfigError(f"the architecture outputs {outputs} scores but the dataset has "
                              f"{len(data.class_names)} classes ({', '.join(data.class_names)})")
        spec = {**spec, "class_names": list(data.class_names)}
    return spec


class _Progress(Callback):
    """A progress bar on stderr per epoch (loss, accuracy, images/s) and a summary line per epoch on stdout."""

    def __init__(self, quiet):
        self.quiet = quiet
        self.bar = None
        self._images = self._seconds = 0.0
        self._loss = self._acc = None

    def on_step_end(self, trainer, info):
        if self.quiet:
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("train", total=info["steps"], completed=info["step"],
                                          epoch=info["epoch"] + 1, epochs=trainer.config.epochs, stats="")
        smooth = 0.9 if self._loss is not None else 0.0
        self._loss = smooth * (self._loss or 0) + (1 - smooth) * info["loss"]
        self._acc = smooth * (self._acc or 0) + (1 - smooth) * info["accuracy"]
        self._images += info["batch_size"]
        self._seconds += info["seconds"]
        stats = f"loss {self._loss:.4f}  acc {self._acc:6.2%}  {self._images / self._seconds:,.0f} img/s"
        self.bar.update(self.task, completed=info["step"] + 1, stats=stats)

    def on_epoch_end(self, trainer, record):
        self.close()
        line = (f"epoch {record['epoch']}/{trainer.config.epochs}: loss {record['train_loss']:.4f}, "
                f"accuracy {record['train_accuracy']:.2%}")
        if "val_accuracy" in record:
            line += f", val loss {record['val_loss']:.4f}, val accuracy {record['val_accuracy']:.2%}"
        if "test_accuracy" in record:
            line += f", test accuracy {record['test_accuracy']:.2%}"
        line += f", {record['wall_s']:.1f} s"
        if not self.quiet:
            typer.echo(line)
        self._images = self._seconds = 0.0

    def on_train_end(self, trainer):
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class _Checkpointer(Callback):
    """Writes a checkpoint every N steps and at each epoch's end; ``written`` says whether a good one exists."""

    def __init__(self, path, every, run, resumed=False):
        self.path, self.every, self.run = path, every, run
        self.written = resumed  # a resumed run starts from the good checkpoint at this path

    def on_step_end(self, trainer, info):
        if self.every and trainer.state.global_step % self.every == 0:
            self.save(trainer)

    def on_epoch_end(self, trainer, record):
        self.save(trainer)

    def save(self, trainer):
        from cycnn.checkpoint import save_checkpoint
        save_checkpoint(self.path, trainer.model, trainer.optimizer, trainer.state, trainer.config, self.run)
        self.written = True


class _TargetAccuracy(Callback):
    """Time to accuracy, as in DAWNBench: after each epoch, test accuracy; stop once it reaches the target.

    The evaluation is not counted in the training time the run reports.
    """

    def __init__(self, x_test, y_test, target):
        self.x_test, self.y_test, self.target = x_test, y_test, target
        self.reached = None

    def on_epoch_end(self, trainer, record):
        from cycnn.training import evaluate
        record["test_loss"], record["test_accuracy"] = evaluate(trainer.model, self.x_test, self.y_test)
        trainer.model.train()
        if self.reached is None and record["test_accuracy"] >= self.target:
            self.reached = {"time_to_target_s": trainer.state.train_seconds, "target_epoch": record["epoch"],
                            "target_accuracy": self.target}
            trainer.stop_requested = True


def _default_checkpoint(out):
    out = Path(out)
    return str(out.with_name(out.stem + ".ckpt.npz"))


# What a checkpoint fixes: a resumed run takes these from the checkpoint, so giving them again is an error.
RUN_SETTINGS = ("epochs", "batch_size", "lr", "optimizer", "lr_schedule", "seed", "augment", "limit_train",
                "val_split", "data_dir", "dataset", "out", "arch", "conv", "kernel", "padding", "pool", "dense",
                "dropout", "checkpoint", "checkpoint_every")


def _given_on_command_line(ctx, names):
    return [name for name in names if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"]


def _check_writable(path, flag):
    """Fail before training rather than after it when ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; give a file name")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: cannot write in {parent}")


def _data_fingerprint(images, labels):
    """SHA-256 of the training images and labels, so that a resumed run can check it sees the same data."""
    digest = hashlib.sha256(f"{images.shape}{images.dtype}{labels.dtype}".encode())
    digest.update(np.ascontiguousarray(images))
    digest.update(np.ascontiguousarray(labels))
    return digest.hexdigest()


@app.command()
def train(
    ctx: typer.Context,
    epochs: int = typer.Option(6, help="Passes over the training set."),
    batch_size: int = typer.Option(64, help="Images per step."),
    lr: float = typer.Option(0.002, help="Learning rate (the peak of the cosine schedule)."),
    optimizer: str = typer.Option("adam", help="adam or sgd (with momentum 0.9)."),
    lr_schedule: str = typer.Option("cosine", help="constant, or cosine decay to 0 over the run."),
    seed: int = typer.Option(0, help="Seed for initialization, data order, augmentation and dropout."),
    threads: Optional[int] = typer.Option(None, help="Threads for the kernels and BLAS (default: all cores)."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random rotation (±10°) and shift (±2 px) "
                                                                         "per image."),
    limit_train: Optional[int] = typer.Option(None, help="Use only the first N training images."),
    val_split: float = typer.Option(0.05, help="Fraction of the training images held out for validation."),
    data_dir: Optional[Path] = typer.Option(None, help="A directory of IDX files in MNIST's layout, or of images "
                                                       "with one subfolder per class (default: the bundled MNIST)."),
    dataset: Optional[str] = typer.Option(None, help="A named dataset: mnist, or fashion-mnist (from Debian's "
                                                     "dataset-fashion-mnist package)."),
    out: Path = typer.Option(Path("cycnn-model.npz"), help="Where to save the trained model."),
    arch: Optional[Path] = typer.Option(None, help="Architecture file (JSON or TOML) instead of the layer flags "
                                                   "(default: the reference network's file)."),
    conv: Optional[str] = typer.Option(None, help="Output channels of each conv block (conv + ReLU + max-pool) "
                                                  "(reference: 32,64)."),
    kernel: Optional[str] = typer.Option(None, help="Kernel size per conv layer (one value applies to all) "
                                                    "(reference: 3)."),
    padding: Optional[int] = typer.Option(None, help="Zero padding of every conv layer (reference: 0)."),
    pool: Optional[int] = typer.Option(None, help="Max-pool window after each conv layer (1 for none) "
                                                  "(reference: 2)."),
    dense: Optional[str] = typer.Option(None, help="Widths of the hidden dense layers (reference: 128)."),
    dropout: Optional[str] = typer.Option(None, help="Dropout after each hidden dense layer (one value applies to "
                                                     "all; reference: 0.2)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint file (default: next to --out)."),
    checkpoint_every: int = typer.Option(0, help="Also checkpoint every N steps (0: only at epoch ends)."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run saved in this checkpoint."),
    target_accuracy: Optional[float] = typer.Option(None, help="Test after every epoch and stop at this test "
                                                                "accuracy (e.g. 0.99); reports the training time "
                                                                "it took."),
    json_output: bool = typer.Option(False, "--json", help="End with a JSON line of the run's figures."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or epoch lines."),
    log: Optional[Path] = typer.Option(None, help="The training log, JSON lines (default: next to --out, "
                                                  "<name>.log.jsonl)."),
    log_every: int = typer.Option(50, help="Write a step record to the log every N steps."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print each layer's forward and backward time "
                                                                "at the end of each epoch."),
    live: bool = typer.Option(False, "--live", help="Serve a page on 127.0.0.1 that shows the training as it "
                                                    "happens."),
    port: int = typer.Option(8765, help="Port of the --live page (0: any free port)."),
    live_interval: float = typer.Option(2.0, help="Seconds between two snapshots for the --live page."),
    keep_serving: bool = typer.Option(False, "--keep-serving", help="Keep the --live page up after training, "
                                                                   "until Ctrl+C."),
):
    """Train a CNN (the reference network by default) on MNIST or another dataset and save it."""
    from cycnn import architecture
    from cycnn.checkpoint import load_checkpoint
    from cycnn.optimizers import make_optimizer
    from cycnn.training import TrainConfig, Trainer, evaluate

    started = time.perf_counter()
    if resume is not None:
        fixed = _given_on_command_line(ctx, RUN_SETTINGS)
        if fixed:
            raise ConfigError(f"--resume continues the run with the settings stored in {resume}; drop "
                              + ", ".join("--" + name.replace("_", "-") for name in fixed))
        model, opt, state, config, run = load_checkpoint(resume)
        data_dir = Path(run["data_dir"]) if run.get("data_dir") else None
        dataset = run.get("dataset")
        limit_train, val_split, out = run.get("limit_train"), run.get("val_split", val_split), Path(run["out"])
        checkpoint = resume
        checkpoint_every = run.get("checkpoint_every", checkpoint_every)
        log = log or (Path(run["log"]) if run.get("log") else None)
        log_every = run.get("log_every", log_every)
    else:
        if limit_train is not None and limit_train < 1:
            raise ConfigError(f"--limit-train must be a positive integer, received {limit_train}")
        if not 0 <= val_split < 1:
            raise ConfigError(f"--val-split must be in [0, 1), received {val_split}")
        if checkpoint_every < 0:
            raise ConfigError(f"--checkpoint-every must be 0 or more, received {checkpoint_every}")
        if target_accuracy is not None and not 0 < target_accuracy <= 1:
            raise ConfigError(f"--target-accuracy must be in (0, 1], received {target_accuracy}")
        config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer.lower(), lr=lr,
                             lr_schedule=lr_schedule, seed=seed, augment=augment)
        opt = make_optimizer(optimizer, lr)
        state = None
    _setup_threads(threads)
    data = _load_data(data_dir, dataset)
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if limit_train is not None:
        x_train, y_train = x_train[:limit_train], y_train[:limit_train]
    n_val = int(len(x_train) * val_split)
    if n_val:
        order = np.random.default_rng([config.seed, 7]).permutation(len(x_train))
        x_val, y_val = x_train[order[:n_val]], y_train[order[:n_val]]
        x_train, y_train = x_train[order[n_val:]], y_train[order[n_val:]]
    else:
        x_val = y_val = None
    num_classes = (len(data.class_names) if data.class_names is not None
                   else int(max(y_train.max(), y_test.max())) + 1)
    if resume is None:
        layer_flags = {"conv": conv, "kernel": kernel, "padding": padding, "pool": pool, "dense": dense,
                       "dropout": dropout}
        model = architecture.build(_architecture(arch, layer_flags, data, num_classes), seed=seed)
    if model.input_shape != (1, *x_train.shape[1:]) or model.num_classes < num_classes:
        raise ConfigError(f"the model takes {model.input_shape} inputs with {model.num_classes} classes; "
                          f"the data has {x_train.shape[1:]} images with {num_classes} classes")
    checkpoint = checkpoint or Path(_default_checkpoint(out))
    _check_writable(out, "--out")
    _check_writable(checkpoint, "--checkpoint")
    fingerprint = _data_fingerprint(x_train, y_train)
    if resume is not None and run.get("data_sha256", fingerprint) != fingerprint:
        raise ConfigError(f"{resume}: the training data differs from the data this run started with; a resumed "
                          "run must see the same images to continue exactly")
    log = log or out.with_name(out.stem + ".log.jsonl")
    run = {"data_dir": str(data_dir) if data_dir else None, "dataset": dataset, "limit_train": limit_train,
           "val_split": val_split, "out": str(out), "checkpoint_every": checkpoint_every, "log": str(log),
           "log_every": log_every}
    progress = _Progress(quiet)
    run["data_sha256"] = fingerprint
    checkpointer = _Checkpointer(str(checkpoint), checkpoint_every, run, resumed=resume is not None)
    callbacks = [progress, checkpointer, *_watchers(run, log, log_every, resume is not None, verbose, len(x_train),
                                                    n_val)]
    if live:
        live_view = _start_live(port, live_interval, x_test, y_test, f"{model.parameter_count:,}-parameter CNN, "
                                f"{config.epochs} epoch(s) on {len(x_train):,} images")
        callbacks.append(live_view)
    target = None
    if target_accuracy is not None:
        target = _TargetAccuracy(x_test, y_test, target_accuracy)
        callbacks.insert(0, target)
    trainer = Trainer(model, opt, config, callbacks, state)
    if not quiet:
        typer.echo(f"cycnn {__version__}: training on {len(x_train):,} images "
                   f"({n_val:,} held out for validation), {model.parameter_count:,} parameters, "
                   f"checkpoints in {checkpoint}, log in {log}")
        if resume is not None:
            typer.echo(f"resuming at epoch {trainer.state.epoch + 1}, step {trainer.state.step + 1}")

    def request_stop(signum, frame):
        """Ctrl-C or SIGTERM: finish the current step, then checkpoint and exit. A second Ctrl-C aborts."""
        trainer.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a divergence is reported below
            trainer.fit(x_train, y_train, x_val, y_val)
    except TrainingDiverged as exc:
        progress.close()
        if live:
            live_view.finish(trainer, status="failed")
        kept = (f"the last good checkpoint is {checkpoint}" if checkpointer.written
                else "no checkpoint was written before it")
        raise TrainingDiverged(f"{exc}; {kept}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        progress.close()
    reached = target.reached if target is not None else None
    if trainer.stop_requested and trainer.state.epoch < config.epochs and reached is None:
        checkpointer.save(trainer)
        typer.echo(f"interrupted at epoch {trainer.state.epoch + 1}, step {trainer.state.step}; "
                   f"resume with: cycnn train --resume {checkpoint}", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    test_loss, test_acc = evaluate(model, x_test, y_test)
    images = sum(len(x_train) for _ in trainer.state.history)
    summary = {"test_accuracy": test_acc, "test_loss": test_loss, "epochs": trainer.state.epoch,
               "wall_s": time.perf_counter() - started, "train_seconds": trainer.state.train_seconds,
               "train_images_per_s": images / max(trainer.state.train_seconds, 1e-9),
               "model": str(out), "history": trainer.state.history}
    if target is not None:
        summary.update(reached or {"time_to_target_s": None, "target_accuracy": target_accuracy})
    model.save(out, metadata={"test_accuracy": test_acc, "test_loss": test_loss, "train": config.to_dict(),
                              "history": trainer.state.history})
    typer.echo(f"test accuracy {test_acc:.2%} (loss {test_loss:.4f}); "
               f"{summary['train_images_per_s']:,.0f} images/s; model saved to {out}")
    if target is not None:
        typer.echo(f"reached {target_accuracy:.2%} test accuracy after {reached['time_to_target_s']:.1f} s of "
                   f"training (epoch {reached['target_epoch']})" if reached else
                   f"did not reach {target_accuracy:.2%} test accuracy in {config.epochs} epochs")
    if json_output:
        typer.echo(json.dumps(summary))
    if live:
        live_view.finish(trainer, status="finished", test_accuracy=test_acc, test_loss=test_loss)
        _stop_live(live_view.server, keep_serving)


def _watchers(run, log, log_every, resumed, verbose, n_train, n_val):
    """The callbacks that record what the layers do: the training log and, with --verbose, the timing table."""
    from cycnn.runlog import LayerTimes, RunLog
    if log_every < 1:
        raise ConfigError(f"--log-every must be a positive number of steps, received {log_every}")
    info = {key: run[key] for key in ("data_dir", "dataset", "limit_train", "val_split", "out")}
    watchers = [RunLog(log, log_every, {**info, "train_images": n_train, "val_images": n_val}, append=resumed)]
    if verbose:
        watchers.append(LayerTimes(typer.echo))
    return watchers


def _start_live(port, interval, x_test, y_test, title):
    """Start the --live page's server and return the callback that feeds it (probe: the first 16 test images)."""
    from cycnn.live import LiveServer, LiveView
    if not interval > 0:
        raise ConfigError(f"--live-interval must be a positive number of seconds, received {interval}")
    server = LiveServer(port)
    typer.echo(f"live view: {server.url}")
    return LiveView(server, x_test[:16], y_test[:16], interval=interval, title=title)


def _stop_live(server, keep_serving):
    """Stop the --live server once an open page has seen the final state, or with --keep-serving at Ctrl+C."""
    if not keep_serving:
        server.wait_until_seen(timeout=3.0)
        server.stop()
        return
    typer.echo(f"training done; the live view stays at {server.url} until Ctrl+C")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _load_model(path):
    from cycnn.serialization import load_model
    return load_model(path)


@app.command("evaluate")
def evaluate_command(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model (or checkpoint) file."),
    data_dir: Optional[Path] = typer.Option(None, help="IDX or image-folder dataset directory "
                                                       "(default: the bundled MNIST)."),
    dataset: Optional[str] = typer.Option(None, help="A named dataset: mnist or fashion-mnist."),
    threads: Optional[int] = typer.Option(None, help="Threads (default: all cores)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Accuracy, loss, confusion matrix and per-class precision/recall/F1 on the test set."""
    from cycnn.metrics import confusion_matrix, per_class_scores
    from cycnn.training import predict_images

    model = _load_model(model_path)
    _setup_threads(threads)
    data = _load_data(data_dir, dataset)
    x_test, y_test = data.x_test, data.y_test
    if x_test.shape[1:] != model.input_shape[1:] or y_test.max() >= model.num_classes:
        raise ConfigError(f"{model_path}: the model takes {model.input_shape} inputs and {model.num_classes} "
                          f"classes; the test set has {x_test.shape[1:]} images with labels up to {y_test.max()}")
    digits = [str(i) for i in range(model.num_classes)]
    if data.class_names is not None and model.class_names not in (data.class_names, digits):
        raise ConfigError(f"{model_path}: the model's classes ({', '.join(model.class_names)}) are not the "
                          f"dataset's ({', '.join(data.class_names)})")
    probs = predict_images(model, x_test)
    predicted = probs.argmax(axis=1)
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y_test)), y_test], 1e-12, None))))
    accuracy = float(np.mean(predicted == y_test))
    confusion = confusion_matrix(y_test, predicted, model.num_classes)
    per_class = per_class_scores(confusion, model.class_names)
    if json_output:
        typer.echo(json.dumps({"accuracy": accuracy, "loss": loss, "confusion_matrix": confusion.tolist(),
                               "per_class": per_class, "images": int(len(y_test))}))
        return
    typer.echo(f"{model_path}: accuracy {accuracy:.2%}, loss {loss:.4f} on {len(y_test):,} test images\n")
    width = max(5, max(len(c) for c in model.class_names))
    typer.echo("confusion matrix (rows: true class, columns: predicted)")
    typer.echo(" " * (width + 1) + " ".join(f"{c:>{width}}" for c in model.class_names))
    for name, row in zip(model.class_names, confusion):
        typer.echo(f"{name:>{width}} " + " ".join(f"{v:>{width}}" for v in row))
    typer.echo(f"\n{'class':>{width}}  precision  recall     f1  support")
    for s in per_class:
        typer.echo(f"{s['class']:>{width}}  {s['precision']:9.4f}  {s['recall']:6.4f}  {s['f1']:.4f}  "
                   f"{s['support']:7d}")


@app.command()
def predict(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model (or checkpoint) file."),
    images: List[Path] = typer.Argument(..., metavar="IMAGE...", help="PNG or JPEG files of single digits."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON list."),
):
    """The digit in each image, with the class probabilities (images are preprocessed the MNIST way)."""
    from cycnn.images import prepare_for_model

    model = _load_model(model_path)
    batch = np.stack([prepare_for_model(path, model.input_shape) for path in images])
    probs = model.predict_proba(batch)
    results = [{"file": str(path), "label": model.class_names[int(p.argmax())],
                "probabilities": {name: float(v) for name, v in zip(model.class_names, p)}}
               for path, p in zip(images, probs)]
    if json_output:
        typer.echo(json.dumps(results))
        return
    for r, p in zip(results, probs):
        top = np.argsort(p)[::-1][:3]
        others = ", ".join(f"{model.class_names[i]} {p[i]:.1%}" for i in top[1:])
        typer.echo(f"{r['file']}: {r['label']} ({p.max():.1%}; then {others})")


@app.command()
def summary(target: Path = typer.Argument(..., metavar="MODEL_OR_ARCH",
                                          help="A model file, or an architecture file (.json/.toml).")):
    """Print the layer table (output shapes and parameter counts) of a model or an architecture file."""
    from cycnn import architecture
    if target.suffix in (".json", ".toml"):
        model = architecture.build(architecture.load_file(target))
    else:
        model = _load_model(target)
    typer.echo(model.summary())


@app.command()
def export(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model (or checkpoint) file."),
    out: Path = typer.Argument(..., metavar="OUT.onnx", help="Where to write the ONNX model."),
    opset: int = typer.Option(13, help="ONNX opset version (13 or later)."),
):
    """Write the model as an ONNX file (input "image" (N, C, H, W) in [0, 1], output "probabilities")."""
    from cycnn import onnx_export
    onnx_export.require_onnx()
    model = _load_model(model_path)
    onnx_export.export(model, out, opset)
    c, h, w = model.input_shape
    typer.echo(f"wrote {out}: ONNX opset {opset}, input {onnx_export.INPUT_NAME!r} (N, {c}, {h}, {w}), "
               f"output {onnx_export.OUTPUT_NAME!r} (N, {model.num_classes})")


def _pictures_for(model_path, log, index, image, count, data_dir, dataset):
    """What ``visualize`` and ``report`` draw: returns (model, log path or None, test labels, test probabilities,
    the pictures as a generator)."""
    import re

    from cycnn.datasets import to_input
    from cycnn.images import prepare_for_model
    from cycnn.runlog import read_log
    from cycnn.training import predict_images
    from cycnn.visualize import pictures

    if count < 1:
        raise ConfigError(f"--count must be a positive integer, received {count}")
    model = _load_model(model_path)
    if log is None:
        beside = model_path.with_name(model_path.stem + ".log.jsonl")
        log = beside if beside.is_file() else None
    records = read_log(log) if log is not None else None
    _setup_threads(None)
    data = _load_data(data_dir, dataset)
    x_test, y_test = data.x_test, data.y_test
    if x_test.shape[1:] != model.input_shape[1:] or y_test.max() >= model.num_classes:
        raise ConfigError(f"{model_path}: the model takes {model.input_shape} inputs and {model.num_classes} "
                          f"classes; the test set has {x_test.shape[1:]} images with labels up to {y_test.max()}")
    chosen = []
    for i in index or ([] if image else [0]):
        if not 0 <= i < len(x_test):
            raise ConfigError(f"--index must be a test image number from 0 to {len(x_test) - 1}, received {i}")
        chosen.append((f"test{i}", f"test image #{i} (label {model.class_names[y_test[i]]})",
                       to_input(x_test[i:i + 1])[0]))
    for path in image:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem)
        chosen.append((f"image_{slug}", path.name, prepare_for_model(path, model.input_shape)))
    probs = predict_images(model, x_test)
    return model, log, y_test, probs, pictures(model, to_input(x_test), y_test, probs, chosen, records, count)


@app.command()
def visualize(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model (or checkpoint) file."),
    out: Path = typer.Option(..., "--out", help="Directory for the PNG files (created if missing)."),
    log: Optional[Path] = typer.Option(None, help="The training log, for the training curves (default: the "
                                                  "model's <name>.log.jsonl if it exists)."),
    index: List[int] = typer.Option([], "--index", help="A test image to follow through the network "
                                                        "(repeatable) (default: 0)."),
    image: List[Path] = typer.Option([], "--image", help="An image file of a digit to follow through the "
                                                         "network (repeatable)."),
    count: int = typer.Option(24, help="Images in the predictions and most-confused grids."),
    data_dir: Optional[Path] = typer.Option(None, help="IDX or image-folder dataset directory "
                                                       "(default: the bundled MNIST)."),
    dataset: Optional[str] = typer.Option(None, help="A named dataset: mnist or fashion-mnist."),
):
    """Write PNG pictures of a model: kernels, the convolution at work, feature maps, dense activations,
    predictions, mistakes, the confusion matrix and, from the log, the training curves."""
    from cycnn.serialization import write_atomic
    from cycnn.visualize import png_bytes

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    _, log, _, _, pictures = _pictures_for(model_path, log, index, image, count, data_dir, dataset)
    written = 0
    for picture in pictures:
        path = out / f"{picture.name}.png"
        png = png_bytes(picture.figure)
        write_atomic(path, lambda fh: fh.write(png))
        typer.echo(f"{path}: {picture.title}")
        written += 1
    if log is None:
        typer.echo("no training log (give one with --log): no training curves", err=True)
    typer.echo(f"wrote {written} pictures to {out}")


@app.command()
def report(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model (or checkpoint) file."),
    out: Path = typer.Option(..., "--out", help="The HTML file to write."),
    log: Optional[Path] = typer.Option(None, help="The training log (default: the model's <name>.log.jsonl if it "
                                                  "exists)."),
    index: List[int] = typer.Option([], "--index", help="A test image to follow through the network "
                                                        "(repeatable) (default: 0)."),
    image: List[Path] = typer.Option([], "--image", help="An image file of a digit to follow (repeatable)."),
    count: int = typer.Option(24, help="Images in the predictions and most-confused grids."),
    data_dir: Optional[Path] = typer.Option(None, help="IDX or image-folder dataset directory "
                                                       "(default: the bundled MNIST)."),
    dataset: Optional[str] = typer.Option(None, help="A named dataset: mnist or fashion-mnist."),
):
    """Write one self-contained HTML page (opens offline) with every picture of ``visualize``."""
    from cycnn import report as html_report
    from cycnn.runlog import read_log
    from cycnn.visualize import png_bytes

    model, log, labels, probs, pictures = _pictures_for(model_path, log, index, image, count, data_dir, dataset)
    figures = [(p.name, p.title, p.caption, png_bytes(p.figure)) for p in pictures]
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)
    facts = [("model", str(model_path)), ("parameters", f"{model.parameter_count:,}"),
             ("test accuracy", f"{np.mean(probs.argmax(axis=1) == labels):.2%} on {len(labels):,} images "
                               f"(loss {-np.mean(np.log(picked)):.4f})")]
    if log is not None:
        run = read_log(log)[0]
        train = run.get("train", {})
        facts += [("training", f"{train.get('epochs')} epoch(s) of batch {train.get('batch_size')} on "
                               f"{run.get('train_images', '?'):,} images, {train.get('optimizer')} lr "
                               f"{train.get('lr')} ({train.get('lr_schedule')}), seed {train.get('seed')}"),
                  ("training log", str(log))]
    facts.append(("written by", f"cycnn {__version__}, {time.strftime('%Y-%m-%d %H:%M')}"))
    html_report.write(out, html_report.render(f"cycnn report: {model_path.name}", facts, model.summary(), figures))
    typer.echo(f"wrote {out}: {len(figures)} pictures in one page")


def main(argv=None):
    """Entry point: run the CLI, turning user errors into one line on stderr and exit code 2."""
    try:
        result = app(args=argv, prog_name="cycnn", standalone_mode=False)
    except CycnnError as exc:
        typer.echo(f"cycnn: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except UsageProblem as exc:
        message = exc.format_message()
        if message:  # (bare `cycnn` has already printed the help)
            typer.echo(f"cycnn: error: {message}", err=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("cycnn: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except MemoryError:
        typer.echo("cycnn: error: out of memory (try a smaller --batch-size)", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
