"""Training checkpoints: weights, optimizer state, where the run is, and the run's configuration, in one file.

A checkpoint uses the model file format (kind "checkpoint"), so ``cycnn evaluate`` and ``cycnn predict`` accept it
too. The data order, augmentation and dropout are all seeded from (seed, epoch, step) (see ``cycnn.training``),
so the epoch and step are all the random state a resumed run needs to continue bit for bit.

Everything read back is validated (types, ranges, optimizer slots against the weights) before it is used, so a
damaged or tampered checkpoint fails here with ModelFileError, not later in the middle of training.
"""
import math
from dataclasses import asdict, fields

import numpy as np

from cycnn.errors import CycnnError, ModelFileError, TrainingDiverged
from cycnn.optimizers import OPTIMIZERS
from cycnn.serialization import load_arrays, model_from, save_arrays
from cycnn.training import TrainConfig, TrainState

OPTIMIZER_SLOTS = {"adam": ("m", "v"), "sgd": ("v",)}


def save_checkpoint(path, model, optimizer, state, config, run=None):
    """Write a checkpoint atomically; ``run`` holds the CLI's own settings (data, output paths).

    Refuses (TrainingDiverged, nothing written) when a weight is NaN or infinite, so the last checkpoint on disk
    is always one a run can be resumed from.
    """
    arrays = {f"param.{key}": param for key, param, _ in model.parameters()}
    for name, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise TrainingDiverged(f"the weights became NaN or infinite (weight {name}) after epoch "
                                   f"{state.epoch + 1}, step {state.step}; try a lower learning rate")
    opt_state = optimizer.state_dict()
    arrays.update({f"opt.{key}": value for key, value in opt_state["arrays"].items()})
    training = {"state": asdict(state), "config": config.to_dict(),
                "optimizer": {**optimizer.get_config(), "t": opt_state["t"]}, "run": run or {}}
    save_arrays(path, "checkpoint", model.get_config(), arrays, {"training": training, "metadata": {}})


def load_checkpoint(path):
    """Read a checkpoint: returns (model, optimizer, state, config, run)."""
    header, arrays = load_arrays(path, kind="checkpoint")
    model = model_from(header, arrays, path)
    try:
        training = _dict(header.get("training"), "training")
        config = TrainConfig(**_dict(training.get("config"), "config"))
        state = _state(_dict(training.get("state"), "state"), config)
        optimizer = _optimizer(_dict(training.get("optimizer"), "optimizer"), arrays, model)
        run = _run(_dict(training.get("run", {}), "run"))
    except (CycnnError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: damaged training state in checkpoint ({exc})") from None
    return model, optimizer, state, config, run


def _dict(value, what):
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a table")
    return value


def _count(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, found {value!r}")
    return value


def _state(data, config):
    known = {f.name for f in fields(TrainState)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown state fields {sorted(unknown)}")
    state = TrainState(**data)
    for name in ("epoch", "step", "global_step", "epoch_seen", "epoch_correct"):
        _count(getattr(state, name), name)
    if state.epoch > config.epochs:
        raise ValueError(f"epoch {state.epoch} is past the run's {config.epochs} epochs")
    for name in ("train_seconds", "epoch_loss_sum"):
        value = getattr(state, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number, found {value!r}")
    if not isinstance(state.history, list) or not all(isinstance(r, dict) for r in state.history):
        raise ValueError("history must be a list of tables")
    return state


def _run(data):
    """The CLI's settings (paths and data selection), each of the type and range the CLI gives them."""
    if not isinstance(data.get("out"), str) or not data["out"]:
        raise ValueError("the run has no output path")
    for key in ("data_dir", "dataset", "log", "data_sha256"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ValueError(f"run setting {key} must be a string, found {data[key]!r}")
    for key, least in (("limit_train", 1), ("checkpoint_every", 0), ("log_every", 1)):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ValueError(f"run setting {key} must be an integer of at least {least}, found {value!r}")
    split = data.get("val_split", 0.0)
    if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0 <= split < 1:
        raise ValueError(f"run setting val_split must be in [0, 1), found {split!r}")
    return data


def _optimizer(data, arrays, model):
    name = data.get("name")
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}")
    hyper = {key: data[key] for key in ("lr", "momentum", "beta1", "beta2", "eps") if key in data}
    for key, value in hyper.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"optimizer {key} must be a number, found {value!r}")
    for key in ("beta1", "beta2"):
        if key in hyper and not 0 <= hyper[key] < 1:
            raise ValueError(f"optimizer {key} must be in [0, 1), found {hyper[key]!r}")
    if "eps" in hyper and hyper["eps"] <= 0:
        raise ValueError(f"optimizer eps must be positive, found {hyper['eps']!r}")
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
