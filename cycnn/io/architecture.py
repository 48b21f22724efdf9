"""Architectures as plain data: build a Sequential from a description, and describe the usual CNN shapes.

A description is ``{"input_shape": [C, H, W], "layers": [{"type": "Conv2D", ...}, ...], "class_names": [...]}``,
the same dictionary that ``Sequential.get_config()`` returns and that model files store. Architecture files are
that dictionary as JSON or TOML (TOML: ``input_shape = [...]`` and one ``[[layers]]`` table per layer).
"""
import copy
import inspect
import json
import os
import stat
from importlib import resources

from cycnn.errors import ArchitectureError, ConfigError
from cycnn.nn.layers import LAYER_TYPES, MAX_SIZE, Conv2D, Dense, Dropout
from cycnn.nn.sequential import Sequential

REFERENCE_FILE = "reference.json"
MAX_FILE_BYTES = 1 << 20  # architecture files take a few kB
MAX_LINE = 4096  # characters in one line of an architecture file
MAX_NESTING = 16  # the deepest real value is 5 levels down (the layers list, a layer, its kernel_size, a number)
MAX_SHOWN = 200  # characters of a bad value or a layer's complaint that a message quotes
# What a layer's constructor can raise for a bad value (an absurd size, a wrong type, a deeply nested list).
BAD_VALUE_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, MemoryError)


def build(config, seed=None, initialize=True):
    """A freshly initialized Sequential from an architecture description; each layer gets its own seed.

    ``initialize=False`` leaves the weights at zero, for a loader that overwrites them with stored ones (drawing
    random numbers for a large layer only to discard them costs seconds and twice its memory).
    """
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ArchitectureError("an architecture needs a 'layers' list")
    layers = []
    for i, entry in enumerate(config["layers"]):
        cls = _layer_type(i, entry)
        kwargs = {k: v for k, v in entry.items() if k != "type"}
        if cls in (Conv2D, Dense, Dropout):
            kwargs["seed"] = None if seed is None else [seed, i]
        if not initialize and cls in (Conv2D, Dense):
            kwargs["seed"] = False
        layers.append(_layer(i, cls, kwargs))
    input_shape = config.get("input_shape", [1, 28, 28])
    if (not isinstance(input_shape, (list, tuple)) or len(input_shape) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_SIZE for d in input_shape)):
        raise ArchitectureError(f"input_shape must be three positive integers [C, H, W] of at most {MAX_SIZE:,}, "
                                f"received {_shown(input_shape)}")
    class_names = config.get("class_names")
    if class_names is not None and not (isinstance(class_names, list)
                                        and all(isinstance(c, str) for c in class_names)):
        raise ArchitectureError(f"class_names must be a list of strings, received {_shown(class_names)}")
    return Sequential(layers, input_shape=input_shape, class_names=class_names)


def _cut(text):
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def _shown(value):
    """A value from a file as a message quotes it: escaped by repr() and cut short."""
    return _cut(repr(value))


def _layer_type(i, entry):
    """The layer class that entry ``i`` names."""
    if not isinstance(entry, dict) or "type" not in entry:
        raise ArchitectureError(f"layer {i}: each layer needs a 'type'")
    cls = LAYER_TYPES.get(entry["type"]) if isinstance(entry["type"], str) else None
    if cls is None:
        raise ArchitectureError(f"layer {i}: unknown layer type {_shown(entry['type'])}; "
                                f"known types: {', '.join(LAYER_TYPES)}")
    return cls


def _layer(i, cls, kwargs, context=""):
    """Layer ``i`` of type ``cls``; whatever a bad setting makes its constructor raise becomes one line naming the
    layer (the settings' names are checked first, so that a message never prints a raw name from the file)."""
    known = inspect.signature(cls).parameters
    unknown = [key for key in kwargs if key not in known]
    if unknown:
        raise ArchitectureError(f"layer {i} ({cls.__name__}): unknown setting {_shown(unknown[0])}; "
                                f"{cls.__name__} takes {', '.join(k for k in known if k != 'seed')}")
    try:
        return cls(**kwargs)
    except BAD_VALUE_ERRORS as exc:
        text = "a value nests too deeply" if isinstance(exc, RecursionError) else _cut(str(exc))
        raise ArchitectureError(f"layer {i} ({cls.__name__}): {text}{context}") from None


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
    if (not isinstance(layers, list) or not layers or not isinstance(layers[-1], dict)
            or layers[-1].get("type") != "Dense"):
        raise ArchitectureError("only an architecture that ends with a Dense layer can be fitted to a dataset's "
                                "number of classes")
    layers[-1]["out_features"] = int(num_classes)
    shape = tuple(input_shape)
    for i, entry in enumerate(layers):
        _layer_type(i, entry)
        if entry["type"] == "Conv2D" and len(shape) == 3:
            entry["in_channels"] = shape[0]
        elif entry["type"] == "Dense" and len(shape) == 1:
            entry["in_features"] = shape[0]
        shape = _output_shape(i, entry, shape)
    config["input_shape"] = list(input_shape)
    config.pop("class_names", None)
    return config


def load_file(path):
    """Read an architecture description from a .json or .toml file. The file is checked before it is opened (a FIFO
    or a device could block or never end, a huge file is not an architecture) and its nesting once parsed (a deeply
    nested value would break every function that walks it)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file (a directory, FIFO or device); expected a .json or .toml "
                              "architecture file")
        if info.st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: {info.st_size:,} bytes, more than the {MAX_FILE_BYTES >> 20} MB an "
                              "architecture file may have")
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read architecture file ({exc.strerror})") from None
    longest = max((len(line) for line in data.splitlines()), default=0)
    if longest > MAX_LINE:  # a TOML key dotted 100,000 times takes the parser minutes: no real file has such lines
        raise ConfigError(f"{path}: a line of {longest:,} characters, more than the {MAX_LINE:,} of an "
                          "architecture file")
    try:
        if str(path).endswith(".toml"):
            import tomllib
            config = tomllib.loads(data.decode("utf-8"))
        else:
            config = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid architecture file ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be an architecture file") from None
    if _nesting_exceeds(config, MAX_NESTING):
        raise ConfigError(f"{path}: nested more than {MAX_NESTING} levels deep, too deep to be an architecture file")
    return config


def _nesting_exceeds(value, limit):
    """Whether lists and tables nest more than ``limit`` levels in ``value``, found level by level (recursion is
    what a deeply nested value breaks)."""
    level = [value]
    for _ in range(limit):
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False
    return True


def stack(conv_channels=(32, 64), kernel_sizes=(3,), pool_size=2, dense_units=(128,), dropouts=(0.2,),
          padding=0, input_shape=(1, 28, 28), num_classes=10, conv_dropouts=()):
    """Describe a conv stack: per conv layer a Conv (ReLU) + MaxPool block, followed by its Dropout if
    ``conv_dropouts`` gives one (after the pooling, so that the conv + ReLU + pool step stays fused), then Flatten,
    hidden Dense (ReLU) layers each followed by its Dropout (skipped at 0), and the output Dense layer. A single
    kernel size or dropout rate applies to every layer; the defaults describe the reference network."""
    conv_channels, kernel_sizes = list(conv_channels), list(kernel_sizes)
    dense_units, dropouts, conv_dropouts = list(dense_units), list(dropouts), list(conv_dropouts)
    if len(kernel_sizes) == 1 and len(conv_channels) > 1:
        kernel_sizes *= len(conv_channels)
    if len(kernel_sizes) != len(conv_channels):
        raise ConfigError(f"{len(conv_channels)} conv layers but {len(kernel_sizes)} kernel sizes")
    if len(conv_dropouts) == 1 and len(conv_channels) > 1:
        conv_dropouts *= len(conv_channels)
    if conv_dropouts and len(conv_dropouts) != len(conv_channels):
        raise ConfigError(f"{len(conv_channels)} conv blocks but {len(conv_dropouts)} conv dropout rates")
    if len(dropouts) == 1 and len(dense_units) > 1:
        dropouts *= len(dense_units)
    if dense_units and len(dropouts) != len(dense_units):
        raise ConfigError(f"{len(dense_units)} hidden dense layers but {len(dropouts)} dropout rates")
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ConfigError(f"the pool size must be a positive integer (1 for no pooling), received {pool_size!r}")
    layers = []
    channels = input_shape[0]
    for block, (width, k) in enumerate(zip(conv_channels, kernel_sizes)):
        layers.append({"type": "Conv2D", "in_channels": channels, "out_channels": width, "kernel_size": [k, k],
                       "stride": 1, "padding": padding, "activation": "relu"})
        if pool_size > 1:
            layers.append({"type": "MaxPool2D", "pool_size": [pool_size, pool_size],
                           "stride": [pool_size, pool_size]})
        if conv_dropouts and conv_dropouts[block]:
            layers.append({"type": "Dropout", "p": conv_dropouts[block]})
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
    context = f" (input shape {tuple(input_shape)})"
    cls = _layer_type(i, entry)
    kwargs = {k: v for k, v in entry.items() if k != "type"}
    if cls in (Conv2D, Dense):
        kwargs["seed"] = False  # shapes only: placeholder weights, nothing allocated
    layer = _layer(i, cls, kwargs, context)
    try:
        return layer.output_shape(input_shape)
    except BAD_VALUE_ERRORS as exc:
        raise ArchitectureError(f"layer {i} ({entry['type']}): {exc}{context}") from None
