"""Training: the trainer, the run's settings, callbacks, checkpoints, the training log, evaluation, and the
Keras-style ``fit``/``evaluate``/``predict``."""
from cycnn.train.callbacks import (Callback, Checkpointer, DivergenceStop, LayerTimes, ProgressBar,
                                   TargetAccuracy)
from cycnn.train.fit import History, evaluate, fit, predict
from cycnn.train.log import RunLog
from cycnn.train.settings import RunSettings
from cycnn.train.trainer import Trainer

__all__ = ["Callback", "Checkpointer", "DivergenceStop", "History", "LayerTimes", "ProgressBar", "RunLog",
           "RunSettings", "TargetAccuracy", "Trainer", "evaluate", "fit", "predict"]
