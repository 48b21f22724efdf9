"""The start of an MPI run: the ranks greet each other, rank 0 sends a checkpoint to resume, every rank builds its
run, and the ranks compare what they built before the first step.

A rank started with other flags, other data or another cycnn would train something else, silently; so each rank
sends a fingerprint of its run (the settings that decide the computation, digests of the architecture, of the
initial weights and optimizer state, of the training, validation and test data, the cycnn version) and the run
is refused with one line naming the first difference. A rank that could not build its run (its data is missing on
its host) is reported by rank 0 the same way. Every rank decides from the same gathered answers, so they all stop
together.
"""
import atexit
import hashlib
import json
import os
import shutil
import stat
import tempfile

import numpy as np

from cycnn.errors import ConfigError, CycnnError, TrainingInterrupted
from cycnn.train.distributed import weights_digest
from cycnn.version import __version__

# Larger checkpoints are not sent (MPI counts are 32-bit here): every rank then reads its own copy.
MAX_SENT_CHECKPOINT = (1 << 31) - 1
# Labels of the settings that are not spelt as flags.
LABELS = {"data_sha256": "the training data", "max_degrees": "the augmentation's rotation",
          "max_shift": "the augmentation's shift"}


def hello(world, resume=None, **choices):
    """The first exchange: each rank's cycnn version, whether it resumes, the other ``choices`` (name -> value)
    that change what the ranks do next, and its host and cores (from which ``World.default_threads`` shares a
    host's cores). Ranks that differ in anything but their host and cores are refused."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    said = {"the cycnn version": __version__, "resuming a checkpoint (--resume)": resume is not None,
            **{f"--{name.replace('_', '-')}": value for name, value in choices.items()}}
    world.peers = world.allgather_json({"said": said, "host": world.host, "cpus": cpus}, "the start",
                                       world.start_timeout)
    for label in said:
        _compare(world, label, [peer["said"].get(label) for peer in world.peers])


def shared_checkpoint(world, path):
    """The checkpoint ``path`` that rank 0 names, readable on every rank: rank 0 sends its bytes and the other
    ranks keep a copy in a temporary directory (the hosts need not share a file system). When rank 0 cannot read
    it, every rank keeps ``path`` (and the loader says what is wrong with it)."""
    data = _read_checkpoint(path) if world.rank == 0 else b""
    data = world.bcast_bytes(data, "the transfer of the checkpoint", world.start_timeout)
    if world.rank == 0 or not data:
        return path
    directory = tempfile.mkdtemp(prefix="cycnn-rank-")
    atexit.register(shutil.rmtree, directory, True)
    copy = os.path.join(directory, os.path.basename(os.fspath(path)) or "resumed.ckpt.npz")
    with open(copy, "wb") as fh:
        fh.write(data)
    return copy


def _read_checkpoint(path):
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SENT_CHECKPOINT:
            return b""
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def start(world, make_run):
    """Every rank builds its run with ``make_run()`` (a ``TrainingRun``); returns it once every rank has built
    the same run. A rank that failed, or that differs, ends the run on every rank with the same error."""
    run = error = None
    try:
        run = make_run()
    except (TrainingInterrupted, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - reported by rank 0, whatever it is
        error = exc
    mine = {"fingerprint": fingerprint(run)} if error is None else {
        "error": str(error) if isinstance(error, CycnnError) else f"{type(error).__name__}: {error}"}
    everyone = world.allgather_json(mine, "the start", world.start_timeout)
    failed = [rank for rank, answer in enumerate(everyone) if "error" in answer]
    if failed:
        world.agreed = True
        if failed[0] == world.rank:
            raise error
        peer = world.peers[failed[0]]["host"] if world.peers else "?"
        raise ConfigError(f"rank {failed[0]} ({peer}): {everyone[failed[0]]['error']}")
    prints = [answer["fingerprint"] for answer in everyone]
    for label in prints[0]:
        _compare(world, label, [p.get(label) for p in prints])
    return run


def fingerprint(run):
    """What must be the same on every rank: {label: value or digest}."""
    settings, data, model = run.settings, run.data, run.model
    values = {LABELS.get(name, "--" + name.replace("_", "-")): value
              for name, value in settings.training_config().items() if name != "data_dir"}  # a path, per host
    values.update({
        "--target-accuracy": run.target.target if run.target is not None else None,
        "the architecture": _digest(json.dumps(model.get_config(), sort_keys=True).encode()),
        "the model's precision": str(np.dtype(model.dtype)),
        "the weights and the optimizer's state": weights_digest(model, run.optimizer).hex(),
        "the place in the run (epoch, step)": [run.trainer.state.epoch, run.trainer.state.step],
        "the validation data": _digest(data.x_val, data.y_val),
        "the test data": _digest(data.x_test, data.y_test),
    })
    return json.loads(json.dumps(values))  # as every rank will see it: tuples become lists


def _digest(*arrays):
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none")
        elif isinstance(array, bytes):
            digest.update(array)
        else:
            array = np.ascontiguousarray(array)
            digest.update(f"{array.shape}{array.dtype}".encode())
            digest.update(array)
    return digest.hexdigest()


def _compare(world, label, values):
    """Refuse the run, on every rank, when a rank's ``values`` entry differs from rank 0's."""
    differing = [rank for rank, value in enumerate(values) if value != values[0]]
    if not differing:
        return
    world.agreed = True
    rank = differing[0]
    host = world.peers[rank]["host"] if world.peers else "?"
    others = f" (and {len(differing) - 1} more rank(s))" if len(differing) > 1 else ""
    raise ConfigError(f"the ranks disagree on {label}: rank {rank} ({host}) has {_shown(values[rank])}, rank 0 has "
                      f"{_shown(values[0])}{others}; every rank must run the same command on the same data with the "
                      "same cycnn")


def _shown(value):
    if isinstance(value, str) and len(value) in (32, 64) and all(c in "0123456789abcdef" for c in value):
        return f"digest {value[:12]}"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
