"""ONNX export: the exported file, run by ONNX Runtime, gives cycnn's probabilities (within 1e-5 absolute).

The equivalence tests need the ``onnx`` extra and ``onnxruntime`` (CI installs both) and skip with the reason
otherwise; the test of the missing-package message runs everywhere.
"""
import json
import sys

import numpy as np
import pytest

from cycnn.io import architecture
from cycnn.nn import _parallel
from cycnn.data.idx import load_idx_dataset
from cycnn.data.datasets import to_input
from cycnn.nn.optim import make_optimizer
from cycnn.nn.runtime import set_threads
from cycnn.train.settings import RunSettings
from cycnn.train.trainer import Trainer
from cycnn.io.model_file import save_model

from cli_runner import run_cli  # tests/cli_runner.py

TOLERANCE = 1e-5
ALLOWED_OPS = {"Conv", "Relu", "MaxPool", "Flatten", "Reshape", "Gemm", "MatMul", "Add", "Softmax"}


@pytest.fixture(scope="module")
def onnx():
    return pytest.importorskip("onnx", reason="ONNX export tests need the onnx extra: pip install 'cycnn[onnx]'")


@pytest.fixture(scope="module")
def ort(onnx):
    return pytest.importorskip("onnxruntime", reason="ONNX export tests run the file in ONNX Runtime: "
                                                     "pip install onnxruntime")


@pytest.fixture(scope="module")
def mnist_data():
    return load_idx_dataset()


@pytest.fixture(scope="module")
def test_images(mnist_data):
    """The first 1,000 MNIST test images as float32 (N, 1, 28, 28) in [0, 1]."""
    return to_input(mnist_data[2][:1000])


def session(ort, path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def with_random_biases(model, seed):
    """Fresh layers have zero biases; give them values so that the bias path is compared too."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if "b" in layer.params:
            layer.params["b"] = (rng.standard_normal(layer.params["b"].shape) * 0.1).astype(layer.dtype)
    return model


def trained_reference(mnist_data):
    """The reference network after one short epoch (800 images): its probabilities are far from uniform."""
    model = architecture.build(architecture.reference(), seed=0)
    config = RunSettings(epochs=1, batch_size=32, lr=0.002, seed=0)
    threads = _parallel.get_num_threads()
    with set_threads(1):  # one thread: quick and steady on a busy machine
        Trainer(model, make_optimizer("adam", 0.002), config).fit(mnist_data[0][:800], mnist_data[1][:800])
    _parallel.set_num_threads(threads)
    return model


ODD_NETWORK = {
    "input_shape": [1, 28, 28],
    "layers": [
        {"type": "Conv2D", "in_channels": 1, "out_channels": 6, "kernel_size": [3, 5], "stride": 2, "padding": 1},
        {"type": "ReLU"},
        {"type": "MaxPool2D", "pool_size": [3, 3], "stride": [2, 2]},
        {"type": "Conv2D", "in_channels": 6, "out_channels": 5, "kernel_size": 2, "activation": "relu"},
        {"type": "Flatten"},
        {"type": "Dense", "in_features": 125, "out_features": 12},
        {"type": "ReLU"},
        {"type": "Dropout", "p": 0.5},
        {"type": "Dense", "in_features": 12, "out_features": 4},
    ],
}


def build_case(name, mnist_data):
    if name == "reference, trained briefly":
        return trained_reference(mnist_data)
    if name == "three 5x5 convs with padding 2, two hidden dense layers":
        spec = architecture.stack((8, 16, 16), (5,), 2, (48, 24), (0.3,), padding=2)
    else:  # stride 2, a 3x5 kernel, overlapping 3x3/2 pooling of an odd size, separate ReLU layers, 4 classes
        spec = ODD_NETWORK
    return with_random_biases(architecture.build(spec, seed=3), seed=4)


CASES = ["reference, trained briefly", "three 5x5 convs with padding 2, two hidden dense layers",
         "strided, non-square kernel, odd pooling"]


@pytest.mark.parametrize("case", CASES)
def test_onnx_runtime_gives_cycnns_probabilities(case, onnx, ort, mnist_data, test_images, tmp_path):
    from cycnn.io.onnx_export import export
    model = build_case(case, mnist_data)
    path = tmp_path / "model.onnx"
    export(model, path)
    expected = model.predict_proba(test_images)
    got = session(ort, path).run(["probabilities"], {"image": test_images})[0]
    assert got.shape == expected.shape == (1000, model.num_classes)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    if case.startswith("reference"):  # a trained model: confident, mostly right answers, not a uniform output
        assert expected.max(axis=1).mean() > 0.5
        assert np.mean(expected.argmax(axis=1) == mnist_data[3][:1000]) > 0.6


def test_exported_graph_is_standard_and_has_a_dynamic_batch(onnx, ort, test_images, tmp_path):
    from cycnn.io.onnx_export import to_onnx
    model = architecture.build(architecture.reference(), seed=1)
    proto = to_onnx(model, opset=17)
    assert {node.op_type for node in proto.graph.node} <= ALLOWED_OPS
    assert [node.op_type for node in proto.graph.node][-1] == "Softmax"
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    (graph_input,) = proto.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "image" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    assert json.loads({p.key: p.value for p in proto.metadata_props}["class_names"]) == [str(i) for i in range(10)]
    path = tmp_path / "m.onnx"
    path.write_bytes(proto.SerializeToString())
    run = session(ort, path)
    for n in (1, 7):
        got = run.run(None, {"image": test_images[:n]})[0]
        np.testing.assert_allclose(got, model.predict_proba(test_images[:n]), rtol=0, atol=TOLERANCE)


def test_cli_export_writes_a_file_onnx_runtime_runs(onnx, ort, test_images, tmp_path, capsys):
    model = with_random_biases(architecture.build(architecture.reference(), seed=2), seed=5)
    save_model(model, tmp_path / "m.npz")
    code, out, err = run_cli(["export", tmp_path / "m.npz", tmp_path / "m.onnx"], capsys)
    assert code == 0, err
    assert "opset 13" in out and "'image' (N, 1, 28, 28)" in out and "(N, 10)" in out
    got = session(ort, tmp_path / "m.onnx").run(None, {"image": test_images[:50]})[0]
    np.testing.assert_allclose(got, model.predict_proba(test_images[:50]), rtol=0, atol=TOLERANCE)

    code, out, err = run_cli(["export", tmp_path / "m.npz", tmp_path / "old.onnx", "--opset", "12"], capsys)
    assert code == 2 and "at least 13" in err and err.count("\n") == 1
    assert not (tmp_path / "old.onnx").exists()


def test_export_without_onnx_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    save_model(architecture.build(architecture.reference(), seed=0), tmp_path / "m.npz")
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail, as if it were not installed
    code, out, err = run_cli(["export", tmp_path / "m.npz", tmp_path / "m.onnx"], capsys)
    assert code == 2 and out == ""
    assert err == "cycnn: error: ONNX export needs the onnx package: pip install 'cycnn[onnx]'\n"
    assert not (tmp_path / "m.onnx").exists()
