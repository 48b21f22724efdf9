"""What ``cycnn explore`` computes, against plain-numpy references: the traced pass and its gradients (central
differences in float64), saliency and Grad-CAM, occlusion, one unit's arithmetic, the "what if" transforms and the
test-set panels (confusion matrix, mistakes, robustness curves, the PCA map)."""
import base64
import functools
import itertools
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cycnn.data.datasets import to_input
from cycnn.errors import ConfigError
from cycnn.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from cycnn.nn.losses import softmax
from cycnn.nn.sequential import Sequential
from cycnn.viz.explore import analysis, transform
from cycnn.viz.explore.shared import SharedModel
from cycnn.viz.explore.testset import CURVES, TestSet
from oracles import assert_gradients_match, conv_reference, maxpool_reference, numeric_gradient


def decode(record):
    """The float maps of an ``encode_maps`` record (uint8 levels of 0..limit, or -limit..limit when signed)."""
    levels = np.frombuffer(base64.b64decode(record["data"]), dtype=np.uint8).reshape(record["shape"])
    return (levels / 127.5 - 1) * record["limit"] if record["signed"] else levels / 255 * record["limit"]


def with_biases(model, seed=0):
    """Random biases, so that every ReLU has units on both sides of its kink."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if "b" in layer.params:
            layer.params["b"] = rng.uniform(-0.3, 0.3, layer.params["b"].shape).astype(layer.dtype)
    return model


def every_kind(dtype=np.float64):
    """conv(relu) -> pool -> conv -> ReLU -> flatten -> dropout -> dense(relu) -> dense, on 2x8x8 inputs."""
    layers = [Conv2D(2, 3, 3, padding=1, activation="relu", seed=1), MaxPool2D(2), Conv2D(3, 4, 3, seed=2), ReLU(),
              Flatten(), Dropout(0.5, seed=3), Dense(16, 6, activation="relu", seed=4), Dense(6, 3, seed=5)]
    return with_biases(Sequential(layers, input_shape=(2, 8, 8)).astype(dtype))


def digit_model(separate_relu, dtype=np.float64):
    """A 28x28 model whose last convolution is activated in the layer (fused) or by a ReLU layer after it."""
    second = [Conv2D(4, 6, 3, seed=2), ReLU()] if separate_relu else [Conv2D(4, 6, 3, activation="relu", seed=2)]
    layers = [Conv2D(1, 4, 3, activation="relu", seed=1), MaxPool2D(2), *second, Flatten(),
              Dense(6 * 11 * 11, 10, seed=3)]
    return with_biases(Sequential(layers, input_shape=(1, 28, 28)).astype(dtype))


def logit(model, x, target):
    return lambda: float(model.layer_outputs(x)[-1][0, target])


def test_trace_outputs_are_the_layer_outputs_and_the_forward_pass():
    model = every_kind()
    x = np.random.default_rng(0).standard_normal((3, 2, 8, 8))
    outputs, caches = model.trace(x)
    assert len(caches) == len(model.layers)
    for traced, plain in zip(outputs, model.layer_outputs(x)):
        np.testing.assert_array_equal(traced, plain)
    np.testing.assert_allclose(outputs[0], np.maximum(conv_reference(x, *model.layers[0].params.values(), 1, 1), 0),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(outputs[5], outputs[4])  # eval-mode dropout is the identity
    np.testing.assert_allclose(outputs[-1], model.eval().forward(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("target", [0, 2])
def test_traced_input_gradient_matches_central_differences(target):
    """Every layer type's backward pass through the traced caches: conv(relu), pool, ReLU, dropout, dense(relu)."""
    model = every_kind()
    x = np.random.default_rng(1).standard_normal((1, 2, 8, 8))
    outputs, caches = model.trace(x)
    assert (outputs[3] == 0).any() and (outputs[3] > 0).any() and (outputs[6] == 0).any()  # both sides of kinks
    dlogits = np.zeros_like(outputs[-1])
    dlogits[0, target] = 1.0
    input_gradient, output_gradients, parameter_gradients = model.trace_backward(dlogits, caches)
    assert_gradients_match(numeric_gradient(logit(model, x, target), x), input_gradient, "input gradient")
    model.eval().forward(x)
    model.backward(dlogits)  # the training pass (gradient-checked in tests/nn) gives the same parameter gradients
    for layer, gradients in zip(model.layers, parameter_gradients):
        assert set(gradients) == set(layer.params)
        for name, gradient in gradients.items():
            np.testing.assert_allclose(gradient, layer.grads[name], rtol=1e-9, atol=1e-12, err_msg=name)
    np.testing.assert_array_equal(output_gradients[-1], dlogits)
    rest, relu_out = Sequential(model.layers[4:], input_shape=(4, 2, 2)), outputs[3].copy()  # after layer 3
    assert_gradients_match(numeric_gradient(logit(rest, relu_out, target), relu_out), output_gradients[3],
                           "layer 3 output gradient")


def test_trace_stores_nothing_on_the_model_and_keeps_its_mode():
    """A request must not leave state that a training step (or another request) would pick up."""
    model = every_kind().train()
    dropout = model.layers[5]
    rng_state = dropout.rng.bit_generator.state
    outputs, caches = model.trace(np.random.default_rng(2).standard_normal((2, 2, 8, 8)))
    first, again = (model.trace_backward(np.ones_like(outputs[-1]), caches)[0] for _ in range(2))
    np.testing.assert_array_equal(first, again)  # the caches survive a backward pass
    assert model.training and all(layer.training for layer in model.layers)
    assert all(layer._cache is None and layer.grads == {} for layer in model.layers)
    assert dropout.rng.bit_generator.state == rng_state  # no dropout mask drawn
    np.testing.assert_array_equal(outputs[5], outputs[4])  # traced in eval mode although the model trains


def test_concurrent_traces_match_sequential_ones():
    model = digit_model(separate_relu=True, dtype=np.float32)
    inputs = [np.random.default_rng(k).random((4, 1, 28, 28), dtype=np.float32) for k in range(2)]

    def run(x):
        outputs, caches = model.trace(x)
        dlogits = np.zeros_like(outputs[-1])
        dlogits[:, 1] = 1.0
        return outputs[-1], model.trace_backward(dlogits, caches)[0]

    expected, barrier = [run(x) for x in inputs], threading.Barrier(2, timeout=30)

    def work(k):
        barrier.wait()  # both threads trace at the same time
        return [run(inputs[k]) for _ in range(25)]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(work, range(2)))
    for k, runs in enumerate(results):
        for logits, gradient in runs:
            np.testing.assert_array_equal(logits, expected[k][0])
            np.testing.assert_array_equal(gradient, expected[k][1])


def test_saliency_is_the_largest_absolute_input_gradient_over_channels():
    model = every_kind()
    x = np.random.default_rng(4).standard_normal((2, 8, 8))
    result, _ = analysis.respond(model, x, target=1, explain=True)
    expected = np.abs(numeric_gradient(logit(model, x[None], 1), x[None])[0]).max(axis=0)
    saliency = result["saliency"]
    assert result["target"] == 1 and saliency["shape"] == [8, 8] and not saliency["signed"]
    np.testing.assert_allclose(decode(saliency), expected, atol=expected.max() / 255)
    default, _ = analysis.respond(model, x, explain=True)
    assert default["target"] == default["class_index"] == int(np.argmax(default["probability_list"]))


@pytest.mark.parametrize("separate_relu, layer", [(False, 2), (True, 3)], ids=["fused-relu", "relu-layer"])
def test_gradcam_matches_a_numpy_reference(separate_relu, layer):
    """relu(sum_k mean(dS/dA_k) A_k) at the last convolution's activated output; with a linear head after the
    flatten, dS/dA is the target's dense weights."""
    model = digit_model(separate_relu)
    x = np.random.default_rng(5).random((1, 28, 28))
    conv1, conv2, dense = model.layers[0], model.layers[2], model.layers[-1]
    pooled = maxpool_reference(np.maximum(conv_reference(x[None], *conv1.params.values(), 1, 0), 0), 2, 2, 2, 2)[0]
    maps = np.maximum(conv_reference(pooled, *conv2.params.values(), 1, 0), 0)[0]
    for target in (0, 7):
        weights = dense.params["W"][:, target].reshape(maps.shape).mean(axis=(1, 2))
        cam = np.maximum(np.tensordot(weights, maps, axes=1), 0)
        assert cam.max() > 0  # the check proves something
        result, _ = analysis.respond(model, x, target=target, explain=True)
        gradcam = result["gradcam"]
        assert gradcam["layer"] == layer == analysis.last_convolution(model) and gradcam["shape"] == [11, 11]
        assert gradcam["name"] == model.layer_names()[layer]
        np.testing.assert_allclose(decode(gradcam), cam, atol=cam.max() / 255 + 1e-9)


def test_no_gradcam_without_a_convolution():
    model = Sequential([Flatten(), Dense(784, 16, activation="relu", seed=0), Dense(16, 10, seed=1)])
    result, _ = analysis.respond(model, np.random.default_rng(6).random((1, 28, 28), dtype=np.float32), explain=True)
    assert (analysis.last_convolution(model), result["gradcam"], result["saliency"]["shape"]) == (None, None, [28, 28])


def test_occlusion_finds_the_one_region_the_answer_depends_on():
    """Class 0's score counts the ink in rows and columns 2..7 only: hiding anything else changes nothing."""
    model = Sequential([Flatten(), Dense(784, 2, seed=0)]).astype(np.float64)
    region = np.zeros((28, 28), dtype=bool)
    region[2:8, 2:8] = True
    model.layers[1].load_params({"W": np.stack([0.05 * region.ravel(), np.zeros(784)], axis=1), "b": np.zeros(2)})
    x = np.zeros((1, 28, 28))
    x[0, 2:8, 2:8] = x[0, 18:26, 18:26] = 0.8
    occ = analysis.occlusion(SharedModel(model), x, target=0)
    assert (occ["patch"], occ["stride"], occ["target"], occ["shape"]) == (6, 2, 0, [28, 28])
    p0 = lambda image: softmax(np.array([[0.05 * image[0][region].sum(), 0.0]]))[0, 0]  # noqa: E731
    drop, count = np.zeros((28, 28)), np.zeros((28, 28))
    for top, left in itertools.product(range(0, 23, 2), repeat=2):  # every 6x6 patch, a stride of 2
        hidden = x.copy()
        hidden[:, top:top + 6, left:left + 6] = 0
        drop[top:top + 6, left:left + 6] += p0(x) - p0(hidden)
        count[top:top + 6, left:left + 6] += 1
    expected = drop / count
    result, _ = analysis.respond(model, x)
    assert occ["base"] == pytest.approx(p0(x), rel=1e-12) == result["probability_list"][0]
    maps = decode(occ)
    np.testing.assert_allclose(maps, expected, atol=expected.max() / 255)
    assert (maps[region] > 0).all() and (maps[13:] == 0).all() and (maps[:, 13:] == 0).all()
    assert region[np.unravel_index(maps.argmax(), maps.shape)]


def detail_model():
    """conv(stride 2, padding 1, relu) -> pool -> conv(padding 1, no relu) -> flatten -> dropout -> dense(relu)
    -> dense, float32 as a trained model is."""
    layers = [Conv2D(1, 3, 3, stride=2, padding=1, activation="relu", seed=1), MaxPool2D(2),
              Conv2D(3, 4, 3, padding=1, seed=2), Flatten(), Dropout(0.3), Dense(4 * 7 * 7, 8, activation="relu",
                                                                                   seed=3), Dense(8, 10, seed=4)]
    model = with_biases(Sequential(layers, input_shape=(1, 28, 28)))
    x = np.random.default_rng(7).random((1, 28, 28), dtype=np.float32)
    return model, x, model.layer_outputs(x[None])


def values(part):
    return np.array(part["values"], dtype=np.float64).reshape(part["shape"])


@pytest.mark.parametrize("index, unit", [(0, 2), (2, 3)])
def test_conv_detail_gives_every_output_from_its_patch(index, unit):
    model, x, outputs = detail_model()
    d = analysis.detail(model, x, outputs, index, unit)
    layer = model.layers[index]
    assert (d["type"], d["stride"], d["padding"], d["relu"]) == ("conv", layer.stride, layer.padding,
                                                                 layer.activation == "relu")
    source, kernel, out = values(d["input"]), values(d["kernel"]), values(d["output"])
    np.testing.assert_allclose(source, x if index == 0 else outputs[index - 1][0], rtol=5e-5)
    np.testing.assert_allclose(out, outputs[index][0, unit], rtol=5e-5, atol=1e-7)
    s, p, (kh, kw) = d["stride"], d["padding"], kernel.shape[1:]
    padded = np.pad(source, ((0, 0), (p, p), (p, p)))
    by_hand = np.array([[np.sum(padded[:, r * s:r * s + kh, q * s:q * s + kw] * kernel) + d["bias"]
                         for q in range(out.shape[1])] for r in range(out.shape[0])])
    assert ((out == 0).any() and (by_hand < 0).any()) if d["relu"] else (out < 0).any()  # the ReLU had work to do
    by_hand = np.maximum(by_hand, 0) if d["relu"] else by_hand
    np.testing.assert_allclose(out, by_hand, rtol=1e-3, atol=1e-4 * np.abs(out).max())


def test_pool_detail_outputs_are_window_maxima():
    model, x, outputs = detail_model()
    d = analysis.detail(model, x, outputs, 1, 2)
    source, out = values(d["input"]), values(d["output"])
    assert d["type"] == "pool" and source.shape == (14, 14) and out.shape == (7, 7)
    (ph, pw), (sh, sw) = d["pool_size"], d["stride"]
    maxima = [[source[r * sh:r * sh + ph, q * sw:q * sw + pw].max() for q in range(7)] for r in range(7)]
    np.testing.assert_array_equal(out, maxima)
    np.testing.assert_allclose(out, outputs[1][0, 2], rtol=5e-5)


@pytest.mark.parametrize("index, unit, origin", [(5, 6, (4, 7, 7)), (6, 3, None)], ids=["after-flatten", "after-dense"])
def test_dense_detail_adds_up(index, unit, origin):
    model, x, outputs = detail_model()
    d = analysis.detail(model, x, outputs, index, unit)
    layer = model.layers[index]
    inputs = np.asarray(outputs[index - 1][0], dtype=np.float64)
    products = inputs * np.asarray(layer.params["W"][:, unit], dtype=np.float64)
    bias = float(layer.params["b"][unit])
    assert d["type"] == "dense" and d["inputs"] == products.size and d["bias"] == bias
    assert d["pre_activation"] == pytest.approx(bias + products.sum(), rel=1e-12, abs=1e-12)
    assert d["sum_positive"] + d["sum_negative"] + bias == pytest.approx(d["pre_activation"], abs=1e-9)
    assert d["output"] == pytest.approx(max(d["pre_activation"], 0 if d["relu"] else -math.inf), rel=1e-4, abs=1e-6)
    contributions = d["contributions"]
    sizes = [abs(c["product"]) for c in contributions]
    assert len(contributions) == min(analysis.MAX_CONTRIBUTIONS, products.size) and sizes == sorted(sizes)[::-1]
    np.testing.assert_allclose(sizes, np.sort(np.abs(products))[::-1][:len(sizes)], rtol=1e-4)
    for c in contributions:
        assert c["product"] == pytest.approx(products[c["input"]], rel=1e-4)
        if origin is None:
            assert c["position"] is None
        else:
            assert np.ravel_multi_index(c["position"], origin) == c["input"]
            assert c["value"] == pytest.approx(float(outputs[2][0][tuple(c["position"])]), rel=1e-4)


def dot(*pixels):
    image = np.zeros((1, 1, 28, 28), dtype=np.float32)
    image[0, 0, [r for r, _ in pixels], [c for _, c in pixels]] = 1.0
    return image


def test_neutral_settings_return_the_input(mnist):
    x = to_input(mnist[2][:3])
    neutral = transform.check({name: neutral for name, (_, _, neutral) in transform.RANGES.items()})
    assert transform.is_identity(neutral) and not transform.is_identity({"rotate": 1.0})
    np.testing.assert_array_equal(transform.apply(x, **neutral), x)
    ends = transform.check({"rotate": -180, "scale": 3, "thickness": -3, "noise": 1})  # the ends are in range
    assert ends == {"rotate": -180.0, "scale": 3.0, "thickness": -3.0, "noise": 1.0}
    assert all(type(v) is float for v in ends.values())


def test_rotations_by_90_degrees_compose_to_the_identity(mnist):
    x = to_input(mnist[2][:2])
    turned = functools.reduce(lambda image, _: transform.apply(image, rotate=90), range(4), x)
    np.testing.assert_allclose(turned[..., 2:-2, 2:-2], x[..., 2:-2, 2:-2], atol=1e-4)
    np.testing.assert_allclose(transform.apply(transform.apply(x, rotate=90), rotate=-90), x, atol=1e-4)
    np.testing.assert_allclose(transform.apply(x, rotate=180), x[..., ::-1, ::-1], atol=1e-4)


def test_positive_degrees_turn_counter_clockwise():
    """Counter-clockwise on screen (rows down): the top of the image goes to the left."""
    turned = transform.apply(dot((3, 13), (3, 14)), rotate=90)[0, 0]
    assert sorted(map(tuple, np.argwhere(turned > 0.5))) == [(13, 3), (14, 3)]


def test_shifts_move_ink_by_whole_pixels_and_scale_spreads_it_about_the_centre():
    """+x is right and +y down; a 2x2 dot on the centre (13.5, 13.5) scaled 2x, with bilinear sampling, spreads
    1/4, 3/4, 1, 1, 3/4, 1/4 along each axis."""
    image = dot((10, 10), (12, 5))
    np.testing.assert_array_equal(transform.apply(image, shift_x=2), dot((10, 12), (12, 7)))
    np.testing.assert_array_equal(transform.apply(image, shift_y=3), dot((13, 10), (15, 5)))
    scaled = transform.apply(dot((13, 13), (13, 14), (14, 13), (14, 14)), scale=2)[0, 0]
    profile = np.zeros(28)
    profile[11:17] = [0.25, 0.75, 1, 1, 0.75, 0.25]
    np.testing.assert_allclose(scaled, np.outer(profile, profile), atol=1e-6)


def test_thickness_grows_and_shrinks_the_ink_and_noise_is_fixed(mnist):
    assert (transform.apply(dot((9, 9)), thickness=1) > 0).sum() == 5  # a 3x3 cross
    assert (transform.apply(dot(*[(r, c) for r in (9, 10, 11) for c in (9, 10, 11)]), thickness=-1) > 0).sum() == 1
    x = to_input(mnist[2][:4])
    thick, thin = transform.apply(x, thickness=1), transform.apply(x, thickness=-1)
    assert (thick >= x).all() and (thin <= x).all()
    for k in range(4):
        assert (thick[k] > 0.5).sum() > (x[k] > 0.5).sum() > (thin[k] > 0.5).sum()
    noisy = transform.apply(x, noise=0.3)  # and noise is the same each time (a fixed seed), in [0, 1]
    np.testing.assert_array_equal(noisy, transform.apply(x, noise=0.3))
    assert noisy.dtype == np.float32 and noisy.min() >= 0 and noisy.max() <= 1
    assert np.abs(noisy - x).mean() > 0.05


@pytest.mark.parametrize("settings", [{"blur": 1.0}, {"rotate": math.nan}, {"rotate": math.inf}, {"noise": -math.inf},
                                      {"rotate": True}, {"rotate": "10"}, {"scale": 0.2}, {"scale": 3.5},
                                      {"noise": -0.1}, {"shift_x": 15}, {"rotate": -181}, {"thickness": 1.5}])
def test_check_refuses_bad_settings(settings):
    with pytest.raises(ConfigError):
        transform.check(settings)


@pytest.fixture(scope="module")
def tests(mnist):
    """200 test images and a random float64 model: right about some images and wrong about many."""
    model = with_biases(Sequential([Conv2D(1, 4, 3, activation="relu", seed=1), MaxPool2D(2), Flatten(),
                                    Dense(4 * 13 * 13, 10, seed=2)]).astype(np.float64))
    return TestSet(SharedModel(model), mnist[2][:200], mnist[3][:200], "MNIST")


def test_predictions_mistakes_and_confusion_agree(tests):
    predicted = tests.shared.model.predict(to_input(tests.images))
    np.testing.assert_array_equal(tests.predicted(), predicted)
    np.testing.assert_array_equal(tests.mistakes(), np.flatnonzero(predicted != tests.labels))
    assert 0 < len(tests.mistakes()) < len(tests)
    confusion = tests.confusion()
    matrix = np.array(confusion["matrix"])
    assert matrix.sum() == confusion["images"] == len(tests) == 200
    assert confusion["accuracy"] == pytest.approx(np.trace(matrix) / 200)
    seen = []
    for true, guess in itertools.product(range(10), repeat=2):
        cell = confusion["cells"][true][guess]
        assert len(cell) == matrix[true, guess] == np.sum((tests.labels == true) & (predicted == guess))
        assert all(tests.labels[i] == true and predicted[i] == guess for i in cell)
        seen += cell
    assert sorted(seen) == list(range(200))


@pytest.mark.parametrize("layer", [-1, 0, 2])
def test_atlas_is_the_pca_of_the_layer_and_places_its_own_images(tests, layer):
    x = to_input(tests.images[tests.sample])
    features = (x if layer < 0 else tests.shared.model.layer_outputs(x)[layer]).reshape(len(x), -1).astype(np.float64)
    u, s, _ = np.linalg.svd(features - features.mean(axis=0), full_matrices=False)
    expected = u[:, :2] * s[:2]
    result, atlas = tests.atlas(layer)
    points = np.array(result["points"])
    assert result["layer"] == layer and points.shape == (len(tests.sample), 4)
    np.testing.assert_array_equal(points[:, 3], tests.sample)
    np.testing.assert_array_equal(points[:, 2], tests.labels[tests.sample])
    signs = np.sign(np.sum(points[:, :2] * expected, axis=0))  # a principal axis has no preferred direction
    np.testing.assert_allclose(points[:, :2], signs * expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    np.testing.assert_allclose(result["explained"], s[:2] ** 2 / np.sum(s ** 2), rtol=1e-3)
    for row in (0, 57):
        np.testing.assert_allclose(atlas.place(features[row]), points[row, :2], rtol=2e-3,
                                   atol=1e-3 * np.abs(expected).max())


def test_robustness_curves_hold_accuracies_and_agree_at_the_neutral_value(tests):
    curves = tests.robustness()
    plain = float(np.mean(tests.predicted()[tests.sample] == tests.labels[tests.sample]))
    assert set(curves) == set(CURVES)
    for name, curve in curves.items():
        assert curve["values"] == CURVES[name] and len(curve["accuracy"]) == len(curve["values"])
        assert all(0 <= a <= 1 for a in curve["accuracy"])
        neutral = transform.RANGES[name][2]
        assert curve["accuracy"][curve["values"].index(neutral)] == pytest.approx(plain, abs=1e-12), name
    assert tests.robustness() is curves  # computed once
