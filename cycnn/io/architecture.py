"""Architectures as plain data: build a Sequential from a description, and describe the usual CNN shapes.

A description is ``{"input_shape": [C, H, W], "layers": [{"type": "Conv2D", ...}, ...], "class_names": [...]}``,
the same dictionary that ``Sequential.get_config()`` returns and that model files store. Architecture files are
that dictionary as JSON or TOML (TOML: ``input_shape = [...]`` and one ``[[layers]]`` table per layer).
"""
import copy
import json
from importlib import resources

from cycnn.errors import ArchitectureError, ConfigError
from cycnn.nn.layers import LAYER_TYPES, Conv2D, Dense, Dropout
from cycnn.nn.sequential import Sequential

REFERENCE_FILE = "reference.json"


def build(config, seed=None, initialize=True):
    """A freshly initialized Sequential from an architecture description; each layer gets its own seed.

    ``initialize=False`` leaves the weights at zero, for a loader that overwrites them with stored ones (drawing
    random numbers for a large layer only to discard them costs seconds and twice its memory).
    """
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ArchitectureError("an architecture needs a 'layers' list")
    layers = []
    for i, entry in enumerate(config["layers"]):
        if not isinstance(entry, dict) or "type" not in entry:
            raise ArchitectureError(f"layer {i}: each layer needs a 'type'")
        kwargs = {k: v for k, v in entry.items() if k != "type"}
        cls = LAYER_TYPES.get(entry["type"])
        if cls is None:
            raise ArchitectureError(f"layer {i}: unknown layer type {entry['type']!r}; "
                                    f"known types: {', '.join(LAYER_TYPES)}")
        if cls in (Conv2D, Dense, Dropout):
            kwargs["seed"] = None if seed is None else [seed, i]
        if not initialize and cls in (Conv2D, Dense):
            kwargs["seed"] = False
        try:
            layers.append(cls(**kwargs))
        except ConfigError as exc:
            raise ArchitectureError(f"layer {i} ({entry['type']}): {exc}") from None
        except TypeError as exc:
            raise ArchitectureError(f"layer {i} ({entry['type']}): {exc}") from None
    input_shape = config.get("input_shape", [1, 28, 28])
    if (not isinstance(input_shape, (list, tuple)) or len(input_shape) != 3
            or not all(isinstance(d, int) and d > 0 for d in input_shape)):
        raise ArchitectureError(f"input_shape must be three positive integers [C, H, W], received {input_shape!r}")
    return Sequential(layers, input_shape=input_shape, class_names=config.get("class_names"))


def reference():
    """The reference network: Conv 3x3x32 ReLU, MaxPool 2, Conv 3x3x64 ReLU, MaxPool 2, Flatten,
    Dense 128 ReLU, Dropout 0.2, Dense 10."""
    text = resources.files("cycnn.io").joinpath("architectures", REFERENCE_FILE).read_text()
    return json.loads(text)


def fit_to_data(config, input_shape, num_classes):
    """The same layers sized for other data: every Conv2D takes the channels that reach it, every Dense the
    features that reach it, and the last layer (a Dense) outputs ``num_classes`` scores. This is how the reference
    network, described for 28x28 digits in 10 classes, serves for example a 3-class image folder."""
    config = copy.deepcopy(config)
    layers = config.get("layers") if isinstance(config, dict) else None
    if not layers or not isinstance(layers[-1], dict) or layers[-1].get("type") != "Dense":
        raise ArchitectureError("only an architecture that ends with a Dense layer can be fitted to a dataset's "
                                "number of classes")
    layers[-1]["out_features"] = int(num_classes)
    shape = tuple(input_shape)
    for i, entry in enumerate(layers):
        if entry.get("type") == "Conv2D" and len(shape) == 3:
            entry["in_channels"] = shape[0]
        elif entry.get("type") == "Dense" and len(shape) == 1:
            entry["in_features"] = shape[0]
        shape = _output_shape(i, entry, shape)
    config["input_shape"] = list(input_shape)
    config.pop("class_names", None)
    return config


def load_file(path):
    """Read an architecture description from a .json or .toml file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read architecture file ({exc.strerror})") from None
    try:
        if str(path).endswith(".toml"):
            import tomllib
            config = tomllib.loads(data.decode("utf-8"))
        else:
            config = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid architecture file ({exc})") from None
    return config


def stack(conv_channels=(32, 64), kernel_sizes=(3,), pool_size=2, dense_units=(128,), dropouts=(0.2,),
          padding=0, input_shape=(1, 28, 28), num_classes=10):
    """Describe a conv stack: per conv layer a Conv (ReLU) + MaxPool block, then Flatten, hidden Dense (ReLU)
    layers each followed by its Dropout (skipped at 0), and the output Dense layer. A single kernel size or
    dropout rate applies to every layer; the defaults describe the reference network."""
    conv_channels, kernel_sizes = list(conv_channels), list(kernel_sizes)
    dense_units, dropouts = list(dense_units), list(dropouts)
    if len(kernel_sizes) == 1 and len(conv_channels) > 1:
        kernel_sizes *= len(conv_channels)
    if len(kernel_sizes) != len(conv_channels):
        raise ConfigError(f"{len(conv_channels)} conv layers but {len(kernel_sizes)} kernel sizes")
    if len(dropouts) == 1 and len(dense_units) > 1:
        dropouts *= len(dense_units)
    if dense_units and len(dropouts) != len(dense_units):
        raise ConfigError(f"{len(dense_units)} hidden dense layers but {len(dropouts)} dropout rates")
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ConfigError(f"the pool size must be a positive integer (1 for no pooling), received {pool_size!r}")
    layers = []
    channels = input_shape[0]
    for width, k in zip(conv_channels, kernel_sizes):
        layers.append({"type": "Conv2D", "in_channels": channels, "out_channels": width, "kernel_size": [k, k],
                       "stride": 1, "padding": padding, "activation": "relu"})
        if pool_size > 1:
            layers.append({"type": "MaxPool2D", "pool_size": [pool_size, pool_size],
                           "stride": [pool_size, pool_size]})
        channels = width
    layers.append({"type": "Flatten"})
    features = _flat_features(layers, input_shape)
    for units, p in zip(dense_units, dropouts):
        layers.append({"type": "Dense", "in_features": features, "out_features": units, "activation": "relu"})
        if p:
            layers.append({"type": "Dropout", "p": p})
        features = units
    layers.append({"type": "Dense", "in_features": features, "out_features": num_classes, "activation": None})
    return {"input_shape": list(input_shape), "layers": layers}


def _flat_features(layers, input_shape):
    """The size Flatten produces after ``layers``, found by building them (which also checks every shape)."""
    shape = tuple(input_shape)
    for i, entry in enumerate(layers):
        shape = _output_shape(i, entry, shape)
    return shape[0]


def _output_shape(i, entry, input_shape):
    """The per-sample output shape of layer ``i`` described by ``entry``; ArchitectureError if it cannot be."""
    if not isinstance(entry, dict) or entry.get("type") not in LAYER_TYPES:
        raise ArchitectureError(f"layer {i}: unknown layer {entry!r}; known types: {', '.join(LAYER_TYPES)}")
    kwargs = {k: v for k, v in entry.items() if k != "type"}
    try:
        return LAYER_TYPES[entry["type"]](**kwargs).output_shape(input_shape)
    except (ConfigError, TypeError) as exc:
        raise ArchitectureError(f"layer {i} ({entry['type']}): {exc} (input shape {tuple(input_shape)})") from None
