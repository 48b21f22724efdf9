"""Steering a run while it trains: pause, one step at a time, a new learning rate or dropout rate, slow motion.

``TrainingControls`` is a callback. Commands come from other threads (the live page's server) through
``request``, which checks them and answers at once; the training thread applies them at the start of the next
step (``on_step_begin``), the one moment when changing the optimizer or the layers is safe. A paused run waits on
a condition variable, so it uses no CPU until a command or Ctrl-C (``trainer.stop_requested``, looked at twice a
second) wakes it. Every change is passed to the callbacks' ``on_change`` (the log writes it as an event record,
the live page marks it on its curves).
"""
import math
import threading
import time

from cycnn.errors import ConfigError
from cycnn.nn.layers import Dropout
from cycnn.train.callbacks import Callback

ACTIONS = ("pause", "resume", "step", "set")
MAX_DELAY = 10.0  # seconds of slow motion per step
MAX_LR = 10.0
WAKE_EVERY = 0.5  # seconds between two looks at trainer.stop_requested while paused


class ControlConflict(ConfigError):
    """A well-formed command the run cannot take now (a step while it runs; dropout in a model without any)."""


class TrainingControls(Callback):
    """``model``, when given, is the run's: its dropout layers can then be set before the first step."""

    def __init__(self, model=None):
        self._changed = threading.Condition()
        self.paused = False
        self.delay = 0.0
        self._steps_allowed = 0
        self._pending = {}
        self._flow = []  # pause and resume commands not yet recorded, in order
        self._dropout_layers = _dropout_layers(model) if model is not None else None

    # --- other threads ----------------------------------------------------------------------------------------
    def request(self, command):
        """Check and queue ``command`` (a dict with "action"); returns what the run will do. ConfigError (bad
        command) or ControlConflict (not now) otherwise, and nothing changes."""
        if not isinstance(command, dict) or not isinstance(command.get("action"), str):
            raise ConfigError('a command is a JSON object with an "action": ' + ", ".join(ACTIONS))
        action = command["action"]
        if action not in ACTIONS:
            raise ConfigError(f"unknown action {action[:40]!r}; known: {', '.join(ACTIONS)}")
        extra = set(command) - {"action"}
        if action != "set" and extra:
            raise ConfigError(f"{action} takes no other fields, received {', '.join(sorted(extra))[:100]}")
        with self._changed:
            if action == "set":
                self._pending.update(self._settings(command))
            elif action == "step":
                if not self.paused:
                    raise ControlConflict("step runs one step of a paused run: pause it first")
                self._steps_allowed += 1
            elif self.paused != (action == "pause"):
                self.paused = action == "pause"
                self._steps_allowed = 0
                self._flow.append(self.paused)
            self._changed.notify_all()
            return {"action": action, "paused": self.paused, "pending": dict(self._pending)}

    def _settings(self, command):
        settings = {name: value for name, value in command.items() if name != "action"}
        if not settings:
            raise ConfigError("set needs at least one of lr, dropout, delay")
        for name, value in settings.items():
            if name not in ("lr", "dropout", "delay"):
                raise ConfigError(f"set takes lr, dropout or delay, not {name[:40]!r}")
            # (an int is finite however large: the range checks below refuse 10**400, which float() cannot hold)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, received {str(value)[:40]}")
        if "lr" in settings and not 0 < settings["lr"] <= MAX_LR:
            raise ConfigError(f"lr must be above 0 and at most {MAX_LR:g}, received {str(settings['lr'])[:40]}")
        if "dropout" in settings:
            if not 0 <= settings["dropout"] < 1:
                raise ConfigError(f"dropout must be from 0 to below 1, received {str(settings['dropout'])[:40]}")
            if not self._dropout_layers:
                raise ControlConflict("this model has no dropout layer")
        if "delay" in settings and not 0 <= settings["delay"] <= MAX_DELAY:
            raise ConfigError(f"delay must be from 0 to {MAX_DELAY:g} seconds, received {str(settings['delay'])[:40]}")
        return {name: float(value) for name, value in settings.items()}

    # --- the training thread ----------------------------------------------------------------------------------
    def on_train_begin(self, trainer):
        self._dropout_layers = _dropout_layers(trainer.model)

    def on_step_begin(self, trainer, info):
        """Apply what was asked, then wait while paused (a step command lets exactly one step through), then
        the slow motion's delay."""
        with self._changed:
            self._apply(trainer, info)
            while self.paused and not self._steps_allowed and not trainer.stop_requested:
                self._changed.wait(WAKE_EVERY)
                self._apply(trainer, info)
            if self._steps_allowed:
                self._steps_allowed -= 1
            ends = time.monotonic() + self.delay  # slow motion; a command ends it early (it applies from the next step)
            while self.delay and not trainer.stop_requested and (left := ends - time.monotonic()) > 0:
                if self._changed.wait(min(left, WAKE_EVERY)):
                    break

    def _apply(self, trainer, info):
        """(Holding the lock.) The queued changes, each passed on as an event."""
        changes, self._pending = self._pending, {}
        flow, self._flow = self._flow, []
        for paused in flow:
            trainer.notify_change("paused" if paused else "resumed", not paused, paused)
        if "lr" in changes:
            before = trainer.optimizer.lr
            trainer.set_learning_rate(changes["lr"], info["epoch"], info["step"], info["steps"])
            trainer.notify_change("lr", before, trainer.optimizer.lr)
        if "dropout" in changes:
            before = self._dropout_layers[0].p
            for layer in self._dropout_layers:
                layer.p = changes["dropout"]
            trainer.notify_change("dropout", before, changes["dropout"])
        if "delay" in changes:
            before, self.delay = self.delay, changes["delay"]
            trainer.notify_change("delay", before, self.delay)



def _dropout_layers(model):
    return [layer for layer in model.layers if isinstance(layer, Dropout)]
