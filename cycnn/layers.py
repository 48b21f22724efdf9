"""The layers of a CNN, each with its forward and backward pass side by side.

Every layer is callable: ``y = layer(x)`` runs the forward pass and caches what the backward pass needs;
``dx = layer.backward(dy)`` returns the gradient with respect to the input and stores the parameter gradients in
``layer.grads`` (same keys and shapes as ``layer.params``). Images are NCHW and convolution weights are
(out_channels, in_channels, kh, kw), as in PyTorch and ONNX. A layer computes in the dtype of its parameters
(float32 by default; float64 for gradient checks) and converts its input to it.

The hot loops (im2col/col2im, pooling, ReLU) are the Cython kernels in ``src_ext/``; a convolution's matrix
products go to BLAS through ``cycnn.gemm.matmul`` (blocks shared among cycnn's threads), a dense layer's to
cycnn's own vector kernel through ``cycnn.gemm.dense``. Scratch buffers are kept per layer and reused while the
batch shape stays the same, so a training step does not allocate them again.
"""
import numpy as np

from cycnn import _activation, _conv, _pool, gemm
from cycnn.errors import ArchitectureError, ConfigError

ACTIVATIONS = (None, "relu")


def _positive_int(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, received {name}={value!r}")
    return int(value)


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
    """What every layer shares: parameters, gradients, the training flag, scratch buffers and the config."""

    def __init__(self, dtype=np.float32):
        self.dtype = _check_dtype(dtype)
        self.params = {}
        self.grads = {}
        self.training = True
        self.input_grad = True  # set to False on a first layer, whose input gradient nobody needs
        self._buffers = {}
        self._cache = None

    def __call__(self, x):
        return self.forward(x)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def get_config(self):
        """The constructor arguments that rebuild this layer (weights excluded)."""
        return {}

    def output_shape(self, input_shape):
        """Per-sample output shape for a per-sample input shape; raises ArchitectureError if they do not fit."""
        return tuple(input_shape)

    @property
    def parameter_count(self):
        return int(sum(p.size for p in self.params.values()))

    def astype(self, dtype):
        """Convert the parameters to ``dtype`` (float64 for gradient checks) and drop the scratch buffers."""
        self.dtype = _check_dtype(dtype)
        self.params = {k: v.astype(self.dtype) for k, v in self.params.items()}
        self.grads = {}
        self._buffers = {}
        return self

    def _input(self, x, ndim):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if x.ndim != ndim:
            raise ArchitectureError(f"{type(self).__name__} expects a {ndim}-D input, received shape {x.shape}")
        self.output_shape(x.shape[1:])
        return x

    def _buffer(self, name, shape, dtype=None):
        """A scratch array reused across calls while its shape and dtype stay the same (contents undefined)."""
        dtype = self.dtype if dtype is None else dtype
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype=dtype)
            self._buffers[name] = buf
        return buf

    def _take_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called without a forward pass before it")
        cache, self._cache = self._cache, None
        return cache


class Conv2D(Layer):
    """2-D convolution as im2col + GEMM, with the bias and an optional ReLU fused into the pass after the GEMM.

    x: (N, in_channels, H, W) -> y: (N, out_channels, OH, OW), OH = (H + 2*padding - kh) // stride + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, activation=None,
                 seed=None, dtype=np.float32):
        super().__init__(dtype)
        self.in_channels = _positive_int("in_channels", in_channels)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _positive_int("stride", stride)
        if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ConfigError(f"padding must be a non-negative integer, received padding={padding!r}")
        self.padding = int(padding)
        self.activation = _check_activation(activation)
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None):
        """He initialization (suits ReLU): weights ~ N(0, 2 / fan_in), biases 0."""
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        rng = np.random.default_rng(seed)
        shape = (self.out_channels, self.in_channels, kh, kw)
        self.params = {"W": (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(self.dtype),
                       "b": np.zeros(self.out_channels, dtype=self.dtype)}

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
        return (self.out_channels, (h + 2 * p - kh) // self.stride + 1, (w + 2 * p - kw) // self.stride + 1)

    def forward(self, x):
        x = self._input(x, 4)
        n = x.shape[0]
        f, oh, ow = self.output_shape(x.shape[1:])
        kh, kw = self.kernel_size
        cols = self._buffer("cols", (n * oh * ow, self.in_channels * kh * kw))
        _conv.im2col(x, kh, kw, self.stride, self.padding, cols)
        rows = self._buffer("rows", (n * oh * ow, f))
        gemm.matmul(cols, self.params["W"].reshape(f, -1).T, out=rows)
        y = np.empty((n, f, oh, ow), dtype=self.dtype)
        _conv.rows_to_nchw(rows, self.params["b"], self.activation == "relu", y.reshape(n, f, oh * ow))
        self._cache = (x.shape, cols, y)
        return y

    def backward(self, dy):
        x_shape, cols, y = self._take_cache()
        n, f = y.shape[0], y.shape[1]
        dy = np.ascontiguousarray(dy, dtype=self.dtype).reshape(n, f, -1)
        drows = self._buffer("rows", (cols.shape[0], f))
        _conv.nchw_to_rows(dy, y.reshape(n, f, -1), self.activation == "relu", drows)
        self.grads["b"] = drows.sum(axis=0)
        self.grads["W"] = gemm.matmul(drows.T, cols).reshape(self.params["W"].shape)
        if not self.input_grad:
            return None
        dcols = cols  # cols is no longer needed: reuse its memory for the column gradient
        gemm.matmul(drows, self.params["W"].reshape(f, -1), out=dcols)
        dx = np.empty(x_shape, dtype=self.dtype)
        _conv.col2im(dcols, self.kernel_size[0], self.kernel_size[1], self.stride, self.padding, dx)
        return dx


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
            raise ArchitectureError(f"MaxPool2D expects (channels, height, width) input, "
                                    f"received {tuple(input_shape)}")
        c, h, w = input_shape
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        if ph > h or pw > w:
            raise ArchitectureError(f"MaxPool2D window {ph}x{pw} is larger than its input {h}x{w}")
        return (c, (h - ph) // sh + 1, (w - pw) // sw + 1)

    def forward(self, x):
        x = self._input(x, 4)
        c, oh, ow = self.output_shape(x.shape[1:])
        y = np.empty((x.shape[0], c, oh, ow), dtype=self.dtype)
        argmax = self._buffer("argmax", y.shape, np.int32)
        _pool.maxpool_forward(x, *self.pool_size, *self.stride, y, argmax)
        self._cache = (x.shape, argmax)
        return y

    def backward(self, dy):
        x_shape, argmax = self._take_cache()
        dx = np.empty(x_shape, dtype=self.dtype)
        _pool.maxpool_backward(np.ascontiguousarray(dy, dtype=self.dtype), argmax, dx)
        return dx


class ReLU(Layer):
    """max(x, 0), elementwise; the gradient at exactly 0 is taken as 0."""

    def forward(self, x):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y = np.empty_like(x)
        _activation.relu_forward(x.reshape(-1), y.reshape(-1))
        self._cache = y
        return y

    def backward(self, dy):
        y = self._take_cache()
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        dx = np.empty_like(y)
        _activation.relu_backward(dy.reshape(-1), y.reshape(-1), dx.reshape(-1))
        return dx


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), in C-order, as PyTorch's flatten."""

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x):
        x = np.asarray(x, dtype=self.dtype)
        self._cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return np.asarray(dy, dtype=self.dtype).reshape(self._take_cache())


class Dense(Layer):
    """Fully connected layer: y = act(x @ W + b) with W of shape (in_features, out_features)."""

    def __init__(self, in_features, out_features, activation=None, seed=None, dtype=np.float32):
        super().__init__(dtype)
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        self.activation = _check_activation(activation)
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None):
        """He initialization for ReLU layers, Glorot (Xavier) for the linear output layer."""
        rng = np.random.default_rng(seed)
        fan_in, fan_out = self.in_features, self.out_features
        std = np.sqrt(2.0 / fan_in) if self.activation == "relu" else np.sqrt(2.0 / (fan_in + fan_out))
        self.params = {"W": (rng.standard_normal((fan_in, fan_out)) * std).astype(self.dtype),
                       "b": np.zeros(fan_out, dtype=self.dtype)}

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "activation": self.activation}

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ArchitectureError(f"Dense expects input of shape ({self.in_features},), "
                                    f"received {tuple(input_shape)}")
        return (self.out_features,)

    def forward(self, x):
        x = self._input(x, 2)
        y = gemm.dense(x, self.params["W"])
        y += self.params["b"]
        if self.activation == "relu":
            np.maximum(y, 0, out=y)
        self._cache = (x, y)
        return y

    def backward(self, dy):
        x, y = self._take_cache()
        dz = np.asarray(dy, dtype=self.dtype)
        if self.activation == "relu":
            dz = np.where(y > 0, dz, 0).astype(self.dtype, copy=False)
        self.grads["b"] = dz.sum(axis=0)
        self.grads["W"] = gemm.dense(x.T, dz)
        if not self.input_grad:
            return None
        return gemm.dense(dz, self.params["W"].T)


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability p and scale the rest by 1/(1-p);
    in eval mode, the identity. ``rng`` may be replaced (the trainer seeds it per step for exact resumes)."""

    def __init__(self, p=0.5, seed=None, dtype=np.float32):
        super().__init__(dtype)
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p < 1:
            raise ConfigError(f"dropout rate must be in [0, 1), received p={p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(seed)

    def get_config(self):
        return {"p": self.p}

    def forward(self, x):
        x = np.asarray(x, dtype=self.dtype)
        if not self.training or self.p == 0:
            self._cache = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p
        scale = self.dtype.type(1.0 / (1.0 - self.p))
        mask = keep.astype(self.dtype) * scale
        self._cache = mask
        return x * mask

    def backward(self, dy):
        mask, self._cache = self._cache, None
        dy = np.asarray(dy, dtype=self.dtype)
        return dy if mask is None else dy * mask


LAYER_TYPES = {cls.__name__: cls for cls in (Conv2D, MaxPool2D, ReLU, Flatten, Dense, Dropout)}
