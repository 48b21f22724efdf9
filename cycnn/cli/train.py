"""``cycnn train``: parse the flags into run settings, hand the run to ``cycnn.train.run``, print what it did."""
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import typer

from cycnn.cli.common import THREADS_HELP, float_list, int_list, setup_threads
from cycnn.data.datasets import input_shape_of
from cycnn.data.preparation import channel_statistics
from cycnn.errors import ArchitectureError, ConfigError, CycnnError, Interrupted, TrainingDiverged
from cycnn.io import architecture
from cycnn.train import agreement
from cycnn.train.run import TrainingRun
from cycnn.train.settings import RESUME_FIXED, RunSettings
from cycnn.train.world import launched, launched_size
from cycnn.version import __version__
from cycnn.viz.live import serve

# The flags that describe the network; with --resume the checkpoint's model is used, so they are refused there.
LAYER_FLAGS = ("arch", "conv", "kernel", "padding", "pool", "dense", "dropout", "conv_dropout")
# Flags whose value a checkpoint fixes (they are RunSettings names as well). The data is named again on resume
# (--data-dir, --dataset) and the outputs may be (--out, --log): a checkpoint never decides where cycnn reads or
# writes.
FIXED_FLAGS = tuple(name for name in RESUME_FIXED if name not in ("data_sha256", "max_degrees", "max_shift",
                                                                   "data_dir", "dataset"))
SIZE = re.compile(r"([0-9]{1,4})x([0-9]{1,4})")


# The longer flag descriptions, kept here so that the command's signature reads as a list of flags.
HELP = {
    "augment": "Random rotation (±10°) and shift (±2 px) per image.",
    "data_dir": "A directory of IDX files in MNIST's layout, or of images with one subfolder per class "
                "(default: the bundled MNIST).",
    "dataset": "A named dataset: mnist, or fashion-mnist (from Debian's dataset-fashion-mnist package).",
    "arch": "Architecture file (JSON or TOML) instead of the layer flags (default: the reference network's file).",
    "conv": "Output channels of each conv block (conv + ReLU + max-pool) (reference: 32,64).",
    "kernel": "Kernel size per conv layer (one value applies to all) (reference: 3).",
    "pool": "Max-pool window after each conv layer (1 for none) (reference: 2).",
    "dropout": "Dropout after each hidden dense layer (one value applies to all; reference: 0.2).",
    "conv_dropout": "Dropout after each conv block (one value applies to all; reference: none).",
    "prepare": "How image-folder pictures are prepared: digit (MNIST's recipe) or resize (the whole picture; "
               "default for a folder with colour pictures or with --image-size).",
    "image_size": "The input size of resized pictures, HxW (default 32x32).",
    "grayscale": "Train on gray pictures even if the folder's are in colour (one channel).",
    "flip": "With --augment, also mirror half the images left to right (not for digits).",
    "log": "The training log, JSON lines (default: next to --out, <name>.log.jsonl).",
    "verbose": "Print each layer's forward and backward time at the end of each epoch.",
    "live": "Serve a page on 127.0.0.1 that shows the training as it happens.",
    "keep_serving": "Keep the --live page up after training, until Ctrl+C.",
    "target_accuracy": "Test after every epoch and stop at this test accuracy (e.g. 0.99); reports the training "
                       "time it took.",
}


def train(
    ctx: typer.Context,
    epochs: int = typer.Option(6, help="Passes over the training set."),
    batch_size: int = typer.Option(64, help="Images per step."),
    lr: float = typer.Option(0.002, help="Learning rate (the peak of the cosine schedule)."),
    optimizer: str = typer.Option("adam", help="adam or sgd (with momentum 0.9)."),
    lr_schedule: str = typer.Option("cosine", help="constant, or cosine decay to 0 over the run."),
    seed: int = typer.Option(0, help="Seed for initialization, data order, augmentation and dropout."),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
    augment: bool = typer.Option(True, "--augment/--no-augment", help=HELP["augment"]),
    limit_train: Optional[int] = typer.Option(None, help="Use only the first N training images."),
    val_split: float = typer.Option(0.05, help="Fraction of the training images held out for validation."),
    data_dir: Optional[Path] = typer.Option(None, help=HELP["data_dir"]),
    dataset: Optional[str] = typer.Option(None, help=HELP["dataset"]),
    out: Path = typer.Option(Path("cycnn-model.npz"), help="Where to save the trained model."),
    arch: Optional[Path] = typer.Option(None, help=HELP["arch"]),
    conv: Optional[str] = typer.Option(None, help=HELP["conv"]),
    kernel: Optional[str] = typer.Option(None, help=HELP["kernel"]),
    padding: Optional[int] = typer.Option(None, help="Zero padding of every conv layer (reference: 0)."),
    pool: Optional[int] = typer.Option(None, help=HELP["pool"]),
    dense: Optional[str] = typer.Option(None, help="Widths of the hidden dense layers (reference: 128)."),
    dropout: Optional[str] = typer.Option(None, help=HELP["dropout"]),
    conv_dropout: Optional[str] = typer.Option(None, help=HELP["conv_dropout"]),
    prepare: Optional[str] = typer.Option(None, help=HELP["prepare"]),
    image_size: Optional[str] = typer.Option(None, metavar="HxW", help=HELP["image_size"]),
    grayscale: bool = typer.Option(False, "--grayscale", help=HELP["grayscale"]),
    flip: bool = typer.Option(False, "--flip", help=HELP["flip"]),
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint file (default: next to --out)."),
    checkpoint_every: int = typer.Option(0, help="Also checkpoint every N steps (0: only at epoch ends)."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run saved in this checkpoint."),
    target_accuracy: Optional[float] = typer.Option(None, help=HELP["target_accuracy"]),
    json_output: bool = typer.Option(False, "--json", help="End with a JSON line of the run's figures."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or epoch lines."),
    log: Optional[Path] = typer.Option(None, help=HELP["log"]),
    log_every: int = typer.Option(50, help="Write a step record to the log every N steps."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=HELP["verbose"]),
    live: bool = typer.Option(False, "--live", help=HELP["live"]),
    port: int = typer.Option(8765, help="Port of the --live page (0: any free port)."),
    live_interval: float = typer.Option(2.0, help="Seconds between two snapshots for the --live page."),
    keep_serving: bool = typer.Option(False, "--keep-serving", help=HELP["keep_serving"]),
):
    """Train a CNN (the reference network by default) on MNIST or another dataset and save it."""
    flags = SimpleNamespace(**locals())
    if launched_size()[0] > 1:  # one of several processes that mpirun or srun started
        return _train_distributed(ctx, flags)
    setup_threads(threads)
    run = _resumed_run(ctx, flags) if resume is not None else _new_run(flags)
    live_view = _start_live(port, live_interval, run) if live else None
    _announce(run, quiet)
    try:
        summary = run.execute()
    except TrainingDiverged:
        if live_view:
            live_view.finish(run.trainer, status="failed")
        raise
    _report(summary, flags, run, live_view)


def _train_distributed(ctx, flags):
    """``mpirun -np N cycnn train ...``: the same run on every rank (``cycnn.train.distributed``), with its own
    ``--threads``; rank 0 alone announces, reports and writes. The other ranks end silently with rank 0's exit
    code, except for an error of their own, which they print (naming their rank) before ending the job."""
    world = None

    def make_run():
        flags.threads = flags.threads if flags.threads is not None else world.default_threads()
        setup_threads(flags.threads)
        return _resumed_run(ctx, flags) if flags.resume is not None else _new_run(flags)
    try:
        flags.world = world = launched()
        agreement.hello(world, flags.resume, live=flags.live)
        if flags.live:
            world.agreed = True
            raise ConfigError("--live shows one process's training: it is not available on several MPI ranks")
        if flags.resume is not None:
            flags.resume = agreement.shared_checkpoint(world, flags.resume)
        run = agreement.start(world, make_run)
        if world.rank == 0:
            _announce(run, flags.quiet)
            if not flags.quiet:
                hosts = len({peer["host"] for peer in world.peers})
                typer.echo(f"data-parallel on {world.size} MPI ranks on {hosts} host(s), {flags.threads} thread(s) "
                           f"on rank 0: each step's {run.settings.batch_size} images are shared among the ranks")
        summary = run.execute()
        if world.rank == 0:
            _report(summary, flags, run, None)
    except BaseException as exc:
        code, agreed = world.ending(exc) if world is not None else (2, True)
        rank = world.rank if world is not None else launched_size()[1]
        if rank == 0 or isinstance(exc, typer.Exit):
            raise
        if agreed:
            raise typer.Exit(code) from None
        if isinstance(exc, CycnnError):
            raise CycnnError(f"rank {rank} ({world.host}): {exc}") from None
        raise


def _run_options(flags):
    world = getattr(flags, "world", None)
    return {"quiet": flags.quiet or bool(world and world.rank), "verbose": flags.verbose,
            "target_accuracy": flags.target_accuracy, "echo": typer.echo, "world": world}


def _new_run(flags):
    settings = RunSettings(epochs=flags.epochs, batch_size=flags.batch_size, optimizer=flags.optimizer, lr=flags.lr,
                           lr_schedule=flags.lr_schedule, seed=flags.seed, augment=flags.augment,
                           limit_train=flags.limit_train, val_split=flags.val_split, data_dir=_text(flags.data_dir),
                           dataset=flags.dataset, prepare=flags.prepare, image_size=_size(flags.image_size),
                           grayscale=flags.grayscale, flip=flags.flip, out=str(flags.out), checkpoint=_text(flags.checkpoint),
                           checkpoint_every=flags.checkpoint_every, log=_text(flags.log), log_every=flags.log_every)
    layers = {name: getattr(flags, name) for name in LAYER_FLAGS}
    return TrainingRun.start(settings, lambda data: _architecture(layers, data), **_run_options(flags))


def _resumed_run(ctx, flags):
    """The checkpoint's run; flags that would change what it computes or where it writes are refused."""
    given = {name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"}
    fixed = [name for name in (*FIXED_FLAGS, *LAYER_FLAGS, "checkpoint", "checkpoint_every") if name in given]
    if fixed:
        raise ConfigError(f"--resume continues the run with the settings stored in {flags.resume}; drop "
                          + ", ".join("--" + name.replace("_", "-") for name in fixed))
    overrides = {"out": str(flags.out) if "out" in given else None, "log": _text(flags.log),
                 "data_dir": _text(flags.data_dir), "dataset": flags.dataset}
    return TrainingRun.resume(flags.resume, overrides, **_run_options(flags))


def _text(path):
    return None if path is None else str(path)


def _size(text):
    """"32x48" -> [32, 48] (height, width)."""
    if text is None:
        return None
    match = SIZE.fullmatch(text.strip().lower())
    if not match:
        raise ConfigError(f"--image-size takes HEIGHTxWIDTH in pixels, e.g. 32x32, received {text!r:.40}")
    return [int(match.group(1)), int(match.group(2))]


def _architecture(flags, data):
    """The description to train (see ``_layers``), with a first Normalize layer for resized pictures; a network
    that the pictures are too small for says so, with the flag that changes their size."""
    try:
        spec = _layers(flags, data)
    except ArchitectureError as exc:
        if data.preparation.recipe != "resize":
            raise
        h, w = data.preparation.height, data.preparation.width
        raise ArchitectureError(f"{exc}: {h}x{w} pictures are too small for this network; give a larger "
                                "--image-size (or fewer or smaller layers)") from None
    return _with_normalization(spec, data)


def _layers(flags, data):
    """The --arch file, the layer flags (unset ones take ``architecture.stack``'s defaults, the reference
    network's values), or with neither the reference network's file fitted to the data's image size and classes."""
    input_shape = input_shape_of(data.x_train)
    given = {name: value for name, value in flags.items() if value is not None}
    if "arch" in given:
        if len(given) > 1:
            raise ConfigError(f"--arch describes the layers; drop --{', --'.join(set(given) - {'arch'})} or the "
                              "--arch file")
        spec = architecture.load_file(given["arch"])
    elif given:
        if given.get("dense") == "" and given.get("dropout"):
            raise ConfigError("--dropout sits after the hidden dense layers, and --dense '' asks for none: drop one")
        parse = {"conv": ("conv_channels", int_list), "kernel": ("kernel_sizes", int_list),
                 "dense": ("dense_units", int_list), "dropout": ("dropouts", float_list),
                 "conv_dropout": ("conv_dropouts", float_list),
                 "pool": ("pool_size", None), "padding": ("padding", None)}
        kwargs = {parse[flag][0]: parse[flag][1](value, flag) if parse[flag][1] else value
                  for flag, value in given.items()}
        spec = architecture.stack(**kwargs, input_shape=input_shape, num_classes=data.num_classes)
    else:
        spec = architecture.fit_to_data(architecture.reference(), input_shape, data.num_classes)
    if data.class_names is not None:
        outputs = architecture.build(spec, initialize=False).num_classes
        if outputs != len(data.class_names):
            raise ConfigError(f"the architecture outputs {outputs} scores but the dataset has "
                              f"{len(data.class_names)} classes ({', '.join(data.class_names)})")
        spec = {**spec, "class_names": list(data.class_names)}
    return spec


def _with_normalization(spec, data):
    """For resized pictures, a first Normalize layer holding the training set's per-channel mean and std (unless
    the description starts with one already); digit data stays in [0, 1], as the reference network was made for."""
    layers = spec.get("layers") if isinstance(spec, dict) else None
    if data.preparation.recipe != "resize" or not isinstance(layers, list) or (
            layers and isinstance(layers[0], dict) and layers[0].get("type") == "Normalize"):
        return spec
    mean, std = channel_statistics(data.x_train)
    return {**spec, "layers": [{"type": "Normalize", "mean": mean, "std": std}, *layers]}

def _announce(run, quiet):
    if quiet:
        return
    data, settings = run.data, run.settings
    held_out = 0 if data.x_val is None else len(data.x_val)
    typer.echo(f"cycnn {__version__}: training on {len(data.x_train):,} images ({held_out:,} held out for "
               f"validation), {run.model.parameter_count:,} parameters, checkpoints in {settings.checkpoint}, "
               f"log in {settings.log}")
    if run.resumed:
        typer.echo(f"resuming at epoch {run.trainer.state.epoch + 1}, step {run.trainer.state.step + 1}")


def _report(summary, flags, run, live_view):
    """The run's closing lines (and JSON), and the live page's final state."""
    typer.echo(f"test accuracy {summary['test_accuracy']:.2%} (loss {summary['test_loss']:.4f}); "
               f"{summary['train_images_per_s']:,.0f} images/s; model saved to {summary['model']}")
    target = flags.target_accuracy
    if target is not None:
        reached = summary.get("target_epoch") is not None
        typer.echo(f"reached {target:.2%} test accuracy after {summary['time_to_target_s']:.1f} s of "
                   f"training (epoch {summary['target_epoch']})" if reached else
                   f"did not reach {target:.2%} test accuracy in {summary['epochs']} epochs")
    if flags.json_output:
        typer.echo(json.dumps(summary))
    if live_view:
        _stop_live(live_view, run.trainer, summary, flags.keep_serving)


def _start_live(port, interval, run):
    """Start the --live page's server (with its controls and the explorer) and add the callbacks that feed it."""
    if not interval > 0:
        raise ConfigError(f"--live-interval must be a positive number of seconds, received {interval}")
    data = run.data
    controls, view = serve(run.model, data.x_test, data.y_test, port, interval, step=run.trainer.state.global_step,
                           title=f"{run.model.parameter_count:,}-parameter CNN, {run.settings.epochs} epoch(s) on "
                                 f"{len(data.x_train):,} images")
    typer.echo(f"live view: {view.server.url}")
    run.trainer.callbacks += [controls, view]
    return view


def _stop_live(view, trainer, summary, keep_serving):
    """Show the final state on the --live page, then stop its server once an open page has seen it, or with
    --keep-serving at Ctrl+C (caught from the moment the final state is visible, so it always ends the run
    cleanly)."""
    server = view.server
    try:
        view.finish(trainer, status="finished", test_accuracy=summary["test_accuracy"], test_loss=summary["test_loss"])
        if not keep_serving:
            server.wait_until_seen(timeout=3.0)
            return
        typer.echo(f"training done; the live view stays at {server.url} until Ctrl+C", err=True)
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, Interrupted):
        if not keep_serving:
            raise
    finally:
        server.stop()
