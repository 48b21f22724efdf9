"""The inference plan (cycnn.nn.plan, src_ext/plan.h) answers what the layers answer, one by one."""
import numpy as np
import pytest

from cycnn.errors import ConfigError
from cycnn.nn import LayerTimer, eval_mode, plan
from cycnn.nn import _plan
from cycnn.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from cycnn.nn.losses import softmax
from cycnn.nn.sequential import Sequential


def networks(dtype):
    """Every operation of the plan on odd shapes: (name, model)."""
    d = dict(dtype=dtype)
    return [
        ("reference", Sequential([  # direct-sized first layer, Winograd second, dense 1600 -> 128 -> 10
            Conv2D(1, 32, 3, activation="relu", seed=1, **d), MaxPool2D(2, **d),
            Conv2D(32, 64, 3, activation="relu", seed=2, **d), MaxPool2D(2, **d), Flatten(**d),
            Dense(1600, 128, activation="relu", seed=3, **d), Dropout(0.2, **d), Dense(128, 10, seed=4, **d)],
            input_shape=(1, 28, 28))),
        ("unpooled-strided", Sequential([  # no pooling, stride 2, padding 2, odd channels, 3 input channels
            Conv2D(3, 5, 5, stride=2, padding=2, activation="relu", seed=5, **d),
            Conv2D(5, 7, (3, 2), padding=1, seed=6, **d), ReLU(**d), Flatten(**d),
            Dense(7 * 6 * 7, 3, seed=7, **d)], input_shape=(3, 11, 12))),
        ("strided-few-taps", Sequential([  # stride 2: the direct kernel for 25 taps, im2col for 1,080
            Conv2D(1, 120, 5, stride=2, padding=1, activation="relu", seed=27, **d),
            Conv2D(120, 16, 3, stride=2, activation="relu", seed=28, **d), Flatten(**d),
            Dense(16 * 3 * 2, 4, seed=29, **d)], input_shape=(1, 15, 14))),
        ("overlapping-pools", Sequential([  # 3x3/2 pools fused, a pool after a linear conv, a pool of its own
            Conv2D(1, 6, 5, padding=2, activation="relu", seed=8, **d), MaxPool2D(3, stride=2, **d),
            Conv2D(6, 16, 5, seed=9, **d), MaxPool2D(2, **d), ReLU(**d), MaxPool2D((2, 1), stride=(1, 1), **d),
            Flatten(**d), Dense(96, 20, activation="relu", seed=10, **d), Dense(20, 5, seed=11, **d)],
            input_shape=(1, 21, 21))),
        ("winograd-padded", Sequential([  # Winograd with padding and 3 input channels on an odd map
            Conv2D(3, 16, 1, activation="relu", seed=12, **d),
            Conv2D(16, 32, 3, padding=1, activation="relu", seed=13, **d), MaxPool2D(2, **d),
            Conv2D(32, 16, 3, padding=1, activation="relu", seed=14, **d), MaxPool2D(2, **d), Flatten(**d),
            Dense(16 * 2 * 2, 4, seed=15, **d)], input_shape=(3, 9, 9))),
        ("channels-last-links", Sequential([  # an overlapping pool hands Winograd its map channels-last
            Conv2D(2, 16, 3, activation="relu", seed=21, **d), MaxPool2D(3, stride=2, **d),
            Conv2D(16, 16, 3, activation="relu", seed=22, **d), MaxPool2D(2, **d), Flatten(**d),
            Dense(16 * 2 * 2, 3, seed=23, **d)], input_shape=(2, 17, 15))),
        ("24-channels-into-winograd", Sequential([  # channels-last in float64 only (24 is not whole float32 vectors)
            Conv2D(2, 24, 3, activation="relu", seed=24, **d), MaxPool2D(2, **d),
            Conv2D(24, 16, 3, activation="relu", seed=25, **d), MaxPool2D(2, **d), Flatten(**d),
            Dense(16 * 2 * 1, 3, seed=26, **d)], input_shape=(2, 14, 12))),
        ("dense-only", Sequential([Flatten(**d), Dense(30, 17, activation="relu", seed=16, **d), Dropout(0.5, **d),
                                   Dense(17, 33, seed=17, **d)], input_shape=(2, 3, 5))),
        ("many-taps", Sequential([  # 1,080 taps: im2col + GEMM, pooled; then an unpooled direct convolution, no ReLU
            Conv2D(120, 6, 3, padding=1, activation="relu", seed=18, **d), MaxPool2D(2, **d),
            Conv2D(6, 5, 2, seed=19, **d), Flatten(**d), Dense(5 * 2 * 2, 3, seed=20, **d)], input_shape=(120, 7, 6))),
    ]


NAMES = [name for name, _ in networks(np.float32)]
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-12}


def layers_logits(model, x):
    with eval_mode(model):
        return model.forward(x)


def plan_logits(model, x, split):
    compiled = plan.plan_for(model)
    logits = np.empty((len(x), model.num_classes), dtype=model.dtype)
    assert compiled.kernel.run(np.ascontiguousarray(x).reshape(len(x), -1), None, logits, split)
    return logits


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
@pytest.mark.parametrize("n, split", [(1, True), (2, True), (5, False)])
def test_the_plan_computes_what_the_layers_compute(index, dtype, n, split):
    model = networks(dtype)[index][1]
    x = np.random.default_rng(index).standard_normal((n, *model.input_shape)).astype(dtype)
    expected = layers_logits(model, x)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(plan_logits(model, x, split), expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(model.predict_proba(x), softmax(expected.astype(np.float64)), rtol=tol, atol=tol)


def test_each_convolution_takes_the_kernel_training_uses():
    """The reference network: the direct kernel, then Winograd; a convolution with more taps than the direct
    kernel takes: im2col + GEMM, strided or not."""
    ops, derived, _, _, _ = plan.compile_ops(networks(np.float32)[0][1], np.dtype(np.float32))
    assert [op["kind"] for op in ops] == ["conv_direct", "conv_winograd", "dense", "dense"]
    assert [kind for kind, *_ in derived] == [_plan.DERIVE_TRANSPOSE, _plan.DERIVE_WINOGRAD, _plan.DERIVE_PANELS,
                                              _plan.DERIVE_PAD_COLUMNS, _plan.DERIVE_PANELS]
    ops = plan.compile_ops(dict(networks(np.float32))["many-taps"], np.dtype(np.float32))[0]
    assert [op["kind"] for op in ops] == ["conv_gemm", "conv_direct", "dense"]
    ops = plan.compile_ops(dict(networks(np.float32))["strided-few-taps"], np.dtype(np.float32))[0]
    assert [op["kind"] for op in ops] == ["conv_direct", "conv_gemm", "dense"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooled_maps_go_into_winograd_channels_last_in_whole_vectors(dtype):
    def links(name):
        ops = plan.compile_ops(dict(networks(dtype))[name], np.dtype(dtype))[0]
        return [(op["kind"], op.get("hwc_out", False), op.get("hwc_in", False)) for op in ops]
    assert links("reference") == [("conv_direct", True, False), ("conv_winograd", False, True),
                                  ("dense", False, False), ("dense", False, False)]
    # An unpooled 1x1 convolution's map stays NCHW; Winograd hands Winograd its map channels-last, padded.
    assert links("winograd-padded")[:3] == [("conv_direct", False, False), ("conv_winograd", True, False),
                                            ("conv_winograd", False, True)]
    assert links("channels-last-links")[:2] == [("conv_direct", True, False), ("conv_winograd", False, True)]
    linked = dtype == np.float64
    assert links("24-channels-into-winograd")[:2] == [("conv_direct", linked, False),
                                                      ("conv_winograd", False, linked)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
def test_a_batch_answers_with_the_layers_bits(index, dtype):
    """A batch's probabilities are numpy's softmax of logits summed in the same order as the layers sum them (the
    layers' direct kernel and the plan's im2col tiles add a pixel's taps in the same order)."""
    model = networks(dtype)[index][1]
    x = np.random.default_rng(1).random((3, *model.input_shape)).astype(dtype)
    np.testing.assert_array_equal(model.predict_proba(x), softmax(layers_logits(model, x).astype(np.float64)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_thread_count_gives_the_same_bits(dtype):
    """Threads sharing an image, or taking blocks of images, on 1 and 3 threads (more than the CI machine's cores:
    odd parts)."""
    for index, (name, model) in enumerate(networks(dtype)):
        x = np.random.default_rng(index).standard_normal((5, *model.input_shape)).astype(dtype).reshape(5, -1)
        answers = []
        for threads in (1, 3):
            kernel = plan.plan_for(model, threads).kernel
            shared, blocks = (np.empty((n, model.num_classes), dtype=dtype) for n in (2, 5))
            assert kernel.run(x[:2], None, shared, True) and kernel.run(x, None, blocks, False, 2)
            answers.append((shared, blocks))
        for one, three in zip(*answers):
            np.testing.assert_array_equal(one, three, err_msg=name)


class TimedKernel:
    """A plan's kernel that takes ``seconds[split]`` on a clock of its own (plan.time.perf_counter's stand-in)."""

    def __init__(self, seconds):
        self.seconds, self.now, self.modes = seconds, 0.0, []

    def run(self, x, probs, logits, split, block=0):
        self.modes.append(split)
        self.now += self.seconds[split]
        return True

    def perf_counter(self):
        return self.now


def test_one_image_is_answered_the_faster_way_and_the_way_is_checked_less_often_while_it_stands(monkeypatch):
    compiled = plan.InferencePlan(networks(np.float32)[0][1], 2)
    kernel = compiled.kernel = TimedKernel({True: 2e-3, False: 1e-5})
    monkeypatch.setattr(plan, "time", kernel)
    x, probs = np.zeros((1, 784), np.float32), np.zeros((1, 10))
    for _ in range(2 * plan.EXPLORE_CALLS):
        compiled._single(x, probs)
    assert compiled.split is False  # the threads were slower
    assert kernel.modes == [False] * plan.EXPLORE_CALLS + [True] * plan.EXPLORE_CALLS  # the other way first
    for _ in range(plan.EXPLORE_EVERY + 2 * plan.EXPLORE_CALLS):  # the next comparison confirms it
        compiled._single(x, probs)
    assert compiled.split is False and compiled.every == 2 * plan.EXPLORE_EVERY
    assert kernel.modes[-plan.EXPLORE_EVERY - 2 * plan.EXPLORE_CALLS:].count(True) == plan.EXPLORE_CALLS
    kernel.seconds = {True: 1e-5, False: 2e-3}  # the load changes: sharing becomes the faster way
    for _ in range(compiled.countdown + 2 * plan.EXPLORE_CALLS):
        compiled._single(x, probs)
    assert compiled.split is True and compiled.every == plan.EXPLORE_EVERY
    for _ in range(compiled.countdown):
        compiled._single(x, probs)
    delays = iter([0.0] * (plan.EXPLORE_CALLS + 1) + [1.0] + [0.0] * (plan.EXPLORE_CALLS - 2))
    run = kernel.run
    kernel.run = lambda *args: (run(*args), setattr(kernel, "now", kernel.now + next(delays)))[0]
    for _ in range(2 * plan.EXPLORE_CALLS):  # one of the threads' timed calls is delayed by a second
        compiled._single(x, probs)
    assert compiled.split is True  # the fastest call of each way decides, not the delayed one


def test_dense_weights_beyond_the_l2_cache_get_larger_blocks():
    """Weights over STREAMED_BYTES are read from L3 once per block: such a plan takes blocks of STREAMED_BLOCK
    images, with the layers' bits."""
    features = plan.STREAMED_BYTES // (4 * 16) + 16
    model = Sequential([Flatten(), Dense(features, 16, seed=30)], input_shape=(1, 1, features))
    assert plan.plan_for(model).kernel.block == plan.STREAMED_BLOCK > plan.BLOCK
    assert plan.plan_for(networks(np.float32)[0][1]).kernel.block == plan.BLOCK
    x = np.random.default_rng(4).random((plan.STREAMED_BLOCK * 2 + 3, 1, 1, features), dtype=np.float32)
    np.testing.assert_array_equal(model.predict_proba(x), softmax(layers_logits(model, x).astype(np.float64)))


def test_weights_changed_in_place_or_replaced_are_seen():
    model = networks(np.float32)[0][1]
    x = np.random.default_rng(2).random((1, 1, 28, 28), dtype=np.float32)
    batch = np.random.default_rng(3).random((5, 1, 28, 28), dtype=np.float32)
    model.predict_proba(x)
    model.predict_proba(batch)  # blocks of images: the dense layers' panels are derived too
    for layer in model.layers:  # as an optimizer does: in place
        for array in layer.params.values():
            array *= np.float32(0.7)
            array += np.float32(0.01)
    tol = TOLERANCE[np.float32]
    np.testing.assert_allclose(plan_logits(model, x, True), layers_logits(model, x), rtol=tol, atol=tol)
    np.testing.assert_array_equal(model.predict_proba(batch), softmax(layers_logits(model, batch).astype(np.float64)))
    model.astype(np.float64)  # new arrays: a new plan
    np.testing.assert_allclose(model.predict_proba(x), softmax(layers_logits(model, x).astype(np.float64)),
                               rtol=1e-12, atol=1e-12)
    assert plan.plan_for(model).dtype == np.float64


def test_nan_is_refused_and_hooks_take_the_layers_path():
    model = networks(np.float32)[1][1]
    x = np.zeros((1, *model.input_shape), np.float32)
    x[0, 1, 2, 3] = np.inf
    with pytest.raises(ConfigError, match="NaN or infinite"):
        model.predict_proba(x)
    timer = LayerTimer().attach(model)
    model.predict_proba(np.zeros_like(x))
    assert any(t > 0 for t in timer.forward)


def test_a_model_the_plan_does_not_run_takes_the_layers_path():
    class Custom(ReLU):
        pass
    model = Sequential([Flatten(), Custom(), Dense(4, 2, seed=0)], input_shape=(1, 2, 2))
    assert plan.plan_for(model) is None
    assert model.predict_proba(np.ones((1, 1, 2, 2), np.float32)).shape == (1, 2)


def test_the_plan_refuses_operations_that_do_not_fit():
    """Offsets and sizes are checked when the plan is built: never a write outside the arenas."""
    weight, bias = np.zeros((4, 16), np.float32), np.zeros(3, np.float32)
    op = {"kind": "dense", "C": 4, "H": 1, "W": 1, "F": 3, "Fp": 16, "in": -1, "out": 0, "weight": weight,
          "panels": weight.copy(), "bias": bias}
    _plan.Plan([op], [], np.float32, 4, 16, 0, 0, 3, 1)  # fits
    with pytest.raises(ValueError, match="whole vectors"):
        _plan.Plan([dict(op, Fp=3, weight=np.zeros((4, 3), np.float32))], [], np.float32, 4, 16, 0, 0, 3, 1)
    with pytest.raises(ValueError, match="panels"):
        _plan.Plan([dict(op, panels=np.zeros((4, 3), np.float32))], [], np.float32, 4, 16, 0, 0, 3, 1)
    with pytest.raises(ValueError, match="outside the slot"):
        _plan.Plan([dict(op, out=14)], [], np.float32, 4, 16, 0, 0, 3, 1)
    with pytest.raises(ValueError, match="not the image"):
        _plan.Plan([op], [], np.float32, 5, 16, 0, 0, 3, 1)
    with pytest.raises(ValueError, match="weight"):
        _plan.Plan([dict(op, weight=np.zeros((3, 3), np.float32))], [], np.float32, 4, 16, 0, 0, 3, 1)
    conv = {"kind": "conv_gemm", "C": 1, "H": 5, "W": 5, "F": 2, "KH": 3, "KW": 3, "stride": 1, "pad": 0, "OH": 4,
            "OW": 3, "Fp": 16, "in": -1, "out": 0, "cols": 0, "rows": 81, "weight": np.zeros((9, 16), np.float32),
            "bias": bias[:2]}
    with pytest.raises(ValueError, match="output map"):
        _plan.Plan([conv], [], np.float32, 25, 64, 1000, 0, 2, 1)
    with pytest.raises(ValueError, match="scratch"):
        _plan.Plan([dict(conv, OH=3)], [], np.float32, 25, 64, 100, 0, 2, 1)
    with pytest.raises(ValueError, match="channels-last output"):
        _plan.Plan([dict(op, hwc_out=True)], [], np.float32, 4, 16, 0, 0, 3, 1)
    with pytest.raises(ValueError, match="channels-last input"):
        _plan.Plan([dict(conv, hwc_in=True)], [], np.float32, 25, 64, 1000, 0, 2, 1)
    with pytest.raises(ValueError, match="block holds"):
        _plan.Plan([op], [], np.float32, 4, 16, 0, 0, 3, 1, 0)
    with pytest.raises(ValueError, match="images of 4 numbers"):
        _plan.Plan([op], [], np.float32, 4, 16, 0, 0, 3, 1).run(np.zeros((1, 5), np.float32), None)
