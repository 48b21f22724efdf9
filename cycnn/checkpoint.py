"""Training checkpoints: weights, optimizer state, where the run is, and the run's configuration, in one file.

A checkpoint uses the model file format (kind "checkpoint"), so ``cycnn evaluate`` and ``cycnn predict`` accept it
too. The data order, augmentation and dropout are all seeded from (seed, epoch, step) (see ``cycnn.training``),
so the epoch and step are all the random state a resumed run needs to continue bit for bit.
"""
from dataclasses import asdict

from cycnn.errors import ModelFileError
from cycnn.optimizers import make_optimizer
from cycnn.serialization import load_arrays, model_from, save_arrays
from cycnn.training import TrainConfig, TrainState


def save_checkpoint(path, model, optimizer, state, config, run=None):
    """Write a checkpoint atomically; ``run`` holds the CLI's own settings (data, output paths)."""
    arrays = {f"param.{key}": param for key, param, _ in model.parameters()}
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
        training = header["training"]
        config = TrainConfig(**training["config"])
        state = TrainState(**training["state"])
        opt = training["optimizer"]
        optimizer = make_optimizer(opt["name"], opt["lr"])
        for key in ("momentum", "beta1", "beta2", "eps"):
            if key in opt:
                setattr(optimizer, key, float(opt[key]))
        optimizer.load_state_dict({"t": opt["t"], "arrays": {k[len("opt."):]: v for k, v in arrays.items()
                                                             if k.startswith("opt.")}})
        run = dict(training.get("run", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: damaged training state in checkpoint ({type(exc).__name__}: {exc})") from None
    return model, optimizer, state, config, run
