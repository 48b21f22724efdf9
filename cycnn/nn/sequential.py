"""Sequential: a stack of layers with shapes checked at construction, train/eval modes and hooks."""
import time
from contextlib import contextmanager

import numpy as np

from cycnn.errors import ArchitectureError, ConfigError
from cycnn.nn import fused, plan
from cycnn.nn.losses import softmax


# A class name is shown in tables, figures, pages and logs: plain printable text of at most this many characters.
MAX_CLASS_NAME = 64


def check_class_name(name, source="the model", error=ConfigError):
    """Refuse a class name that is not short printable text, raising ``error`` that starts with ``source``: a
    control character or terminal escape would garble (or take over) every table, message and report that prints
    it. The message shows the name escaped, by repr()."""
    if not isinstance(name, str):
        raise error(f"{source}: a class name must be text, not {type(name).__name__}")
    shown = repr(name[:MAX_CLASS_NAME]) + ("..." if len(name) > MAX_CLASS_NAME else "")
    if not name.strip():
        raise error(f"{source}: class name {shown} is blank")
    if len(name) > MAX_CLASS_NAME:
        raise error(f"{source}: class name {shown} has {len(name):,} characters, more than {MAX_CLASS_NAME}")
    if not name.isprintable():
        raise error(f"{source}: class name {shown} holds control or other unprintable characters")
    return name


class HookHandle:
    """Returned by the ``register_*`` methods; ``remove()`` detaches the hook (PyTorch's RemovableHandle)."""

    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


class Sequential:
    """Layers applied in order to a batch of NCHW images, producing class logits.

    ``input_shape`` is the per-sample shape (channels, height, width); every layer's fit to its input is checked
    here, so a kernel larger than its input is reported with the layer's index before any data is touched.

    A Conv2D with a ReLU followed by a MaxPool2D runs as one fused step (``cycnn.nn.fused``); ``steps`` lists
    them as (first layer, layer count, fused op or None), and ``fused_into[i]`` names the first layer of the step
    that computes layer i. Observers attach hooks instead of reading model state: ``register_forward_pre_hook``
    (called with the model and the batch before each forward pass) and ``register_step_hook`` (called after each
    step of a pass with "forward" or "backward", the step's first layer, its layer count and its seconds);
    ``cycnn.nn.hooks`` has the timer and the activation recorder built on them.
    """

    def __init__(self, layers, input_shape=(1, 28, 28), class_names=None):
        self.layers = list(layers)
        self.input_shape = tuple(int(d) for d in input_shape)
        if not self.layers:
            raise ArchitectureError("a model needs at least one layer")
        self.output_shapes = []
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            try:
                shape = tuple(int(d) for d in layer.output_shape(shape))
            except ArchitectureError as exc:
                raise ArchitectureError(f"layer {i} ({type(layer).__name__}): {exc}") from None
            self.output_shapes.append(shape)
        if len(shape) != 1:
            raise ArchitectureError(f"the last layer must output class scores (N, classes), not {shape}; "
                                    "add Flatten and Dense layers")
        self.num_classes = shape[0]
        if class_names is None:
            class_names = [str(i) for i in range(self.num_classes)]
        if not isinstance(class_names, (list, tuple)):
            raise ConfigError(f"class names must be a list, received {type(class_names).__name__}")
        class_names = [check_class_name(c) for c in class_names]
        if len(class_names) != self.num_classes:
            raise ConfigError(f"{len(class_names)} class names given for a model with {self.num_classes} outputs")
        self.class_names = class_names
        self.steps = fused.plan(self.layers)
        self.fused_into = {first + 1: first for first, count, _ in self.steps if count == 2}
        self.training = True
        self.metadata = {}
        self._pre_hooks, self._step_hooks = [], []

    # --- modes, parameters, hooks ---------------------------------------------------------------------------
    def train(self):
        """Training mode: dropout is active."""
        return self._set_mode(True)

    def eval(self):
        """Evaluation mode: dropout is the identity."""
        return self._set_mode(False)

    def _set_mode(self, training):
        self.training = training
        for layer in self.layers:
            layer.training = training
        return self

    def seed_dropout(self, seed):
        """Seed every layer's random numbers from ``seed`` (a sequence) and the layer's index."""
        for i, layer in enumerate(self.layers):
            layer.reseed([*seed, i])

    def parameters(self):
        """(key, param, grad) for every parameter tensor, keyed "layer_index.name" (e.g. "0.W")."""
        return [(f"{i}.{name}", layer.params[name], layer.grads.get(name))
                for i, layer in enumerate(self.layers) for name in layer.params]

    @property
    def parameter_count(self):
        return sum(layer.parameter_count for layer in self.layers)

    @property
    def dtype(self):
        return self.layers[0].dtype

    def astype(self, dtype):
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def layer_names(self):
        """ "0: Conv2D (relu)"-style names, one per layer: what the log, the figures and the bench show."""
        return [f"{i}: {layer.display_name}" for i, layer in enumerate(self.layers)]

    def get_config(self):
        """The architecture as plain data: what a model file stores and ``cycnn.io.architecture.build`` reads."""
        return {"input_shape": list(self.input_shape),
                "layers": [{"type": type(layer).__name__, **layer.get_config()} for layer in self.layers],
                "class_names": list(self.class_names)}

    def register_forward_pre_hook(self, hook):
        """``hook(model, x)`` before every forward pass (x: the checked input batch)."""
        self._pre_hooks.append(hook)
        return HookHandle(self._pre_hooks, hook)

    def register_step_hook(self, hook):
        """``hook(direction, first_layer, layer_count, seconds)`` after every step of every pass."""
        self._step_hooks.append(hook)
        return HookHandle(self._step_hooks, hook)

    # --- passes ---------------------------------------------------------------------------------------------
    def __call__(self, x):
        return self.forward(x)

    def check_input(self, x):
        """``x`` as an (N, C, H, W) batch of the model's input shape ((N, H, W) is taken for one channel)."""
        x = np.asarray(x)
        if x.ndim == 3 and self.input_shape[0] == 1:
            x = x[:, None]
        if x.shape[1:] != self.input_shape:
            raise ConfigError(f"the model expects inputs of shape (N, {', '.join(map(str, self.input_shape))}), "
                              f"received {x.shape}")
        return x

    def forward(self, x):
        """Logits for a batch x of shape (N, C, H, W)."""
        x = self.check_input(x)
        for hook in self._pre_hooks:
            hook(self, x)
        for first, count, op in self.steps:
            start = time.perf_counter() if self._step_hooks else 0.0
            x = op.forward(x) if op is not None else self.layers[first](x)
            for hook in self._step_hooks:
                hook("forward", first, count, time.perf_counter() - start)
        return x

    def backward(self, dlogits, input_grad=False):
        """Backpropagate the logits' gradient, storing each layer's parameter gradients.

        The input image's gradient is only computed (and returned) when ``input_grad`` is True.
        """
        # Below the first layer with weights (the convolution after a Normalize) no gradient is needed, unless the
        # input's is: those steps are skipped, and that layer computes no input gradient.
        weighted = next((i for i, layer in enumerate(self.layers) if layer.params), 0)
        for i, layer in enumerate(self.layers):
            layer.input_grad = input_grad or i > weighted
        grad = dlogits
        for first, count, op in reversed(self.steps):
            if first < weighted and not input_grad:
                break
            start = time.perf_counter() if self._step_hooks else 0.0
            if op is not None:
                grad = op.backward(grad, input_grad=first > weighted or input_grad)
            else:
                grad = self.layers[first].backward(grad)
            for hook in self._step_hooks:
                hook("backward", first, count, time.perf_counter() - start)
        return grad

    def layer_outputs(self, x):
        """Every layer's output for the batch x, layer by layer in eval mode (no fusion, no hooks, dropout off, no
        random numbers drawn) through the layers' pure ``apply``: nothing on the model changes, so a training pass
        that follows is exactly the one it would have been."""
        outputs = []
        x = self.check_input(x)
        for layer in self.layers:
            x, _ = layer.apply(x)
            outputs.append(x)
        return outputs

    def trace(self, x):
        """``(outputs, caches)``: every layer's output for the batch x in eval mode, with the caches its backward
        pass needs, computed as pure functions (nothing stored on the layers): many threads may trace one model at
        once. ``trace_backward`` backpropagates through it (saliency maps, Grad-CAM)."""
        outputs, caches = [], []
        x = self.check_input(x)
        for layer in self.layers:
            x, cache = layer.apply(x)
            outputs.append(x)
            caches.append(cache)
        return outputs, caches

    def trace_backward(self, dlogits, caches):
        """``(input_gradient, output_gradients, parameter_gradients)`` for a traced pass: the gradients of the
        scalar whose gradient with respect to the logits is ``dlogits``, with respect to the input, to each layer's
        output and to each layer's parameters (a dict per layer, as ``layer.grads``; nothing stored on it). Like a
        layer's cache, a trace serves one backward pass: a convolution's backward reuses its cached columns."""
        output_gradients, parameter_gradients = [None] * len(self.layers), [None] * len(self.layers)
        grad = dlogits
        for i in reversed(range(len(self.layers))):
            output_gradients[i] = grad
            grad, parameter_gradients[i] = self.layers[i].apply_backward(grad, caches[i])
        return grad, output_gradients, parameter_gradients

    def predict_proba(self, x, batch_size=128):
        """Class probabilities for images x (N, C, H, W) or (N, H, W), in eval mode.

        Any number of images can be passed; they go through the network ``batch_size`` at a time, which keeps the
        im2col buffers small enough to stay in cache (and the process's memory flat) for large inputs. NaN or
        infinite pixels are refused: they would give an answer that looks confident and means nothing.

        Without hooks, the model's compiled inference plan answers (``cycnn.nn.plan``: the whole network in one
        call, its buffers allocated once); ``batch_size`` then does not matter.
        """
        x = np.asarray(x)
        answered = plan.answer(self, x)
        if answered is not None:
            return answered
        # One sum finds any NaN or infinity (a sum of finite pixels overflows only for absurd values: then look).
        if x.dtype.kind == "f" and not np.isfinite(x.sum()) and not np.isfinite(x).all():
            raise ConfigError("the images hold NaN or infinite pixels; no prediction is meaningful for them")
        if self.training:
            with eval_mode(self):
                return self.predict_proba(x, batch_size)
        out = np.empty((len(x), self.num_classes), dtype=np.float64)
        for start in range(0, len(x), batch_size):
            out[start:start + batch_size] = softmax(self.forward(x[start:start + batch_size]).astype(np.float64))
        return out

    def predict(self, x, batch_size=128):
        """The most probable class index for each image."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    def summary(self):
        """A table of layer, output shape and parameter count, with the total."""
        rows = [("Layer", "Output shape", "Params")]
        for name, layer, shape in zip(self.layer_names(), self.layers, self.output_shapes):
            rows.append((name, "x".join(str(d) for d in _hwc(shape)), f"{layer.parameter_count:,}"))
        widths = [max(len(r[k]) for r in rows) for k in range(3)]
        line = "-" * (sum(widths) + 6)
        text = [f"Input: {'x'.join(str(d) for d in _hwc(self.input_shape))}", line]
        for j, row in enumerate(rows):
            text.append(f"{row[0]:<{widths[0]}}   {row[1]:<{widths[1]}}   {row[2]:>{widths[2]}}")
            if j == 0:
                text.append(line)
        text += [line, f"Total parameters: {self.parameter_count:,}"]
        return "\n".join(text)


@contextmanager
def eval_mode(model):
    """Run ``model`` in eval mode inside the block and give it back the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train()


def _hwc(shape):
    """Shapes are shown as height x width x channels, the way the reference network is usually described."""
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
