"""The Normalize layer (issue 14): (x - mean) / std per channel, without weights; its gradient, its config through
architecture files and model files, what it refuses, the backward pass that skips it, and its ONNX export."""
import math

import numpy as np
import pytest

from cycnn.errors import ArchitectureError, ConfigError
from cycnn.io import architecture
from cycnn.io.model_file import load_model, save_model
from cycnn.nn.layers import LAYER_TYPES, Conv2D, Dense, Flatten, MaxPool2D, Normalize
from cycnn.nn.losses import SoftmaxCrossEntropy
from cycnn.nn.sequential import Sequential
from oracles import assert_gradients_match, check_layer_gradients, numeric_gradient  # tests/oracles.py

MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.1]


def reference(x, mean, std):
    return (x.astype(np.float64) - np.reshape(mean, (1, -1, 1, 1))) / np.reshape(std, (1, -1, 1, 1))


def colour_spec(normalize=True):
    """Normalize (3 channels) -> conv(relu) -> pool -> flatten -> dense: an input of 3x10x10, 3 classes."""
    layers = [{"type": "Conv2D", "in_channels": 3, "out_channels": 4, "kernel_size": [3, 3], "activation": "relu"},
              {"type": "MaxPool2D", "pool_size": [2, 2]}, {"type": "Flatten"},
              {"type": "Dense", "in_features": 64, "out_features": 3}]
    first = [{"type": "Normalize", "mean": MEAN, "std": STD}] if normalize else []
    return {"input_shape": [3, 10, 10], "layers": first + layers, "class_names": ["a", "b", "c"]}


def with_biases(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if "b" in layer.params:
            layer.params["b"][...] = rng.normal(0, 0.1, layer.params["b"].shape)
    return model


# --- the layer --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_is_numpys(dtype):
    x = np.random.default_rng(0).random((2, 3, 4, 5)).astype(dtype)
    layer = Normalize(MEAN, STD, dtype=dtype)
    y = layer(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, reference(x, MEAN, STD), rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6)


def test_one_channel_and_integer_statistics():
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    np.testing.assert_allclose(Normalize([2], [4])(x), (x - 2) / 4)


def test_it_has_no_weights():
    layer = Normalize(MEAN, STD)
    assert layer.params == {} and layer.parameter_count == 0
    assert Sequential([layer, Flatten(), Dense(12, 2)], input_shape=(3, 2, 2)).parameter_count == 26


def test_gradient_is_central_differences():
    x = np.random.default_rng(1).standard_normal((2, 3, 3, 4))
    check_layer_gradients(Normalize(MEAN, STD, dtype=np.float64), x)


def test_backward_is_dy_over_std():
    layer = Normalize(MEAN, STD, dtype=np.float64)
    layer(np.zeros((1, 3, 2, 2)))
    dy = np.random.default_rng(2).standard_normal((1, 3, 2, 2))
    np.testing.assert_allclose(layer.backward(dy), dy / np.reshape(STD, (1, 3, 1, 1)), rtol=1e-14)


# --- config -----------------------------------------------------------------------------------------------------------

def test_config_rebuilds_the_layer():
    layer = Normalize(MEAN, STD)
    assert layer.get_config() == {"mean": MEAN, "std": STD}
    rebuilt = LAYER_TYPES["Normalize"](**layer.get_config())
    assert rebuilt.get_config() == layer.get_config() and repr(rebuilt).startswith("Normalize(")


def test_config_round_trip_through_architecture_build_and_a_model_file(tmp_path):
    spec = colour_spec()
    model = with_biases(architecture.build(spec, seed=3))
    assert isinstance(model.layers[0], Normalize) and model.layers[0].mean == MEAN
    config = model.get_config()
    assert config["layers"][0] == {"type": "Normalize", "mean": MEAN, "std": STD}
    assert architecture.build(config).get_config() == config
    assert "Normalize" in model.summary().splitlines()[4] and "Input: 10x10x3" in model.summary()
    x = np.random.default_rng(3).random((4, 3, 10, 10), dtype=np.float32)
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.get_config() == config
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


@pytest.mark.parametrize("mean, std", [
    ([0.5, 0.5], [0.2]), ([0.5], [0.2, 0.2]), ([], []), ([0.5], [0.0]), ([0.5], [-0.1]), ([0.5, 0.5], [0.2, -1e-9]),
    ([math.nan], [0.2]), ([0.5], [math.nan]), ([math.inf], [0.2]), ([0.5], [math.inf]), (0.5, 0.2), ("0.5", "0.2"),
    ([True], [0.2]), ([0.5], [True]), (["0.5"], [0.2]), (None, None), ({"r": 0.5}, {"r": 0.2})], ids=repr)
def test_bad_statistics_are_refused(mean, std):
    with pytest.raises(ConfigError):
        Normalize(mean, std)
    spec = colour_spec()
    spec["layers"][0] = {"type": "Normalize", "mean": mean, "std": std}
    with pytest.raises(ConfigError, match="layer 0"):
        architecture.build(spec)


def test_a_wrong_channel_count_is_refused_by_sequential():
    with pytest.raises(ArchitectureError, match=r"layer 0 \(Normalize\).*3 channel"):
        Sequential([Normalize(MEAN, STD), Flatten(), Dense(16, 2)], input_shape=(1, 4, 4))
    spec = colour_spec()
    spec["input_shape"] = [1, 10, 10]
    with pytest.raises(ArchitectureError, match="Normalize"):
        architecture.build(spec)
    with pytest.raises(ArchitectureError):
        Normalize(MEAN, STD)(np.zeros((2, 1, 4, 4)))
    with pytest.raises(ArchitectureError):
        Normalize(MEAN, STD)(np.zeros((3, 4, 4)))


# --- the backward pass skips it ---------------------------------------------------------------------------------------

def gradients(model, x, labels, input_grad):
    """(returned input gradient, {parameter: gradient}, backward steps taken) of one pass."""
    steps = []
    handle = model.register_step_hook(lambda direction, first, count, seconds: steps.append((direction, first)))
    loss = SoftmaxCrossEntropy()
    loss(model.forward(x), labels)
    dx = model.backward(loss.backward(), input_grad=input_grad)
    handle.remove()
    return dx, {key: grad.copy() for key, _, grad in model.parameters()}, [f for d, f in steps if d == "backward"]


@pytest.mark.parametrize("spec", ["conv", "dense"])
def test_backward_skips_the_normalize_and_keeps_the_parameter_gradients(spec):
    if spec == "conv":
        model = with_biases(architecture.build(colour_spec(), seed=4)).astype(np.float64)
    else:
        model = Sequential([Normalize(MEAN, STD, np.float64), Flatten(), Dense(48, 3, activation="relu", seed=1),
                            Dense(3, 3, seed=2)], input_shape=(3, 4, 4)).astype(np.float64)
    x = np.random.default_rng(5).random((3, *model.input_shape))
    labels = np.array([0, 1, 2])
    dx, skipped, steps = gradients(model, x, labels, input_grad=False)
    assert dx is None or not np.any(dx)  # no input gradient was asked for
    assert 0 not in steps and steps  # the Normalize step is not run backwards
    dx, full, all_steps = gradients(model, x, labels, input_grad=True)
    assert 0 in all_steps and dx.shape == x.shape
    assert set(full) == set(skipped) and full
    for key in full:
        np.testing.assert_allclose(skipped[key], full[key], rtol=1e-12, atol=1e-14, err_msg=key)
    loss = SoftmaxCrossEntropy()
    numeric = numeric_gradient(lambda: loss(model.forward(x), labels), x)
    assert_gradients_match(numeric, dx, "input gradient through Normalize")


# --- ONNX -------------------------------------------------------------------------------------------------------------

def test_onnx_export_runs_in_onnx_runtime_with_cycnns_probabilities():
    pytest.importorskip("onnx", reason="the ONNX export needs the onnx extra: pip install 'cycnn[onnx]'")
    ort = pytest.importorskip("onnxruntime", reason="the ONNX check runs the file in ONNX Runtime")
    from cycnn.io import onnx_export
    model = with_biases(architecture.build(colour_spec(), seed=6), seed=6)
    proto = onnx_export.to_onnx(model)
    ops = [node.op_type for node in proto.graph.node]
    assert ops[:2] == ["Sub", "Div"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in dims] == ["N", 3, 10, 10]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(6).random((16, 3, 10, 10), dtype=np.float32)
    ours = model.predict_proba(x)
    theirs = session.run(None, {onnx_export.INPUT_NAME: x})[0]
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)
    without = architecture.build(colour_spec(normalize=False), seed=6)
    for kept, layer in zip(without.layers, model.layers[1:]):
        for name in kept.params:
            kept.params[name][...] = layer.params[name]
    assert np.abs(without.predict_proba(x) - ours).max() > 1e-3  # the Normalize matters: a graph without it differs
