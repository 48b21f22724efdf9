"""Figures that teach (issue 16): the patches that excite a deeper channel, the kernels' change since
initialization, colour scales and channel numbers on every map, the runners-up beside a prediction, and a line
label that stays off the curves."""
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from cycnn.io import architecture
from cycnn.nn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from cycnn.nn.losses import softmax
from cycnn.nn.optim import make_optimizer
from cycnn.nn.sequential import Sequential
from cycnn.train.log import RunLog, read_log
from cycnn.train.settings import RunSettings
from cycnn.train.trainer import Trainer
from cycnn.viz import change, figures, network, receptive, results, training
from cycnn.train.log import quantize_maps

TINY = architecture.stack([2, 3], [3, 3], 2, [8], [0], input_shape=(1, 16, 16), num_classes=10)
NOISE = np.random.default_rng(0).random((1, 16, 16))


def _stack(*layers):
    """Just the layers, which is all a receptive field reads."""
    return SimpleNamespace(layers=list(layers))


# --- receptive fields ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("layers, index, expected", [
    # conv 3x3: each output sees 3x3 pixels, one step apart
    ([Conv2D(1, 1, 3, seed=0)], 0, receptive.Field((3, 3), (1, 1), (0, 0))),
    # conv 3, pool 2, conv 3 (the reference stack): 3, then 3 + 1 = 4 at jump 2, then 4 + 2 * 2 = 8
    ([Conv2D(1, 1, 3, seed=0), MaxPool2D(2), Conv2D(1, 1, 3, seed=0)], 2,
     receptive.Field((8, 8), (2, 2), (0, 0))),
    ([Conv2D(1, 1, 3, seed=0), MaxPool2D(2), Conv2D(1, 1, 3, seed=0), MaxPool2D(2)], 3,
     receptive.Field((10, 10), (4, 4), (0, 0))),
    # padding 2 on a 5x5 kernel starts the field two pixels before the image; stride 2 doubles the jump
    ([Conv2D(1, 1, 5, stride=2, padding=2, seed=0), ReLU(), Conv2D(1, 1, 3, padding=1, seed=0)], 2,
     receptive.Field((9, 9), (2, 2), (-4, -4))),
    # a non-square kernel and pool
    ([Conv2D(1, 1, (4, 2), seed=0), MaxPool2D(3)], 1, receptive.Field((6, 4), (3, 3), (0, 0))),
])
def test_receptive_fields_of_known_stacks(layers, index, expected):
    assert receptive.receptive_field(_stack(*layers), index) == expected


def test_a_box_is_clipped_to_the_image():
    field = receptive.Field((9, 9), (2, 2), (-4, -4))
    assert field.box(0, 0, (16, 16)) == (0, 0, 5, 5)  # rows -4..4 and columns -4..4, cut at 0
    assert field.box(3, 5, (16, 16)) == (2, 6, 11, 15)
    assert field.box(8, 8, (16, 16)) == (12, 12, 16, 16)  # rows 12..20, cut at 16


# --- the patches that excite a channel most -----------------------------------------------------------------
def _bar_model():
    """conv 3x3 -> pool 2 -> conv 3x3 whose second layer's channel 0 fires on a vertical bar: the first layer's
    channel 0 detects a vertical line, the second sums it along a column."""
    first, second = Conv2D(1, 2, 3, activation="relu", seed=0), Conv2D(2, 2, 3, activation="relu", seed=0)
    w = np.zeros((2, 1, 3, 3), np.float32)
    w[0, 0, :, 1], w[0, 0, :, 0], w[0, 0, :, 2] = 1, -0.5, -0.5  # a vertical line of ink, paper either side
    w[1, 0] = -1  # silent on ink
    first.load_params({"W": w, "b": np.zeros(2, np.float32)})
    v = np.zeros((2, 2, 3, 3), np.float32)
    v[0, 0, :, 1] = 1  # the line in three pooled rows: a bar six pixels high
    v[1, 1] = 1  # reads the silent channel: never fires
    second.load_params({"W": v, "b": np.zeros(2, np.float32)})
    return Sequential([first, MaxPool2D(2), second, Flatten(), Dense(50, 10, seed=0)], input_shape=(1, 16, 16))


def _images_with_one_bar(count=40, size=16, seed=0):
    """Noise-free images: most hold a short horizontal dash, image 7 and 23 a vertical bar at a known place."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 1, size, size), np.float32)
    for k in range(count):
        r, c = rng.integers(2, size - 4, 2)
        images[k, 0, r, c:c + 3] = 1
    images[7, 0] = images[23, 0] = 0
    images[7, 0, 3:11, 9] = 1
    images[23, 0, 6:14, 4] = 1
    return images


def test_top_patches_of_a_vertical_bar_detector_contain_the_bar():
    model, images = _bar_model(), _images_with_one_bar()
    found = receptive.top_patches(model, 2, images, per_channel=2)
    assert set(found.images[0]) == {7, 23}  # the two images with a bar excite the bar channel most
    assert found.field == receptive.Field((8, 8), (2, 2), (0, 0))
    for i, position, box in zip(found.images[0], found.positions[0], found.boxes((16, 16))[0]):
        top, left, bottom, right = box
        cut = images[i, 0, top:bottom, left:right]
        assert cut.sum(axis=0).max() >= 6  # a column of at least six ink pixels: the bar is in the patch
        drawn = receptive.patch(images[i], position, found.field)
        assert drawn.shape == (8, 8, 3) and np.isclose(drawn.min(), 0)  # ink (black) in the drawn patch
    assert np.all(found.values[1] <= 0)  # the silent channel


def test_top_patches_figure_numbers_its_channels_and_marks_silent_ones():
    figure = receptive.top_patches_figure(_bar_model(), 2, _images_with_one_bar(), per_channel=3)
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["0", "1"]
    assert "1 channels never fired" in figure.axes[0].get_title()
    figures.png_bytes(figure)


# --- the change since initialization ------------------------------------------------------------------------
def _logged(tmp_path, steps=3):
    """A TINY model built with seed 3 and trained ``steps`` steps on noise, with its log."""
    model = architecture.build(TINY, seed=3)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (32 * steps, 16, 16), dtype=np.uint8), rng.integers(0, 10, 32 * steps)
    log = tmp_path / "run.jsonl"
    Trainer(model, make_optimizer("adam", 0.05), RunSettings(epochs=1, batch_size=32, lr=0.05, seed=3),
            [RunLog(log, every=1)]).fit(x, y)
    return model, read_log(log)


def test_the_change_is_zero_for_a_model_at_its_initialization(tmp_path):
    _, records = _logged(tmp_path)
    untouched = architecture.build(TINY, seed=3)
    start = change.initial_model(untouched, records)
    np.testing.assert_array_equal(start.layers[0].params["W"], untouched.layers[0].params["W"])
    difference = change.kernel_change_figure(untouched, start, 0).axes[2].images[0].get_array()
    assert np.nanmax(np.abs(difference)) == 0
    other = architecture.build(architecture.stack([5], [3], 2, [8], [0], input_shape=(1, 16, 16)), seed=3)
    assert change.initial_model(other, records) is None  # a log of another network


@pytest.mark.slow
def test_the_change_picture_needs_a_log_and_shows_a_change(tmp_path):
    model, records = _logged(tmp_path)
    images, labels, probs = np.zeros((20, 1, 16, 16), np.float32), np.zeros(20, int), np.full((20, 10), 0.1)

    def names(log):
        return [p.name for p in figures.pictures(model, images, labels, probs, [], log, count=4)]

    assert names(None)[:3] == ["kernels_layer0", "top_patches_layer2", "kernel_grid_layer2"]
    assert names(records)[:4] == ["kernels_layer0", "kernels_change_layer0", "top_patches_layer2",
                                  "kernel_grid_layer2"]
    start = change.initial_model(model, records)
    figure = change.kernel_change_figure(model, start, 0)
    assert np.nanmax(np.abs(figure.axes[2].images[0].get_array())) > 0
    assert len(_colour_bars(figure)) == 3  # the weights' scale twice and the change's own


# --- colour scales and channel numbers ----------------------------------------------------------------------
def _colour_bars(figure):
    return [ax for ax in figure.axes if hasattr(ax, "_colorbar")]


def test_feature_maps_have_a_colour_bar_and_channel_numbers():
    model = architecture.build(TINY, seed=1)
    figure = network.feature_map_figure(model, NOISE, 0, "noise")
    assert len(_colour_bars(figure)) == 1
    labels = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert labels == ["0", "1"]


def test_the_convolution_picture_has_a_scale_for_relu_and_pooling():
    model = architecture.build(TINY, seed=1)
    figure = network.convolution_figure(model, NOISE, "noise")
    bars = _colour_bars(figure)
    assert len(bars) == 2
    assert "after ReLU and max-pool" in bars[1].get_xlabel()


def test_the_live_maps_carry_their_scale():
    levels, signed, limit = quantize_maps(np.array([[[0.0, 2.5]]]))
    assert (levels.max(), signed, limit) == (255, False, 2.5)
    assert quantize_maps(np.array([[[-4.0, 1.0]]]))[1:] == (True, 4.0)


# --- probabilities ------------------------------------------------------------------------------------------
PROBS = np.array([[0.001, 0.006, 0.001, 0.0, 0.0, 0.0, 0.0, 0.992, 0.0, 0.0]])


def test_prediction_titles_name_the_runners_up():
    names = [str(k) for k in range(10)]
    figure = results.predictions_figure(np.zeros((1, 1, 8, 8)), np.array([7]), PROBS, names, 1)
    assert "7 99.2%" in figure.axes[0].get_title() and "1 0.6%, 0 0.1%" in figure.axes[0].get_title()


def test_the_probabilities_panel_names_the_runners_up():
    model = architecture.build(TINY, seed=1)
    title = network.dense_figure(model, NOISE, "noise").axes[-1].get_title()
    probs = softmax(np.asarray(model.layer_outputs(NOISE[None].astype(np.float32))[-1], dtype=np.float64))[0]
    top = np.argsort(-probs, kind="stable")[:3]
    assert f"predicted {top[0]} " in title and f"runners-up {top[1]} " in title and f", {top[2]} " in title


# --- the rule of thumb's label ------------------------------------------------------------------------------
def _along(points, samples=50):
    """Points every 1/``samples`` of the way along a polyline, so that a box between two vertices is caught."""
    t = np.linspace(0, 1, samples)[:, None]
    return np.concatenate([a + t * (b - a) for a, b in zip(points[:-1], points[1:])] or [points])


@pytest.mark.slow
def test_the_rule_of_thumb_label_does_not_cover_a_curve(tmp_path):
    _, records = _logged(tmp_path, 6)
    ratios = iter([1.2e-3, 1.2e-3, 1.2e-3, 1e-1, 1e-5, 1.2e-3, 1.2e-3])  # mostly just above the line, where a
    for record in (r for r in records if r["type"] == "step"):  # label on the line would sit
        ratio = next(ratios)
        for entry in record["params"].values():
            entry["update_ratio"] = ratio
    figure = training.training_curves_figure(records)
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    update_ax = next(ax for ax in figure.axes if ax.get_title().startswith("Update"))
    label = next(t for t in figure.findobj(lambda o: hasattr(o, "get_text")) if "rule of thumb" in t.get_text())
    box = label.get_window_extent(renderer)
    curves = [line for line in update_ax.get_lines()
              if not line.get_label().startswith("_") and "rule of thumb" not in line.get_label()]
    assert curves
    for line in curves:
        points = _along(update_ax.transData.transform(line.get_xydata()))
        assert not any(box.contains(x, y) for x, y in points), line.get_label()
