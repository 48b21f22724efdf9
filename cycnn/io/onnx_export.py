"""Export a Sequential to ONNX, so that a model trained with cycnn runs in ONNX Runtime and other tools.

The graph is the inference pass: input ``image`` (N, C, H, W) float32 in [0, 1] with a dynamic batch dimension N,
output ``probabilities`` (N, classes). Each layer becomes standard operators (opset 13 or later): Conv2D -> Conv
(+ Relu), MaxPool2D -> MaxPool (floored sizes, ONNX's default ceil_mode=0), ReLU -> Relu, Flatten -> Flatten,
Dense -> Gemm (+ Relu) with its (in, out) weight used as is, Dropout -> nothing (the identity at inference), and a
final Softmax. Weights are stored as float32 whatever the model's dtype. The class names travel in the model's
metadata (``class_names``, a JSON list).

The ``onnx`` package is an optional extra (``pip install 'cycnn[onnx]'``); it is imported only when exporting.
"""
import json

import numpy as np

from cycnn.version import __version__
from cycnn.errors import ArchitectureError, ConfigError, CycnnError
from cycnn.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Normalize, ReLU
from cycnn.io.atomic import write_atomic

MIN_OPSET = 13
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
INSTALL_HINT = "ONNX export needs the onnx package: pip install 'cycnn[onnx]'"


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise CycnnError(INSTALL_HINT) from None
    return onnx, helper, numpy_helper


def require_onnx():
    """Raise a CycnnError saying how to install onnx if it is missing (so the CLI can check before any work)."""
    _import_onnx()


class _GraphBuilder:
    """Appends nodes and initializers, naming each tensor after its layer so the graph reads like the summary."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []

    def constant(self, name, array):
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def node(self, op, inputs, output, **attributes):
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def _add_layer(graph, i, layer, x):
    """Append the nodes of layer ``i`` reading tensor ``x``; returns the name of its output tensor."""
    prefix = f"layer{i}_{type(layer).__name__}"
    if isinstance(layer, Conv2D):
        p = layer.padding
        x = graph.node("Conv", [x, graph.constant(f"{prefix}.W", layer.params["W"]),
                                graph.constant(f"{prefix}.b", layer.params["b"])], prefix,
                       kernel_shape=list(layer.kernel_size), strides=[layer.stride, layer.stride],
                       pads=[p, p, p, p])
    elif isinstance(layer, MaxPool2D):
        x = graph.node("MaxPool", [x], prefix, kernel_shape=list(layer.pool_size), strides=list(layer.stride))
    elif isinstance(layer, ReLU):
        return graph.node("Relu", [x], prefix)
    elif isinstance(layer, Flatten):
        x = graph.node("Flatten", [x], prefix, axis=1)
    elif isinstance(layer, Dense):
        x = graph.node("Gemm", [x, graph.constant(f"{prefix}.W", layer.params["W"]),
                                graph.constant(f"{prefix}.b", layer.params["b"])], prefix)
    elif isinstance(layer, Dropout):
        return x
    elif isinstance(layer, Normalize):
        shape = (1, len(layer.mean), 1, 1)
        x = graph.node("Sub", [x, graph.constant(f"{prefix}.mean", np.asarray(layer.mean, np.float32).reshape(shape))],
                       f"{prefix}_sub")
        return graph.node("Div", [x, graph.constant(f"{prefix}.std", np.asarray(layer.std, np.float32).reshape(shape))],
                          prefix)
    else:
        raise ArchitectureError(f"layer {i} ({type(layer).__name__}): no ONNX equivalent is known for this layer")
    if getattr(layer, "activation", None) == "relu":
        x = graph.node("Relu", [x], f"{prefix}_relu")
    return x


def to_onnx(model, opset=MIN_OPSET):
    """The model's inference graph as an ``onnx.ModelProto`` (checked by ``onnx.checker``)."""
    onnx, helper, numpy_helper = _import_onnx()
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ConfigError(f"the ONNX opset must be an integer of at least {MIN_OPSET}, received {opset!r}")
    if opset > onnx.defs.onnx_opset_version():
        raise ConfigError(f"the installed onnx {onnx.__version__} knows opsets up to "
                          f"{onnx.defs.onnx_opset_version()}, received {opset}")
    graph = _GraphBuilder(helper, numpy_helper)
    x = INPUT_NAME
    for i, layer in enumerate(model.layers):
        x = _add_layer(graph, i, layer, x)
    graph.node("Softmax", [x], OUTPUT_NAME, axis=1)
    c, h, w = model.input_shape
    inputs = [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["N", c, h, w])]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["N", model.num_classes])]
    onnx_graph = helper.make_graph(graph.nodes, "cycnn", inputs, outputs, graph.initializers)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(onnx_graph, opset_imports=opsets, producer_name="cycnn", producer_version=__version__,
                              doc_string="A cycnn Sequential: images (N, C, H, W) in [0, 1] -> class probabilities")
    # The lowest IR version that carries this opset, so that older runtimes can load the file too.
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    helper.set_model_props(proto, {"class_names": json.dumps(model.class_names)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, path, opset=MIN_OPSET):
    """Write the model as an ONNX file at ``path``, atomically; returns the ModelProto written."""
    proto = to_onnx(model, opset)
    data = proto.SerializeToString()
    write_atomic(path, lambda fh: fh.write(data))
    return proto
