"""A training run's settings as one validated dataclass: the same checks for the command line's flags, for the
Python API and for what a checkpoint stores.

The settings fall in two groups. Those that decide what is computed (``RESUME_FIXED``: epochs, batch, optimizer,
learning rate, seed, augmentation, the data) are stored in checkpoints and a resumed run continues with them; the
others (where the files go, how often to write them) are the user's to choose again on every command.
"""
import math
from dataclasses import asdict, dataclass, fields
from typing import Optional

from cycnn.errors import ConfigError
from cycnn.nn.optim import OPTIMIZERS, check_lr

LR_SCHEDULES = ("constant", "cosine")
# Upper bounds, so that no value from a flag or a checkpoint can ask for an absurd run: seeds up to what numpy's
# generators take from a plain integer; epochs whose history stays far inside a model file's header; batches of
# at most 65,536 images; intervals and paths of ordinary size.
MAX_SEED = 2 ** 63 - 1
MAX_EPOCHS = 10_000
MAX_BATCH = 1 << 16
MAX_STEPS = 1 << 31
MAX_PATH = 4096


def _integer(name, value, least, most=None):
    if isinstance(value, bool) or not isinstance(value, int) or value < least or (most is not None and value > most):
        bound = {0: "a non-negative integer", 1: "a positive integer"}.get(least, f"an integer of at least {least}")
        bound += f" of at most {most}" if most is not None else ""
        raise ConfigError(f"{name} must be {bound}, received {name}={value!r}")
    return value


def _real(name, value, least, most):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not least <= value <= most:
        raise ConfigError(f"{name} must be a number from {least:g} to {most:g}, received {name}={value!r}")
    return float(value)


def _text(name, value, optional=True):
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_PATH or not value.isprintable():
        raise ConfigError(f"{name} must be a non-empty printable text, received {name}={value!r:.100}")
    return value


@dataclass
class RunSettings:
    """How to train, what on, and where the results go. Constructing one validates every field."""

    epochs: int = 1
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 0.001
    lr_schedule: str = "constant"
    seed: int = 0
    augment: bool = False
    max_degrees: float = 10.0
    max_shift: float = 2.0
    flip: bool = False
    data_dir: Optional[str] = None
    dataset: Optional[str] = None
    prepare: Optional[str] = None
    image_size: Optional[list] = None
    grayscale: bool = False
    limit_train: Optional[int] = None
    val_split: float = 0.0
    data_sha256: Optional[str] = None
    out: str = "cycnn-model.npz"
    checkpoint: Optional[str] = None
    checkpoint_every: int = 0
    log: Optional[str] = None
    log_every: int = 50

    def __post_init__(self):
        _integer("epochs", self.epochs, 1, MAX_EPOCHS)
        _integer("batch_size", self.batch_size, 1, MAX_BATCH)
        if not isinstance(self.optimizer, str) or self.optimizer.lower() not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        self.optimizer = self.optimizer.lower()
        self.lr = check_lr(self.lr)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', received {self.lr_schedule!r}")
        _integer("seed", self.seed, 0, MAX_SEED)
        for name in ("augment", "flip", "grayscale"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, received {name}={getattr(self, name)!r}")
        if self.prepare not in (None, "digit", "resize"):
            raise ConfigError(f"prepare must be 'digit' or 'resize', received prepare={self.prepare!r:.40}")
        if self.image_size is not None:
            size = list(self.image_size) if isinstance(self.image_size, (list, tuple)) else None
            if size is None or len(size) != 2:
                raise ConfigError(f"image_size must be [height, width], received image_size={self.image_size!r:.40}")
            self.image_size = [_integer("image height", size[0], 4, 1024), _integer("image width", size[1], 4, 1024)]
        self.max_degrees = _real("max_degrees", self.max_degrees, 0, 180)
        self.max_shift = _real("max_shift", self.max_shift, 0, 64)
        for name in ("data_dir", "dataset", "data_sha256", "checkpoint", "log"):
            _text(name, getattr(self, name))
        _text("out", self.out, optional=False)
        if self.limit_train is not None:
            _integer("limit_train", self.limit_train, 1)
        if isinstance(self.val_split, bool) or not isinstance(self.val_split, (int, float)) \
                or not 0 <= self.val_split < 1:
            raise ConfigError(f"val_split must be in [0, 1), received val_split={self.val_split!r}")
        _integer("checkpoint_every", self.checkpoint_every, 0, MAX_STEPS)
        _integer("log_every", self.log_every, 1, MAX_STEPS)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Settings from stored data (a checkpoint's), refusing unknown names as well as bad values."""
        if not isinstance(data, dict):
            raise ConfigError("the run settings are not a table")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown run settings {sorted(unknown)}")
        return cls(**data)

    def training_config(self):
        """What decides the computation: the settings a resumed run keeps (``RESUME_FIXED``)."""
        return {name: getattr(self, name) for name in RESUME_FIXED}


# What a checkpoint fixes: a resumed run takes these from the checkpoint, so giving them again is an error.
RESUME_FIXED = ("epochs", "batch_size", "optimizer", "lr", "lr_schedule", "seed", "augment", "flip", "max_degrees",
                "max_shift", "data_dir", "dataset", "prepare", "image_size", "grayscale", "limit_train", "val_split",
                "data_sha256")
