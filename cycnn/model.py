"""Sequential: a stack of layers with shapes checked at construction, train/eval modes and per-layer timing."""
import time

import numpy as np

from cycnn import fusion
from cycnn.errors import ArchitectureError, ConfigError
from cycnn.layers import Dropout
from cycnn.losses import softmax


class Sequential:
    """Layers applied in order to a batch of NCHW images, producing class logits.

    ``input_shape`` is the per-sample shape (channels, height, width); every layer's fit to its input is checked
    here, so a kernel larger than its input is reported with the layer's index before any data is touched.

    A Conv2D with a ReLU followed by a MaxPool2D runs as one fused step (``cycnn.fusion``). A forward pass with
    ``keep_activations=True`` also runs every layer on its own, in eval mode, to record every layer's output (an
    integer n instead records them for the first n images only, which costs n/N of the extra pass); the result and
    the gradients still come from the fused pass, so observing a step never changes the training.
    After each pass, ``timings["forward"][i]`` / ``timings["backward"][i]`` hold layer i's time in seconds; a
    fused pair's time is counted on its first layer and the second shows 0 (``fused_into[i]`` names the first).
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
        class_names = [str(c) for c in class_names]
        if len(class_names) != self.num_classes:
            raise ConfigError(f"{len(class_names)} class names given for a model with {self.num_classes} outputs")
        self.class_names = class_names
        self.timings = {"forward": [0.0] * len(self.layers), "backward": [0.0] * len(self.layers)}
        self.steps = fusion.plan(self.layers)
        self.fused_into = {first + 1: first for first, count, _ in self.steps if count == 2}
        self.activations = None
        self.training = True

    # --- modes and parameters -------------------------------------------------------------------------------
    def train(self):
        """Training mode: dropout is active."""
        self.training = True
        for layer in self.layers:
            layer.training = True
        return self

    def eval(self):
        """Evaluation mode: dropout is the identity."""
        self.training = False
        for layer in self.layers:
            layer.training = False
        return self

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

    def get_config(self):
        """The architecture as plain data: what a model file stores and ``cycnn.architecture.build`` reads."""
        return {"input_shape": list(self.input_shape),
                "layers": [{"type": type(layer).__name__, **layer.get_config()} for layer in self.layers],
                "class_names": list(self.class_names)}

    # --- passes ---------------------------------------------------------------------------------------------
    def __call__(self, x):
        return self.forward(x)

    def forward(self, x, keep_activations=False):
        """Logits for a batch x of shape (N, C, H, W); ``keep_activations`` stores every layer's output (for the
        whole batch, or for its first n images if it is an integer n)."""
        x = np.asarray(x)
        if x.ndim == 3 and self.input_shape[0] == 1:
            x = x[:, None]
        if x.shape[1:] != self.input_shape:
            raise ConfigError(f"the model expects inputs of shape (N, {', '.join(map(str, self.input_shape))}), "
                              f"received {x.shape}")
        if keep_activations is True:
            self.activations = self._observe(x)
        else:
            self.activations = self._observe(x[:int(keep_activations)]) if keep_activations else None
        forward_times = self.timings["forward"]
        for first, count, fused in self.steps:
            start = time.perf_counter()
            x = fused.forward(x) if fused is not None else self.layers[first](x)
            forward_times[first] = time.perf_counter() - start
            if count == 2:
                forward_times[first + 1] = 0.0
        return x

    def _observe(self, x):
        """Every layer's output, layer by layer and in eval mode (dropout off, no random numbers drawn), so that
        the training pass that follows is exactly the one an unobserved step would run."""
        was_training = self.training
        self.eval()
        try:
            outputs = []
            for layer in self.layers:
                x = layer(x)
                outputs.append(x)
            return outputs
        finally:
            if was_training:
                self.train()

    def backward(self, dlogits, input_grad=False):
        """Backpropagate the logits' gradient, storing each layer's parameter gradients.

        The input image's gradient is only computed (and returned) when ``input_grad`` is True.
        """
        self.layers[0].input_grad = input_grad
        grad = dlogits
        backward_times = self.timings["backward"]
        for first, count, fused in reversed(self.steps):
            start = time.perf_counter()
            if fused is not None:
                grad = fused.backward(grad, input_grad=first > 0 or input_grad)
                backward_times[first + 1] = 0.0
            else:
                grad = self.layers[first].backward(grad)
            backward_times[first] = time.perf_counter() - start
        return grad

    def predict_proba(self, x, batch_size=128):
        """Class probabilities for images x (N, C, H, W) or (N, H, W), in eval mode.

        Any number of images can be passed; they go through the network ``batch_size`` at a time, which keeps the
        im2col buffers small enough to stay in cache (and the process's memory flat) for large inputs.
        """
        was_training = self.training
        self.eval()
        try:
            x = np.asarray(x)
            out = np.empty((len(x), self.num_classes), dtype=np.float64)
            for start in range(0, len(x), batch_size):
                out[start:start + batch_size] = softmax(self.forward(x[start:start + batch_size]).astype(np.float64))
            return out
        finally:
            if was_training:
                self.train()

    def predict(self, x, batch_size=128):
        """The most probable class index for each image."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    # --- description and files ------------------------------------------------------------------------------
    def summary(self):
        """A table of layer, output shape and parameter count, with the total."""
        rows = [("Layer", "Output shape", "Params")]
        for i, (layer, shape) in enumerate(zip(self.layers, self.output_shapes)):
            name = type(layer).__name__
            activation = getattr(layer, "activation", None)
            if activation:
                name += f" ({activation})"
            if isinstance(layer, Dropout):
                name += f" (p={layer.p:g})"
            rows.append((f"{i}: {name}", "x".join(str(d) for d in _hwc(shape)), f"{layer.parameter_count:,}"))
        widths = [max(len(r[k]) for r in rows) for k in range(3)]
        line = "-" * (sum(widths) + 6)
        text = [f"Input: {'x'.join(str(d) for d in _hwc(self.input_shape))}", line]
        for j, row in enumerate(rows):
            text.append(f"{row[0]:<{widths[0]}}   {row[1]:<{widths[1]}}   {row[2]:>{widths[2]}}")
            if j == 0:
                text.append(line)
        text += [line, f"Total parameters: {self.parameter_count:,}"]
        return "\n".join(text)

    def save(self, path, metadata=None):
        """Write the architecture and weights to ``path`` atomically (an .npz that loads without pickle)."""
        from cycnn.serialization import save_model
        save_model(self, path, metadata=metadata)

    @staticmethod
    def load(path):
        """Read a model written by ``save``; raises ModelFileError naming the problem if the file is bad."""
        from cycnn.serialization import load_model
        return load_model(path)

    @classmethod
    def from_config(cls, config, seed=None):
        """Build a freshly initialized model from ``get_config()`` output (or an architecture file's content)."""
        from cycnn.architecture import build
        return build(config, seed=seed)


def _hwc(shape):
    """Shapes are shown as height x width x channels, the way the reference network is usually described."""
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape

