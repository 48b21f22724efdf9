"""``cycnn layers``: the reference of the layer types an architecture file may name, generated from the layer
classes (their registry, their constructors' signatures and their docstrings) so that it cannot fall behind them.
What each argument means is the one thing the code cannot say; ``ARGUMENTS`` says it, and a test holds that every
argument of every layer has its line."""
import inspect
import json

import typer

from cycnn.nn.layers import LAYER_TYPES

# Arguments no architecture file sets: the builder seeds each layer, and a file's layers are float32.
HIDDEN = ("seed", "dtype")
SIZE = "integer or [h, w]"
# (type, meaning) of each argument by its name, or by (layer, name) where a layer takes it differently.
ARGUMENTS = {
    "in_channels": ("integer", "channels of the input: 1 for grayscale images, 3 for colour, else the previous "
                               "Conv2D's out_channels"),
    "out_channels": ("integer", "number of kernels, i.e. channels of the output"),
    "kernel_size": (SIZE, "height and width of each kernel"),
    "stride": ("integer", "step between the kernel's positions"),
    "padding": ("integer", "zeros added on each side of the input before convolving"),
    "activation": ('"relu" or null', 'applied to the output: "relu", or null (no key in TOML) for none'),
    ("MaxPool2D", "pool_size"): (SIZE, "height and width of the window each output is the maximum of"),
    ("MaxPool2D", "stride"): (SIZE, "step between the windows; null: pool_size"),
    "in_features": ("integer", "inputs per image: the previous layer's output size (see `cycnn summary`)"),
    "out_features": ("integer", "outputs per image; the last Dense's is the number of classes"),
    "p": ("number in [0, 1)", "fraction of units zeroed in training (none are in evaluation)"),
    "mean": ("list of numbers", "per input channel, subtracted (cycnn train sets the training set's)"),
    "std": ("list of positive numbers", "per input channel, divided by after the mean is subtracted"),
}


def describe():
    """Every layer type: [{"type", "description", "arguments": [{"name", "type", "default", "meaning"}]}]."""
    return [{"type": name, "description": _first_sentence(cls.__doc__), "arguments": _arguments(name, cls)}
            for name, cls in LAYER_TYPES.items()]


def _first_sentence(doc):
    paragraph = " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())
    return paragraph.split(". ")[0].rstrip(".") + "."


def _arguments(layer, cls):
    rows = []
    for name, parameter in inspect.signature(cls).parameters.items():
        if name in HIDDEN:
            continue
        kind, meaning = ARGUMENTS.get((layer, name)) or ARGUMENTS[name]
        default = None if parameter.default is inspect.Parameter.empty else json.dumps(parameter.default)
        rows.append({"name": name, "type": kind, "default": "required" if default is None else default,
                     "meaning": meaning})
    return rows


def _text(layers):
    lines = ['Layer types for architecture files: one [[layers]] table each in TOML, or {"type": ..., ...} in '
             'the "layers" list in JSON. In TOML, leave out an argument whose value would be null.']
    for layer in layers:
        lines += ["", f"{layer['type']}: {layer['description']}"]
        width = max([len(a["name"]) for a in layer["arguments"]], default=0)
        for a in layer["arguments"]:
            lines.append(f"  {a['name']:<{width}}  {a['type']}, {a['default']}: {a['meaning']}")
        if not layer["arguments"]:
            lines.append("  (no arguments)")
    return "\n".join(lines)


def _markdown(layers):
    def cell(text):
        return text.replace("|", "\\|")
    lines = ["| Layer | Argument | Type | Default | Meaning |", "|---|---|---|---|---|"]
    for layer in layers:
        lines.append(f"| `{layer['type']}` | | | | {cell(layer['description'])} |")
        lines += [f"| | `{a['name']}` | {cell(a['type'])} | {cell(a['default'])} | {cell(a['meaning'])} |"
                  for a in layer["arguments"]]
    return "\n".join(lines)


def layers(markdown: bool = typer.Option(False, "--markdown", help="Print it as a Markdown table."),
           json_output: bool = typer.Option(False, "--json", help="Print one JSON list.")):
    """The layer types an architecture file (.toml/.json) may use, with every argument's type, default and
    meaning."""
    described = describe()
    if json_output:
        typer.echo(json.dumps(described))
    else:
        typer.echo(_markdown(described) if markdown else _text(described))
