"""Training checkpoints: weights, optimizer state, where the run is, and the run's configuration, in one file.

A checkpoint uses the model file format (kind "checkpoint"), so ``cycnn evaluate`` and ``cycnn predict`` accept it
too. The data order, augmentation and dropout are all seeded from (seed, epoch, step) (see ``cycnn.train.trainer``),
so the epoch and step are all the random state a resumed run needs to continue bit for bit.

Everything read back is validated (types, ranges, optimizer slots against the weights; the run's settings by
``RunSettings``, the validator the command line's flags go through) before it is used, so a damaged or tampered
checkpoint fails here with ModelFileError, not later in the middle of training. Checkpoints written before the
settings became one table (``config`` and ``run``) still load.
"""
import math
from dataclasses import asdict, fields

import numpy as np

from cycnn.errors import CycnnError, ModelFileError, TrainingDiverged
from cycnn.io.model_file import declared_weights_fit, load_arrays, model_from, save_arrays
from cycnn.nn.optim import OPTIMIZERS
from cycnn.train.settings import RunSettings
from cycnn.train.state import TrainState

OPTIMIZER_SLOTS = {"adam": ("m", "v"), "sgd": ("v",)}
# Bounds on a stored state's figures: a run of ten years, a summed loss no real epoch reaches.
MAX_TRAIN_SECONDS = 3.2e8
MAX_LOSS_SUM = 1e15


def save_checkpoint(path, model, optimizer, state, settings):
    """Write a checkpoint atomically, with the run's ``settings`` (a ``RunSettings``).

    Refuses (TrainingDiverged, nothing written) when a weight or the optimizer's state is NaN or infinite (what
    the loader refuses), so the last checkpoint on disk is always one a run can be resumed from.
    """
    arrays = {f"param.{key}": param for key, param, _ in model.parameters()}
    opt_state = optimizer.state_dict()
    arrays.update({f"opt.{key}": value for key, value in opt_state["arrays"].items()})
    for name, array in arrays.items():  # what load_checkpoint checks, checked before writing
        if not np.all(np.isfinite(array)):
            what, item = ("weights", "weight") if name.startswith("param.") else ("optimizer's state", "slot")
            raise TrainingDiverged(f"the {what} became NaN or infinite ({item} {name}) after epoch "
                                   f"{state.epoch + 1}, step {state.step}; try a lower learning rate")
    training = {"state": asdict(state), "settings": settings.to_dict(),
                "optimizer": {**optimizer.get_config(), "t": opt_state["t"]}}
    save_arrays(path, "checkpoint", model.get_config(), arrays, {"training": training, "metadata": {}})


def load_checkpoint(path):
    """Read a checkpoint: returns (model, optimizer, state, settings)."""
    header, arrays = load_arrays(path, kind="checkpoint", check=declared_weights_fit)
    model = model_from(header, arrays, path)
    try:
        training = _dict(header.get("training"), "training")
        settings = RunSettings.from_dict(_settings(training))
        state = _state(_dict(training.get("state"), "state"), settings)
        optimizer = _optimizer(_dict(training.get("optimizer"), "optimizer"), arrays, model)
    except (CycnnError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: damaged training state in checkpoint ({exc})") from None
    return model, optimizer, state, settings


def _settings(training):
    """The stored settings as one table (older checkpoints kept them in ``config`` and ``run``)."""
    if "settings" in training:
        return _dict(training["settings"], "settings")
    config = {k: v for k, v in _dict(training.get("config"), "config").items() if k != "extra"}
    return {**config, **_dict(training.get("run", {}), "run")}


def _dict(value, what):
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a table")
    return value


def _count(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, found {value!r}")
    return value


def _state(data, settings):
    known = {f.name for f in fields(TrainState)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown state fields {sorted(unknown)}")
    state = TrainState(**data)
    for name in ("epoch", "step", "global_step", "epoch_seen", "epoch_correct"):
        _count(getattr(state, name), name)
    if state.epoch > settings.epochs:
        raise ValueError(f"epoch {state.epoch} is past the run's {settings.epochs} epochs")
    for name, most in (("train_seconds", MAX_TRAIN_SECONDS), ("epoch_loss_sum", MAX_LOSS_SUM)):
        value = getattr(state, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 <= value <= most:
            raise ValueError(f"{name} must be a number from 0 to {most:g}, found {value!r}")
    if not isinstance(state.history, list) or not all(isinstance(r, dict) for r in state.history) \
            or len(state.history) > state.epoch:
        raise ValueError("history must be a list of tables, one per finished epoch")
    return state


def _optimizer(data, arrays, model):
    name = data.get("name")
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}")
    # The constructor validates each value as it validates the command line's (a ConfigError names the bad one).
    hyper = {key: data[key] for key in ("lr", "momentum", "beta1", "beta2", "eps") if key in data}
    optimizer = OPTIMIZERS[name](**hyper)
    params = {key: param for key, param, _ in model.parameters()}
    slots = {}
    for array_name, value in arrays.items():
        if not array_name.startswith("opt."):
            continue
        slot, _, key = array_name[len("opt."):].partition(":")
        if slot not in OPTIMIZER_SLOTS[name] or key not in params:
            raise ValueError(f"array {array_name!r} is not a {name} slot of any weight")
        if value.shape != params[key].shape or value.dtype != params[key].dtype:
            raise ValueError(f"array {array_name!r} is {value.dtype}{list(value.shape)}, its weight is "
                             f"{params[key].dtype}{list(params[key].shape)}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"array {array_name!r} holds NaN or infinite values")
        slots[f"{slot}:{key}"] = value
    optimizer.load_state_dict({"t": _count(data.get("t"), "optimizer step count t"), "arrays": slots})
    return optimizer
