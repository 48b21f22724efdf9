"""Optimizers that update a model's parameters in place from its gradients.

Each keeps its per-parameter state (velocity, Adam moments) in arrays keyed by "layer_index.name", which is what
a checkpoint saves through ``state_dict()`` and restores through ``load_state_dict()``.
"""
import numpy as np

from cycnn.errors import ConfigError
from cycnn.nn import _optim


def _number(name, value, low, high=None, low_open=False):
    """``value`` as a float, refused unless it is a finite number in [low, high) ((low, high) if ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, received {name}={value!r}")
    value = float(value)
    if (not np.isfinite(value) or value < low or (low_open and value == low)
            or (high is not None and value >= high)):
        where = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g})'}"
        raise ConfigError(f"{name} must be in {where}, received {name}={value!r}")
    return value


def check_lr(lr):
    """A learning rate: a positive finite number."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)) or not np.isfinite(lr) \
            or lr <= 0:
        raise ConfigError(f"learning rate must be a positive number, received lr={lr!r}")
    return float(lr)


class Optimizer:
    """Common bookkeeping: the learning rate, the step count and the state arrays."""

    def __init__(self, lr):
        self.lr = check_lr(lr)
        self.t = 0
        self.state = {}

    def step(self, parameters):
        """Update every (key, param, grad) in ``parameters``; params change in place."""
        self.t += 1
        for key, param, grad in parameters:
            self._update(key, param, grad)

    def _slot(self, name, key, like):
        slot = self.state.get(f"{name}:{key}")
        if slot is None:
            slot = self.state[f"{name}:{key}"] = np.zeros_like(like)
        return slot

    def get_config(self):
        return {"name": self.name, "lr": self.lr}

    def state_dict(self):
        return {"t": self.t, "arrays": dict(self.state)}

    def load_state_dict(self, state):
        self.t = int(state["t"])
        self.state = {k: np.array(v) for k, v in state["arrays"].items()}


class SGD(Optimizer):
    """SGD with (heavy-ball) momentum: v = momentum*v + g; p -= lr*v."""

    name = "sgd"

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr)
        self.momentum = _number("momentum", momentum, 0, 1)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}

    def _update(self, key, param, grad):
        v = self._slot("v", key, param)
        _optim.momentum_update(param.reshape(-1), _flat(grad, param), v.reshape(-1), self.lr, self.momentum)


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with bias correction."""

    name = "adam"

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(lr)
        self.beta1, self.beta2 = _number("beta1", beta1, 0, 1), _number("beta2", beta2, 0, 1)
        self.eps = _number("eps", eps, 0, low_open=True)

    def get_config(self):
        return {**super().get_config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _update(self, key, param, grad):
        m = self._slot("m", key, param)
        v = self._slot("v", key, param)
        step = self.lr * np.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        _optim.adam_update(param.reshape(-1), _flat(grad, param), m.reshape(-1), v.reshape(-1), step,
                           self.beta1, self.beta2, self.eps)


def _flat(grad, param):
    """The gradient as a contiguous 1-D array of the parameter's dtype (what the update kernels take)."""
    return np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name, lr=None):
    """Build an optimizer by name ("adam" or "sgd"), with its default learning rate when lr is None."""
    cls = OPTIMIZERS.get(str(name).lower())
    if cls is None:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return cls() if lr is None else cls(lr=lr)
