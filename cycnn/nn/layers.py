"""The layers of a CNN, each with its forward and backward pass side by side.

Every layer is callable: ``y = layer(x)`` runs the forward pass and caches what the backward pass needs;
``dx = layer.backward(dy)`` returns the gradient with respect to the input and stores the parameter gradients in
``layer.grads`` (same keys and shapes as ``layer.params``). Images are NCHW and convolution weights are
(out_channels, in_channels, kh, kw), as in PyTorch and ONNX. A layer computes in the dtype of its parameters
(float32 by default; float64 for gradient checks) and converts its input to it.

The arithmetic is in ``cycnn.nn.functional``; a layer holds the parameters, the cache between its two passes, the
training flag and a ``Workspace`` of scratch arrays reused while the batch shape stays the same.
"""
import math

import numpy as np

from cycnn.errors import ArchitectureError, ConfigError
from cycnn.nn import functional as F

ACTIVATIONS = (None, "relu")
# The largest channel count, kernel, stride, padding or pool size a layer takes, and the largest feature count of
# a dense layer: far beyond any network that fits in memory, and small enough that no size computed from them
# overflows the kernels' C integers.
MAX_SIZE = 1 << 20
MAX_FEATURES = 1 << 30
# The most numbers one weight tensor may hold (2**40: 4 TB of float32), checked before any is allocated.
MAX_ELEMENTS = 1 << 40


def _size(name, value, least=1, most=MAX_SIZE):
    """An integer size in [least, most] (booleans are not sizes)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least:
        kind = "a positive integer" if least == 1 else "a non-negative integer"
        raise ConfigError(f"{name} must be {kind}, received {name}={value!r}")
    if value > most:
        raise ConfigError(f"{name} must be at most {most:,}, received {name}={value!r}")
    return int(value)


def _positive_int(name, value):
    return _size(name, value)


def _pair(name, value):
    """Accept 3 or (3, 3) for a kernel, pool or stride size."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigError(f"{name} must be an integer or a pair of integers, received {name}={value!r}")
        return (_positive_int(name, value[0]), _positive_int(name, value[1]))
    value = _positive_int(name, value)
    return (value, value)


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {ACTIVATIONS}, received activation={activation!r}")
    return activation


def _check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ConfigError(f"dtype must be float32 or float64, received dtype={dtype}")
    return dtype


class Layer:
    """What every layer shares: parameters, gradients, the training flag, the workspace and the config."""

    def __init__(self, dtype=np.float32):
        self.dtype = _check_dtype(dtype)
        self.params = {}
        self.grads = {}
        self.training = True
        self.input_grad = True  # set to False on a first layer, whose input gradient nobody needs
        self.workspace = F.Workspace()
        self._cache = None

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        """The forward pass, keeping its cache for ``backward``."""
        y, self._cache = self.apply(x, self.workspace, self.training)
        return y

    def backward(self, dy):
        """The backward pass of the last ``forward``: the input gradient; the parameter gradients go to ``grads``."""
        dx, grads = self.apply_backward(dy, self._take_cache(), self.input_grad)
        self.grads.update(grads)
        return dx

    def apply(self, x, workspace=None, training=False):
        """The forward pass as a pure function of ``x`` and the weights: ``(y, cache)``, nothing stored on the
        layer. Several threads may call it at once (``workspace=None`` gives each call its own scratch arrays):
        how the explorer serves many clients from one model."""
        return np.asarray(x, dtype=self.dtype), None

    def apply_backward(self, dy, cache, input_grad=True):
        """The backward pass of ``apply``: ``(dx, {name: parameter gradient})``; dx is None without
        ``input_grad``."""
        return np.asarray(dy, dtype=self.dtype), {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    @property
    def display_name(self):
        """How the summary, the log, the figures and the benchmark name this layer, e.g. "Conv2D (relu)"."""
        activation = getattr(self, "activation", None)
        return type(self).__name__ + (f" ({activation})" if activation else "")

    def get_config(self):
        """The constructor arguments that rebuild this layer (weights excluded)."""
        return {}

    def output_shape(self, input_shape):
        """Per-sample output shape for a per-sample input shape; raises ArchitectureError if they do not fit."""
        return tuple(input_shape)

    @property
    def parameter_count(self):
        return int(sum(p.size for p in self.params.values()))

    def reseed(self, seed):
        """Seed the layer's random numbers (dropout masks); layers that draw none ignore it."""

    def load_params(self, params):
        """Take ``params`` (name -> array, the layer's names and shapes, all float32 or all float64) as the
        layer's weights, in their dtype: how a loader fills a layer built without initial weights."""
        if set(params) != set(self.params):
            raise ConfigError(f"{type(self).__name__} has parameters {sorted(self.params)}, given {sorted(params)}")
        for name, array in params.items():
            if array.shape != self.params[name].shape:
                raise ConfigError(f"{type(self).__name__} parameter {name} has shape {self.params[name].shape}, "
                                  f"given {array.shape}")
        dtypes = {np.dtype(a.dtype) for a in params.values()}
        if len(dtypes) > 1:
            raise ConfigError(f"{type(self).__name__} parameters must share one dtype, given {sorted(map(str, dtypes))}")
        if dtypes:
            self.dtype = _check_dtype(dtypes.pop())
        self.params = {name: np.array(array, dtype=self.dtype) for name, array in params.items()}
        self.grads = {}
        self.workspace.clear()

    def astype(self, dtype):
        """Convert the parameters to ``dtype`` (float64 for gradient checks) and drop the scratch arrays."""
        self.dtype = _check_dtype(dtype)
        self.params = {k: v.astype(self.dtype) for k, v in self.params.items()}
        self.grads = {}
        self.workspace.clear()
        return self

    def check_input(self, x, ndim=4):
        """``x`` as a C-contiguous array of the layer's dtype, checked against the layer's input shape."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if x.ndim != ndim:
            raise ArchitectureError(f"{type(self).__name__} expects a {ndim}-D input, received shape {x.shape}")
        self.output_shape(x.shape[1:])
        return x

    def _gradient(self, dy):
        return np.ascontiguousarray(dy, dtype=self.dtype)

    def _take_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called without a forward pass before it")
        cache, self._cache = self._cache, None
        return cache


class Conv2D(Layer):
    """2-D convolution as im2col + GEMM, with the bias and an optional ReLU fused into the pass after the GEMM.

    x: (N, in_channels, H, W) -> y: (N, out_channels, OH, OW), OH = (H + 2*padding - kh) // stride + 1.
    ``seed=False`` gives placeholder weights that take no memory, for a loader that is about to fill them.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, activation=None,
                 seed=None, dtype=np.float32):
        super().__init__(dtype)
        self.in_channels = _positive_int("in_channels", in_channels)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _positive_int("stride", stride)
        self.padding = _size("padding", padding, least=0)
        self.activation = _check_activation(activation)
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None):
        """He initialization (suits ReLU): weights ~ N(0, 2 / fan_in), biases 0."""
        kh, kw = self.kernel_size
        shape = (self.out_channels, self.in_channels, kh, kw)
        if seed is False:
            self.params = _placeholders({"W": shape, "b": (self.out_channels,)}, self.dtype)
            return
        W = np.random.default_rng(seed).standard_normal(shape) * np.sqrt(2.0 / (self.in_channels * kh * kw))
        self.params = {"W": W.astype(self.dtype), "b": np.zeros(self.out_channels, dtype=self.dtype)}

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": self.stride, "padding": self.padding,
                "activation": self.activation}

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ArchitectureError(f"Conv2D expects (channels, height, width) input, received {tuple(input_shape)}")
        c, h, w = input_shape
        kh, kw = self.kernel_size
        if c != self.in_channels:
            raise ArchitectureError(f"Conv2D expects {self.in_channels} input channels, received {c} "
                                    f"(input shape {tuple(input_shape)})")
        p = self.padding
        if kh > h + 2 * p or kw > w + 2 * p:
            raise ArchitectureError(f"Conv2D kernel {kh}x{kw} is larger than its input {h}x{w}"
                                    + (f" padded by {p}" if p else ""))
        return (self.out_channels, *F.conv_output_size(h, w, kh, kw, self.stride, p))

    def apply(self, x, workspace=None, training=False):
        return F.conv2d_forward(self.check_input(x), self.params["W"], self.params["b"], self.stride, self.padding,
                                self.activation == "relu", workspace)

    def apply_backward(self, dy, cache, input_grad=True):
        dx, dW, db = F.conv2d_backward(self._gradient(dy), cache, input_grad)
        return dx, {"W": dW, "b": db}


class MaxPool2D(Layer):
    """Max pooling; output sizes are floored (11x11 -> 5x5 with a 2x2 window), ties go to the first maximum."""

    def __init__(self, pool_size=2, stride=None, dtype=np.float32):
        super().__init__(dtype)
        self.pool_size = _pair("pool_size", pool_size)
        self.stride = self.pool_size if stride is None else _pair("stride", stride)

    def get_config(self):
        return {"pool_size": list(self.pool_size), "stride": list(self.stride)}

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ArchitectureError(f"MaxPool2D expects (channels, height, width) input, received {tuple(input_shape)}")
        c, h, w = input_shape
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        if ph > h or pw > w:
            raise ArchitectureError(f"MaxPool2D window {ph}x{pw} is larger than its input {h}x{w}")
        return (c, (h - ph) // sh + 1, (w - pw) // sw + 1)

    def apply(self, x, workspace=None, training=False):
        return F.maxpool2d_forward(self.check_input(x), self.pool_size, self.stride, workspace)

    def apply_backward(self, dy, cache, input_grad=True):
        return F.maxpool2d_backward(self._gradient(dy), cache), {}


class ReLU(Layer):
    """max(x, 0), elementwise; the gradient at exactly 0 is taken as 0."""

    def apply(self, x, workspace=None, training=False):
        return F.relu_forward(np.ascontiguousarray(x, dtype=self.dtype))

    def apply_backward(self, dy, cache, input_grad=True):
        return F.relu_backward(self._gradient(dy), cache), {}


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), in C-order, as PyTorch's flatten."""

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def apply(self, x, workspace=None, training=False):
        return F.flatten_forward(np.asarray(x, dtype=self.dtype))

    def apply_backward(self, dy, cache, input_grad=True):
        return F.flatten_backward(np.asarray(dy, dtype=self.dtype), cache), {}


class Dense(Layer):
    """Fully connected layer: y = act(x @ W + b) with W of shape (in_features, out_features).

    ``seed=False`` gives placeholder weights that take no memory, for a loader that is about to fill them.
    """

    def __init__(self, in_features, out_features, activation=None, seed=None, dtype=np.float32):
        super().__init__(dtype)
        self.in_features = _size("in_features", in_features, most=MAX_FEATURES)
        self.out_features = _size("out_features", out_features, most=MAX_FEATURES)
        self.activation = _check_activation(activation)
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None):
        """He initialization for ReLU layers, Glorot (Xavier) for the linear output layer."""
        fan_in, fan_out = self.in_features, self.out_features
        if seed is False:
            self.params = _placeholders({"W": (fan_in, fan_out), "b": (fan_out,)}, self.dtype)
            return
        std = np.sqrt(2.0 / fan_in) if self.activation == "relu" else np.sqrt(2.0 / (fan_in + fan_out))
        W = np.random.default_rng(seed).standard_normal((fan_in, fan_out)) * std
        self.params = {"W": W.astype(self.dtype), "b": np.zeros(fan_out, dtype=self.dtype)}

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "activation": self.activation}

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ArchitectureError(f"Dense expects input of shape ({self.in_features},), "
                                    f"received {tuple(input_shape)}")
        return (self.out_features,)

    def apply(self, x, workspace=None, training=False):
        return F.dense_forward(self.check_input(x, 2), self.params["W"], self.params["b"], self.activation == "relu")

    def apply_backward(self, dy, cache, input_grad=True):
        dx, dW, db = F.dense_backward(np.asarray(dy, dtype=self.dtype), cache, input_grad)
        return dx, {"W": dW, "b": db}


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability p and scale the rest by 1/(1-p);
    in eval mode, the identity. ``reseed`` replaces its generator (the trainer seeds it per step for exact
    resumes)."""

    def __init__(self, p=0.5, seed=None, dtype=np.float32):
        super().__init__(dtype)
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p < 1:
            raise ConfigError(f"dropout rate must be in [0, 1), received p={p!r}")
        self.p = float(p)
        self.reseed(seed)

    @property
    def display_name(self):
        return f"Dropout (p={self.p:g})"

    def get_config(self):
        return {"p": self.p}

    def reseed(self, seed):
        self.rng = np.random.default_rng(seed)

    def apply(self, x, workspace=None, training=False):
        return F.dropout_forward(np.asarray(x, dtype=self.dtype), self.p, self.rng, training)

    def backward(self, dy):
        mask, self._cache = self._cache, None  # None after an eval-mode pass: the identity
        return F.dropout_backward(np.asarray(dy, dtype=self.dtype), mask)

    def apply_backward(self, dy, cache, input_grad=True):
        return F.dropout_backward(np.asarray(dy, dtype=self.dtype), cache), {}


class Normalize(Layer):
    """(x - mean) / std per input channel: the training set's statistics, kept in the model so that every
    prepared image is scaled as the training images were (and the ONNX export does the same). No weights."""

    def __init__(self, mean, std, dtype=np.float32):
        super().__init__(dtype)
        self.mean, self.std = _channel_values(mean), _channel_values(std)
        if self.mean is None or self.std is None or len(self.mean) != len(self.std) or min(self.std) <= 0:
            raise ConfigError(f"Normalize takes one finite mean and one positive std per channel (lists), received "
                              f"mean={mean!r:.80} std={std!r:.80}")

    def get_config(self):
        return {"mean": list(self.mean), "std": list(self.std)}

    def output_shape(self, input_shape):  # (C, H, W) with the channels it holds statistics for
        if len(input_shape) != 3 or input_shape[0] != len(self.mean):
            raise ArchitectureError(f"Normalize holds {len(self.mean)} channel(s); its input is {tuple(input_shape)}")
        return tuple(input_shape)

    def _scale(self):
        shape = (1, len(self.mean), 1, 1)
        return np.reshape(self.mean, shape).astype(self.dtype), np.reshape(self.std, shape).astype(self.dtype)

    def apply(self, x, workspace=None, training=False):
        mean, std = self._scale()
        return (self.check_input(x) - mean) / std, True  # (nothing to keep: the gradient is dy / std)

    def apply_backward(self, dy, cache, input_grad=True):
        return self._gradient(dy) / self._scale()[1], {}


def _channel_values(values):
    """A list of 1 to 4,096 finite numbers (one per channel), or None."""
    ok = isinstance(values, (list, tuple)) and 1 <= len(values) <= 4096 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    return [float(v) for v in values] if ok else None


def _placeholders(shapes, dtype):
    """Read-only zero arrays of these shapes that take no memory (broadcast views of one zero): the parameters of a
    layer built to be filled by a loader, so that building a large layer costs nothing before its file is read."""
    for name, shape in shapes.items():
        if math.prod(shape) > MAX_ELEMENTS:
            raise ConfigError(f"weight {name} of shape {shape} would hold {math.prod(shape):,} numbers, more than any "
                              f"machine's memory (at most {MAX_ELEMENTS:,})")
    zero = np.zeros((), dtype=dtype)
    return {name: np.broadcast_to(zero, shape) for name, shape in shapes.items()}


LAYER_TYPES = {cls.__name__: cls for cls in (Conv2D, MaxPool2D, ReLU, Flatten, Dense, Dropout, Normalize)}
