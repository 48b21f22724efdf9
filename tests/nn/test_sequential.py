"""Sequential, architectures, model files, optimizers and a short real training run."""
import copy
import re

import numpy as np
import pytest

from cycnn.io import architecture
from cycnn.nn import _optim
from cycnn.errors import ArchitectureError, ConfigError
from cycnn.nn.hooks import ActivationRecorder, LayerTimer
from cycnn.nn.layers import Dense, Flatten
from cycnn.nn.losses import SoftmaxCrossEntropy
from cycnn.nn.sequential import Sequential, eval_mode
from cycnn.nn.optim import SGD, Adam, make_optimizer
from cycnn.nn.runtime import default_threads, set_threads
from cycnn.train.settings import RunSettings
from cycnn.train.trainer import Trainer
from cycnn.train.evaluation import evaluate
from cycnn.io.model_file import load_model, save_model

REFERENCE_SHAPES = ["26x26x32", "13x13x32", "11x11x64", "5x5x64", "1600", "128", "128", "10"]
REFERENCE_PARAMS = 225_034  # 320 + 18,496 + 204,928 + 1,290


def summary_rows(text):
    """The (layer, output shape, params) cells of every layer row of a summary table."""
    return [re.split(r"\s{3,}", line.strip()) for line in text.splitlines() if re.match(r"\d+: ", line)]


def test_reference_summary_shapes_and_parameter_count():
    model = architecture.build(architecture.reference())
    text = model.summary()
    rows = summary_rows(text)
    assert [row[1] for row in rows] == REFERENCE_SHAPES
    assert [row[2] for row in rows] == ["320", "0", "18,496", "0", "0", "204,928", "0", "1,290"]
    assert text.splitlines()[-1] == f"Total parameters: {REFERENCE_PARAMS:,}"
    assert model.parameter_count == REFERENCE_PARAMS
    assert text.splitlines()[0] == "Input: 28x28x1"


def test_layer_outputs_hold_every_layer_output():
    model = architecture.build(architecture.reference(), seed=0)
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    outputs = model.train().layer_outputs(x)
    assert model.training  # run in eval mode, and the mode given back
    logits = model.eval().forward(x)
    assert [a.shape[1:] for a in outputs] == model.output_shapes
    assert logits.shape == (3, 10)
    # The recorded pass runs the layers one by one, the fused pass a Winograd convolution: float32 rounding apart.
    np.testing.assert_allclose(outputs[-1], logits, rtol=1e-5, atol=1e-5 * np.abs(logits).max())


def test_activation_recorder_records_the_first_images_of_one_armed_pass():
    """What an observed training step does (cycnn.train.trainer.OBSERVED_IMAGES): the extra pass on part of the batch."""
    model = architecture.build(architecture.reference(), seed=0)
    recorder = ActivationRecorder(images=2).attach(model)
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    model.eval().forward(x)
    assert recorder.outputs is None  # not armed
    recorder.armed = True
    logits = model.forward(x)
    assert [a.shape for a in recorder.outputs] == [(2, *shape) for shape in model.output_shapes]
    assert logits.shape == (5, 10) and not recorder.armed
    np.testing.assert_allclose(recorder.outputs[-1], logits[:2], rtol=1e-5, atol=1e-5 * np.abs(logits).max())
    recorder.detach()
    recorder.armed = True
    model.forward(x)
    assert recorder.armed  # detached: the pass did not reach it


def test_layer_timer_times_every_step_and_zeroes_the_fused_layers():
    model = architecture.build(architecture.reference(), seed=0)
    timer = LayerTimer().attach(model)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    model.backward(np.ones_like(model.forward(x)))
    for times in (timer.forward, timer.backward):
        assert len(times) == len(model.layers)
        assert all(times[i] == 0 for i in model.fused_into)
        assert all(times[i] > 0 for i in range(len(model.layers)) if i not in model.fused_into)


def test_recording_activations_does_not_change_a_training_step():
    """The recording pass runs in eval mode beside the real (fused) pass: same logits, same gradients."""
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    results = []
    for keep in (False, True):
        model = architecture.build(architecture.reference(), seed=0).train()
        model.layers[6].reseed(5)
        recorder = ActivationRecorder().attach(model)
        recorder.armed = keep
        logits = model.forward(x)
        assert (recorder.outputs is not None) == keep
        model.backward(np.ones_like(logits))
        results.append((logits, [grad.copy() for _, _, grad in model.parameters()]))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for plain, observed in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(plain, observed)


def _reference_with(layer_index, **changes):
    config = copy.deepcopy(architecture.reference())
    config["layers"][layer_index].update(changes)
    return config


@pytest.mark.parametrize("config, index, layer_type, message", [
    (_reference_with(0, kernel_size=[30, 30]), 0, "Conv2D", "larger than its input"),
    (_reference_with(2, kernel_size=[14, 3]), 2, "Conv2D", "larger than its input"),
    (_reference_with(2, in_channels=16), 2, "Conv2D", "input channels"),
    (_reference_with(5, in_features=1000), 5, "Dense", r"\(1000,\)"),
    (_reference_with(7, in_features=64), 7, "Dense", r"\(64,\)"),
], ids=["kernel-30-at-0", "kernel-14x3-at-2", "channels", "dense-1600", "dense-128"])
def test_architecture_errors_name_the_layer(config, index, layer_type, message):
    with pytest.raises(ArchitectureError, match=rf"^layer {index} \({layer_type}\): .*{message}"):
        architecture.build(config)


def test_architecture_must_end_in_class_scores():
    config = architecture.reference()
    config["layers"] = config["layers"][:4]
    with pytest.raises(ArchitectureError, match="class scores"):
        architecture.build(config)


def test_save_load_round_trip(tmp_path, mnist):
    config = architecture.reference()
    config["class_names"] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    model = architecture.build(config, seed=3)
    path = tmp_path / "model.npz"
    save_model(model, path, metadata={"note": "round trip"})
    loaded = load_model(path)
    assert loaded.get_config() == model.get_config()
    assert loaded.class_names == config["class_names"]
    assert loaded.metadata == {"note": "round trip"}
    images = mnist[2][:50].astype(np.float32)[:, None] / 255
    np.testing.assert_array_equal(loaded.predict_proba(images), model.predict_proba(images))
    for (key, a, _), (key2, b, _) in zip(model.parameters(), loaded.parameters()):
        assert key == key2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_float64_model_round_trip_keeps_its_dtype(tmp_path):
    model = architecture.build(architecture.stack([4], [3], 2, [8], [0.0]), seed=1).astype(np.float64)
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.dtype == np.float64
    x = np.random.default_rng(1).random((5, 1, 28, 28))
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_predict_proba_is_a_distribution_and_restores_the_mode():
    model = architecture.build(architecture.reference(), seed=2).train()
    x = np.random.default_rng(2).random((7, 28, 28), dtype=np.float32)  # (N, H, W) is accepted too
    probs = model.predict_proba(x, batch_size=3)
    assert probs.shape == (7, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(x), probs.argmax(axis=1))
    assert model.training and all(layer.training for layer in model.layers)


# --- optimizers ---------------------------------------------------------------------------------------------------

def _tiny_problem():
    """40 4x4 images labelled by a fixed linear teacher, and a linear softmax classifier (float64)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 1, 4, 4))
    labels = (x.reshape(40, -1) @ rng.standard_normal((16, 3))).argmax(axis=1)
    model = Sequential([Flatten(), Dense(16, 3, seed=4)], input_shape=(1, 4, 4)).astype(np.float64)
    return model, x, labels


@pytest.mark.parametrize("optimizer", [SGD(lr=0.05), SGD(lr=0.2, momentum=0.0), Adam(lr=0.02)],
                         ids=["sgd-momentum", "sgd-plain", "adam"])
def test_optimizers_reduce_the_loss(optimizer):
    model, x, labels = _tiny_problem()
    loss_fn = SoftmaxCrossEntropy()
    losses = []
    for _ in range(60):
        losses.append(loss_fn(model.forward(x), labels))
        model.backward(loss_fn.backward())
        optimizer.step(model.parameters())
    assert losses[-1] < 0.5 * losses[0]
    assert optimizer.t == 60


def test_adam_first_steps_match_a_hand_computation():
    """Adam as in Kingma and Ba's Algorithm 1, in their efficient form (section 2): the bias corrections fold
    into the step size and eps is added to sqrt(v) itself, as Keras does:
    alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t), p -= alpha_t * m / (sqrt(v) + eps)."""
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    p0 = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]])
    g1 = np.array([[0.3, -2.0, 0.05], [-0.7, 5.0, 0.0]])
    g2 = np.array([[-0.1, -1.0, 2.0], [0.2, 0.0, -3.0]])
    opt = Adam(lr=lr)
    p = p0.copy()
    opt.step([("0.W", p, g1)])
    # First step: m = (1-b1) g, v = (1-b2) g^2, so the update is lr * g / (|g| + eps / sqrt(1-b2)), about lr*sign(g).
    m1, v1 = (1 - b1) * g1, (1 - b2) * g1 ** 2
    expected1 = p0 - lr * np.sqrt(1 - b2) / (1 - b1) * m1 / (np.sqrt(v1) + eps)
    np.testing.assert_allclose(p, expected1, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(p, p0 - lr * np.sign(g1), rtol=0, atol=lr * 1e-4)
    opt.step([("0.W", p, g2)])
    m2, v2 = b1 * m1 + (1 - b1) * g2, b2 * v1 + (1 - b2) * g2 ** 2
    expected2 = expected1 - lr * np.sqrt(1 - b2 ** 2) / (1 - b1 ** 2) * m2 / (np.sqrt(v2) + eps)
    np.testing.assert_allclose(p, expected2, rtol=1e-13, atol=1e-15)


def test_adam_float32_kernel_matches_numpy_in_float32_on_any_thread_count():
    """The vectorized kernel runs in float32 for float32 parameters, in pieces shared among the threads."""
    rng = np.random.default_rng(3)
    n = 40_003  # above the single-thread threshold, not a multiple of the pieces or of a vector
    p0, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    m0, v0 = rng.standard_normal(n).astype(np.float32), rng.random(n).astype(np.float32)
    step, b1, b2, eps = np.float32(0.01), np.float32(0.9), np.float32(0.999), np.float32(1e-8)
    m = b1 * m0 + (1 - b1) * g
    v = b2 * v0 + (1 - b2) * g * g
    expected = p0 - step * m / (np.sqrt(v) + eps)
    results = []
    try:
        for threads in (1, 2):
            set_threads(threads)
            p, mm, vv = p0.copy(), m0.copy(), v0.copy()
            _optim.adam_update(p, g, mm, vv, float(step), float(b1), float(b2), float(eps))
            np.testing.assert_allclose(mm, m, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(vv, v, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(p, expected, rtol=1e-6, atol=1e-6)
            results.append(p)
    finally:
        set_threads(default_threads()).restore_original_limits()
    np.testing.assert_array_equal(results[0], results[1])


def test_sgd_momentum_steps_match_a_hand_computation():
    p0, g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 0.25]), np.array([-1.0, 2.0])
    opt = SGD(lr=0.1, momentum=0.9)
    p = p0.copy()
    opt.step([("k", p, g1)])
    np.testing.assert_allclose(p, p0 - 0.1 * g1)
    opt.step([("k", p, g2)])
    np.testing.assert_allclose(p, p0 - 0.1 * g1 - 0.1 * (0.9 * g1 + g2))


def test_make_optimizer_defaults():
    assert isinstance(make_optimizer("Adam"), Adam) and make_optimizer("adam").lr == 0.001
    assert isinstance(make_optimizer("sgd", 0.1), SGD) and make_optimizer("sgd", 0.1).lr == 0.1


# --- training -----------------------------------------------------------------------------------------------------

def test_one_epoch_on_2000_images_learns(mnist):
    """The reference network, 1 epoch over 2,000 images at batch 32: far better than chance (10%).

    Measured 86.5-89.9% on the first 2,000 test images over seeds 0-3; the 80% bar leaves a wide margin.
    One seed runs here to keep the suite short (2-5 s on the shared 2-core machine).
    """
    seed = 0
    x_train, y_train, x_test, y_test = mnist
    model = architecture.build(architecture.reference(), seed=seed)
    config = RunSettings(epochs=1, batch_size=32, optimizer="adam", lr=1e-3, seed=seed)
    state = Trainer(model, make_optimizer("adam", 1e-3), config).fit(x_train[:2000], y_train[:2000])
    assert state.epoch == 1 and state.global_step == 63 and len(state.history) == 1
    loss, accuracy = evaluate(model, x_test[:2000], y_test[:2000])
    assert accuracy > 0.80, f"accuracy {accuracy:.2%} after one epoch"
    assert loss < 0.8
    assert state.history[0]["train_loss"] < np.log(10)


@pytest.mark.parametrize("make, message", [
    (lambda: Adam(beta1=1.0), "beta1 must be in [0, 1)"),
    (lambda: Adam(beta2=-0.1), "beta2 must be in [0, 1)"),
    (lambda: Adam(eps=0), "eps must be in (0, inf)"),
    (lambda: Adam(eps=float("nan")), "eps must be in (0, inf)"),
    (lambda: Adam(beta1="0.9"), "beta1 must be a number"),
    (lambda: Adam(lr=0), "learning rate must be a positive number"),
    (lambda: SGD(momentum=1.0), "momentum must be in [0, 1)"),
    (lambda: SGD(momentum=True), "momentum must be a number"),
])
def test_optimizer_constructors_validate_their_arguments(make, message):
    """Adam took any value (a beta1 of 1 divides by zero at the first step); now both check, as SGD did."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        make()


def test_eval_mode_runs_a_block_in_eval_mode_and_restores_the_mode():
    model = architecture.build(architecture.reference(), seed=0).train()
    with eval_mode(model):
        assert not model.training and not any(layer.training for layer in model.layers)
    assert model.training and all(layer.training for layer in model.layers)
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training


def test_seed_dropout_gives_each_dropout_layer_its_own_stream():
    model = architecture.build(architecture.reference(), seed=0).train()
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    model.seed_dropout([1, 2])
    first = model.forward(x)
    model.seed_dropout([1, 2])
    np.testing.assert_array_equal(model.forward(x), first)  # the same seed, the same masks
    model.seed_dropout([1, 3])
    assert not np.array_equal(model.forward(x), first)


def test_each_layer_names_itself_once():
    model = architecture.build(architecture.reference(), seed=0)
    assert model.layer_names() == ["0: Conv2D (relu)", "1: MaxPool2D", "2: Conv2D (relu)", "3: MaxPool2D",
                                   "4: Flatten", "5: Dense (relu)", "6: Dropout (p=0.2)", "7: Dense"]
    assert all(name in model.summary() for name in model.layer_names())
